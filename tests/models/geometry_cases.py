"""What the equivariant heads' tests share: three random molecules with coordinates, a random proper
rotation, an atom permutation within each molecule, and the model's float64 prediction."""

from __future__ import annotations

from typing import Any

import numpy as np

from qmlrp.models.inputs import COORDINATES_KEY, batch_to_inputs, random_batch

COUNTS = [5, 7, 4]
"""Atoms of the three test molecules."""


def rotation(seed: int) -> np.ndarray:
    """A random proper rotation (3, 3), det +1."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def molecules_with_coordinates() -> dict[str, np.ndarray]:
    """The model inputs of the :data:`COUNTS` molecules with random coordinates (Angstrom)."""
    batch = random_batch(COUNTS, seed=1)
    x = batch_to_inputs(batch)
    x[COORDINATES_KEY] = np.random.default_rng(2).normal(0, 1.5, (batch.n_atoms, 3)).astype(np.float32)
    return x


def permuted_atoms(inputs: dict[str, np.ndarray], seed: int = 5) -> dict[str, np.ndarray]:
    """The same molecules with their atoms shuffled within each molecule (pairs renumbered to match)."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(COUNTS)])
    perm = np.concatenate([offsets[m] + rng.permutation(n) for m, n in enumerate(COUNTS)])  # new -> old
    old_to_new = np.argsort(perm)
    permuted = dict(inputs)
    for key in ("atom_features", COORDINATES_KEY, "atom_molecule"):
        permuted[key] = inputs[key][perm]
    permuted["pair_atoms"] = old_to_new[inputs["pair_atoms"]].astype(np.int32)
    return permuted


def predict(model: Any, x: dict[str, np.ndarray]) -> np.ndarray:
    """The model's outputs in inference mode, float64."""
    return np.asarray(model(x, training=False), np.float64)
