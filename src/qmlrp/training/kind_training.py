"""How each kind of target trains in the one engine (:func:`qmlrp.training.engine.fit`).

A :class:`KindTraining` says what the engine cannot know from the labels alone: which model to build and
how its outputs are scaled, the loss, whether the inputs carry the atoms' coordinates, and whether
validation uses the kind's own metric (:meth:`qmlrp.targets.kinds.TargetKind.metric`) instead of the
MAE over real labels. A new kind of target adds one entry to :data:`TRAINING`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qmlrp.models.config import ModelConfig
from qmlrp.errors import QmlrpError
from qmlrp.targets import Target


@dataclass(frozen=True)
class KindTraining:
    """Attributes:
        build: ``(model config, metadata, training labels (n, T), T) -> (model, mean (T,), scale (T,))``;
            the model's own output layer already maps to target units.
        loss: ``(pred (S, T), y (S, T), mask (S, T), scale (T,), loss name) -> scalar`` (JAX), mask 1 for
            real labels.
        coordinates: the model reads ``coordinates`` (Angstrom) beside the graph.
        validate_by_metric: early stopping and the LR schedule follow the kind's metric on predictions.
    """

    build: Callable[[ModelConfig, dict[str, Any], np.ndarray, int], tuple[Any, np.ndarray, np.ndarray]]
    loss: Callable[[Any, Any, Any, Any, str], Any]
    coordinates: bool = False
    validate_by_metric: bool = False


def target_statistics(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output ``(mean (T,), sd (T,))`` of training labels ``y`` (n,) or (n, T), ignoring NaN.

    An output with no finite label (a mode that is padding on the whole training set) gets the
    mean and sd of all real entries; one whose sd is 0 or undefined (a single value) gets that
    pooled sd; if even that is not positive, 1. All-finite labels give ``np.mean``/``np.std``."""
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if np.all(np.isfinite(y)):
        return np.mean(y, axis=0), np.std(y, axis=0)
    real = y[np.isfinite(y)]
    if real.size == 0:
        raise QmlrpError("no finite training label")
    pooled_mean, pooled_sd = float(np.mean(real)), float(np.std(real))
    pooled_sd = pooled_sd if pooled_sd > 0 else 1.0
    counts = np.sum(np.isfinite(y), axis=0)
    filled = np.where(np.isfinite(y), y, 0.0)
    mean = np.where(counts > 0, filled.sum(axis=0) / np.maximum(counts, 1), pooled_mean)
    dev = np.where(np.isfinite(y), y - mean, 0.0)
    sd = np.sqrt((dev * dev).sum(axis=0) / np.maximum(counts, 1))
    sd = np.where((counts > 1) & (sd > 0), sd, pooled_sd)
    return mean, sd


def _build_standard(config: ModelConfig, metadata: dict[str, Any], y_train: np.ndarray, width: int
                    ) -> tuple[Any, np.ndarray, np.ndarray]:
    """The Weave GC with a dense head; each output standardised by its own mean and sd."""
    from qmlrp.models.gc import build_model

    model = build_model(config, metadata=metadata, n_outputs=width)
    mean, std = target_statistics(y_train)
    model.head.target_scaling.set_statistics(mean, std)
    return model, mean, std


def _standard_loss(pred: Any, y: Any, mask: Any, std: Any, kind: str) -> Any:
    """Mean over real labels of the MAE, MSE or Huber (delta 1) loss of the standardised target."""
    import jax.numpy as jnp

    d = (pred - y) / std
    if kind == "mae":
        per = jnp.abs(d)
    elif kind == "mse":
        per = d * d
    else:
        a = jnp.abs(d)
        per = jnp.where(a <= 1.0, 0.5 * d * d, a - 0.5)
    return jnp.sum(per * mask) / jnp.maximum(jnp.sum(mask), 1.0)


STANDARD = KindTraining(_build_standard, _standard_loss)


def _vector_training() -> KindTraining:
    from qmlrp.training.vector_fit import VECTOR_TRAINING

    return VECTOR_TRAINING


def _tensor_training() -> KindTraining:
    from qmlrp.training.tensor_fit import TENSOR_TRAINING

    return TENSOR_TRAINING


TRAINING: dict[str, Callable[[], KindTraining]] = {
    "scalar": lambda: STANDARD,
    "padded_vector": lambda: STANDARD,
    "equivariant_vector": _vector_training,
    "equivariant_tensor": _tensor_training,
}


def training_of(target: Target) -> KindTraining:
    """The training parts of ``target``'s kind."""
    return TRAINING[target.kind.name]()
