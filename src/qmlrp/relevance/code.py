"""LRP onto the autoencoder's code: prediction -> Weave inputs -> decoder -> 68 code units ->
encoder -> 12 input feature types (issue 11).

The combined model is ``x -> encoder -> code -> decoder -> x_hat -> Weave -> y``. The project's
LRP (:class:`~qmlrp.relevance.model_lrp.ModelLRP`) gives the relevance of every feature of the
Weave model's input -- here the reconstructed Molecular Graph ``x_hat`` (real atoms and pairs only;
padding does not reach the Weave model and gets none). From there the relevance continues through
the decoder's two dense layers with a registered rule (:mod:`qmlrp.relevance.rules`, e.g. LRP-eps)
via :func:`qmlrp.relevance.propagate.linear`:

* ``x_hat = h2 (W1^T s) + (c1 s + m)``: the decoder's linear output with the column scaling
  (``x_hat_scaled * s + m``) folded in, so the rule sees the map to the original units the Weave
  model reads; ``h2 = relu(code W2^T + c2)``; ReLU passes relevance unchanged.
* What a layer's rule does not pass down (biases, the stabiliser) is *absorbed*, per molecule:
  ``sum(R_code) + absorbed_decoder = sum(R_x_hat)``.

"What each code unit means": the relevance of unit ``k`` alone (``R_code[:, k]``) is pushed on
down through the encoder (``code = relu(h1 W2 + b2)``, ``h1 = relu(x_s W1 + b1)``) to the scaled
input entries ``x_s`` and summed per feature type. The standardisation of the continuous columns
is an entry-wise relabelling of the input (as :class:`~qmlrp.models.layers.FeatureScaling` in the
Weave model), so the relevance of ``x_s`` is that of the feature entry; padding (``x_s = 0``) gets
none under the x-based rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from qmlrp.features.batch import GraphBatch
from qmlrp.features.dense import _local_index
from qmlrp.features.layout import MAX_ATOMS, N_ATOM_FEATURES, N_PAIR_FEATURES
from qmlrp.relevance.propagate import linear
from qmlrp.relevance.rules import Composite, Rule

N_TYPES = 12


def flat_positions(batch: GraphBatch, max_atoms: int = MAX_ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """Flat-vector columns of the batch's ragged features.

    Returns:
        atom_cols (n_atoms, 21) and pair_cols (n_pairs, 13): the column (0..D-1) of each feature
        of each real atom / pair i < j in its molecule's flat vector (``flatten`` layout).
    """
    local = _local_index(batch)
    atom_cols = local[:, None] * N_ATOM_FEATURES + np.arange(N_ATOM_FEATURES)[None, :]
    li, lj = local[batch.pair_atoms[:, 0]], local[batch.pair_atoms[:, 1]]
    lo, hi = np.minimum(li, lj), np.maximum(li, lj)
    # row-major index of (lo, hi), lo < hi, among all upper pairs of max_atoms slots
    k = lo * max_atoms - lo * (lo + 1) // 2 + (hi - lo - 1)
    pair_cols = N_ATOM_FEATURES * max_atoms + k[:, None] * N_PAIR_FEATURES + np.arange(N_PAIR_FEATURES)[None, :]
    return atom_cols.astype(np.int64), pair_cols.astype(np.int64)


def with_features(batch: GraphBatch, flat: np.ndarray, max_atoms: int = MAX_ATOMS) -> GraphBatch:
    """``batch`` with its atom and pair features read from flat vectors (B, D) (original units)."""
    atom_cols, pair_cols = flat_positions(batch, max_atoms)
    atoms = flat[batch.atom_molecule[:, None], atom_cols].astype(np.float32)
    pairs = flat[batch.pair_molecule[:, None], pair_cols].astype(np.float32)
    return replace(batch, atom_features=atoms, pair_features=pairs)


def to_flat(batch: GraphBatch, atoms: np.ndarray, pairs: np.ndarray, n_columns: int,
            max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """Ragged per-feature values (n_atoms, 21), (n_pairs, 13) -> (B, D) flat vectors, 0 elsewhere."""
    atom_cols, pair_cols = flat_positions(batch, max_atoms)
    out = np.zeros((batch.n_molecules, n_columns), np.float64)
    out[batch.atom_molecule[:, None], atom_cols] = atoms
    out[batch.pair_molecule[:, None], pair_cols] = pairs
    return out


def _np(value: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value), np.float64)


def decoder_relevance(arrays: dict[str, np.ndarray], shift: np.ndarray, scale: np.ndarray, code: np.ndarray,
                      r_out: np.ndarray, rule: Rule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relevance of the code units from that of the reconstruction (original units).

    Args:
        arrays: the autoencoder's parameters (:meth:`TiedAutoencoder.arrays`).
        shift, scale: (D,) the column scaling (:meth:`ColumnScaling.vectors`).
        code: (B, C) code activations; r_out: (B, D) relevance of ``x_hat`` (original units).
        rule: the rule of both decoder layers.
    Returns:
        ``r_code`` (B, C), ``r_hidden`` (B, H) and ``absorbed`` (B,) by the two layers.
    """
    code = np.asarray(code, np.float64)
    h2 = np.maximum(code @ arrays["W2"].T + arrays["c2"], 0.0)
    out = linear(rule, [h2], [arrays["W1"].T * scale[None, :]], arrays["c1"] * scale + shift,
                 np.asarray(r_out, np.float64), nonneg=[True])
    r_h2 = _np(out.inputs[0])
    mid = linear(rule, [code], [arrays["W2"].T], arrays["c2"], r_h2, nonneg=[True])
    return _np(mid.inputs[0]), r_h2, _np(out.absorbed) + _np(mid.absorbed)


