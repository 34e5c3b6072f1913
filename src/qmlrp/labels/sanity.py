"""Sanity of every β label before it is stored: a plausible geometry in, a plausible result out.

:func:`check_geometry` runs before any quantum chemistry (finite coordinates, no two atoms closer
than ``min_distance_angstrom``, no stray atom); :func:`check_result` after it (converged SCF,
finite tensors, an energy within a window around the free-atom sum, a plausible dipole, a
positive-definite polarizability, a small CPHF error). A failed check raises
:class:`~qmlrp.labels.beta.LabelFailure` whose message is the reason recorded in the failures
file; nothing of that molecule is stored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from qmlrp.labels.beta import BetaResult, LabelFailure
from qmlrp.labels.config import Sanity

__all__ = ["ATOM_ENERGY_HA", "check_geometry", "check_result", "reference_energy"]

#: Exact non-relativistic ground-state energies of the free atoms (Hartree), H to Ar
#: (Chakravorty, Gwaltney, Davidson & Parpia, Phys. Rev. A 47, 3649 (1993)).
ATOM_ENERGY_HA: dict[int, float] = {
    1: -0.5, 2: -2.90372, 3: -7.47806, 4: -14.66736, 5: -24.65391, 6: -37.8450,
    7: -54.5892, 8: -75.0673, 9: -99.7339, 10: -128.9376, 11: -162.2546, 12: -200.0530,
    13: -242.3460, 14: -289.3590, 15: -341.2590, 16: -398.1100, 17: -460.1480, 18: -527.5400,
}


def _positions(atomic_numbers: Sequence[int],
               coordinates: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    xyz = np.asarray(coordinates, dtype=float).reshape(-1, 3)
    if xyz.shape[0] != len(atomic_numbers) or len(atomic_numbers) == 0:
        raise LabelFailure(f"geometry: {len(atomic_numbers)} atomic numbers but "
                           f"{xyz.shape[0]} coordinate rows")
    return xyz


def check_geometry(atomic_numbers: Sequence[int],
                   coordinates: Sequence[float] | NDArray[np.float64], sanity: Sanity) -> None:
    """Reject an implausible geometry (coordinates in Å, flattened or ``(n, 3)``).

    Raises:
        LabelFailure: non-finite or huge coordinates, two atoms closer than
            ``sanity.min_distance_angstrom``, or an atom farther than
            ``sanity.max_neighbour_distance_angstrom`` from every other atom.
    """
    z = [int(a) for a in atomic_numbers]
    xyz = _positions(z, coordinates)
    if not np.all(np.isfinite(xyz)):
        raise LabelFailure("geometry: non-finite coordinates")
    big = float(np.max(np.abs(xyz)))
    if big > sanity.max_coordinate_angstrom:
        raise LabelFailure(f"geometry: coordinate {big:.3g} Å beyond "
                           f"{sanity.max_coordinate_angstrom:g} Å")
    if any(a not in ATOM_ENERGY_HA for a in z):
        bad = sorted({a for a in z if a not in ATOM_ENERGY_HA})
        raise LabelFailure(f"geometry: atomic numbers {bad} outside H..Ar")
    if len(z) < 2:
        return
    d = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    if d[i, j] < sanity.min_distance_angstrom:
        raise LabelFailure(f"geometry: atoms {min(i, j)} and {max(i, j)} are {d[i, j]:.3f} Å apart "
                           f"(< {sanity.min_distance_angstrom:g} Å)")
    nearest = d.min(axis=1)
    k = int(np.argmax(nearest))
    if nearest[k] > sanity.max_neighbour_distance_angstrom:
        raise LabelFailure(f"geometry: atom {k} is {nearest[k]:.2f} Å from its nearest atom "
                           f"(> {sanity.max_neighbour_distance_angstrom:g} Å): not one molecule")


def reference_energy(atomic_numbers: Sequence[int]) -> float:
    """Sum of the free-atom energies :data:`ATOM_ENERGY_HA` (Hartree)."""
    return float(sum(ATOM_ENERGY_HA[int(a)] for a in atomic_numbers))


def check_result(atomic_numbers: Sequence[int], result: BetaResult, sanity: Sanity,
                 charge: int = 0) -> None:
    """Reject an implausible set of labels of a molecule with these atomic numbers.

    Raises:
        LabelFailure: SCF not converged; non-finite energy, μ, α or β; energy E (Hartree)
            outside ``Σ E_atom ± window × N_electrons``; |μ| above ``sanity.max_dipole_au``;
            α not positive definite; CPHF error above ``sanity.max_cphf_residual``.
    """
    if not result.scf_converged:
        raise LabelFailure("sanity: SCF not converged")
    arrays = (result.dipole, result.alpha, result.beta)
    if not (np.isfinite(result.energy) and all(np.all(np.isfinite(a)) for a in arrays)):
        raise LabelFailure("sanity: non-finite energy, dipole, polarizability or β")
    n_elec = sum(int(a) for a in atomic_numbers) - charge
    ref = reference_energy(atomic_numbers)
    window = sanity.energy_window_ha_per_electron * n_elec
    if abs(result.energy - ref) > window:
        raise LabelFailure(f"sanity: energy {result.energy:.6f} Ha is {result.energy - ref:+.3f} Ha "
                           f"from the free-atom sum {ref:.3f} Ha (window ±{window:.2f} Ha)")
    mu = float(np.linalg.norm(result.dipole))
    if mu > sanity.max_dipole_au:
        raise LabelFailure(f"sanity: |μ| = {mu:.3f} a.u. > {sanity.max_dipole_au:g} a.u.")
    eig = np.linalg.eigvalsh(0.5 * (result.alpha + result.alpha.T))
    if eig.min() <= 0:
        raise LabelFailure(f"sanity: polarizability not positive definite "
                           f"(smallest eigenvalue {eig.min():.3g} a.u.)")
    if not result.cphf_residual <= sanity.max_cphf_residual:
        raise LabelFailure(f"sanity: CPHF error {result.cphf_residual:.2e} > "
                           f"{sanity.max_cphf_residual:g}")
