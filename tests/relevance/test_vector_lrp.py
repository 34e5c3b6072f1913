"""LRP through the equivariant vector model (issue 18): beta_par with mu_hat fixed is linear in the q's,
so the relevance at the q layer is exactly the per-atom contribution, and the walk conserves."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.models.config import ModelConfig
from qmlrp.models.equivariant import build_vector_model
from qmlrp.models.inputs import COORDINATES_KEY, batch_to_inputs, random_batch
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import RULE_NAMES, get_rule

SMALL = ModelConfig(depth=2, atom_width=12, pair_width=12, atom_hidden=12, pair_hidden=12, embedding_width=12,
                    head_units=(8,))
COUNTS = [4, 7, 9]


@pytest.fixture(scope="module")
def model():
    m = build_vector_model(SMALL, metadata={})
    rng = np.random.default_rng(0)
    for w in m.trainable_weights:  # random biases too, so that absorbed relevance is not trivially 0
        w.assign(rng.normal(0, 0.4, w.shape).astype(np.float32))
    m.head.scaling.set_scales([0.8, 40.0])
    return m


@pytest.fixture(scope="module")
def inputs():
    batch = random_batch(COUNTS, seed=3)
    x = batch_to_inputs(batch)
    x[COORDINATES_KEY] = np.random.default_rng(4).normal(0, 1.5, (batch.n_atoms, 3)).astype(np.float32)
    return x


def _beta_parallel_coefficients(y: np.ndarray) -> np.ndarray:
    """(n, 6): beta_par = sum_k c_k y_k with c = (0, 0, 0, 3/5 mu_hat) (mu_hat held fixed)."""
    mu_hat = y[:, :3] / np.linalg.norm(y[:, :3], axis=1, keepdims=True)
    return np.concatenate([np.zeros_like(mu_hat), 0.6 * mu_hat], axis=1)


def test_q_relevance_is_the_exact_per_atom_contribution(model, inputs):
    y = np.asarray(model(inputs, training=False), np.float64)
    coef = _beta_parallel_coefficients(y)
    lrp = ModelLRP(model, dtype="float64", compile=False)
    e = lrp.explain_inputs(inputs, {"eps": get_rule("eps")}, output=coef, keep=("head.charges",))["eps"]
    beta_par = 0.6 * np.einsum("ni,ni->n", y[:, 3:], y[:, :3]) / np.linalg.norm(y[:, :3], axis=1)
    np.testing.assert_allclose(e.output, beta_par, rtol=1e-5)
    # by hand: R(q_a,beta) = q_a s_beta (r_a - rbar) . (3/5 mu_hat)
    rec = {r.path: r for r in model.record(inputs).walk()}
    q = np.asarray(rec["head.charges"].outputs, np.float64)
    r = inputs[COORDINATES_KEY].astype(np.float64)
    owner = inputs["atom_molecule"]
    rbar = np.stack([r[owner == m].mean(axis=0) for m in range(len(COUNTS))])
    scale = float(np.asarray(model.head.scaling.scale)[1])
    hand = q[:, 1] * scale * np.einsum("ai,ai->a", r - rbar[owner], coef[owner, 3:])
    kept = lrp_kept_relevance(lrp, inputs, coef)
    np.testing.assert_allclose(kept[:, 1], hand, rtol=1e-4, atol=1e-6 * np.abs(hand).max())
    np.testing.assert_allclose(kept[:, 0], 0.0, atol=1e-9)  # the dipole's q carry nothing of beta_par
    sums = np.bincount(owner, weights=hand, minlength=len(COUNTS))
    np.testing.assert_allclose(sums, beta_par, rtol=1e-4)


def lrp_kept_relevance(lrp: ModelLRP, inputs, coef) -> np.ndarray:
    """Relevance of the q layer's outputs (n_atoms, 2): the walk of ModelLRP._walk, keeping ``head.charges``."""
    import keras

    from qmlrp.relevance.rules import as_composite
    from qmlrp.relevance.walk import Context, TensorInfo, annotate, backward

    feed = {k: (np.asarray(inputs[k], np.float64) if np.asarray(inputs[k]).dtype == np.float32 else inputs[k])
            for k in lrp.input_keys}
    rec = lrp.model.record(feed)
    owner = feed["atom_molecule"]
    ctx = Context(as_composite(get_rule("eps")), "float64", {"atoms": owner, "pairs": owner[feed["pair_atoms"][:, 0]]},
                  len(COUNTS), keep=("head.charges",))
    ctx.info[id(feed["atom_features"])] = TensorInfo("atoms", False)
    ctx.info[id(feed["pair_features"])] = TensorInfo("pairs", False)
    annotate(rec, ctx.info)
    y = np.asarray(keras.ops.convert_to_numpy(rec.outputs), np.float64)
    backward(rec, [y * coef], ctx)
    return np.asarray(keras.ops.convert_to_numpy(ctx.kept["head.charges"]), np.float64)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_conservation_float64(model, inputs, name):
    y = np.asarray(model(inputs, training=False), np.float64)
    e = ModelLRP(model, dtype="float64", compile=False).explain_inputs(
        inputs, {name: get_rule(name)}, output=_beta_parallel_coefficients(y))[name]
    assert e.conservation_error().max() <= 1e-9 * max(1.0, np.abs(e.output).max())


