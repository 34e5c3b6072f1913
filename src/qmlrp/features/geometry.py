"""Sanity checks on a geometry before RDKit sees it.

RDKit's bond perception (``DetermineBonds(useHueckel=True)``) crashes the process (segmentation
fault) on atoms at the same point, and non-finite coordinates turn into nonsense charges, so every
geometry is checked here first: finite, within :data:`MAX_ABS_COORDINATE`, and no two atoms closer
than :data:`MIN_DISTANCE` (the closest two atoms of all of QM9 are 0.96 Å apart, an O-H bond;
H2's bond is 0.74 Å).
"""

from __future__ import annotations

import numpy as np

from qmlrp.errors import InputError

MIN_DISTANCE = 0.5
"""Angstrom: atoms closer than this are rejected (no physical molecule has them)."""
MAX_ABS_COORDINATE = 1.0e3
"""Angstrom: larger coordinates are a unit or format error (QM9 molecules span < 20 Å)."""


def check_geometry(atomic_numbers: np.ndarray, coordinates: np.ndarray, name: str) -> np.ndarray:
    """Return ``coordinates`` as an (n, 3) float array; raise InputError naming ``name`` and the atoms.

    Atoms are numbered from 1, as in the file.
    """
    numbers = np.asarray(atomic_numbers).reshape(-1)
    try:
        xyz = np.asarray(coordinates, dtype=float).reshape(-1, 3)
    except (TypeError, ValueError):
        raise InputError(name, "coordinates are not an (n, 3) array of numbers") from None
    if len(xyz) != len(numbers):
        raise InputError(name, f"{len(numbers)} atoms but {len(xyz)} coordinate triples")
    bad = np.nonzero(~np.isfinite(xyz).all(axis=1))[0]
    if bad.size:
        raise InputError(name, f"atom {bad[0] + 1}: non-finite coordinate {xyz[bad[0]].tolist()}")
    huge = np.nonzero((np.abs(xyz) > MAX_ABS_COORDINATE).any(axis=1))[0]
    if huge.size:
        raise InputError(name, f"atom {huge[0] + 1}: coordinate beyond ±{MAX_ABS_COORDINATE:g} Å")
    if len(xyz) > 1:
        dist = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
        dist[np.diag_indices(len(xyz))] = np.inf
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        if dist[i, j] < MIN_DISTANCE:
            i, j = sorted((int(i), int(j)))
            raise InputError(name, f"atoms {i + 1} and {j + 1} are {dist[i, j]:.3f} Å apart "
                                   f"(less than {MIN_DISTANCE} Å: overlapping atoms)")
    return xyz
