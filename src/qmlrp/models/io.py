"""Saving and loading models in Keras' native ``.keras`` format (zip of config + weights; no pickle)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.models.gc import GraphConvModel
from qmlrp.models.inputs import INPUT_DTYPES, INPUT_SHAPES, MOLECULE_ATOMS_KEY, pad_inputs

MODEL_FILE = re.compile(r"^fold(\d+)\.keras$")


def model_path(models_dir: str | Path, target: str, fold: int) -> Path:
    """``models_dir/<target>/fold<k>.keras``."""
    return Path(models_dir) / target / f"fold{int(fold)}.keras"


def save_model(model: GraphConvModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` (``.keras``) atomically, without optimizer state."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: models are saved in the native .keras format")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    model.save(tmp, include_optimizer=False)
    os.replace(tmp, path)


def load_model(path: str | Path) -> GraphConvModel:
    """Load a :class:`GraphConvModel` (safe mode: no arbitrary code, no compile state)."""
    path = Path(path)
    if not path.exists():
        raise QmlrpError(f"{path}: model not found (run `dvc repro train` first)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, KeyError) as err:
        raise QmlrpError(f"{path}: cannot load model ({str(err).splitlines()[0]})") from None
    if not isinstance(model, GraphConvModel):
        raise QmlrpError(f"{path}: not a qmlrp GraphConvModel")
    return model


def find_models(models_dir: str | Path) -> dict[str, list[tuple[int, Path]]]:
    """``{target: [(fold, path), ...]}`` for every ``<models_dir>/<target>/fold<k>.keras``."""
    root = Path(models_dir)
    found: dict[str, list[tuple[int, Path]]] = {}
    if not root.is_dir():
        return found
    for target_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        folds = []
        for file in target_dir.iterdir():
            match = MODEL_FILE.match(file.name)
            if match:
                folds.append((int(match.group(1)), file))
        if folds:
            found[target_dir.name] = sorted(folds)
    return found


def inference_function(
    model: GraphConvModel, bucket_molecules: int = 64, bucket_atoms: int = 256, bucket_pairs: int = 4096
) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """``inputs dict -> (n_molecules,) predictions in target units`` (inference mode).

    With TensorFlow the forward pass is a ``tf.function`` traced once for ragged (None) shapes;
    other backends get batches padded to bucketed sizes (see :func:`pad_inputs`).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        signature = [{k: tf.TensorSpec((None, *INPUT_SHAPES[k]), INPUT_DTYPES[k]) for k in INPUT_SHAPES}]
        fn: Any = tf.function(lambda inputs: model(inputs, training=False), input_signature=signature, autograph=False)
        return lambda inputs: np.asarray(keras.ops.convert_to_numpy(fn(inputs))).reshape(-1)

    def padded(inputs: dict[str, np.ndarray]) -> np.ndarray:
        # JAX & co. compile per input shape: pad to buckets so a few compiled shapes serve all.
        n = int(inputs[MOLECULE_ATOMS_KEY].shape[0])
        slots = -(-(n + 1) // bucket_molecules) * bucket_molecules
        x, _, _ = pad_inputs(inputs, np.zeros((n, 1), np.float32), slots, bucket_atoms, bucket_pairs)
        return np.asarray(model.predict_on_batch(x)).reshape(-1)[:n]

    return padded
