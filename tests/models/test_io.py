"""Model files: compact weights (.npz), safe loading, one-line errors, no junk left by killed saves."""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.models.config import ModelConfig
from qmlrp.models.gc import build_model
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.models.io import find_models, load_model, save_model

CONFIG = ModelConfig(head_units=(64,), embedding_width=16, atom_width=8, pair_width=8, atom_hidden=8, pair_hidden=8)


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(5)
    m = build_model(CONFIG, metadata={"target": "alpha", "fold": 0, "architecture": asdict(CONFIG)})
    rng = np.random.default_rng(0)
    m.head.output_layer.kernels[0].assign(rng.normal(0, 0.3, (64, 1)).astype("float32"))
    m.head.target_scaling.set_statistics(75.3, 8.1)
    return m


def outputs(m, seed: int = 1) -> np.ndarray:
    return np.asarray(m(batch_to_inputs(random_batch([5, 12, 29], seed=seed)), training=False)).ravel()


def test_weights_file_roundtrip_half_and_full(model, tmp_path) -> None:
    save_model(model, tmp_path / "full.npz", half=False)
    save_model(model, tmp_path / "half.npz")
    full, half = load_model(tmp_path / "full.npz"), load_model(tmp_path / "half.npz")
    np.testing.assert_array_equal(outputs(full), outputs(model))
    # float16 kernels: ~1e-3 relative per weight; the target mean (75.3) stays float32
    assert np.max(np.abs(outputs(half) - outputs(model))) < 0.05
    assert half.metadata == model.metadata
    assert float(np.asarray(half.head.target_scaling.mean)[0]) == pytest.approx(75.3, abs=1e-5)
    assert (tmp_path / "half.npz").stat().st_size < 0.7 * (tmp_path / "full.npz").stat().st_size  # small kernels stay float32


