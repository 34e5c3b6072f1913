"""Batches for the multi-model engine: K models, each drawing its own molecules, one static shape.

Two sources with one contract, ``inputs(chunks) -> (inputs dict of (K, ...) arrays, y (K, S, T), w (K, S))``
where ``chunks`` holds each model's store positions for this step (S = batch_size + 1 molecule
slots; the last slot is the padding sink; T the models' common head width, 1 for a scalar target).
Labels keep their NaN padding (vector targets); the engine masks and replaces it before the
compiled step:

* :class:`HostBatches` -- ragged batches from the :class:`FeatureStore` (pairs expanded once per
  run into a :class:`PairTable`, then gathered per step straight into the padded (K, ...) arrays),
  padded to the largest bucketed atom and pair count of the K batches. Only
  real atoms and pairs are computed (~2.4x fewer pairs than a 29-atom layout): the CPU path.
* :class:`DeviceBatches` -- the whole store as dense per-molecule arrays (29 atoms, 406 pairs)
  resident on the accelerator; a step sends only (K, batch_size) molecule indices and the input
  dict is gathered inside the compiled step. Static shapes, no host work per step: the GPU path.
  Memory: ~8.9 kB per molecule (float32 atoms, uint8 pair flags, float32 distances), 1.2 GB for
  all of QM9.

Both give the model the same numbers for real molecules (padding atoms and pairs go to the sink
slot, and the atom mask keeps them out of the BatchNorm statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qmlrp.features.layout import N_ATOM_FEATURES, N_PAIR_FEATURES
from qmlrp.features.pair_table import PairTable, ranges
from qmlrp.features.store import FeatureStore
from qmlrp.models.inputs import (
    ATOM_FEATURES_KEY,
    ATOM_MASK_KEY,
    ATOM_MOLECULE_KEY,
    COORDINATES_KEY,
    MOLECULE_ATOMS_KEY,
    PAIR_ATOMS_KEY,
    PAIR_FEATURES_KEY,
)

MAX_ATOMS = 29
"""QM9's largest molecule (the dense layout's atom slots per molecule)."""


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_to(inputs: dict[str, np.ndarray], y: np.ndarray, slots: int, n_atoms: int, n_pairs: int
           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Pad a ragged input dict (n molecules) to exactly ``slots`` molecules, ``n_atoms`` atoms and
    ``n_pairs`` pairs. Padding atoms belong to the last (sink) slot; padding pairs join the last
    padding atom to itself. ``y`` is (n,) or (n, T); returns ``(inputs with atom_mask, y (slots,)
    or (slots, T), weight (slots,))``."""
    n_mol = int(inputs[MOLECULE_ATOMS_KEY].shape[0])
    real_atoms = int(inputs[ATOM_FEATURES_KEY].shape[0])
    real_pairs = int(inputs[PAIR_FEATURES_KEY].shape[0])
    if slots <= n_mol or n_atoms <= real_atoms or n_pairs < real_pairs:
        raise ValueError("padding target smaller than the batch")
    sink, pad_atom = slots - 1, n_atoms - 1
    out = {
        ATOM_FEATURES_KEY: np.zeros((n_atoms, N_ATOM_FEATURES), np.float32),
        PAIR_FEATURES_KEY: np.zeros((n_pairs, N_PAIR_FEATURES), np.float32),
        PAIR_ATOMS_KEY: np.full((n_pairs, 2), pad_atom, np.int32),
        ATOM_MOLECULE_KEY: np.full(n_atoms, sink, np.int32),
        MOLECULE_ATOMS_KEY: np.zeros(slots, np.int32),
        ATOM_MASK_KEY: np.zeros(n_atoms, np.float32),
    }
    out[ATOM_FEATURES_KEY][:real_atoms] = inputs[ATOM_FEATURES_KEY]
    out[PAIR_FEATURES_KEY][:real_pairs] = inputs[PAIR_FEATURES_KEY]
    out[PAIR_ATOMS_KEY][:real_pairs] = inputs[PAIR_ATOMS_KEY]
    out[ATOM_MOLECULE_KEY][:real_atoms] = inputs[ATOM_MOLECULE_KEY]
    out[MOLECULE_ATOMS_KEY][:n_mol] = inputs[MOLECULE_ATOMS_KEY]
    out[MOLECULE_ATOMS_KEY][sink] = n_atoms - real_atoms
    out[ATOM_MASK_KEY][:real_atoms] = 1.0
    if COORDINATES_KEY in inputs:  # padding atoms sit at the origin, in the sink molecule
        out[COORDINATES_KEY] = np.zeros((n_atoms, 3), np.float32)
        out[COORDINATES_KEY][:real_atoms] = inputs[COORDINATES_KEY]
    y = np.asarray(y)
    y_out = np.zeros((slots, *y.shape[1:]), np.float32)
    y_out[:n_mol] = y
    weight = np.zeros(slots, np.float32)
    weight[:n_mol] = 1.0
    return out, y_out, weight


