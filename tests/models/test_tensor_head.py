"""The equivariant tensor head (issue 18 item 6): symmetry, the tensor's form, model file, LRP exactness."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.models.config import ModelConfig
from qmlrp.models.equivariant import TENSOR_HEAD, VectorGCModel, build_vector_model
from qmlrp.models.inputs import COORDINATES_KEY
from qmlrp.models.tensor_head import EquivariantTensorHead
from qmlrp.targets.tensors import (
    anisotropy,
    isotropic,
    tensor_components,
    tensor_matrices,
)

from tests.models.geometry_cases import COUNTS, molecules_with_coordinates, permuted_atoms, predict, rotation

SMALL = ModelConfig(depth=2, atom_width=16, pair_width=16, atom_hidden=16, pair_hidden=16, embedding_width=16,
                    head_units=(8,))


@pytest.fixture(scope="module")
def model() -> VectorGCModel:
    m = build_vector_model(SMALL, metadata={"architecture": {f: getattr(SMALL, f) for f in SMALL.__dataclass_fields__}},
                           head=TENSOR_HEAD)
    rng = np.random.default_rng(3)
    # the scalar layer starts at zero (an untrained model predicts 0): give it weights so the tests can fail
    m.head.scalars.kernels[0].assign(rng.normal(0, 0.5, m.head.scalars.kernels[0].shape).astype(np.float32))
    m.head.scalars.bias.assign(rng.normal(0, 0.5, m.head.scalars.bias.shape).astype(np.float32))
    m.head.scaling.set_scales([1.5, 0.7])
    return m


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return molecules_with_coordinates()


def test_the_model_has_the_tensor_head(model, inputs):
    assert isinstance(model.head, EquivariantTensorHead) and model.metadata["head"] == TENSOR_HEAD
    assert predict(model, inputs).shape == (len(COUNTS), 6)


def test_rotation_and_translation_give_r_t_rt(model, inputs):
    y = predict(model, inputs)
    assert np.abs(y[:, 3:]).max() > 0.1 and np.abs(anisotropy(y)).max() > 0.1  # a non-trivial traceless part
    rot = rotation(7)
    moved = dict(inputs)
    moved[COORDINATES_KEY] = (inputs[COORDINATES_KEY] @ rot.T + np.array([3.0, -5.0, 11.0])).astype(np.float32)
    y2 = predict(model, moved)
    expected = tensor_components(rot @ tensor_matrices(y) @ rot.T)
    np.testing.assert_allclose(y2, expected, atol=1e-5 * max(1.0, float(np.abs(y).max())))
    np.testing.assert_allclose(isotropic(y2), isotropic(y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(anisotropy(y2), anisotropy(y), rtol=1e-5, atol=1e-5)


def test_permuting_atoms_changes_nothing(model, inputs):
    np.testing.assert_allclose(predict(model, permuted_atoms(inputs)), predict(model, inputs), atol=1e-5)


def test_the_tensor_is_the_formula_by_hand(model, inputs):
    """T = s_iso sum a I + s_aniso sum b (d d^T - |d|^2/3 I), d from the centre of nuclear charge; symmetric."""
    from qmlrp.features.layout import ATOMIC_NUMBERS

    rec = {r.path: r for r in model.record(inputs).walk()}
    p = np.asarray(rec["head.scalars"].outputs, np.float64)
    scale = np.asarray(model.head.scaling.scale, np.float64)
    r = inputs[COORDINATES_KEY].astype(np.float64)
    z = inputs["atom_features"][:, :len(ATOMIC_NUMBERS)].astype(np.float64) @ np.asarray(ATOMIC_NUMBERS, np.float64)
    owner = inputs["atom_molecule"]
    y = predict(model, inputs)
    for m in range(len(COUNTS)):
        at = owner == m
        d = r[at] - (z[at] @ r[at]) / z[at].sum()
        a, b = p[at, 0] * scale[0], p[at, 1] * scale[1]
        t = a.sum() * np.eye(3) + np.einsum("a,ai,aj->ij", b, d, d) - np.eye(3) * np.sum(b * (d * d).sum(1)) / 3
        np.testing.assert_allclose(tensor_matrices(y[m:m + 1])[0], t, atol=1e-4)
        assert np.trace(t) / 3 == pytest.approx(a.sum(), abs=1e-4)  # the traceless part adds nothing to the trace
        np.testing.assert_allclose(t, t.T)


def test_model_file_round_trip(model, inputs, tmp_path):
    from qmlrp.models.config import read_model_file
    from qmlrp.models.io import load_model, save_model

    path = tmp_path / "fold0.npz"
    save_model(model, path, half=False)
    loaded = load_model(path)
    assert isinstance(loaded, VectorGCModel) and isinstance(loaded.head, EquivariantTensorHead)
    np.testing.assert_allclose(predict(loaded, inputs), predict(model, inputs), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.head.scaling.scale), [1.5, 0.7], rtol=1e-6)
    _, metadata, _, arrays = read_model_file(path)
    assert metadata["head"] == TENSOR_HEAD and "n_vectors" not in metadata
    assert sum(a.size for a in arrays) == sum(int(np.prod(w.shape)) for w in model.weights)


def _lrp_model() -> VectorGCModel:
    small = ModelConfig(depth=2, atom_width=12, pair_width=12, atom_hidden=12, pair_hidden=12, embedding_width=12,
                        head_units=(8,))
    m = build_vector_model(small, metadata={}, head=TENSOR_HEAD)
    rng = np.random.default_rng(0)
    for w in m.trainable_weights:  # random biases too, so that absorbed relevance is not trivially 0
        w.assign(rng.normal(0, 0.4, w.shape).astype(np.float32))
    m.head.scaling.set_scales([8.0, 25.0])
    return m


ISO = np.array([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0, 0.0])


def test_lrp_scalar_relevance_is_the_exact_per_atom_contribution(inputs):
    """Isotropic alpha = sum_a s_iso a_a: the relevance of (a_a, b_a) is (s_iso a_a, 0) exactly; and for
    the xy component, (0, s_aniso b_a d_ax d_ay)."""
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.relevance.rules import get_rule

    m = _lrp_model()
    lrp = ModelLRP(m, dtype="float64", compile=False)
    y = np.asarray(m(inputs, training=False), np.float64)
    coef = np.tile(ISO, (len(COUNTS), 1))
    e = lrp.explain_inputs(inputs, {"eps": get_rule("eps")}, output=coef)["eps"]
    np.testing.assert_allclose(e.output, isotropic(y), rtol=1e-5)
    rec = {r.path: r for r in m.record(inputs).walk()}
    p = np.asarray(rec["head.scalars"].outputs, np.float64)
    owner = inputs["atom_molecule"]
    kept = _kept(lrp, inputs, coef)
    np.testing.assert_allclose(kept[:, 0], 8.0 * p[:, 0], rtol=1e-4, atol=1e-6 * np.abs(p).max())
    np.testing.assert_allclose(kept[:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(np.bincount(owner, weights=kept.sum(1)), isotropic(y), rtol=1e-4)
    xy = np.tile([0, 0, 0, 1.0, 0, 0], (len(COUNTS), 1))
    kept = _kept(lrp, inputs, xy)
    d = np.asarray(rec["head.tensor"].extras["rel"], np.float64)
    np.testing.assert_allclose(kept[:, 1], 25.0 * p[:, 1] * d[:, 0] * d[:, 1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(kept[:, 0], 0.0, atol=1e-9)


def _kept(lrp, inputs, coef) -> np.ndarray:
    """Relevance of the ``head.scalars`` outputs (n_atoms, 2): the walk of ModelLRP, keeping that layer."""
    import keras

    from qmlrp.relevance.rules import as_composite, get_rule
    from qmlrp.relevance.walk import Context, TensorInfo, annotate, backward

    feed = {k: (np.asarray(inputs[k], np.float64) if np.asarray(inputs[k]).dtype == np.float32 else inputs[k])
            for k in lrp.input_keys}
    rec = lrp.model.record(feed)
    owner = feed["atom_molecule"]
    ctx = Context(as_composite(get_rule("eps")), "float64", {"atoms": owner, "pairs": owner[feed["pair_atoms"][:, 0]]},
                  len(COUNTS), keep=("head.scalars",))
    ctx.info[id(feed["atom_features"])] = TensorInfo("atoms", False)
    ctx.info[id(feed["pair_features"])] = TensorInfo("pairs", False)
    annotate(rec, ctx.info)
    y = np.asarray(keras.ops.convert_to_numpy(rec.outputs), np.float64)
    backward(rec, [y * coef], ctx)
    return np.asarray(keras.ops.convert_to_numpy(ctx.kept["head.scalars"]), np.float64)


@pytest.mark.parametrize("name", ["lrp0", "eps", "ab10", "ab21", "gamma", "zplus"])
def test_lrp_conservation_float64(inputs, name):
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.relevance.rules import get_rule

    m = _lrp_model()
    e = ModelLRP(m, dtype="float64", compile=False).explain_inputs(
        inputs, {name: get_rule(name)}, output=np.tile(ISO, (len(COUNTS), 1)))[name]
    assert e.conservation_error().max() <= 1e-9 * max(1.0, np.abs(e.output).max())
