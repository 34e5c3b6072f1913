"""LRP onto the autoencoder's code: the decoder and encoder steps against the explicit matrix form
of LRP-eps, conservation up to the rule's absorption, the per-unit push-down to feature types,
the whole chain through a Weave model, the flat <-> ragged bookkeeping and the descriptors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from qmlrp.features.dense import flatten
from qmlrp.models.autoencoder import AutoencoderConfig, ColumnScaling, TiedAutoencoder, column_types
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.relevance.code import (
    correlations,
    decoder_relevance,
    descriptors,
    encoder_relevance,
    explain_code,
    flat_positions,
    to_flat,
    unit_type_relevance,
    with_features,
)
from qmlrp.relevance.rules import Epsilon, get_rule, stable_composites

EPS = 0.05


def eps_matrix(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explicit LRP-eps of one sample: ``M (d_in, d_out)`` with ``R_in = M @ R_out`` and the
    absorbed share per output ``a (d_out,)`` with ``sum R_in = sum R_out - a @ R_out``."""
    z = x @ w + b
    stab = z + EPS * np.where(z >= 0, 1.0, -1.0)
    m = x[:, None] * w / stab[None, :]
    return m, (b + EPS * np.where(z >= 0, 1.0, -1.0)) / stab


@pytest.fixture(scope="module")
def small() -> dict:
    rng = np.random.default_rng(0)
    d, h, c, n = 11, 6, 4, 5
    arrays = {"W1": rng.normal(0, 0.5, (d, h)), "b1": rng.normal(0, 0.1, h), "W2": rng.normal(0, 0.5, (h, c)),
              "b2": rng.normal(0, 0.1, c), "c2": rng.normal(0, 0.1, h), "c1": rng.normal(0, 0.1, d)}
    return {"arrays": arrays, "x": rng.normal(0, 1, (n, d)), "shift": rng.normal(0, 1, d),
            "scale": rng.uniform(0.5, 2, d), "code": np.abs(rng.normal(0, 1, (n, c))), "r_out": rng.normal(0, 1, (n, d))}