def encoder_relevance(arrays: dict[str, np.ndarray], x_scaled: np.ndarray, r_code: np.ndarray, rule: Rule,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of the scaled input entries from that of the code: ``(r_input (B, D), absorbed (B,))``."""
    x = np.asarray(x_scaled, np.float64)
    z1 = x @ arrays["W1"] + arrays["b1"]
    h1 = np.maximum(z1, 0.0)
    z2 = h1 @ arrays["W2"] + arrays["b2"]
    top = linear(rule, [h1], [arrays["W2"]], arrays["b2"], np.asarray(r_code, np.float64), z=z2, nonneg=[True])
    r_h1 = _np(top.inputs[0])
    low = linear(rule, [x], [arrays["W1"]], arrays["b1"], r_h1, z=z1, nonneg=[False])
    return _np(low.inputs[0]), _np(top.absorbed) + _np(low.absorbed)


def unit_type_relevance(arrays: dict[str, np.ndarray], x_scaled: np.ndarray, r_code: np.ndarray, rule: Rule,
                        types: np.ndarray, n_types: int = N_TYPES, chunk: int = 16) -> np.ndarray:
    """(B, C, n_types): the relevance of each code unit alone pushed through the encoder onto the
    input entries and summed per feature type (``types`` (D,) type index of each column)."""
    b, c = r_code.shape
    onehot = np.zeros((n_types, types.size))
    onehot[types, np.arange(types.size)] = 1.0
    out = np.zeros((b, c, n_types))
    for start in range(0, b, chunk):
        x = np.asarray(x_scaled[start : start + chunk], np.float64)
        m = len(x)
        rows_x = np.repeat(x, c, axis=0)  # (m*C, D): molecule-major, unit-minor
        r = np.zeros((m, c, c))
        r[:, np.arange(c), np.arange(c)] = r_code[start : start + chunk]
        r_in, _ = encoder_relevance(arrays, rows_x, r.reshape(m * c, c), rule)
        out[start : start + m] = (r_in @ onehot.T).reshape(m, c, n_types)
    return out


@dataclass
class CodeExplanation:
    """Relevance of a batch of predictions on the code.

    Attributes:
        output: (B,) the explained prediction, or functional of the predictions (target units).
        code: (B, C) code activations.
        r_code: (B, C) relevance of each code unit.
        r_weave_inputs: (B,) relevance the Weave LRP gave the reconstructed MG (real entries).
        absorbed_weave: (B,) absorbed inside the Weave model (target mean, biases, stabilisers).
        absorbed_decoder: (B,) absorbed by the decoder's two layers.
        unit_types: (B, C, 12) each unit's relevance pushed onto the input feature types, or None.
    """

    output: np.ndarray
    code: np.ndarray
    r_code: np.ndarray
    r_weave_inputs: np.ndarray
    absorbed_weave: np.ndarray
    absorbed_decoder: np.ndarray
    unit_types: np.ndarray | None = None

    def conservation_error(self) -> np.ndarray:
        """(B,) ``|sum R_code + absorbed (decoder + Weave) - output|`` (target units)."""
        return np.abs(self.r_code.sum(1) + self.absorbed_decoder + self.absorbed_weave - self.output)


def explain_code(autoencoder: Any, weave_lrp: Any, batch: GraphBatch, flat: np.ndarray, n_atoms: np.ndarray,
                 weave_rules: Composite, rule: Rule, types: np.ndarray | None = None,
                 output: Any = None) -> CodeExplanation:
    """LRP from the combined model's prediction to the code units (module docstring).

    Args:
        autoencoder: a trained :class:`~qmlrp.models.autoencoder.TiedAutoencoder` with scaling.
        weave_lrp: :class:`~qmlrp.relevance.model_lrp.ModelLRP` of the trained Weave model.
        batch: the molecules (ragged); flat, n_atoms: their flat MG (B, D) and atom counts.
        weave_rules: composite for the Weave model; rule: the rule of the autoencoder's layers.
        types: (D,) feature-type index per column to also push each unit down the encoder.
        output: the explained functional of a vector model's outputs
            (:data:`~qmlrp.relevance.model_lrp.OutputSelection`: an index, coefficients (T,), or
            per-molecule coefficients (B, T), e.g. 1 on each molecule's real modes); None for a scalar.
    """
    scaling = autoencoder.scaling
    shift, scale = scaling.vectors()
    x_s = scaling.transform(flat, n_atoms)
    code = _np(autoencoder.encode(x_s))
    x_hat = scaling.inverse(_np(autoencoder.decode(code)), n_atoms)
    recon = with_features(batch, x_hat)
    expl = weave_lrp.explain(recon, weave_rules, output=output)
    r_flat = to_flat(batch, expl.atoms, expl.pairs, flat.shape[1])
    arrays = autoencoder.arrays()
    r_code, _, absorbed = decoder_relevance(arrays, shift, scale, code, r_flat, rule)
    unit_types = None if types is None else unit_type_relevance(arrays, x_s, r_code, rule, types)
    return CodeExplanation(expl.output, code, r_code, expl.input_total(), expl.absorbed, absorbed, unit_types)


def descriptors(batch: GraphBatch) -> dict[str, np.ndarray]:
    """Interpretable per-molecule descriptors (B,): atoms of each element, bonds (any order),
    mean interatomic distance (Angstrom) and Gasteiger charge range (max - min, e)."""
    from qmlrp.features.layout import ELEMENTS

    b = batch.n_molecules
    out: dict[str, np.ndarray] = {}
    for k, e in enumerate(ELEMENTS):
        out[f"n_{e}"] = np.bincount(batch.atom_molecule, weights=batch.atom_features[:, k], minlength=b)
    bonded = batch.pair_features[:, :4].sum(1)
    out["n_bonds"] = np.bincount(batch.pair_molecule, weights=bonded, minlength=b)
    counts = np.bincount(batch.pair_molecule, minlength=b)
    dist = np.bincount(batch.pair_molecule, weights=batch.pair_features[:, 12], minlength=b)
    out["mean_distance"] = np.divide(dist, counts, out=np.zeros(b), where=counts > 0)
    q = batch.atom_features[:, 8].astype(np.float64)
    qmax = np.full(b, -np.inf)
    qmin = np.full(b, np.inf)
    np.maximum.at(qmax, batch.atom_molecule, q)
    np.minimum.at(qmin, batch.atom_molecule, q)
    out["charge_range"] = qmax - qmin
    return out


def correlations(code: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pearson correlation of each code unit (B, C) with each descriptor: ``{name: (C,)}``; NaN
    for a unit or descriptor that is constant over the molecules (e.g. a dead ReLU unit)."""
    c = code - code.mean(0)
    c_norm = np.sqrt((c**2).sum(0))
    out = {}
    for name, v in values.items():
        d = np.asarray(v, np.float64) - np.mean(v)
        den = c_norm * np.sqrt((d**2).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(den > 0, (c * d[:, None]).sum(0) / den, np.nan)
    return out
