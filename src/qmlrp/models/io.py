"""Saving and loading models: compact weights files only (``.npz``: architecture JSON + arrays)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.models.config import MODEL_FORMAT
from qmlrp.models.gc import GraphConvModel
from qmlrp.models.inputs import INPUT_DTYPES, INPUT_SHAPES, MOLECULE_ATOMS_KEY, pad_inputs
from qmlrp.models.weights_file import assign_weights, write_weights_file

MODEL_FILE = re.compile(r"^fold(\d+)\.npz$")
FORMAT = MODEL_FORMAT
HALF_MIN_SIZE = 4096
"""Weight arrays with at least this many values (the kernels) are stored as float16; the small ones
(biases, BatchNorm statistics, input and target scales) stay float32."""


def _npz_only(path: str | Path) -> Path:
    """``path`` as a Path if it names a ``.npz`` weights file; any other suffix is refused in one line."""
    path = Path(path)
    if path.suffix != ".npz":
        raise QmlrpError(f"{path}: models are saved and loaded only as .npz weights files")
    return path


def model_path(models_dir: str | Path, target: str, fold: int) -> Path:
    """``models_dir/<target>/fold<k>.npz`` (a weights file, see :func:`save_model`)."""
    return Path(models_dir) / target / f"fold{int(fold)}.npz"


def fold_model(models_dir: str | Path, target: str, fold: int) -> Path:
    """The model file of ``target``'s ``fold`` in ``models_dir``: :func:`model_path`, or, in a folder
    with a ``published.yaml``, the file of the set it chooses (a missing one raises QmlrpError)."""
    from qmlrp.models.published import published_sets

    chosen = published_sets(models_dir)
    if chosen is None:
        return model_path(models_dir, target, fold)
    if target not in chosen or int(fold) not in chosen[target].folds:
        have = f"folds {', '.join(map(str, chosen[target].folds))}" if target in chosen else "no models"
        raise QmlrpError(f"{models_dir}: the published {target} set has {have}, not fold {int(fold)}")
    return chosen[target].folder / f"fold{int(fold)}.npz"


def save_model(model: GraphConvModel, path: str | Path, half: bool = True) -> None:
    """Write ``model`` to ``path`` (``.npz``) atomically: weights only, no optimiser state, no code.

    The file holds the architecture (``ModelConfig`` fields) and metadata as JSON, and every
    weight array in ``model.weights`` order, kernels as float16 when ``half`` (1/2 the size; the
    effect on test predictions is measured in the study record), everything else float32. The
    bytes depend only on the weights (no timestamps), so a retrain with unchanged inputs gives an
    identical file. Any other suffix (``.keras`` included) is refused (:func:`_npz_only`).
    """
    path = _npz_only(path)
    if "architecture" not in model.metadata:
        raise ValueError("the model's metadata has no 'architecture' (ModelConfig fields) to save with it")
    header = {"format": FORMAT, "config": model.metadata["architecture"], "metadata": model.metadata,
              "names": [w.path for w in model.weights]}
    arrays = []
    for w in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(w), np.float32)
        arrays.append(value.astype(np.float16) if half and value.size >= HALF_MIN_SIZE else value)
    write_weights_file(path, header, arrays)


def load_model(path: str | Path) -> GraphConvModel:
    """Load a model saved by :func:`save_model` (no pickle, no code: safe for files from others)."""
    path = _npz_only(path)
    if not path.exists():
        raise QmlrpError(f"{path}: model not found (run `dvc repro train` first)")
    from qmlrp.models.config import read_model_file
    from qmlrp.models.gc import build_model

    from qmlrp.models.equivariant import build_vector_model, is_vector_metadata

    config, metadata, names, arrays = read_model_file(path)  # checked before anything is built
    try:
        if is_vector_metadata(metadata):
            model = build_vector_model(config, metadata=metadata)
        else:
            model = build_model(config, metadata=metadata)
    except (TypeError, ValueError, KeyError) as err:
        raise QmlrpError(f"{path}: malformed model configuration ({err})") from None
    assign_weights(model.weights, [w.path for w in model.weights], names, arrays, path)
    return model


def find_models(models_dir: str | Path) -> dict[str, list[tuple[int, Path]]]:
    """``{target: [(fold, path), ...]}`` for every ``<models_dir>/<target>/fold<k>.npz``, or, when the
    folder has a ``published.yaml``, for the set of each target that it chooses
    (:mod:`qmlrp.models.published`)."""
    from qmlrp.models.published import published_sets

    root = Path(models_dir)
    chosen = published_sets(root)
    if chosen is not None:
        return {target: [(k, s.folder / f"fold{k}.npz") for k in s.folds] for target, s in chosen.items()}
    found: dict[str, list[tuple[int, Path]]] = {}
    if not root.is_dir():
        return found
    for target_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        by_fold: dict[int, Path] = {}
        for file in sorted(target_dir.iterdir()):
            match = MODEL_FILE.match(file.name)
            if match:
                by_fold[int(match.group(1))] = file
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
    from qmlrp.models.inputs import COORDINATES_KEY

    shapes, dtypes = dict(INPUT_SHAPES), dict(INPUT_DTYPES)
    if getattr(model, "needs_coordinates", False):  # the equivariant vector model reads the geometry
        shapes[COORDINATES_KEY], dtypes[COORDINATES_KEY] = (3,), "float32"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        signature = [{k: tf.TensorSpec((None, *shapes[k]), dtypes[k]) for k in shapes}]
        fn: Any = tf.function(lambda inputs: model(inputs, training=False), input_signature=signature, autograph=False)
        return lambda inputs: _squeezed(np.asarray(keras.ops.convert_to_numpy(fn({k: inputs[k] for k in shapes}))))

    def padded(inputs: dict[str, np.ndarray]) -> np.ndarray:
        # JAX & co. compile per input shape: pad to buckets so a few compiled shapes serve all.
        n = int(inputs[MOLECULE_ATOMS_KEY].shape[0])
        slots = -(-(n + 1) // bucket_molecules) * bucket_molecules
        x, _, _ = pad_inputs({k: inputs[k] for k in shapes}, np.zeros((n, 1), np.float32), slots, bucket_atoms,
                             bucket_pairs)
        return _squeezed(np.asarray(model.predict_on_batch(x))[:n])

    return padded


def _squeezed(out: np.ndarray) -> np.ndarray:
    """(n, 1) -> (n,); (n, T) stays."""
    out = out.reshape(out.shape[0], -1)
    return out[:, 0] if out.shape[1] == 1 else out
