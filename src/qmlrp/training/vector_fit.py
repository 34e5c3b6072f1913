"""The equivariant vector target's training parts: its scales, its rotation-invariant loss, its predictions.

The model (:class:`~qmlrp.models.equivariant.VectorGCModel`) trains in the one engine
(:func:`qmlrp.training.engine.fit`), which for this kind of target scales each 3-vector v by one number
``s_v`` (the root-mean-square Cartesian component of the training labels, no mean: a mean vector would have
a direction), stored in the model's :class:`~qmlrp.models.vector_head.VectorScaling`, and minimises::

    loss = sum_m w_m sum_v |y_pred_mv - y_mv|_2 / s_v  /  sum_m w_m        (Euclidean error per vector)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qmlrp.features.store import FeatureStore
from qmlrp.models.inputs import molecule_inputs


def vector_scales(y: np.ndarray, n_vectors: int = 2) -> np.ndarray:
    """(V,) root-mean-square Cartesian component of each 3-vector of labels ``y`` (n, 3V), a.u."""
    v = np.asarray(y, np.float64).reshape(len(y), n_vectors, 3)
    return np.sqrt(np.mean(v * v, axis=(0, 2)))


def vector_loss(pred: Any, y: Any, scales: Any, weights: Any) -> Any:
    """Weighted mean over molecules of ``sum_v |pred_v - y_v|_2 / s_v``; pred, y (n, 3V), scales (V,),
    weights (n,). Works on NumPy and JAX arrays (a tiny 1e-12 inside the square root keeps the gradient
    finite at zero error)."""
    xp = _namespace(pred)
    n_vec = scales.shape[0]
    d = xp.reshape(pred - y, (pred.shape[0], n_vec, 3))
    err = xp.sqrt(xp.sum(d * d, axis=-1) + 1e-12) / scales
    return xp.sum(xp.sum(err, axis=-1) * weights) / xp.maximum(xp.sum(weights), 1.0)


def _namespace(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def predict_vectors(model: Any, store: FeatureStore, positions: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """(len(positions), head.n_outputs) predictions in a.u. (inference mode), in the order of ``positions``:
    3V vector components, or the tensor head's 6 (batches through :func:`qmlrp.models.io.inference_function`)."""
    from qmlrp.models.io import inference_function

    predict = inference_function(model, bucket_atoms=64, bucket_pairs=1024)
    width = int(model.head.n_outputs)
    out = [predict(molecule_inputs(store, np.asarray(positions[s:s + batch_size])))
           for s in range(0, len(positions), batch_size)]
    return np.concatenate(out).reshape(-1, width).astype(np.float64) if out else np.zeros((0, width))


def _build_vector(config: Any, metadata: dict[str, Any], y_train: np.ndarray, width: int
                  ) -> tuple[Any, np.ndarray, np.ndarray]:
    """The Weave trunk with the equivariant vector head; one scale per 3-vector, no shift."""
    from qmlrp.models.equivariant import build_vector_model

    model = build_vector_model(config, metadata=metadata, n_vectors=width // 3)
    scales = vector_scales(y_train, width // 3)
    model.head.scaling.set_scales(scales)
    return model, np.zeros(width), np.repeat(scales, 3)


def _vector_training_loss(pred: Any, y: Any, mask: Any, scale: Any, kind: str) -> Any:
    """:func:`vector_loss` over the real molecules (mask[:, 0]: all components of a molecule are real together)."""
    return vector_loss(pred, y, scale[::3], mask[:, 0])


def _training_parts() -> Any:
    from qmlrp.training.kind_training import KindTraining

    return KindTraining(_build_vector, _vector_training_loss, coordinates=True, validate_by_metric=True)


VECTOR_TRAINING = _training_parts()
"""How the engine trains the equivariant vector kind (:mod:`qmlrp.training.kind_training`)."""
