"""The equivariant vector head (issue 18): symmetry, origin independence, loss, model file."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.models.config import ModelConfig
from qmlrp.models.equivariant import VectorGCModel, build_vector_model, derived_quantities
from qmlrp.models.inputs import COORDINATES_KEY

from tests.models.geometry_cases import COUNTS, molecules_with_coordinates, permuted_atoms, predict, rotation

SMALL = ModelConfig(depth=2, atom_width=16, pair_width=16, atom_hidden=16, pair_hidden=16, embedding_width=16,
                    head_units=(8,))


@pytest.fixture(scope="module")
def model() -> VectorGCModel:
    m = build_vector_model(SMALL, metadata={"architecture": {f: getattr(SMALL, f) for f in SMALL.__dataclass_fields__}})
    rng = np.random.default_rng(3)
    # the q layer starts at zero (an untrained model predicts 0): give it weights so the test can fail
    m.head.charges.kernels[0].assign(rng.normal(0, 0.5, m.head.charges.kernels[0].shape).astype(np.float32))
    m.head.charges.bias.assign(rng.normal(0, 0.5, m.head.charges.bias.shape).astype(np.float32))
    m.head.scaling.set_scales([1.0, 1.0])  # outputs of a few units: an absolute 1e-5 means something in float32
    return m


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return molecules_with_coordinates()


def test_rotation_and_translation_rotate_the_vectors(model, inputs):
    y = predict(model, inputs)
    assert np.abs(y).max() > 0.1  # a non-trivial prediction
    rot = rotation(7)
    moved = dict(inputs)
    moved[COORDINATES_KEY] = (inputs[COORDINATES_KEY] @ rot.T + np.array([3.0, -5.0, 11.0])).astype(np.float32)
    y2 = predict(model, moved)
    expected = np.concatenate([y[:, 0:3] @ rot.T, y[:, 3:6] @ rot.T], axis=1)
    np.testing.assert_allclose(y2, expected, atol=1e-5 * max(1.0, float(np.abs(y).max())))
    d1, d2 = derived_quantities(y), derived_quantities(y2)
    np.testing.assert_allclose(d2["beta_parallel"], d1["beta_parallel"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(d2["mu_norm"], d1["mu_norm"], rtol=1e-5, atol=1e-6)


def test_translation_alone_changes_nothing(model, inputs):
    moved = dict(inputs)
    moved[COORDINATES_KEY] = (inputs[COORDINATES_KEY] + np.float32(40.0)).astype(np.float32)
    np.testing.assert_allclose(predict(model, moved), predict(model, inputs), atol=2e-4)


def test_permuting_atoms_changes_nothing(model, inputs):
    np.testing.assert_allclose(predict(model, permuted_atoms(inputs)), predict(model, inputs), atol=1e-5)


def test_scalars_sum_to_zero_and_any_origin_gives_the_same_vector(model, inputs):
    trace = {r.path: r for r in model.record(inputs).walk()}
    rec = trace["head.dipole"]
    s = np.asarray(rec.extras["s"], np.float64)
    owner = inputs["atom_molecule"]
    sums = np.stack([s[owner == m].sum(axis=0) for m in range(len(COUNTS))])
    np.testing.assert_allclose(sums, 0.0, atol=1e-5)
    q = np.asarray(rec.inputs[0], np.float64)
    r = inputs[COORDINATES_KEY].astype(np.float64)
    out = np.asarray(rec.outputs, np.float64)
    for m in range(len(COUNTS)):
        at = owner == m
        for origin in (np.zeros(3), np.array([100.0, -3.0, 2.0])):  # sum_a s_a (r_a - origin)
            v = np.einsum("av,ai->vi", s[at], r[at] - origin).reshape(-1)
            # float32 leaves sum(s) ~1e-6 off zero; that residual times the origin is the only allowed difference
            np.testing.assert_allclose(v, out[m], atol=1e-4 + 2 * np.abs(sums[m]).max() * np.linalg.norm(origin))
        # the same as the raw q times r - (mean position): linear in q (the LRP rule)
        v = np.einsum("av,ai->vi", q[at], r[at] - r[at].mean(axis=0)).reshape(-1)
        np.testing.assert_allclose(v, out[m], atol=1e-4)


def test_derived_quantities_by_hand():
    v = np.array([[0.0, 0.0, 2.0, 10.0, 0.0, 5.0]])
    d = derived_quantities(v)
    assert d["mu_norm"][0] == pytest.approx(2.0)
    assert d["beta_parallel"][0] == pytest.approx(0.6 * 5.0)
    assert d["beta_vec_norm"][0] == pytest.approx(np.sqrt(125.0))


def test_model_file_round_trip(model, inputs, tmp_path):
    from qmlrp.models.config import read_model_file
    from qmlrp.models.io import load_model, save_model

    path = tmp_path / "fold0.npz"
    save_model(model, path, half=False)
    loaded = load_model(path)
    assert isinstance(loaded, VectorGCModel)
    np.testing.assert_allclose(predict(loaded, inputs), predict(model, inputs), rtol=1e-6, atol=1e-6)
    config, metadata, names, arrays = read_model_file(path)
    assert metadata["head"] == "equivariant_vector" and metadata["n_vectors"] == 2
    assert sum(a.size for a in arrays) == SMALL.vector_weight_count(2)
    save_model(model, tmp_path / "again.npz", half=False)
    assert (tmp_path / "again.npz").read_bytes() == path.read_bytes()


def test_model_file_with_a_missing_weight_is_one_line(model, tmp_path):
    from qmlrp.errors import QmlrpError
    from qmlrp.models.io import load_model, save_model
    from qmlrp.models.weights_file import read_weights_file, write_weights_file

    path = tmp_path / "fold0.npz"
    save_model(model, path)
    from qmlrp.models.config import MODEL_FORMAT

    header, arrays = read_weights_file(path, MODEL_FORMAT, "model")
    write_weights_file(path, {**header, "names": header["names"][:-1]}, arrays[:-1])
    with pytest.raises(QmlrpError, match="weights but the file holds"):
        load_model(path)
