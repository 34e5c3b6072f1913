"""One relevance function per layer type of the model (registered with :func:`~qmlrp.relevance.walk.register`).

=====================  ==========  ===========================================================
layer type             out rows    relevance of the inputs
=====================  ==========  ===========================================================
SplitDense             same        the layer's rule on ``z = sum_k x_k W_k + b`` (one part per
                                   concatenated input); the activation passes R unchanged
PairFromAtoms          pairs       ``act(z_ij) + act(z_ji)`` split by value, then the rule on
                                   each ordered ``[A_i, A_j] W + b``, summed onto the atoms
PairToAtomSum          atoms       P->A sum: each pair gets its share ``pw_p / PA_i``
AtomEmbedding          same        BatchNorm folded into the linear map (canonizer), then the rule
GaussianHistogram      molecules   sum over atoms by shares, memberships as fixed gates
FeatureScaling         same        ``x * s``, s > 0, no bias: R passes unchanged
TargetScaling          same        ``y = z * std + mean``: LRP-0 per output, the mean absorbed
Dropout                same        identity at inference
ChargeDipole           molecules   ``V_mv = sum_a q_av (r_a - rbar_m)``, linear in q: LRP-0, exact
                                   (``R(q_av) = q_av (r_a - rbar) . R(V_mv) / V_mv``)
PairEnds               pairs       gather of the pairs' two atoms: R summed back onto the atoms
BondDipole             molecules   ``base + sum_pairs (w_ij - w_ji) u_ij``, linear in base and the w's:
                                   LRP-0, exact (``R(w_ij,v) = w_ij,v u_ij . R(V_mv) / V_mv``)
VectorScaling          same        ``y = z * s_v``, s > 0, no bias: R passes unchanged
ChargeTensor           molecules   ``T_mc = sum_a sum_k p_ak basis_akc``, linear in p: LRP-0, exact
                                   (``R(p_ak) = p_ak sum_c basis_akc R(T_mc) / T_mc``)
TensorScaling          same        ``(a, b) -> (s_iso a, s_aniso b)``, s > 0: R passes unchanged
=====================  ==========  ===========================================================

Composite layers (weave module, head, model, input layer) have no function: the walk goes through
their recorded children. The math of each operation is in :mod:`qmlrp.relevance.propagate`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from qmlrp.models.layers import FeatureScaling, PairFromAtoms, Record, SplitDense, TargetScaling
from qmlrp.models.readout import AtomEmbedding, GaussianHistogram
from qmlrp.models.tensor_head import ChargeTensor, TensorScaling
from qmlrp.models.vector_head import BondDipole, ChargeDipole, PairEnds, VectorScaling
from qmlrp.models.weave import PairToAtomSum
from qmlrp.relevance.propagate import (
    PairIndex,
    Propagated,
    atoms_to_molecules,
    gaussian_gates,
    linear,
    pair_from_atoms,
    pairs_to_atoms,
    safe_divide,
    split_sum,
)
from qmlrp.relevance.walk import Context, leaves, register

Array = Any


def _relu_output(layer: Any, flags: list[bool | None]) -> bool:
    return getattr(layer, "activation_name", "") == "relu"


def _as_input(layer: Any, flags: list[bool | None]) -> bool:
    return bool(flags and flags[0])


@register(SplitDense, rows="same", nonneg=_relu_output)
def split_dense(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """``act(sum_k x_k W_k + b)``: inputs ``[x_1, ..., x_K]`` (or one ``x``), each (n, d_k)."""
    layer: SplitDense = rec.layer
    xs = [ctx.cast(x) for x in leaves(rec.inputs)]
    bias = None if layer.bias is None else ctx.cast(layer.bias)
    z = rec.extras.get("z")
    res = linear(ctx.rule(rec), xs, [ctx.cast(w) for w in layer.kernels], bias, r_out[0],
                 z=None if z is None else ctx.cast(z), nonneg=[ctx.nonneg(x) for x in leaves(rec.inputs)])
    return res


@register(PairFromAtoms, rows="pairs", nonneg=_relu_output)
def pair_from_atoms_layer(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """A->P: inputs ``(atoms (n_atoms, d), pair_atoms (n_pairs, 2))``, output (n_pairs, u)."""
    layer: PairFromAtoms = rec.layer
    atoms, pair_atoms = rec.inputs
    z_ij, z_ji = ctx.cast(rec.extras["z_ij"]), ctx.cast(rec.extras["z_ji"])
    (r_ij, r_ji), lost = split_sum([layer.activation(z_ij), layer.activation(z_ji)], r_out[0])
    index = PairIndex(pair_atoms, ops.shape(atoms)[0])
    res = pair_from_atoms(ctx.rule(rec), ctx.cast(atoms), index, ctx.cast(layer.kernel_first),
                          ctx.cast(layer.kernel_second), ctx.cast(layer.bias), r_ij, r_ji, z_ij, z_ji,
                          nonneg=ctx.nonneg(atoms))
    return Propagated([res.inputs[0], None], res.absorbed + lost, res.bias)


@register(PairToAtomSum, rows="atoms", nonneg=_as_input)
def pair_to_atom_sum(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """P->A: inputs ``(pairwise (n_pairs, u), pair_atoms (n_pairs, 2), n_atoms)``, output (n_atoms, u)."""
    pairwise, pair_atoms, n_atoms = rec.inputs
    r_pairs, lost = pairs_to_atoms(ctx.cast(pairwise), ctx.cast(rec.outputs), r_out[0],
                                   PairIndex(pair_atoms, n_atoms))
    return Propagated([r_pairs, None, None], lost, None)


@register(AtomEmbedding, rows="same")
def atom_embedding(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Per-atom linear + BatchNorm: input atoms (n_atoms, d), output h (n_atoms, F).

    The pre-activation is recomputed from the folded map (one matmul) rather than taken from the
    recorded BatchNorm output: backends compute BatchNorm their own way (JAX's float64 BatchNorm
    differs from the fold by ~1e-7), and the rule's denominators must be the map it splits."""
    atoms = rec.inputs[0]
    kernel, bias = rec.layer.folded(ctx.dtype)  # the canonizer: W' (d, F), b' (F,) in the walk's dtype
    res = linear(ctx.rule(rec), [ctx.cast(atoms)], [kernel], bias, r_out[0], nonneg=[ctx.nonneg(atoms)])
    return Propagated([res.inputs[0]] + [None] * (len(leaves(rec.inputs)) - 1), res.absorbed, res.bias)


