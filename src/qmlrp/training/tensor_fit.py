"""The equivariant tensor target's training parts (``alpha_tensor``): its two scales and rotation-invariant loss.

The model (:class:`~qmlrp.models.equivariant.VectorGCModel` with the
:class:`~qmlrp.models.tensor_head.EquivariantTensorHead`) trains in the one engine
(:func:`qmlrp.training.engine.fit`). The tensor is split into its isotropic part (trace / 3) and its traceless
part; each gets one scale from the training labels: ``s_iso`` the standard deviation of the isotropic alpha,
``s_aniso`` the root-mean-square Frobenius norm of the traceless part (no shift of either: the head's per-atom
isotropic scalars carry the mean). The same two numbers scale the head's per-atom scalars
(:class:`~qmlrp.models.tensor_head.TensorScaling`). The loss, invariant under rotations of the molecule::

    loss = sum_m w_m (|iso_pred - iso| / s_iso + |traceless_pred - traceless|_F / s_aniso)  /  sum_m w_m
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qmlrp.targets.tensors import FROBENIUS_WEIGHTS, frobenius, isotropic, traceless


def tensor_scales(y: np.ndarray) -> np.ndarray:
    """(2,) ``(s_iso, s_aniso)`` of labels ``y`` (n, 6), a.u. (a degenerate spread falls back to 1)."""
    s_iso = float(np.std(isotropic(y)))
    s_aniso = float(np.sqrt(np.mean(frobenius(traceless(y)) ** 2)))
    return np.array([s if np.isfinite(s) and s > 0 else 1.0 for s in (s_iso, s_aniso)])


def tensor_loss(pred: Any, y: Any, scales: Any, weights: Any) -> Any:
    """Weighted mean over molecules of ``|d_iso| / s_iso + |d_traceless|_F / s_aniso``; pred, y (n, 6), scales
    (2,), weights (n,). NumPy or JAX arrays (1e-12 inside the square root keeps the gradient finite at 0)."""
    xp = np if isinstance(pred, np.ndarray) else _jnp()
    d = pred - y
    d_iso = xp.mean(d[:, :3], axis=1)
    eye = xp.asarray(np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), dtype=d.dtype)
    d_free = d - d_iso[:, None] * eye
    fro = xp.sqrt(xp.sum(xp.asarray(FROBENIUS_WEIGHTS, dtype=d.dtype) * d_free * d_free, axis=1) + 1e-12)
    per = xp.abs(d_iso) / scales[0] + fro / scales[1]
    return xp.sum(per * weights) / xp.maximum(xp.sum(weights), 1.0)


def _jnp() -> Any:
    import jax.numpy as jnp

    return jnp


def _build_tensor(config: Any, metadata: dict[str, Any], y_train: np.ndarray, width: int
                  ) -> tuple[Any, np.ndarray, np.ndarray]:
    """The Weave trunk with the tensor head; scales ``(s_iso x 3, s_aniso x 3)`` for the loss, no shift."""
    from qmlrp.models.equivariant import TENSOR_HEAD, build_vector_model

    if width != 6:
        raise ValueError(f"the tensor head predicts 6 components, the labels have {width}")
    model = build_vector_model(config, metadata=metadata, head=TENSOR_HEAD)
    scales = tensor_scales(y_train)
    model.head.scaling.set_scales(scales)
    return model, np.zeros(6), np.repeat(scales, 3)


def _tensor_training_loss(pred: Any, y: Any, mask: Any, scale: Any, kind: str) -> Any:
    """:func:`tensor_loss` over the real molecules (all 6 components of a molecule are real together)."""
    return tensor_loss(pred, y, scale[::3], mask[:, 0])


def _training_parts() -> Any:
    from qmlrp.training.kind_training import KindTraining

    return KindTraining(_build_tensor, _tensor_training_loss, coordinates=True, validate_by_metric=True)


TENSOR_TRAINING = _training_parts()
"""How the engine trains the equivariant tensor kind (:mod:`qmlrp.training.kind_training`)."""