def test_missing_coordinates_is_one_line(model, inputs):
    bare = {k: v for k, v in inputs.items() if k != COORDINATES_KEY}
    with pytest.raises(ValueError, match="needs the input 'coordinates'"):
        ModelLRP(model, compile=False).explain_inputs(bare, {"eps": get_rule("eps")}, output=np.zeros((3, 6)))


def test_atom_parts_sum_to_the_predicted_beta_parallel(model, inputs):
    from qmlrp.relevance.vector_explain import atom_parts, beta_parallel_coefficients

    y = np.asarray(model(inputs, training=False), np.float64)
    parts = atom_parts(model, inputs, beta_parallel_coefficients(y))
    beta_par = 0.6 * np.einsum("ni,ni->n", y[:, 3:], y[:, :3]) / np.linalg.norm(y[:, :3], axis=1)
    sums = np.bincount(inputs["atom_molecule"], weights=parts, minlength=len(COUNTS))
    np.testing.assert_allclose(sums, beta_par, rtol=1e-4, atol=1e-4)


def test_an_ensemble_is_explained_as_the_mean_of_its_members(model, inputs):
    """Two networks: the relevance of beta_par of their mean vectors (one functional from the ensemble's
    mu_hat) is conserved to that beta_par, and its atom parts sum to it exactly."""
    from qmlrp.relevance.vector_explain import atom_parts, ensemble_relevance

    other = build_vector_model(SMALL, metadata={})
    rng = np.random.default_rng(1)
    for w in other.trainable_weights:
        w.assign(rng.normal(0, 0.4, w.shape).astype(np.float32))
    other.head.scaling.set_scales([0.8, 40.0])
    members = [model, other]
    y = np.mean([np.asarray(m(inputs, training=False), np.float64) for m in members], axis=0)
    beta_par = 0.6 * np.einsum("ni,ni->n", y[:, 3:], y[:, :3]) / np.linalg.norm(y[:, :3], axis=1)
    singles = [0.6 * np.einsum("ni,ni->n", v[:, 3:], v[:, :3]) / np.linalg.norm(v[:, :3], axis=1)
               for v in (np.asarray(m(inputs, training=False), np.float64) for m in members)]
    assert np.abs(beta_par - np.mean(singles, axis=0)).max() > 1e-3 * np.abs(beta_par).max()  # not the mean of beta_par
    coef, e = ensemble_relevance([ModelLRP(m, dtype="float64", compile=False) for m in members], inputs,
                                 np.arange(len(COUNTS)))
    np.testing.assert_allclose(e.output, beta_par, rtol=1e-5)
    assert e.conservation_error().max() <= 1e-9 * np.abs(beta_par).max()
    parts = np.mean([atom_parts(m, inputs, coef) for m in members], axis=0)
    sums = np.bincount(inputs["atom_molecule"], weights=parts, minlength=len(COUNTS))
    np.testing.assert_allclose(sums, beta_par, rtol=1e-4, atol=1e-4)


def test_atom_parts_with_bond_dipoles_sum_to_the_predicted_beta_parallel(inputs):
    """With bond dipoles (``pair_head_units``) beta_par also has a part per pair: each atom's part includes its
    outgoing bond dipoles, so a molecule's atom parts still sum to its beta_par, and the bond parts are not 0."""
    from qmlrp.relevance.vector_explain import atom_parts, beta_parallel_coefficients

    config = ModelConfig(depth=2, atom_width=12, pair_width=12, atom_hidden=12, pair_hidden=12, embedding_width=12,
                         head_units=(8,), pair_head_units=(8,))
    bonded = build_vector_model(config, metadata={})
    rng = np.random.default_rng(5)
    for w in bonded.trainable_weights:  # the bond weights start at 0: random, so that the bonds contribute
        w.assign(rng.normal(0, 0.4, w.shape).astype(np.float32))
    bonded.head.scaling.set_scales([0.8, 40.0])
    y = np.asarray(bonded(inputs, training=False), np.float64)
    coef = beta_parallel_coefficients(y)
    parts = atom_parts(bonded, inputs, coef)
    beta_par = 0.6 * np.einsum("ni,ni->n", y[:, 3:], y[:, :3]) / np.linalg.norm(y[:, :3], axis=1)
    sums = np.bincount(inputs["atom_molecule"], weights=parts, minlength=len(COUNTS))
    np.testing.assert_allclose(sums, beta_par, rtol=1e-4, atol=1e-4 * np.abs(beta_par).max())
    rec = {r.path: r for r in bonded.record(inputs).walk()}
    q, g = np.asarray(rec["head.charges"].outputs, np.float64), np.asarray(rec["head.dipole"].extras["g"], np.float64)
    charge_only = np.sum(q * np.asarray(bonded.head.scaling.scale) * np.einsum(
        "ai,avi->av", g, coef.reshape(len(coef), -1, 3)[inputs["atom_molecule"]]), axis=1)
    charge_sums = np.bincount(inputs["atom_molecule"], weights=charge_only, minlength=len(COUNTS))
    assert np.abs(charge_sums - beta_par).max() > 1e-2 * np.abs(beta_par).max()  # the bonds carry a real part