@register(GaussianHistogram, rows="molecules", nonneg=lambda layer, flags: True)
def gaussian_histogram(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Histogram readout: inputs ``(h (n_atoms, F), atom_molecule (n_atoms,))``, output
    (n_molecules, F*K), feature-major; molecules' shares by membership, then the fixed gates."""
    layer: GaussianHistogram = rec.layer
    h, atom_molecule = rec.inputs
    h = ctx.cast(h)
    memberships = ops.cast(layer.memberships(h), ctx.dtype)  # (n_atoms, F, K)
    n_atoms, width = ops.shape(h)[0], ops.shape(h)[1]
    flat = ops.reshape(memberships, (n_atoms, width * layer.n_gaussians))
    r_m, lost = atoms_to_molecules(flat, ctx.cast(rec.outputs), r_out[0], atom_molecule)
    r_h = gaussian_gates(ops.reshape(r_m, (n_atoms, width, layer.n_gaussians)))
    return Propagated([r_h, None], lost, None)


@register(FeatureScaling, rows="same", nonneg=_as_input)
def feature_scaling(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """``x * s`` with s > 0 and no bias: every rule returns R unchanged (= folding s into the
    next kernel)."""
    return Propagated([r_out[0]], None, None)


@register(TargetScaling, rows="same")
def target_scaling(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """``y_k = z_k std_k + mean_k`` per output k, LRP-0 (a fixed unit conversion): ``R(z_k) =
    R(y_k) z_k std_k / y_k``; the mean's share ``R(y_k) mean_k / y_k`` is absorbed (tag ``mean``)."""
    layer: TargetScaling = rec.layer
    z = ctx.cast(rec.inputs[0])
    std, mean = ctx.cast(layer.std), ctx.cast(layer.mean)
    y = ctx.cast(rec.outputs)
    s = safe_divide(r_out[0], y)
    r_z = z * std * s
    absorbed = ops.sum(r_out[0] - r_z, axis=-1)
    return Propagated([r_z], absorbed, ops.sum(mean * s, axis=-1), tag="mean")


@register(keras.layers.Dropout, rows="same", nonneg=_as_input)
def dropout(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Identity at inference."""
    return Propagated([r_out[0]], None, None)


@register(VectorScaling, rows="same")
def vector_scaling(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """``y = z * s_v`` with s > 0 and no bias: R passes unchanged."""
    return Propagated([r_out[0]], None, None)


@register(ChargeDipole, rows="molecules")
def charge_dipole(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Inputs ``(q (n_atoms, V), coordinates, Z, atom_molecule)``, output (n_molecules, 3V). The output
    is linear in q with coefficients ``g_a = r_a - rbar_m`` (recorded as ``g``), no bias: each component's
    relevance goes to the atoms by their exact contributions ``q_av g_ai``; coordinates, Z and indices
    get none (they are the geometry the vectors are expressed in, not features)."""
    q, _, _, atom_molecule = rec.inputs
    q = ctx.cast(q)
    g = ctx.cast(rec.extras["g"])  # (n_atoms, 3)
    out = ctx.cast(rec.outputs)
    n_vec = ops.shape(q)[-1]
    w = ops.reshape(safe_divide(r_out[0], out), (-1, n_vec, 3))  # R / V per molecule, vector, component
    w_atoms = ops.take(w, atom_molecule, axis=0)  # (n_atoms, V, 3)
    r_q = q * ops.sum(w_atoms * g[:, None, :], axis=-1)
    absorbed = ops.sum(r_out[0], axis=-1) - ctx.per_molecule(ops.sum(r_q, axis=-1), "atoms")
    return Propagated([r_q, None, None, None], absorbed, None)


@register(PairEnds, rows="pairs", nonneg=_as_input)
def pair_ends(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Inputs ``(h (n_atoms, d), pair_atoms (n_pairs, 2))``, outputs ``(h_i, h_j)`` (n_pairs, d) each: a
    gather, so each pair end's relevance returns to its atom (summed over the atom's pairs)."""
    h, pair_atoms = rec.inputs
    n_atoms = ops.shape(h)[0]
    r_h = (ops.segment_sum(r_out[0], pair_atoms[:, 0], num_segments=n_atoms)
           + ops.segment_sum(r_out[1], pair_atoms[:, 1], num_segments=n_atoms))
    return Propagated([r_h, None], None, None)


@register(BondDipole, rows="molecules")
def bond_dipole(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Inputs ``(base (n_molecules, 3V), w_ij, w_ji (n_pairs, V), coordinates, pair_atoms, atom_molecule)``,
    output (n_molecules, 3V) = base + sum_pairs (w_ij - w_ji) u_ij: linear in base and the w's (u recorded),
    no bias, so each output component's relevance goes to base and to each ordered pair's weight by its exact
    contribution; the geometry and indices get none."""
    base, w_ij, w_ji, _, pair_atoms, atom_molecule = rec.inputs
    base, w_ij, w_ji = ctx.cast(base), ctx.cast(w_ij), ctx.cast(w_ji)
    u = ctx.cast(rec.extras["u"])  # (n_pairs, 3)
    ratio = safe_divide(r_out[0], ctx.cast(rec.outputs))  # R / V per molecule and component
    n_vec = ops.shape(w_ij)[-1]
    owner = ops.take(atom_molecule, pair_atoms[:, 0], axis=0)
    along = ops.sum(ops.reshape(ops.take(ratio, owner, axis=0), (-1, n_vec, 3)) * u[:, None, :], axis=-1)
    r_ij, r_ji, r_base = w_ij * along, -w_ji * along, base * ratio
    spent = ops.sum(r_base, axis=-1) + ctx.per_molecule(ops.sum(r_ij + r_ji, axis=-1), "pairs")
    return Propagated([r_base, r_ij, r_ji, None, None, None], ops.sum(r_out[0], axis=-1) - spent, None)


@register(TensorScaling, rows="same")
def tensor_scaling(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """``(a, b) -> (s_iso a, s_aniso b)`` per atom, s > 0, no bias: R passes unchanged."""
    return Propagated([r_out[0]], None, None)


@register(ChargeTensor, rows="molecules")
def charge_tensor(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
    """Inputs ``(p (n_atoms, 2), coordinates, Z, atom_molecule)``, output (n_molecules, 6). The output is
    linear in p with coefficients ``basis_akc`` (recorded; the identity for the isotropic scalar, ``d d^T -
    |d|^2/3 I`` for the traceless one), no bias: each component's relevance goes to the atoms' scalars by
    their exact contributions ``p_ak basis_akc``; the geometry and indices get none."""
    p, _, _, atom_molecule = rec.inputs
    p = ctx.cast(p)
    basis = ctx.cast(rec.extras["basis"])  # (n_atoms, 2, 6)
    w = ops.take(safe_divide(r_out[0], ctx.cast(rec.outputs)), atom_molecule, axis=0)  # (n_atoms, 6) R / T
    r_p = p * ops.sum(basis * w[:, None, :], axis=-1)
    absorbed = ops.sum(r_out[0], axis=-1) - ctx.per_molecule(ops.sum(r_p, axis=-1), "atoms")
    return Propagated([r_p, None, None, None], absorbed, None)
