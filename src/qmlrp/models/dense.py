"""The naive dense (padded) variant of the Weave model, sharing the ragged model's weights.

Molecules are padded to ``max_atoms`` (29) atoms and all ``29 x 29`` ordered pairs; A->P
concatenates ``[A_i, A_j]`` for every pair and applies the dense kernel -- the straightforward
implementation the ragged model is benchmarked against. Padded atoms and pairs (and the
diagonal i == i) are masked to zero after every layer, so on the same weights the outputs equal
the ragged model's (up to float rounding).

Input dict: ``atoms`` (B, N, 21) f32, ``pairs`` (B, N, N, 13) f32 (symmetric, zero diagonal),
``atom_mask`` (B, N) f32 -- as returned by ``qmlrp.features.dense.to_dense``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.features.batch import GraphBatch
from qmlrp.features.dense import to_dense
from qmlrp.features.layout import MAX_ATOMS
from qmlrp.models.gc import GraphConvModel
from qmlrp.models.weave import WeaveModule

ATOMS_KEY = "atoms"
PAIRS_KEY = "pairs"
ATOM_MASK_KEY = "atom_mask"


def pair_mask(atom_mask: Any) -> Any:
    """(B, N) atom mask -> (B, N, N) mask of real ordered pairs i != j."""
    n = ops.shape(atom_mask)[1]
    off_diagonal = 1.0 - ops.eye(n, dtype=atom_mask.dtype)
    return ops.expand_dims(atom_mask, 2) * ops.expand_dims(atom_mask, 1) * off_diagonal


def _dense_weave(module: WeaveModule, atoms: Any, pairs: Any, a_mask: Any, p_mask: Any) -> tuple[Any, Any]:
    act = module.atom_to_atom.activation
    am, pm = ops.expand_dims(a_mask, -1), ops.expand_dims(p_mask, -1)
    atom_to_atom = module.atom_to_atom(atoms) * am
    pair_to_atom = ops.sum(module.pair_to_atom(pairs) * pm, axis=2)
    new_atoms = module.atom_update([atom_to_atom, pair_to_atom]) * am
    if not module.update_pairs:
        return new_atoms, None
    n = ops.shape(atoms)[1]
    a_i = ops.repeat(ops.expand_dims(atoms, 2), n, axis=2)  # (B, N, N, d): A_i at [b, i, j]
    a_j = ops.repeat(ops.expand_dims(atoms, 1), n, axis=1)  # (B, N, N, d): A_j at [b, i, j]
    layer = module.atom_to_pair
    z_ij = ops.matmul(ops.concatenate([a_i, a_j], axis=-1), layer.kernel) + layer.bias
    z_ji = ops.matmul(ops.concatenate([a_j, a_i], axis=-1), layer.kernel) + layer.bias
    atom_to_pair = act(z_ij) + act(z_ji)
    pair_to_pair = module.pair_to_pair(pairs)
    new_pairs = module.pair_update([atom_to_pair, pair_to_pair]) * pm
    return new_atoms, new_pairs


class DenseGraphConvModel(keras.Model):
    """Padded-tensor forward pass over the *same layer objects* as a :class:`GraphConvModel`.

    Training this model trains the shared weights; it exists for benchmarking and for checking
    that the ragged implementation computes the paper's dense formulation.
    """

    def __init__(self, ragged: GraphConvModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ragged = ragged

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        m = self.ragged
        a_mask = ops.cast(inputs[ATOM_MASK_KEY], "float32")
        p_mask = pair_mask(a_mask)
        atoms = m.input_layer.atom_scaling(inputs[ATOMS_KEY])
        pairs = m.input_layer.pair_scaling(inputs[PAIRS_KEY])
        for module in m.weave_modules:
            atoms, pairs = _dense_weave(module, atoms, pairs, a_mask, p_mask)
        # The embedding's BatchNorm is built for (n_atoms, F): flatten atoms, mask out padding.
        n = ops.shape(atoms)[1]
        flat = ops.reshape(atoms, (-1, ops.shape(atoms)[-1]))
        h = m.atom_embedding(flat, training=training, mask=ops.reshape(a_mask, (-1,)))
        h = ops.reshape(h, (-1, n, m.atom_embedding.units))
        memberships = m.readout.memberships(h) * ops.reshape(a_mask, (*ops.shape(a_mask), 1, 1))
        x = ops.sum(memberships, axis=1)  # (B, F, 11)
        x = ops.reshape(x, (-1, m.atom_embedding.units * m.readout.n_gaussians))
        return m.head(x, training=training)


def dense_inputs(batch: GraphBatch, max_atoms: int = MAX_ATOMS) -> dict[str, np.ndarray]:
    """Padded input dict for :class:`DenseGraphConvModel` (``qmlrp.features.dense.to_dense``)."""
    atoms, pairs, mask = to_dense(batch, max_atoms=max_atoms)
    return {ATOMS_KEY: atoms, PAIRS_KEY: pairs, ATOM_MASK_KEY: mask}
