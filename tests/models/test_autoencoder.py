"""The tied-weight denoising autoencoder: tied weights, noise in training only, column scaling,
overfitting a tiny set, the model file, the padded MG round trip and the combined model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.features.dense import flatten, to_dense
from qmlrp.features.layout import flat_length
from qmlrp.models.autoencoder import (
    FEATURE_TYPES,
    AutoencoderConfig,
    ColumnScaling,
    CombinedModel,
    TiedAutoencoder,
    TypeAccumulator,
    column_feature,
    column_types,
    load_autoencoder,
    real_mask,
    save_autoencoder,
    unflatten,
)
from qmlrp.models.inputs import random_batch

D = flat_length()


@pytest.fixture(scope="module")
def batch():
    return random_batch([5, 9, 12, 29], seed=3)


@pytest.fixture(scope="module")
def data(batch):
    return flatten(batch), batch.atoms_per_molecule()


@pytest.fixture(scope="module")
def model(data) -> TiedAutoencoder:
    keras.utils.set_random_seed(0)
    flat, n = data
    ae = TiedAutoencoder(AutoencoderConfig(noise_sd=0.5), ColumnScaling.fit(flat, n))
    rng = np.random.default_rng(1)
    for w in (ae.encoder1.bias, ae.encoder2.bias, ae.decoder1.bias, ae.decoder2.bias):
        w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    return ae


def test_layout_counts() -> None:
    is_pair, feature = column_feature()
    assert is_pair.size == D == 5887 and is_pair.sum() == 13 * 406
    counts = np.bincount(column_types(), minlength=12)
    assert counts.tolist() == [29 * 5, 29 * 2, 29, 29, 29 * 6, 29 * 3, 29 * 2, 29, 406 * 4, 406 * 7, 406, 406]
    assert len(FEATURE_TYPES) == 12


def test_weights_tied(model, data) -> None:
    """One parameter set: 2 kernels + 4 biases; the decoder uses the encoder's kernels transposed."""
    assert [w.path.split("/", 1)[1] for w in model.weights] == [
        "encoder1/kernel", "encoder1/bias", "encoder2/kernel", "encoder2/bias", "decoder2/bias", "decoder1/bias"]
    assert model.count_params() == D * 136 + 136 + 136 * 68 + 68 + 136 + D
    assert model.decoder1.tied_to.kernel is model.encoder1.kernel
    a = model.arrays()
    x = model.scaling.transform(*data)
    code = np.maximum(np.maximum(x @ a["W1"] + a["b1"], 0) @ a["W2"] + a["b2"], 0)
    expected = np.maximum(code @ a["W2"].T + a["c2"], 0) @ a["W1"].T + a["c1"]
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, atol=1e-4)
    # changing the encoder kernel changes the decoder: no second copy
    old = np.asarray(model.encoder2.kernel).copy()
    try:
        model.encoder2.kernel.assign(old * 2)
        out = np.asarray(model.decode(code.astype("float32")))
        np.testing.assert_allclose(out, np.maximum(code @ (2 * a["W2"]).T + a["c2"], 0) @ a["W1"].T + a["c1"], atol=1e-4)
    finally:
        model.encoder2.kernel.assign(old)


def test_noise_only_in_training(model, data) -> None:
    x = model.scaling.transform(*data)
    plain = np.asarray(model.decode(model.encode(x)))
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), plain)
    np.testing.assert_array_equal(np.asarray(model(x)), plain)  # default: inference
    noisy = np.asarray(model(x, training=True))
    assert np.abs(noisy - plain).max() > 1e-3


def test_scaling_round_trip(batch, data) -> None:
    flat, n = data
    scaling = ColumnScaling.fit(flat, n)
    mask = real_mask(n)
    x = scaling.transform(flat, n)
    assert np.all(x[~mask] == 0)
    np.testing.assert_allclose(scaling.inverse(x, n), flat, atol=1e-5)
    is_pair, feature = column_feature()
    charge = ~is_pair & (feature == 8)
    dist = is_pair & (feature == 12)
    for cols, values in ((charge, batch.atom_features[:, 8]), (dist, batch.pair_features[:, 12])):
        real = x[:, cols][mask[:, cols]]
        assert real.size == values.size
        np.testing.assert_allclose([real.mean(), real.std()], [0.0, 1.0], atol=1e-5)
    assert scaling.pair_mean[0] == pytest.approx(float(np.mean(batch.pair_features[:, 12])), rel=1e-6)
    other = ~(charge | dist)
    np.testing.assert_array_equal(x[:, other], flat[:, other])  # one-hot/binary/counts untouched
    assert ColumnScaling.from_json(scaling.to_json()) == scaling


def test_overfits_a_tiny_set(data) -> None:
    """No noise, 8 molecules, full batch: the reconstruction error falls below 2 % of the data's variance."""
    keras.utils.set_random_seed(0)
    flat, n = data
    ae = TiedAutoencoder(AutoencoderConfig(noise_sd=0.0), ColumnScaling.fit(flat, n))
    x = ae.scaling.transform(flat, n)
    x = np.concatenate([x, x])
    ae.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    ae.fit(x, x, batch_size=len(x), epochs=300, verbose=0)
    err = np.mean((np.asarray(ae(x)) - x) ** 2)
    assert err < 0.02 * np.mean((x - x.mean(0)) ** 2)


