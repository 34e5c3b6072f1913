"""Relevance propagation through each kind of operation of the Weave GC model, vectorised over
a ragged batch (all atoms / all pairs / all molecules of the batch at once).

Written with ``keras.ops`` so that the whole backward walk compiles into one graph with the
recorded forward pass (:mod:`qmlrp.relevance.walk`, :mod:`qmlrp.relevance.layer_rules`); the
functions also run eagerly on numpy arrays (tests, oracle).

Every function takes the forward quantities it needs (from ``GraphConvModel.record``) and the
relevance of its outputs, and returns the relevance of its inputs plus what was *absorbed* per
output row (atom, pair or molecule): ``absorbed = sum(R_out) - sum_g c_g sum(z_g s_g)``,
computed on the forward side (from the pre-activations), not by subtracting the backward
result -- so a wrong gather or scatter shows up as a conservation error instead of being booked
as absorbed.

Operations and their treatment:

* dense / concatenation (:func:`linear`): the rule (:mod:`qmlrp.relevance.rules`) on
  ``z = sum_k x_k W_k + b``; a dense layer on a concatenation is one linear map whose input
  parts are returned separately, so concatenations need no rule of their own.
* normalisation: an inference-mode BatchNorm right after a linear map is folded into it
  (in the layer's own dtype: float64 for a float64 copy of the model), so the rule sees one
  affine map.
* activations (ReLU): relevance passes unchanged from activation to pre-activation.
* P->A (:func:`pairs_to_atoms`): ``PA_i = sum_{p ni i} pw_p`` -- each pair gets the share
  ``pw_p / PA_i`` of atom ``i``'s relevance, from both of its atoms.
* A->P (:func:`pair_from_atoms`): ``AP_ij = relu(z_ij) + relu(z_ji)``, ``z_ij = A_i W1 + A_j W2
  + b``; the two terms share ``AP_ij``'s relevance in proportion to their values
  (:func:`split_sum`), then the rule splits each term's relevance between atoms i and j as for a
  dense layer on ``[A_i, A_j]``; the result is summed per atom.
* Gaussian histogram (:func:`gaussian_gates`) and atom sum (:func:`atoms_to_molecules`).
* head: dense layers; the final ``y = z * std + mean`` is an affine map with one input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from keras import ops

from qmlrp.relevance.rules import Rule, safe_divide, select_input

Array = Any


@dataclass
class Propagated:
    """Relevance of the inputs of one operation.

    Attributes:
        inputs: relevance of each input part, shaped like the inputs (None: not a signal, e.g.
            an index array).
        absorbed: (n_rows,) relevance of each output row that reached no input (biases,
            stabilisers, 0/0 conventions), or None for none.
        bias: (n_rows,) the part of ``absorbed`` taken by the biases alone, or None.
        tag: what ``bias`` is: ``"bias"`` (network biases, folded BatchNorm shift) or ``"mean"``
            (the target mean of :class:`~qmlrp.models.layers.TargetScaling`).
    """

    inputs: list[Array | None]
    absorbed: Array | None
    bias: Array | None
    tag: str = "bias"


def is_nonnegative(x: Array) -> bool:
    """True when ``x`` is a numpy array with no negative entry (False for symbolic tensors:
    callers inside compiled functions pass the flag explicitly)."""
    return isinstance(x, np.ndarray) and bool(x.size == 0 or x.min() >= 0)


def _effective(select: str, nonneg: bool) -> str | None:
    """Input selection after using ``x >= 0``: ``x+ -> x``, ``x- -> None`` (vanishes)."""
    if not nonneg:
        return select
    if select == "x-":
        return None
    return "x"


def _rowsum(x: Array) -> Array:
    return ops.sum(x, axis=-1)


def linear(
    rule: Rule,
    xs: Sequence[Array],
    ws: Sequence[Array],
    b: Array | None,
    r_out: Array,
    z: Array | None = None,
    nonneg: Sequence[bool] | None = None,
) -> Propagated:
    """The rule on ``z = sum_k xs[k] @ ws[k] + b``.

    Args:
        rule: the LRP rule of this layer.
        xs: input parts, each (n, d_k).
        ws: kernels, each (d_k, u).
        b: bias (u,) or None.
        r_out: (n, u) relevance of the outputs (equal to that of the pre-activations).
        z: (n, u) the layer's own pre-activation, if known (saves matmuls).
        nonneg: per part, whether it is known to be >= 0 (ReLU outputs); then ``x-`` terms
            vanish (one matmul less per group).
    Returns:
        :class:`Propagated` with one (n, d_k) tensor per part and (n,) absorbed/bias shares.
    """
    bias = ops.zeros((ops.shape(r_out)[-1],), r_out.dtype) if b is None else ops.cast(b, r_out.dtype)
    flags = [is_nonnegative(x) for x in xs] if nonneg is None else list(nonneg)
    grads: dict[tuple[int, str], Array] = {}
    products: dict[frozenset, Array] = {}
    absorbed = _rowsum(r_out)
    bias_share = ops.zeros_like(absorbed)
    for group in rule.groups():
        active = [(k, sel, t.weight) for t in group.terms for k in range(len(xs))
                  if (sel := _effective(t.select, flags[k])) is not None]
        key = frozenset((k, sel, w.name) for k, sel, w in active)
        if group.plain and z is not None:
            z_nb = z - bias
        elif key in products:
            z_nb = products[key]
        else:
            # Each group's denominator is its own product (no ``x W- = (z - b) - x W+`` shortcut:
            # the difference cancels to rounding noise exactly where the denominator is small).
            z_nb = ops.zeros_like(r_out)
            for k, sel, w in active:
                z_nb = z_nb + ops.matmul(select_input(xs[k], sel), w(ws[k]))
        products[key] = z_nb
        b_g = group.bias(bias)
        cs = group.coefficient * safe_divide(r_out, group.stabilise(z_nb + b_g))
        for k, sel, w in active:
            g = ops.matmul(cs, ops.transpose(w(ws[k])))
            grads[(k, sel)] = grads[(k, sel)] + g if (k, sel) in grads else g
        absorbed = absorbed - _rowsum(z_nb * cs)
        bias_share = bias_share + ops.matmul(cs, b_g)
    inputs = []
    for k, x in enumerate(xs):
        r = None
        for sel in ("x", "x+", "x-"):
            if (k, sel) in grads:
                term = select_input(x, sel) * grads[(k, sel)]
                r = term if r is None else r + term
        inputs.append(ops.zeros_like(x) if r is None else r)
    return Propagated(inputs, absorbed, bias_share)


class PairIndex:
    """Scatter of per-pair rows onto the pairs' atoms (segment sums over both pair ends).

    Args:
        pair_atoms: (n_pairs, 2) batch-global atom indices.
        n_atoms: number of atoms in the batch (int or scalar tensor).
    """

    def __init__(self, pair_atoms: Array, n_atoms: Any) -> None:
        self.i = pair_atoms[:, 0]
        self.j = pair_atoms[:, 1]
        self.n_atoms = n_atoms

    def to_atoms(self, at_first: Array | None, at_second: Array | None) -> Array:
        """(n_atoms, u): rows of ``at_first`` summed onto atom i, of ``at_second`` onto atom j."""
        out = None
        for ids, v in ((self.i, at_first), (self.j, at_second)):
            if v is not None:
                part = ops.segment_sum(v, ids, num_segments=self.n_atoms)
                out = part if out is None else out + part
        assert out is not None
        return out


def pairs_to_atoms(pairwise: Array, totals: Array, r_atoms: Array, index: PairIndex) -> tuple[Array, Array]:
    """Backward of ``totals_i = sum over pairs p containing i of pairwise_p`` (P->A).

    Args:
        pairwise: (n_pairs, u) summands (ReLU outputs, >= 0).
        totals: (n_atoms, u) their sums per atom (from the forward pass).
        r_atoms: (n_atoms, u) relevance of the sums.
    Returns:
        r_pairs (n_pairs, u) and absorbed (n_atoms,) (relevance of zero sums, 0/0 := 0).
    """
    s = safe_divide(r_atoms, totals)
    r_pairs = pairwise * (ops.take(s, index.i, axis=0) + ops.take(s, index.j, axis=0))
    return r_pairs, _rowsum(r_atoms) - _rowsum(totals * s)


def split_sum(parts: Sequence[Array], r_out: Array) -> tuple[list[Array], Array]:
    """Backward of an elementwise sum ``out = sum_k parts[k]``: shares proportional to the parts.

    Returns the relevance of each part and the absorbed (n_rows,) (outputs whose sum is 0).
    """
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    s = safe_divide(r_out, total)
    return [p * s for p in parts], _rowsum(r_out) - _rowsum(total * s)


def pair_from_atoms(
    rule: Rule,
    atoms: Array,
    index: PairIndex,
    w_first: Array,
    w_second: Array,
    b: Array,
    r_ij: Array,
    r_ji: Array,
    z_ij: Array | None = None,
    z_ji: Array | None = None,
    nonneg: bool | None = None,
) -> Propagated:
    """The rule on both ordered pre-activations of the A->P layer, summed onto the atoms.

    ``z_ij = A_i W1 + A_j W2 + b`` and ``z_ji = A_j W1 + A_i W2 + b`` are dense layers on
    ``[A_i, A_j]`` and ``[A_j, A_i]``; the rule splits each one's relevance between the two atoms.
    Modified pre-activations use per-atom projections gathered per pair (as the model does), and
    the per-pair ``s = R / z`` are scattered to atoms *before* the transposed matmul, so the
    matmuls cost per atom, not per pair.

    Args:
        atoms: (n_atoms, d) the module's input atom features.
        index: pair incidences of the batch.
        w_first, w_second: (d, u) kernel blocks for the first / second atom of an ordered pair.
        b: (u,) bias.
        r_ij, r_ji: (n_pairs, u) relevance of ``relu(z_ij)`` and ``relu(z_ji)``.
        z_ij, z_ji: (n_pairs, u) pre-activations from the trace, if known.
        nonneg: whether ``atoms >= 0`` is known (None: checked for numpy input).
    Returns:
        :class:`Propagated` with inputs ``[r_atoms (n_atoms, d)]`` and per-pair (n_pairs,)
        absorbed / bias shares (both directions).
    """
    bias = ops.cast(b, r_ij.dtype)
    flag = is_nonnegative(atoms) if nonneg is None else nonneg
    grads: dict[str, Array] = {}
    absorbed = _rowsum(r_ij) + _rowsum(r_ji)
    bias_share = ops.zeros_like(absorbed)
    products: dict[frozenset, tuple[Array, Array]] = {}
    for group in rule.groups():
        active = [(sel, t.weight) for t in group.terms if (sel := _effective(t.select, flag)) is not None]
        key = frozenset((sel, w.name) for sel, w in active)
        if group.plain and z_ij is not None and z_ji is not None:
            zij_nb, zji_nb = z_ij - bias, z_ji - bias
        elif key in products:
            zij_nb, zji_nb = products[key]
        else:
            u_proj = v_proj = None
            for sel, w in active:
                x = select_input(atoms, sel)
                u_t, v_t = ops.matmul(x, w(w_first)), ops.matmul(x, w(w_second))
                u_proj = u_t if u_proj is None else u_proj + u_t
                v_proj = v_t if v_proj is None else v_proj + v_t
            if u_proj is None:
                zij_nb = zji_nb = ops.zeros_like(r_ij)
            else:
                u_i, u_j = ops.take(u_proj, index.i, axis=0), ops.take(u_proj, index.j, axis=0)
                v_i, v_j = ops.take(v_proj, index.i, axis=0), ops.take(v_proj, index.j, axis=0)
                zij_nb, zji_nb = u_i + v_j, u_j + v_i
        products[key] = (zij_nb, zji_nb)
        b_g = group.bias(bias)
        c = group.coefficient
        s_ij = c * safe_divide(r_ij, group.stabilise(zij_nb + b_g))
        s_ji = c * safe_divide(r_ji, group.stabilise(zji_nb + b_g))
        f1 = index.to_atoms(s_ij, s_ji)  # where the atom is the first of the ordered pair
        f2 = index.to_atoms(s_ji, s_ij)  # ... the second
        for sel, w in active:
            g = ops.matmul(f1, ops.transpose(w(w_first))) + ops.matmul(f2, ops.transpose(w(w_second)))
            grads[sel] = grads[sel] + g if sel in grads else g
        absorbed = absorbed - _rowsum(zij_nb * s_ij) - _rowsum(zji_nb * s_ji)
        bias_share = bias_share + ops.matmul(s_ij + s_ji, b_g)
    r_atoms = None
    for sel, g in grads.items():
        term = select_input(atoms, sel) * g
        r_atoms = term if r_atoms is None else r_atoms + term
    return Propagated([ops.zeros_like(atoms) if r_atoms is None else r_atoms], absorbed, bias_share)


def gaussian_gates(r_memberships: Array) -> Array:
    """Gaussian-histogram memberships treated as fixed gates: (n_atoms, F, K) -> (n_atoms, F).

    ``m_k(h) = softmax_k(-(h - mu_k)^2 / 2 sigma_k^2)`` sends a unit "count" of the normalised
    atom feature ``h_if`` into K soft bins. Like the ReLU gate ``1[z > 0]`` in standard LRP, the
    gate values are held fixed (``m_k = g_k * h`` with ``g_k = m_k / h`` frozen), so each bin is
    a linear function of ``h_if`` alone and all K bins' relevance returns to it:
    ``R(h_if) = sum_k R(m_ifk)``. Why this choice: (i) the memberships are non-monotone and
    never zero, so there is no root point for a deep-Taylor expansion; (ii) redistributing by
    the gradient ``dm_k/dh`` (signed, zero at each bin centre, and summing to 0 over k because
    the memberships sum to 1) is not conservative and would cancel to nothing; (iii) the gate
    view is exact (nothing absorbed), keeps the sign that the head gave each bin, and leaves the
    split of ``h_if`` among the atom's learned features to the rule of the next linear map (the
    folded embedding).
    """
    return ops.sum(r_memberships, axis=-1)


def atoms_to_molecules(values: Array, totals: Array, r_molecules: Array,
                       atom_molecule: Array) -> tuple[Array, Array]:
    """Backward of the sum over atoms ``totals_m = sum_{i in m} values_i``: shares ``values/totals``.

    Args:
        values: (n_atoms, c) summands (histogram memberships, >= 0).
        totals: (n_molecules, c) per-molecule sums.
        r_molecules: (n_molecules, c) relevance of the sums.
        atom_molecule: (n_atoms,) molecule of each atom.
    Returns:
        r_atoms (n_atoms, c), absorbed (n_molecules,) (relevance of zero sums).
    """
    s = safe_divide(r_molecules, totals)
    return values * ops.take(s, atom_molecule, axis=0), _rowsum(r_molecules) - _rowsum(totals * s)


def per_molecule(values: Array, owner: Array, n_molecules: Any) -> Array:
    """Sum per-row values (n_rows,) into (n_molecules,) by ``owner`` (n_rows,)."""
    return ops.segment_sum(values, owner, num_segments=n_molecules)
