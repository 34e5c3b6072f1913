"""Geometry checks before RDKit: overlapping atoms (which crash RDKit's Hückel perception),
non-finite and huge coordinates give one InputError naming the atoms; the process survives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qmlrp.errors import InputError
from qmlrp.features.geometry import MIN_DISTANCE, check_geometry
from qmlrp.features.molecule import build_molecule

ETHANE_Z = np.array([6, 6, 1, 1, 1, 1, 1, 1])


def ethane_like(second_carbon: list[float]) -> np.ndarray:
    return np.array([[0, 0, 0], second_carbon, [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 0, 2.5]],
                    dtype=float)


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        ([0, 0, 0], "atoms 1 and 2 are 0.000 Å apart"),
        ([0, 0, 1e-4], "atoms 1 and 2 are 0.000 Å apart"),
        ([0, 0, 0.3], "atoms 1 and 2 are 0.300 Å apart"),
        ([0, 0, np.nan], "atom 2: non-finite coordinate"),
        ([0, 0, np.inf], "atom 2: non-finite coordinate"),
        ([0, 0, 1e6], "atom 2: coordinate beyond ±1000 Å"),
    ],
)
def test_bad_geometry_is_one_line(second, reason):
    with pytest.raises(InputError) as err:
        check_geometry(ETHANE_Z, ethane_like(second), "bad")
    assert reason in str(err.value) and str(err.value).startswith("bad: ") and "\n" not in str(err.value)


def test_good_geometry_passes_and_threshold_is_half_an_angstrom():
    xyz = check_geometry(ETHANE_Z, ethane_like([0, 0, 1.53]).tolist(), "ok")
    assert xyz.shape == (8, 3) and xyz.dtype == np.float64
    assert MIN_DISTANCE == 0.5
    with pytest.raises(InputError, match="3 atoms but 2 coordinate triples"):
        check_geometry(np.array([1, 1, 8]), np.zeros((2, 3)), "short")


@pytest.mark.integration
def test_overlapping_atoms_are_rejected_before_rdkit_crashes():
    """Two carbons at one point used to kill the process in DetermineBonds(useHueckel=True):
    run it in a child so a regression fails this test instead of the whole test run."""
    code = (
        "import numpy as np\n"
        "from tests.features.test_geometry import ETHANE_Z, ethane_like\n"
        "from qmlrp.errors import InputError\n"
        "from qmlrp.features.molecule import build_molecule\n"
        "try:\n"
        "    build_molecule(ETHANE_Z, ethane_like([0, 0, 0]), None, 'overlap')\n"
        "except InputError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"child died with status {result.returncode}"
    assert result.stdout.strip() == "overlap: atoms 1 and 2 are 0.000 Å apart (less than 0.5 Å: overlapping atoms)"
    assert "suspicious" not in result.stdout + result.stderr  # RDKit's own warning never printed: it never ran


def test_nan_coordinate_is_not_featurized(qm9_record):
    rec = qm9_record(1)
    coords = np.array(rec.coordinates, dtype=float)
    coords[0, 1] = np.nan
    with pytest.raises(InputError, match="atom 1: non-finite coordinate"):
        build_molecule(rec.atomic_numbers, coords, rec.smiles, rec.name)
