"""Sanity of every label before it is stored: geometry before the work, result after it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qmlrp.labels.beta import BetaResult, LabelFailure, Level, compute_beta_for_molecule
from qmlrp.labels.config import Sanity
from qmlrp.labels.run import label_task
from qmlrp.labels.sanity import check_geometry, check_result, reference_energy
from tests.labels.molecules import BASE, RADICAL, SQUEEZED_WATER

WATER_Z, WATER_XYZ = BASE["O"]
SANE = Sanity()


@pytest.fixture(scope="module")
def water() -> BetaResult:
    """RHF/STO-3G labels of the test water (a real, sane result)."""
    from pyscf import lib

    lib.num_threads(1)
    return compute_beta_for_molecule(WATER_Z, WATER_XYZ, Level(method="rhf", basis="sto-3g"))


def test_free_atom_reference() -> None:
    assert reference_energy([8, 1, 1]) == pytest.approx(-76.0673)
    assert reference_energy([6, 1, 1, 1, 1]) == pytest.approx(-39.845)


def test_squeezed_geometry_is_rejected_before_any_work() -> None:
    _, z, xyz = SQUEEZED_WATER
    with pytest.raises(LabelFailure) as err:
        check_geometry(z, xyz, SANE)
    assert str(err.value) == "geometry: atoms 0 and 1 are 0.020 Å apart (< 0.5 Å)"
    # the threshold is a parameter
    check_geometry(z, xyz, dataclasses.replace(SANE, min_distance_angstrom=0.01))


@pytest.mark.parametrize(("xyz", "reason"), [
    ([0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, float("nan")],
     "geometry: non-finite coordinates"),
    ([0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, 500.0],
     "geometry: coordinate 500 Å beyond 100 Å"),
    ([0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, -5.0],
     # nearest is H1: sqrt(1.514² + 4.531²) = 4.78 Å
     "geometry: atom 2 is 4.78 Å from its nearest atom (> 3 Å): not one molecule"),
    ([0.0, 0.0, 0.117, 0.0, 0.757, -0.469], "geometry: 3 atomic numbers but 2 coordinate rows"),
])
def test_implausible_geometries(xyz: list[float], reason: str) -> None:
    with pytest.raises(LabelFailure) as err:
        check_geometry(WATER_Z, xyz, SANE)
    assert str(err.value) == reason


def test_label_task_records_squeezed_water_as_a_failure_with_reason() -> None:
    smi, z, xyz = SQUEEZED_WATER
    out = label_task({"id": 7, "smiles": smi, "n_atoms": 3, "atomic_numbers": z,
                      "coordinates": xyz}, {"method": "rhf", "basis": "sto-3g"})
    assert out == {"id": 7, "ok": False,
                   "reason": "geometry: atoms 0 and 1 are 0.020 Å apart (< 0.5 Å)"}


def test_label_task_records_open_shell_reason() -> None:
    smi, z, xyz = RADICAL
    out = label_task({"id": 9, "smiles": smi, "n_atoms": 4, "atomic_numbers": z,
                      "coordinates": xyz}, {"method": "rhf", "basis": "sto-3g"})
    assert out == {"id": 9, "ok": False,
                   "reason": "open shell (9 electrons): closed-shell RHF/RKS only"}


def test_sane_result_passes_and_is_stored(water: BetaResult) -> None:
    check_result(WATER_Z, water, SANE)
    assert water.scf_converged
    assert water.energy == pytest.approx(-74.9629, abs=2e-4)  # RHF/STO-3G, this geometry
    out = label_task({"id": 1, "smiles": "O", "n_atoms": 3, "atomic_numbers": WATER_Z,
                      "coordinates": WATER_XYZ}, {"method": "rhf", "basis": "sto-3g"},
                     revision="abc123")
    assert out["ok"] and out["row"]["energy_hartree"] == pytest.approx(water.energy, abs=1e-8)
    row = out["row"]
    assert row["qmlrp_version"].endswith("+gabc123") and row["pyscf_version"]
    assert row["pyscf_properties_version"] and row["libxc_version"]
    assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["computed_utc"].endswith("Z")


@pytest.mark.parametrize(("change", "reason"), [
    ({"energy": 112.0}, "sanity: energy 112.000000 Ha is +188.067 Ha from the free-atom sum "
                        "-76.067 Ha (window ±2.00 Ha)"),
    ({"scf_converged": False}, "sanity: SCF not converged"),
    ({"dipole": np.array([0.0, 0.0, 25.0])}, "sanity: |μ| = 25.000 a.u. > 10 a.u."),
    ({"alpha": np.diag([5.0, 4.0, -1.0])},
     "sanity: polarizability not positive definite (smallest eigenvalue -1 a.u.)"),
    ({"cphf_residual": 1e-3}, "sanity: CPHF error 1.00e-03 > 1e-05"),
    ({"beta": np.full((3, 3, 3), np.nan)},
     "sanity: non-finite energy, dipole, polarizability or β"),
])
def test_implausible_results_are_rejected(water: BetaResult, change: dict, reason: str) -> None:
    with pytest.raises(LabelFailure) as err:
        check_result(WATER_Z, dataclasses.replace(water, **change), SANE)
    assert str(err.value) == reason


def test_squeezed_water_energy_is_caught_even_without_the_distance_check() -> None:
    """The second line of defence: with the distance check relaxed, the SCF of the squeezed
    water 'converges' to about +115 Ha (the stored +112 Ha bug), and the energy check refuses it."""
    smi, z, xyz = SQUEEZED_WATER
    out = label_task({"id": 7, "smiles": smi, "n_atoms": 3, "atomic_numbers": z,
                      "coordinates": xyz}, {"method": "rhf", "basis": "sto-3g"},
                     sanity={"min_distance_angstrom": 0.01})
    assert not out["ok"]
    assert out["reason"].startswith("sanity: energy 114.8")
    assert out["reason"].endswith("from the free-atom sum -76.067 Ha (window ±2.00 Ha)")