class HostBatches:
    """Ragged store batches of K models padded to one bucketed shape per step (CPU path).

    Pairs come from the store's :class:`PairTable` (built once, ~1 kB per molecule); a step is a
    few gathers into freshly zeroed (K, ...) arrays, no per-molecule Python loop. The buffers are
    not reused between steps: the step runs asynchronously, and JAX's CPU client may read a host
    array in place rather than copy it.

    Args:
        store: the featurized molecules.
        targets: K arrays of (len(store), T) target values, one per model (target units; NaN
            marks padding). Not copied: models of one target share one array.
        batch_size: molecules per model per step.
        atom_bucket, pair_bucket: atom and pair counts are rounded up to these multiples (the
            number of compiled shapes stays small).
        coordinates: add each atom's coordinates (Angstrom, ``COORDINATES_KEY``; the equivariant
            vector model's input).
    """

    def __init__(self, store: FeatureStore, targets: np.ndarray, batch_size: int,
                 atom_bucket: int = 64, pair_bucket: int = 1024, coordinates: bool = False) -> None:
        self.store = store
        self.coordinates = bool(coordinates)
        self.targets = [_as_matrix(t) for t in targets]
        self.batch_size = int(batch_size)
        self.atom_bucket = int(atom_bucket)
        self.pair_bucket = int(pair_bucket)
        self.pairs = PairTable.of(store)

    def inputs(self, chunks: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        n_atoms = [self.store.n_atoms[c] for c in chunks]
        atoms = _round_up(max([int(n.sum()) for n in n_atoms] + [0]) + 1, self.atom_bucket)
        pairs = _round_up(max([int((n * (n - 1) // 2).sum()) for n in n_atoms] + [1]), self.pair_bucket)
        k, slots = len(chunks), self.batch_size + 1
        out = {
            ATOM_FEATURES_KEY: np.zeros((k, atoms, N_ATOM_FEATURES), np.float32),
            PAIR_FEATURES_KEY: np.zeros((k, pairs, N_PAIR_FEATURES), np.float32),
            PAIR_ATOMS_KEY: np.full((k, pairs, 2), atoms - 1, np.int32),
            ATOM_MOLECULE_KEY: np.full((k, atoms), slots - 1, np.int32),
            MOLECULE_ATOMS_KEY: np.zeros((k, slots), np.int32),
            ATOM_MASK_KEY: np.zeros((k, atoms), np.float32),
        }
        if self.coordinates:  # padding atoms sit at the origin, in the sink molecule
            out[COORDINATES_KEY] = np.zeros((k, atoms, 3), np.float32)
        y = np.zeros((k, slots, self.targets[0].shape[1]), np.float32)
        weight = np.zeros((k, slots), np.float32)
        for m, chunk in enumerate(chunks):
            self._fill(m, chunk, n_atoms[m], out, y, weight)
        return out, y, weight

    def _fill(self, m: int, chunk: np.ndarray, n_atoms: np.ndarray, out: dict[str, np.ndarray], y: np.ndarray,
              weight: np.ndarray) -> None:
        """Model ``m``'s molecules into row ``m`` of the zero-padded outputs (as :func:`pad_to` pads)."""
        n_mol, real = chunk.size, int(n_atoms.sum())
        rows = ranges(self.store.atom_offsets[chunk], n_atoms)
        out[ATOM_FEATURES_KEY][m, :real] = self.store.atom_features[rows]
        self.pairs.fill(chunk, n_atoms, out[PAIR_FEATURES_KEY][m], out[PAIR_ATOMS_KEY][m])
        out[ATOM_MOLECULE_KEY][m, :real] = np.repeat(np.arange(n_mol, dtype=np.int32), n_atoms)
        out[MOLECULE_ATOMS_KEY][m, :n_mol] = n_atoms
        out[MOLECULE_ATOMS_KEY][m, -1] = out[ATOM_MASK_KEY].shape[1] - real
        out[ATOM_MASK_KEY][m, :real] = 1.0
        if self.coordinates:
            out[COORDINATES_KEY][m, :real] = self.store.coordinates[rows]
        y[m, :n_mol] = self.targets[m][chunk]
        weight[m, :n_mol] = 1.0


def _as_matrix(values: np.ndarray) -> np.ndarray:
    """Labels as (n, T) float64: a scalar target's (n,) becomes (n, 1)."""
    values = np.asarray(values, np.float64)
    return values.reshape(values.shape[0], -1)


def dense_store(store: FeatureStore, chunk: int = 4096) -> dict[str, np.ndarray]:
    """The whole store in a per-molecule layout of 29 atom and 406 pair slots.

    Returns ``atoms`` (N, 29, 21) float32, ``pair_flags`` (N, 406, 12) uint8 (bond types, graph
    distances, same ring), ``distance`` (N, 406) float32 (Angstrom) and ``n_atoms`` (N,) int32;
    pair slot ``p`` is the ``p``-th pair (i < j) of ``np.triu_indices(29, 1)``.
    """
    n = len(store)
    ti, tj = np.triu_indices(MAX_ATOMS, 1)
    slot_of = np.full((MAX_ATOMS, MAX_ATOMS), -1, np.int64)
    slot_of[ti, tj] = np.arange(ti.size)
    atoms = np.zeros((n, MAX_ATOMS, N_ATOM_FEATURES), np.float32)
    flags = np.zeros((n, ti.size, N_PAIR_FEATURES - 1), np.uint8)
    distance = np.zeros((n, ti.size), np.float32)
    for start in range(0, n, chunk):
        positions = np.arange(start, min(start + chunk, n))
        batch = store.batch(positions)
        first = store.atom_offsets[positions] - store.atom_offsets[positions[0]]  # batch row of atom 0
        local = np.arange(batch.atom_features.shape[0]) - first[batch.atom_molecule]
        atoms[positions[batch.atom_molecule], local] = batch.atom_features
        mol = batch.pair_molecule
        li = batch.pair_atoms[:, 0] - first[mol]
        lj = batch.pair_atoms[:, 1] - first[mol]
        slots = slot_of[li, lj]
        flags[positions[mol], slots] = batch.pair_features[:, :-1].astype(np.uint8)
        distance[positions[mol], slots] = batch.pair_features[:, -1]
    return {"atoms": atoms, "pair_flags": flags, "distance": distance, "n_atoms": store.n_atoms.astype(np.int32)}


class DeviceBatches:
    """The dense store on the accelerator; steps gather their inputs inside the compiled program.

    ``inputs(chunks)`` returns ``(index (K, B) int32, y (K, B+1, T), w (K, B+1))``; the compiled step
    calls :meth:`gather` (a pure function of jax arrays) on each model's indices and weights.
    """

    def __init__(self, store: FeatureStore, targets: np.ndarray, batch_size: int) -> None:
        import jax.numpy as jnp

        self.batch_size = int(batch_size)
        self.targets = [_as_matrix(t) for t in targets]
        dense = dense_store(store)
        self.arrays = {key: jnp.asarray(value) for key, value in dense.items()}
        ti, tj = np.triu_indices(MAX_ATOMS, 1)
        self.pair_i, self.pair_j = jnp.asarray(ti, jnp.int32), jnp.asarray(tj, jnp.int32)

    def inputs(self, chunks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k, b = len(chunks), self.batch_size
        index = np.zeros((k, b), np.int32)
        y = np.zeros((k, b + 1, self.targets[0].shape[1]), np.float32)
        w = np.zeros((k, b + 1), np.float32)
        for m, chunk in enumerate(chunks):
            index[m, : chunk.size] = chunk
            y[m, : chunk.size] = self.targets[m][chunk]
            w[m, : chunk.size] = 1.0
        return index, y, w

    def gather(self, arrays: dict[str, Any], index: Any, weight: Any) -> dict[str, Any]:
        """Model inputs for molecules ``index`` (B,) with weights (B+1,): static shapes
        (B*29+1 atoms, B*406 pairs, B+1 molecule slots; the last atom and slot are the sink)."""
        import jax.numpy as jnp

        b = index.shape[0]
        sink_atom, sink_slot = b * MAX_ATOMS, b
        n = arrays["n_atoms"][index] * (weight[:b] > 0)  # (B,) real atoms; empty slots have none
        local = jnp.arange(MAX_ATOMS)
        valid = local[None, :] < n[:, None]  # (B, 29)
        atoms = arrays["atoms"][index] * valid[..., None]
        atoms = jnp.concatenate([atoms.reshape(b * MAX_ATOMS, -1), jnp.zeros((1, atoms.shape[-1]), atoms.dtype)])
        mask = jnp.concatenate([valid.reshape(-1).astype(jnp.float32), jnp.zeros(1, jnp.float32)])
        molecule = jnp.where(valid, jnp.arange(b)[:, None], sink_slot).reshape(-1)
        molecule = jnp.concatenate([molecule, jnp.array([sink_slot])]).astype(jnp.int32)
        pair_ok = (self.pair_j[None, :] < n[:, None])  # j > i, so j < n covers both atoms
        offset = (jnp.arange(b) * MAX_ATOMS)[:, None]
        pi = jnp.where(pair_ok, offset + self.pair_i[None, :], sink_atom).reshape(-1)
        pj = jnp.where(pair_ok, offset + self.pair_j[None, :], sink_atom).reshape(-1)
        flags = arrays["pair_flags"][index].astype(jnp.float32)
        dist = arrays["distance"][index][..., None]
        pairs = (jnp.concatenate([flags, dist], axis=-1) * pair_ok[..., None]).reshape(-1, N_PAIR_FEATURES)
        counts = jnp.concatenate([n, jnp.array([0])]).astype(jnp.int32)
        counts = counts.at[sink_slot].set(b * MAX_ATOMS + 1 - jnp.sum(n))
        return {
            ATOM_FEATURES_KEY: atoms,
            PAIR_FEATURES_KEY: pairs,
            PAIR_ATOMS_KEY: jnp.stack([pi, pj], axis=1).astype(jnp.int32),
            ATOM_MOLECULE_KEY: molecule,
            MOLECULE_ATOMS_KEY: counts,
            ATOM_MASK_KEY: mask,
        }


def feature_sample(store: FeatureStore, positions: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Atom and pair features of up to ``n`` molecules among ``positions`` (for input scaling)."""
    rng = np.random.default_rng(seed)
    chosen = positions if positions.size <= n else rng.choice(positions, size=n, replace=False)
    batch = store.batch(np.sort(chosen))
    return batch.atom_features, batch.pair_features