def test_decoder_matches_matrix_form(small) -> None:
    a, code, r_out = small["arrays"], small["code"], small["r_out"]
    r_code, r_h2, absorbed = decoder_relevance(a, small["shift"], small["scale"], code, r_out, Epsilon(EPS))
    for k in range(len(code)):
        h2 = np.maximum(code[k] @ a["W2"].T + a["c2"], 0)
        m1, a1 = eps_matrix(h2, a["W1"].T * small["scale"], a["c1"] * small["scale"] + small["shift"])
        m2, a2 = eps_matrix(code[k], a["W2"].T, a["c2"])
        expected_h2 = m1 @ r_out[k]
        np.testing.assert_allclose(r_h2[k], expected_h2, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r_code[k], m2 @ expected_h2, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(absorbed[k], a1 @ r_out[k] + a2 @ expected_h2, rtol=1e-10, atol=1e-12)
    # conservation up to the absorption
    np.testing.assert_allclose(r_code.sum(1) + absorbed, r_out.sum(1), rtol=1e-10, atol=1e-10)


def test_encoder_matches_matrix_form(small) -> None:
    a, x = small["arrays"], small["x"]
    r_code = small["r_out"][:, :4]
    r_in, absorbed = encoder_relevance(a, x, r_code, Epsilon(EPS))
    for k in range(len(x)):
        h1 = np.maximum(x[k] @ a["W1"] + a["b1"], 0)
        m2, a2 = eps_matrix(h1, a["W2"], a["b2"])
        m1, a1 = eps_matrix(x[k], a["W1"], a["b1"])
        r_h1 = m2 @ r_code[k]
        np.testing.assert_allclose(r_in[k], m1 @ r_h1, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(absorbed[k], a2 @ r_code[k] + a1 @ r_h1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r_in.sum(1) + absorbed, r_code.sum(1), rtol=1e-10, atol=1e-10)


def test_unit_push_down_is_each_unit_alone(small) -> None:
    a, x = small["arrays"], small["x"]
    r_code = small["r_out"][:, :4]
    types = np.array([0, 0, 1, 2, 2, 2, 1, 0, 3, 3, 1])
    out = unit_type_relevance(a, x, r_code, Epsilon(EPS), types, n_types=4, chunk=2)
    assert out.shape == (5, 4, 4)
    for u in range(4):
        only = np.zeros_like(r_code)
        only[:, u] = r_code[:, u]
        r_in, _ = encoder_relevance(a, x, only, Epsilon(EPS))
        expected = np.stack([r_in[:, types == t].sum(1) for t in range(4)], axis=1)
        np.testing.assert_allclose(out[:, u], expected, rtol=1e-9, atol=1e-12)
    # LRP-eps is linear in the relevance: the units add up to the whole code's push-down
    r_all, _ = encoder_relevance(a, x, r_code, Epsilon(EPS))
    np.testing.assert_allclose(out.sum(1), np.stack([r_all[:, types == t].sum(1) for t in range(4)], 1), atol=1e-9)


def test_flat_bookkeeping() -> None:
    batch = random_batch([3, 7, 29], seed=1)
    flat = flatten(batch)
    back = with_features(batch, flat)
    np.testing.assert_array_equal(back.atom_features, batch.atom_features)
    np.testing.assert_array_equal(back.pair_features, batch.pair_features)
    np.testing.assert_array_equal(to_flat(batch, batch.atom_features, batch.pair_features, flat.shape[1]), flat)
    atom_cols, pair_cols = flat_positions(batch)
    assert len(np.unique(np.concatenate([atom_cols.ravel() + 10**5 * batch.atom_molecule[:, None].repeat(21, 1).ravel(),
                                         pair_cols.ravel() + 10**5 * batch.pair_molecule[:, None].repeat(13, 1).ravel()]))) \
        == atom_cols.size + pair_cols.size


def test_whole_chain_conserves() -> None:
    """Weave LRP on the reconstruction + decoder: sum R_code + absorbed (decoder, Weave) = prediction."""
    from qmlrp.relevance.model_lrp import ModelLRP
    from tests.relevance.test_model_lrp import randomised_model

    batch = random_batch([6, 9, 14], seed=5)
    flat, n = flatten(batch), batch.atoms_per_molecule()
    keras.utils.set_random_seed(2)
    ae = TiedAutoencoder(AutoencoderConfig(), ColumnScaling.fit(flat, n))
    rng = np.random.default_rng(3)
    for w in (ae.encoder1.bias, ae.encoder2.bias, ae.decoder2.bias):
        w.assign(np.abs(rng.normal(0, 0.2, w.shape)).astype("float32"))
    weave = randomised_model()
    comp = stable_composites(["eps"])["eps"]
    e = explain_code(ae, ModelLRP(weave), batch, flat, n, comp, get_rule("eps"), column_types())
    recon = with_features(batch, ae.scaling.inverse(ae.reconstruct(flat, n), n))
    pred = np.asarray(weave(batch_to_inputs(recon))).reshape(-1)
    np.testing.assert_allclose(e.output, pred, rtol=1e-5)
    scale = np.maximum(np.abs(e.output), 1.0)
    assert np.all(e.conservation_error() / scale < 1e-4)
    assert np.abs(e.r_code).sum() > 0 and e.unit_types.shape == (3, 68, 12)
    # pushed down onto the input, each unit keeps its relevance up to the encoder's absorption
    assert np.all(np.isfinite(e.unit_types))


def test_descriptors_and_correlations() -> None:
    batch = random_batch([4, 8, 10, 12], seed=7)
    d = descriptors(batch)
    for k, e in enumerate("HCNOF"):
        expected = [batch.atom_features[batch.atom_molecule == m, k].sum() for m in range(4)]
        np.testing.assert_allclose(d[f"n_{e}"], expected)
    q = batch.atom_features[:, 8]
    np.testing.assert_allclose(d["charge_range"], [np.ptp(q[batch.atom_molecule == m]) for m in range(4)], rtol=1e-6)
    np.testing.assert_allclose(d["mean_distance"],
                               [batch.pair_features[batch.pair_molecule == m, 12].mean() for m in range(4)], rtol=1e-6)
    code = np.random.default_rng(0).normal(size=(4, 3))
    code[:, 2] = 0.0  # a dead unit
    c = correlations(code, {"n_C": d["n_C"]})["n_C"]
    np.testing.assert_allclose(c[:2], [np.corrcoef(code[:, u], d["n_C"])[0, 1] for u in range(2)])
    assert np.isnan(c[2])


def test_per_molecule_functional_conserves_and_matches_matrix_form() -> None:
    """A vector model explained through per-molecule coefficients (1 on each molecule's own real
    modes): the explained value is sum_k c_mk y_mk, the chain conserves, and the code relevance is
    the explicit LRP-eps matrices of the decoder applied to sum_k c_mk (Weave relevance of output k)."""
    from qmlrp.relevance.model_lrp import ModelLRP
    from tests.relevance.test_model_lrp import randomised_model

    batch = random_batch([5, 8, 11], seed=6)
    flat, n = flatten(batch), batch.atoms_per_molecule()
    keras.utils.set_random_seed(4)
    ae = TiedAutoencoder(AutoencoderConfig(), ColumnScaling.fit(flat, n))
    rng = np.random.default_rng(8)
    for w in (ae.encoder1.bias, ae.encoder2.bias, ae.decoder2.bias):
        w.assign(np.abs(rng.normal(0, 0.2, w.shape)).astype("float32"))
    weave = randomised_model(n_outputs=4, seed=1)
    lrp = ModelLRP(weave)
    comp = stable_composites(["eps"])["eps"]
    coef = np.array([[1.0, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])  # 3, 1 and 4 real modes
    e = explain_code(ae, lrp, batch, flat, n, comp, Epsilon(EPS), output=coef)

    recon = with_features(batch, ae.scaling.inverse(ae.reconstruct(flat, n), n))
    pred = np.asarray(weave(batch_to_inputs(recon)), np.float64)
    assert pred.shape == (3, 4)
    np.testing.assert_allclose(e.output, (coef * pred).sum(1), rtol=1e-5)
    assert np.all(e.conservation_error() / np.maximum(np.abs(e.output), 1.0) < 1e-4)
    assert np.abs(e.r_code).sum() > 0

    arrays = ae.arrays()
    shift, scale = ae.scaling.vectors()
    per_output = [to_flat(batch, x.atoms, x.pairs, flat.shape[1])
                  for x in (lrp.explain(recon, comp, output=k) for k in range(4))]
    for m in range(3):
        r_out = sum(coef[m, k] * per_output[k][m] for k in range(4))
        h2 = np.maximum(e.code[m] @ arrays["W2"].T + arrays["c2"], 0)
        m1, _ = eps_matrix(h2, arrays["W1"].T * scale, arrays["c1"] * scale + shift)
        m2, _ = eps_matrix(e.code[m], arrays["W2"].T, arrays["c2"])
        expected = m2 @ (m1 @ r_out)
        np.testing.assert_allclose(e.r_code[m], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # the first molecule's row shared by the whole batch gives that molecule the same code relevance
    one = explain_code(ae, lrp, batch, flat, n, comp, Epsilon(EPS), output=coef[0])
    np.testing.assert_allclose(one.r_code[0], e.r_code[0], rtol=1e-4, atol=1e-5 * np.abs(e.r_code[0]).max())