def test_save_load_round_trip(model, data, tmp_path) -> None:
    model.metadata["ood_threshold"] = 0.25
    path = tmp_path / "ae" / "model.npz"
    save_autoencoder(model, path)
    first = path.read_bytes()
    save_autoencoder(model, path)
    assert path.read_bytes() == first  # deterministic bytes
    back = load_autoencoder(path)
    assert back.scaling == model.scaling and back.metadata["ood_threshold"] == 0.25
    flat, n = data
    np.testing.assert_array_equal(back.reconstruct(flat, n), model.reconstruct(flat, n))


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated", None])
def test_corrupt_file_is_one_line(model, tmp_path, content) -> None:
    path = tmp_path / "model.npz"
    if content is None:  # a valid npz of something else
        np.savez(path, header=np.frombuffer(b'{"format": "other"}', np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(QmlrpError) as err:
        load_autoencoder(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(QmlrpError, match="not found"):
        load_autoencoder(tmp_path / "missing.npz")


def test_unflatten_inverts_flatten(batch) -> None:
    atoms, pairs, _ = to_dense(batch)
    a, p = unflatten(flatten(batch))
    np.testing.assert_array_equal(np.asarray(a), atoms)
    np.testing.assert_array_equal(np.asarray(p), pairs)


def test_type_scores_known_answers(data) -> None:
    flat, n = data
    acc = TypeAccumulator()
    acc.add(flat, flat, n)
    s = acc.scores()
    assert all(v == 0 for v in s.mae.values())
    assert s.r2["spatial distance"] == 1.0
    assert s.counts["spatial distance"] == int(sum(k * (k - 1) // 2 for k in n))
    # predicting each real entry's feature mean gives R^2 = 0
    is_pair, feature = column_feature()
    mask = real_mask(n)
    mean_pred = np.zeros_like(flat)
    for cols in (~is_pair & (feature == 8), is_pair & (feature == 12)):
        m = flat[:, cols][mask[:, cols]].mean()
        mean_pred[:, cols] = np.where(mask[:, cols], m, 0)
    acc = TypeAccumulator()
    acc.add(flat, mean_pred, n)
    assert acc.scores().r2["spatial distance"] == pytest.approx(0.0, abs=1e-9)
    assert acc.scores().r2["partial charge"] == pytest.approx(0.0, abs=1e-9)


def test_combined_plain_path_equals_the_ragged_model(model, batch, data) -> None:
    """use_autoencoder=False: the padded forward of the same MG gives the Weave model's predictions."""
    from qmlrp.models.autoencoder import atom_mask
    from qmlrp.models.inputs import batch_to_inputs
    from tests.relevance.test_model_lrp import randomised_model

    weave = randomised_model()
    flat, n = data
    x = model.scaling.transform(flat, n)
    inputs = {"flat": x, "atom_mask": atom_mask(n)}
    plain = np.asarray(CombinedModel(model, weave, use_autoencoder=False)(inputs)).reshape(-1)
    ragged = np.asarray(weave(batch_to_inputs(batch))).reshape(-1)
    np.testing.assert_allclose(plain, ragged, rtol=1e-4, atol=1e-4)
    combined = CombinedModel(model, weave)
    atoms, pairs = combined.reconstructed_mg(x, atom_mask(n))
    expected = model.scaling.inverse(model.reconstruct(flat, n), n)
    a, p = unflatten(expected)
    np.testing.assert_allclose(np.asarray(atoms), np.asarray(a), atol=1e-5)
    np.testing.assert_allclose(np.asarray(pairs), np.asarray(p), atol=1e-5)


def test_huge_or_non_finite_autoencoder_files_are_refused(model, tmp_path) -> None:
    """The default DAE has 5887*136 + 136 + 136*68 + 68 + 136 + 5887 = 816,107 weights; a header that
    declares more (hidden: 10**7) is refused before building, a NaN weight by its name."""
    from tests.models.test_io import rewritten

    path = tmp_path / "model.npz"
    save_autoencoder(model, path)
    wide = rewritten(path, tmp_path / "wide.npz", header=lambda h: h["config"].update(hidden=10**7))
    with pytest.raises(QmlrpError) as err:
        load_autoencoder(wide)
    assert str(err.value) == f"{wide}: its architecture has 59,570,005,955 weights but the file holds 816,107"

    def spoil(header, members):
        members[f"w{header['names'].index('encoder2/bias'):03d}"][0] = np.nan

    nan = rewritten(path, tmp_path / "nan.npz", arrays=spoil)
    with pytest.raises(QmlrpError) as err:
        load_autoencoder(nan)
    assert str(err.value) == f"{nan}: weight encoder2/bias has 1 NaN and 0 infinite values (of 68): a diverged or damaged model"
