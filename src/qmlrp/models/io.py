"""Saving and loading models: compact weights files (``.npz``: architecture JSON + arrays) or ``.keras``."""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.models.gc import GraphConvModel
from qmlrp.models.inputs import INPUT_DTYPES, INPUT_SHAPES, MOLECULE_ATOMS_KEY, pad_inputs

MODEL_FILE = re.compile(r"^fold(\d+)\.(npz|keras)$")
FORMAT = "qmlrp-weights/1"
HALF_MIN_SIZE = 4096
"""Weight arrays with at least this many values (the kernels) are stored as float16; the small ones
(biases, BatchNorm statistics, input and target scales) stay float32."""


def model_path(models_dir: str | Path, target: str, fold: int) -> Path:
    """``models_dir/<target>/fold<k>.npz`` (a weights file, see :func:`save_model`)."""
    return Path(models_dir) / target / f"fold{int(fold)}.npz"


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.<name>.tmp-<pid>.*`` files left by a save that was killed (their process is gone)."""
    for tmp in folder.glob(".*.tmp-*"):
        match = re.search(r"\.tmp-(\d+)", tmp.name)
        if match and int(match.group(1)) != os.getpid() and not Path(f"/proc/{match.group(1)}").exists():
            tmp.unlink(missing_ok=True)


def save_model(model: GraphConvModel, path: str | Path, half: bool = True) -> None:
    """Write ``model`` to ``path`` atomically: weights only, no optimiser state, no code.

    ``.npz`` (default): the architecture (``ModelConfig`` fields) and metadata as JSON, and every
    weight array in ``model.weights`` order, kernels as float16 when ``half`` (1/2 the size; the
    effect on test predictions is measured in the study record), everything else float32. The
    bytes depend only on the weights (no timestamps), so a retrain with unchanged inputs gives an
    identical file. ``.keras``: Keras' own format (float32, with Keras' zip timestamps).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    if path.suffix == ".keras":
        model.save(tmp, include_optimizer=False)
    elif path.suffix == ".npz":
        if "architecture" not in model.metadata:
            raise ValueError("the model's metadata has no 'architecture' (ModelConfig fields) to save with it")
        header = {"format": FORMAT, "config": model.metadata["architecture"], "metadata": model.metadata,
                  "names": [w.path for w in model.weights]}
        arrays = {"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
        for k, w in enumerate(model.weights):
            value = np.asarray(keras.ops.convert_to_numpy(w), np.float32)
            arrays[f"w{k:03d}"] = value.astype(np.float16) if half and value.size >= HALF_MIN_SIZE else value
        with open(tmp, "wb") as fh:  # np.savez to a handle: a zip whose entries carry a fixed date
            np.savez(fh, **arrays)
    else:
        raise ValueError(f"{path}: models are saved as .npz (weights) or .keras")
    os.replace(tmp, path)


def load_model(path: str | Path) -> GraphConvModel:
    """Load a model saved by :func:`save_model` (no pickle, no code: safe for files from others)."""
    path = Path(path)
    if not path.exists():
        raise QmlrpError(f"{path}: model not found (run `dvc repro train` first)")
    if path.suffix == ".keras":
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as err:  # noqa: BLE001 - Keras raises many types for a corrupt zip/config
            raise QmlrpError(f"{path}: corrupt or incompatible model file ({str(err).splitlines()[0][:200]})") from None
        if not isinstance(model, GraphConvModel):
            raise QmlrpError(f"{path}: not a qmlrp GraphConvModel")
        return model
    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model

    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            arrays = [data[f"w{k:03d}"] for k in range(len(header["names"]))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise QmlrpError(f"{path}: corrupt model file ({err.__class__.__name__}: {str(err)[:200]})") from None
    if header.get("format") != FORMAT:
        raise QmlrpError(f"{path}: not a qmlrp model file (format {header.get('format')!r})")
    try:
        model = build_model(ModelConfig.from_params(header["config"]), metadata=header.get("metadata"))
    except (TypeError, ValueError, KeyError) as err:
        raise QmlrpError(f"{path}: malformed model configuration ({err})") from None
    if [w.path for w in model.weights] != header["names"]:
        raise QmlrpError(f"{path}: weights do not match the architecture in its header")
    for w, value in zip(model.weights, arrays):
        if tuple(w.shape) != value.shape:
            raise QmlrpError(f"{path}: weight {w.path} has shape {value.shape}, expected {tuple(w.shape)}")
        w.assign(value.astype(np.float32))
    return model


def find_models(models_dir: str | Path) -> dict[str, list[tuple[int, Path]]]:
    """``{target: [(fold, path), ...]}`` for every ``<models_dir>/<target>/fold<k>.npz`` (or ``.keras``
    where a fold has no ``.npz``)."""
    root = Path(models_dir)
    found: dict[str, list[tuple[int, Path]]] = {}
    if not root.is_dir():
        return found
    for target_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        by_fold: dict[int, Path] = {}
        for file in sorted(target_dir.iterdir(), key=lambda f: f.suffix != ".npz"):
            match = MODEL_FILE.match(file.name)
            if match:
                by_fold.setdefault(int(match.group(1)), file)
        if by_fold:
            found[target_dir.name] = sorted(by_fold.items())
    return found


def inference_function(
    model: GraphConvModel, bucket_molecules: int = 64, bucket_atoms: int = 256, bucket_pairs: int = 4096
) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """``inputs dict -> predictions in target units`` (inference mode): (n_molecules,) for a
    scalar head, (n_molecules, n_outputs) for a vector head (e.g. the 81 frequencies, cm^-1).

    With TensorFlow the forward pass is a ``tf.function`` traced once for ragged (None) shapes;
    other backends get batches padded to bucketed sizes (see :func:`pad_inputs`).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        signature = [{k: tf.TensorSpec((None, *INPUT_SHAPES[k]), INPUT_DTYPES[k]) for k in INPUT_SHAPES}]
        fn: Any = tf.function(lambda inputs: model(inputs, training=False), input_signature=signature, autograph=False)
        return lambda inputs: _squeezed(np.asarray(keras.ops.convert_to_numpy(fn(inputs))))

    def padded(inputs: dict[str, np.ndarray]) -> np.ndarray:
        # JAX & co. compile per input shape: pad to buckets so a few compiled shapes serve all.
        n = int(inputs[MOLECULE_ATOMS_KEY].shape[0])
        slots = -(-(n + 1) // bucket_molecules) * bucket_molecules
        x, _, _ = pad_inputs(inputs, np.zeros((n, 1), np.float32), slots, bucket_atoms, bucket_pairs)
        return _squeezed(np.asarray(model.predict_on_batch(x))[:n])

    return padded


def _squeezed(out: np.ndarray) -> np.ndarray:
    """(n, 1) -> (n,); (n, T) stays."""
    out = out.reshape(out.shape[0], -1)
    return out[:, 0] if out.shape[1] == 1 else out
