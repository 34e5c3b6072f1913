"""The vector head's bond dipoles (``pair_head_units``): symmetry, a value by hand, the model file, and LRP
that is exact at the bond weights and conserves through the pair branch."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.models.config import ModelConfig
from qmlrp.models.equivariant import VectorGCModel, build_vector_model, derived_quantities
from qmlrp.models.inputs import COORDINATES_KEY
from qmlrp.models.vector_head import BondDipole
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import RULE_NAMES, get_rule

from tests.models.geometry_cases import COUNTS, molecules_with_coordinates, permuted_atoms, predict, rotation

PAIRED = ModelConfig(depth=2, atom_width=12, pair_width=12, atom_hidden=12, pair_hidden=12, embedding_width=12,
                     head_units=(8,), pair_head_units=(6, 5))


@pytest.fixture(scope="module")
def model() -> VectorGCModel:
    from dataclasses import asdict

    m = build_vector_model(PAIRED, metadata={"architecture": asdict(PAIRED)})
    rng = np.random.default_rng(11)
    for w in m.trainable_weights:  # the charge and bond layers start at zero: random weights, so tests can fail
        w.assign(rng.normal(0, 0.4, w.shape).astype(np.float32))
    m.head.scaling.set_scales([1.0, 1.0])
    return m


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return molecules_with_coordinates()


def _bond_part(model: VectorGCModel, inputs: dict[str, np.ndarray]) -> np.ndarray:
    rec = {r.path: r for r in model.record(inputs).walk()}
    return np.asarray(rec["head.bond_dipole"].outputs, np.float64) - np.asarray(rec["head.dipole"].outputs, np.float64)


def test_weight_count_and_the_bonds_contribute(model, inputs):
    assert sum(int(np.prod(w.shape)) for w in model.weights) == PAIRED.vector_weight_count(2)
    assert PAIRED.vector_weight_count(2) > ModelConfig(**{**PAIRED.__dict__, "pair_head_units": ()}).vector_weight_count(2)
    assert np.abs(_bond_part(model, inputs)).max() > 0.1  # the branch is live, so the symmetry tests can fail


def test_rotation_rotates_and_translation_and_permutation_change_nothing(model, inputs):
    y = predict(model, inputs)
    rot = rotation(3)
    moved = dict(inputs)
    moved[COORDINATES_KEY] = (inputs[COORDINATES_KEY] @ rot.T + np.array([-4.0, 2.0, 9.0])).astype(np.float32)
    expected = np.concatenate([y[:, 0:3] @ rot.T, y[:, 3:6] @ rot.T], axis=1)
    np.testing.assert_allclose(predict(model, moved), expected, atol=1e-5 * max(1.0, float(np.abs(y).max())))
    np.testing.assert_allclose(derived_quantities(predict(model, moved))["beta_parallel"],
                               derived_quantities(y)["beta_parallel"], rtol=1e-4, atol=1e-4)
    # renumbering flips the orientation of some pairs (i<j becomes j'>i'): the bond sum must not notice
    permuted = permuted_atoms(inputs)
    assert (permuted["pair_atoms"][:, 0] > permuted["pair_atoms"][:, 1]).any()
    np.testing.assert_allclose(predict(model, permuted), y, atol=1e-5)


def test_bond_dipole_by_hand():
    """Two molecules: a pair along +x with weights (w_ij, w_ji) = (2, 0.5) per vector -> 1.5 along x; a pair
    along -z (second atom below the first) with (1, 3) -> (1 - 3) * (0, 0, -1) = (0, 0, 2); base added."""
    coords = np.array([[0, 0, 0], [2, 0, 0], [5, 5, 5], [5, 5, 1]], np.float32)
    pair_atoms = np.array([[0, 1], [2, 3]], np.int32)
    w_ij = np.array([[2.0], [1.0]], np.float32)
    w_ji = np.array([[0.5], [3.0]], np.float32)
    base = np.array([[0.1, 0.0, 0.0], [0.0, 0.0, -0.5]], np.float32)
    out = np.asarray(BondDipole()(base, w_ij, w_ji, coords, pair_atoms, np.array([0, 0, 1, 1], np.int32),
                                  n_molecules=2))
    np.testing.assert_allclose(out, [[1.6, 0.0, 0.0], [0.0, 0.0, 1.5]], atol=1e-6)


def test_model_file_round_trip(model, inputs, tmp_path):
    from qmlrp.models.config import read_model_file
    from qmlrp.models.io import load_model, save_model

    path = tmp_path / "fold0.npz"
    save_model(model, path, half=False)
    loaded = load_model(path)
    assert loaded.head.pair_units == [6, 5]
    np.testing.assert_allclose(predict(loaded, inputs), predict(model, inputs), rtol=1e-6, atol=1e-6)
    config, _, _, arrays = read_model_file(path)
    assert config.pair_head_units == (6, 5) and sum(a.size for a in arrays) == PAIRED.vector_weight_count(2)


def _beta_parallel_coefficients(y: np.ndarray) -> np.ndarray:
    mu_hat = y[:, :3] / np.linalg.norm(y[:, :3], axis=1, keepdims=True)
    return np.concatenate([np.zeros_like(mu_hat), 0.6 * mu_hat], axis=1)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_lrp_conserves_through_the_pair_branch(model, inputs, name):
    y = predict(model, inputs)
    e = ModelLRP(model, dtype="float64", compile=False).explain_inputs(
        inputs, {name: get_rule(name)}, output=_beta_parallel_coefficients(y))[name]
    assert e.conservation_error().max() <= 1e-9 * max(1.0, np.abs(e.output).max())
    beta_par = derived_quantities(y)["beta_parallel"]
    np.testing.assert_allclose(e.output, beta_par, rtol=1e-5)


def test_bond_weight_relevance_is_the_exact_contribution(model, inputs):
    """R(w_ij) + R(w_ji) over a molecule's pairs = the bond part of beta_par (mu_hat fixed), pair by pair
    ``(w_ij - w_ji) u_ij . c``."""
    import keras

    from qmlrp.relevance.rules import as_composite
    from qmlrp.relevance.walk import Context, TensorInfo, annotate, backward

    y = predict(model, inputs)
    coef = _beta_parallel_coefficients(y)
    lrp = ModelLRP(model, dtype="float64", compile=False)
    feed = {k: (np.asarray(inputs[k], np.float64) if np.asarray(inputs[k]).dtype == np.float32 else inputs[k])
            for k in lrp.input_keys}
    rec = lrp.model.record(feed)
    owner = feed["atom_molecule"]
    pair_owner = owner[feed["pair_atoms"][:, 0]]
    ctx = Context(as_composite(get_rule("eps")), "float64", {"atoms": owner, "pairs": pair_owner}, len(COUNTS),
                  keep=("head.bond_weights", "head.bond_weights#2"))
    ctx.info[id(feed["atom_features"])] = TensorInfo("atoms", False)
    ctx.info[id(feed["pair_features"])] = TensorInfo("pairs", False)
    annotate(rec, ctx.info)
    out = np.asarray(keras.ops.convert_to_numpy(rec.outputs), np.float64)
    backward(rec, [out * coef], ctx)
    r_w = sum(np.asarray(keras.ops.convert_to_numpy(ctx.kept[k]), np.float64)[:, 1] for k in ctx.kept)
    parts = {r.path: r for r in rec.walk()}
    w_ij = np.asarray(parts["head.bond_weights"].outputs, np.float64)[:, 1]
    w_ji = np.asarray(parts["head.bond_weights#2"].outputs, np.float64)[:, 1]
    u = np.asarray(parts["head.bond_dipole"].extras["u"], np.float64)
    scale = float(np.asarray(model.head.scaling.scale)[1])
    hand = (w_ij - w_ji) * scale * np.einsum("pi,pi->p", u, coef[pair_owner, 3:])
    np.testing.assert_allclose(r_w, hand, rtol=1e-6, atol=1e-9 * np.abs(hand).max())