def test_same_weights_same_bytes(model, tmp_path) -> None:
    save_model(model, tmp_path / "a" / "fold0.npz")
    save_model(model, tmp_path / "b" / "fold0.npz")
    assert (tmp_path / "a" / "fold0.npz").read_bytes() == (tmp_path / "b" / "fold0.npz").read_bytes()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "corrupt model file"),
    (b"PK\x03\x04 truncated zip", "corrupt model file"),
])
def test_corrupt_file_is_one_line(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "fold0.npz"
    path.write_bytes(content)
    with pytest.raises(QmlrpError, match=f"fold0.npz: {message}"):
        load_model(path)
    with pytest.raises(QmlrpError, match="model not found"):
        load_model(tmp_path / "fold9.npz")


def test_wrong_architecture_or_format_is_named(model, tmp_path) -> None:
    path = tmp_path / "fold0.npz"
    save_model(model, path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = bytes(arrays["header"]).decode()
    np.savez(tmp_path / "other.npz", **{**arrays, "header": np.frombuffer(
        header.replace('"qmlrp-weights/1"', '"something-else"').encode(), np.uint8)})
    with pytest.raises(QmlrpError, match="not a qmlrp model file"):
        load_model(tmp_path / "other.npz")
    np.savez(tmp_path / "bad.npz", **{**arrays, "header": np.frombuffer(
        header.replace('"embedding_width": 16', '"embedding_width": 17').encode(), np.uint8)})
    with pytest.raises(QmlrpError) as err:
        load_model(tmp_path / "bad.npz")
    assert str(err.value) == f"{tmp_path / 'bad.npz'}: its architecture has 13,650 weights but the file holds 12,933"
    kernel = next(k for k, a in arrays.items() if a.shape == (8, 8))
    np.savez(tmp_path / "shape.npz", **{**arrays, kernel: arrays[kernel].reshape(4, 16)})  # same count
    with pytest.raises(QmlrpError, match=r"shape.npz: weight .* has shape \(4, 16\), expected \(8, 8\)"):
        load_model(tmp_path / "shape.npz")
    np.savez(tmp_path / "typo.npz", **{**arrays, "header": np.frombuffer(
        header.replace('"embedding_width"', '"embeding_width"').encode(), np.uint8)})
    with pytest.raises(QmlrpError, match="typo.npz: malformed model configuration"):
        load_model(tmp_path / "typo.npz")


def test_killed_save_leaves_no_junk(model, tmp_path) -> None:
    folder = tmp_path / "alpha"
    folder.mkdir()
    stale = folder / ".fold3.tmp-4194300.npz"  # a save killed mid-write: its process is gone
    stale.write_bytes(b"half a file")
    alive = folder / f".fold4.tmp-{os.getppid()}.npz"  # a save in progress in a live process
    alive.write_bytes(b"being written")
    save_model(model, folder / "fold0.npz")
    assert not stale.exists() and alive.exists()
    assert find_models(tmp_path) == {"alpha": [(0, folder / "fold0.npz")]}


def test_a_header_that_is_not_a_mapping_is_named(tmp_path) -> None:
    # a JSON list where the header mapping belongs (header["names"] is a TypeError): one line, not a traceback
    np.savez(tmp_path / "fold0.npz", header=np.frombuffer(b'["names"]', np.uint8))
    with pytest.raises(QmlrpError, match=r"fold0.npz: not a qmlrp model file \(format None\)"):
        load_model(tmp_path / "fold0.npz")
    np.savez(tmp_path / "fold1.npz", header=np.frombuffer(b'{"names": []}', np.uint8))
    with pytest.raises(QmlrpError, match=r"fold1.npz: not a qmlrp model file \(format None\)"):
        load_model(tmp_path / "fold1.npz")


def rewritten(src, dst, header=None, arrays=None):
    """``src`` saved again as ``dst`` with ``header(dict)`` and ``arrays(header, {member: array})`` applied."""
    import json

    with np.load(src) as data:
        members = {k: data[k] for k in data.files}
    parsed = json.loads(bytes(members["header"]).decode())
    if header:
        header(parsed)
    if arrays:
        arrays(parsed, members)
    members["header"] = np.frombuffer(json.dumps(parsed, sort_keys=True).encode(), np.uint8)
    np.savez(dst, **members)
    return dst


@pytest.mark.parametrize(("value", "count"), [(np.nan, "2 NaN and 0 infinite"), (np.inf, "0 NaN and 2 infinite")])
def test_non_finite_weights_are_refused_naming_the_array(model, tmp_path, value, count) -> None:
    save_model(model, tmp_path / "fold0.npz")

    def spoil(header, members):
        k = header["names"].index("weave_gc/embedding/dense/bias")
        members[f"w{k:03d}"][[1, 5]] = value

    path = rewritten(tmp_path / "fold0.npz", tmp_path / "nan.npz", arrays=spoil)
    with pytest.raises(QmlrpError) as err:
        load_model(path)
    assert str(err.value) == (f"{path}: weight weave_gc/embedding/dense/bias has {count} values (of 16): "
                              "a diverged or damaged model")


@pytest.mark.parametrize(("change", "reason"), [
    ({"atom_width": 10**9}, "malformed model configuration (the model would have 5.8e+10 weights, more than the "
                            "100,000,000 allowed (check depth, the widths and head_units))"),
    ({"head_units": [10**6, 10**6]}, "malformed model configuration (the model would have 1e+12 weights, more than "
                                     "the 100,000,000 allowed (check depth, the widths and head_units))"),
    ({"depth": 10**12}, "malformed model configuration (the model would have 6.24e+14 weights, more than the "
                        "100,000,000 allowed (check depth, the widths and head_units))"),
    ({"atom_width": 2000}, "its architecture has 128,469 weights but the file holds 12,933"),
    ({"dropout": -1}, "malformed model configuration (dropout: must be in [0, 1), got -1)"),
    ({"depth": "2"}, "malformed model configuration (depth: expected an integer, got '2')"),
])
def test_a_huge_or_inconsistent_architecture_is_refused_before_building(model, tmp_path, change, reason) -> None:
    save_model(model, tmp_path / "fold0.npz")
    path = rewritten(tmp_path / "fold0.npz", tmp_path / "odd.npz", header=lambda h: h["config"].update(change))
    with pytest.raises(QmlrpError) as err:
        load_model(path)
    assert str(err.value) == f"{path}: {reason}"


def test_n_outputs_must_match_the_arrays(model, tmp_path) -> None:
    save_model(model, tmp_path / "fold0.npz")
    path = rewritten(tmp_path / "fold0.npz", tmp_path / "wide.npz", header=lambda h: h["metadata"].update(n_outputs=10**9))
    with pytest.raises(QmlrpError) as err:
        load_model(path)
    assert str(err.value) == f"{path}: its architecture has 67,000,012,866 weights but the file holds 12,933"


def test_an_unknown_head_is_named(model, tmp_path) -> None:
    save_model(model, tmp_path / "fold0.npz")
    path = rewritten(tmp_path / "fold0.npz", tmp_path / "odd.npz", header=lambda h: h["metadata"].update(head="spline"))
    with pytest.raises(QmlrpError) as err:
        load_model(path)
    assert str(err.value) == (f"{path}: malformed model configuration (unknown head 'spline'; known: "
                              "equivariant_vector, equivariant_tensor)")


def test_an_array_header_declaring_a_huge_shape_is_refused_before_reading(model, tmp_path) -> None:
    """The .npy header of w000 claims 4e13 values (146 TiB): refused from the header, nothing allocated."""
    import zipfile

    save_model(model, tmp_path / "fold0.npz")
    with zipfile.ZipFile(tmp_path / "fold0.npz") as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    raw = members["w000.npy"]
    length = int.from_bytes(raw[8:10], "little")
    text = raw[10:10 + length].decode().replace("(21,)", "(40000000000000,)").rstrip()
    members["w000.npy"] = raw[:10] + (text + " " * (length - 1 - len(text)) + "\n").encode() + raw[10 + length:]
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(QmlrpError) as err:
        load_model(path)
    assert str(err.value) == (f"{path}: weight atom_scaling/scale (w000.npy) declares shape (40000000000000,) "
                              "(160,000,000,000,000 bytes) but the file holds 84 bytes for it")
