"""The weave module of Kearnes et al. (2016) on ragged batches (real atoms and pairs only).

One module maps atom features ``A`` (n_atoms, d_a) and unordered-pair features ``P``
(n_pairs, d_p) to new ones::

    A->A   AA_i  = relu(A_i W_aa + b_aa)
    P->A   PA_i  = sum_{j != i} relu(P_ij W_pa + b_pa)        (segment sums over both pair ends)
    A      A'_i  = relu([AA_i, PA_i] W_a + b_a)
    A->P   AP_ij = relu([A_i, A_j] W_ap + b_ap) + relu([A_j, A_i] W_ap + b_ap)
    P->P   PP_ij = relu(P_ij W_pp + b_pp)
    P      P'_ij = relu([AP_ij, PP_ij] W_p + b_p)

Pairs are stored once per unordered pair (i < j); because ``P_ij = P_ji`` and ``AP`` is
symmetric by construction, this is exactly the ordered-pair formulation at half the cost.
The last module of a stack has ``update_pairs=False``: its pair output would never be used.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from qmlrp.models.layers import PACKAGE, PairFromAtoms, SplitDense, Tape, build_once, run


def pair_to_atom_sum(pairwise: Any, pair_atoms: Any, n_atoms: Any) -> Any:
    """Sum per-pair rows onto both atoms of each unordered pair: (n_pairs, u) -> (n_atoms, u)."""
    to_first = ops.segment_sum(pairwise, pair_atoms[:, 0], num_segments=n_atoms)
    to_second = ops.segment_sum(pairwise, pair_atoms[:, 1], num_segments=n_atoms)
    return to_first + to_second


class PairToAtomSum:
    """The weightless P->A sum as a recordable operation (not a Keras layer: nothing to save).

    ``(pairwise (n_pairs, u), pair_atoms (n_pairs, 2), n_atoms) -> (n_atoms, u)``.
    """

    name = "pair_to_atom_sum"

    def __call__(self, pairwise: Any, pair_atoms: Any, n_atoms: Any) -> Any:
        return pair_to_atom_sum(pairwise, pair_atoms, n_atoms)


PAIR_TO_ATOM_SUM = PairToAtomSum()


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeaveModule(keras.layers.Layer):
    """One weave module (A->A, P->A, A->P, P->P and the two combining layers).

    Args:
        atom_units: width of the module's atom output ``A'``.
        pair_units: width of the module's pair output ``P'``.
        atom_hidden: width of A->A and P->A.
        pair_hidden: width of A->P and P->P.
        update_pairs: compute ``P'`` (False for the last module, whose pair output is unused).
        activation: activation of every layer (ReLU for LRP).
    """

    def __init__(
        self,
        atom_units: int = 50,
        pair_units: int = 50,
        atom_hidden: int = 50,
        pair_hidden: int = 50,
        update_pairs: bool = True,
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.atom_units = int(atom_units)
        self.pair_units = int(pair_units)
        self.atom_hidden = int(atom_hidden)
        self.pair_hidden = int(pair_hidden)
        self.update_pairs = bool(update_pairs)
        self.activation_name = activation
        self.atom_to_atom = SplitDense(self.atom_hidden, activation, name="atom_to_atom")
        self.pair_to_atom = SplitDense(self.atom_hidden, activation, name="pair_to_atom")
        self.atom_update = SplitDense(self.atom_units, activation, name="atom_update")
        if self.update_pairs:
            self.atom_to_pair = PairFromAtoms(self.pair_hidden, activation, name="atom_to_pair")
            self.pair_to_pair = SplitDense(self.pair_hidden, activation, name="pair_to_pair")
            self.pair_update = SplitDense(self.pair_units, activation, name="pair_update")

    def build(self, atoms_shape: Any, pairs_shape: Any, pair_atoms_shape: Any = None) -> None:
        d_a, d_p = int(atoms_shape[-1]), int(pairs_shape[-1])
        build_once(self.atom_to_atom, (None, d_a))
        build_once(self.pair_to_atom, (None, d_p))
        build_once(self.atom_update, [(None, self.atom_hidden), (None, self.atom_hidden)])
        if self.update_pairs:
            build_once(self.atom_to_pair, (None, d_a))
            build_once(self.pair_to_pair, (None, d_p))
            build_once(self.pair_update, [(None, self.pair_hidden), (None, self.pair_hidden)])

    def forward(self, atoms: Any, pairs: Any, pair_atoms: Any, tape: Tape | None = None) -> tuple[Any, Any]:
        """(A' (n_atoms, atom_units), P' (n_pairs, pair_units) or None); every layer and the
        P->A sum are recorded on ``tape`` (see :func:`qmlrp.models.layers.run`)."""
        n_atoms = ops.shape(atoms)[0]
        atom_to_atom = run(tape, self.atom_to_atom, atoms)
        pairwise = run(tape, self.pair_to_atom, pairs)
        pair_to_atom = run(tape, PAIR_TO_ATOM_SUM, pairwise, pair_atoms, n_atoms)
        new_atoms = run(tape, self.atom_update, [atom_to_atom, pair_to_atom])
        if not self.update_pairs:
            return new_atoms, None
        atom_to_pair = run(tape, self.atom_to_pair, atoms, pair_atoms)
        pair_to_pair = run(tape, self.pair_to_pair, pairs)
        new_pairs = run(tape, self.pair_update, [atom_to_pair, pair_to_pair])
        return new_atoms, new_pairs

    def call(self, atoms: Any, pairs: Any, pair_atoms: Any) -> tuple[Any, Any]:
        return self.forward(atoms, pairs, pair_atoms)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            atom_units=self.atom_units,
            pair_units=self.pair_units,
            atom_hidden=self.atom_hidden,
            pair_hidden=self.pair_hidden,
            update_pairs=self.update_pairs,
            activation=self.activation_name,
        )
        return config
