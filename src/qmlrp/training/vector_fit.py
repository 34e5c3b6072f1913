"""Training the equivariant vector model (:class:`~qmlrp.models.equivariant.VectorGCModel`) on mu and beta_vec.

A small loop of its own (one model, JAX, Keras' ``stateless_call``): the shared engine
(:mod:`qmlrp.training.engine`) standardises each output with its own mean, which would break
equivariance (a mean vector has a direction). Here each vector v has one scale ``s_v`` (the root-mean-
square Cartesian component of the training labels, no mean), stored in the model's
:class:`~qmlrp.models.vector_head.VectorScaling`, and the loss is rotation-invariant::

    loss = sum_m w_m sum_v |y_pred_mv - y_mv|_2 / s_v  /  sum_m w_m        (Euclidean error per vector)

Adam (Keras' formulation, as the engine), learning rate halved on a validation plateau, early stopping
on the validation beta_par MAE (a.u., the quantity the model is for) with the best epoch's weights kept.
Batches are padded to bucketed shapes (:func:`qmlrp.models.inputs.pad_inputs`) so XLA compiles a few
shapes only.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from qmlrp.features.store import FeatureStore
from qmlrp.models.config import ModelConfig
from qmlrp.models.inputs import molecule_inputs, pad_inputs
from qmlrp.targets.vectors import parallel_from_vectors

ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7


@dataclass(frozen=True)
class VectorFitConfig:
    """Training settings of the vector model (``params.yaml`` section ``train_beta_vector``)."""

    epochs: int = 150
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_factor: float = 0.5
    lr_patience: int = 10
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 30
    validation_fraction: float = 0.1
    seed: int = 20171010
    atom_bucket: int = 64
    pair_bucket: int = 1024
    beta_parallel_weight: float = 0.0
    """Weight of an extra loss term ``|beta_par(pred) - beta_par(y)| / sd(beta_par)`` (rotation-invariant
    too; 0: the vectors alone)."""


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


def beta_parallel_loss(pred: Any, y: Any, scale: float, weights: Any) -> Any:
    """Weighted mean of ``|beta_par(pred) - beta_par(y)| / scale`` over molecules, beta_par = 3/5 beta_vec .
    mu / |mu| from (n, 6) (|mu| softened by 1e-6 a.u.^2 inside the square root, so mu = 0 stays finite)."""
    xp = _namespace(pred)

    def par(v: Any) -> Any:
        mu, beta = v[:, 0:3], v[:, 3:6]
        return 0.6 * xp.sum(beta * mu, axis=-1) / xp.sqrt(xp.sum(mu * mu, axis=-1) + 1e-6)

    err = xp.abs(par(pred) - par(y)) / scale
    return xp.sum(err * weights) / xp.maximum(xp.sum(weights), 1.0)


def _namespace(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def predict_vectors(model: Any, store: FeatureStore, positions: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """(len(positions), 3V) predictions in a.u. (inference mode), in the order of ``positions``."""
    out = []
    for s in range(0, len(positions), batch_size):
        chunk = np.asarray(positions[s:s + batch_size])
        inputs = molecule_inputs(store, chunk)
        x, _, _ = pad_inputs(inputs, np.zeros((chunk.size, 1), np.float32), chunk.size + 1, 64, 1024)
        out.append(np.asarray(model.predict_on_batch(x))[: chunk.size])
    width = 3 * int(model.head.n_vectors)
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, width))


@dataclass
class VectorFitResult:
    model: Any
    history: list[dict[str, float]]
    best_epoch: int
    best_val_beta_parallel_mae: float
    epochs_run: int
    fit_seconds: float
    scales: list[float]


def _vector_step(model: Any, scales: np.ndarray, par_weight: float, par_scale: float) -> Any:
    """The jitted Adam step (Keras' formulation) on the scaled vector loss plus ``par_weight`` times the
    beta_par loss: ``(tv, ntv, m, v, t, inputs, y, w, lr) -> (tv, ntv, m, v, t, loss)``."""
    import jax
    import jax.numpy as jnp

    scales_j = jnp.asarray(scales, jnp.float32)

    def loss_fn(tv: Any, ntv: Any, inputs: Any, yb: Any, w: Any) -> Any:
        pred, new_ntv = model.stateless_call(tv, ntv, inputs, training=True)
        loss = vector_loss(pred, yb, scales_j, w)
        if par_weight > 0:
            loss = loss + par_weight * beta_parallel_loss(pred, yb, par_scale, w)
        return loss, new_ntv

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def step(tv, ntv, m, v, t, inputs, yb, w, lr):  # noqa: ANN001
        (loss, new_ntv), grads = grad_fn(tv, ntv, inputs, yb, w)
        t1 = t + 1.0
        alpha = lr * jnp.sqrt(1.0 - ADAM_BETA_2 ** t1) / (1.0 - ADAM_BETA_1 ** t1)
        m1 = [mi + (g - mi) * (1.0 - ADAM_BETA_1) for mi, g in zip(m, grads)]
        v1 = [vi + (g * g - vi) * (1.0 - ADAM_BETA_2) for vi, g in zip(v, grads)]
        tv1 = [p - mi * alpha / (jnp.sqrt(vi) + ADAM_EPSILON) for p, mi, vi in zip(tv, m1, v1)]
        return tv1, new_ntv, m1, v1, t1, loss

    return step


def _assign(model: Any, tv: list[Any], ntv: list[Any]) -> None:
    """Write stateless weights back into the Keras model."""
    for var, val in zip(model.trainable_variables, tv):
        var.assign(np.asarray(val))
    for var, val in zip(model.non_trainable_variables, ntv):
        var.assign(np.asarray(val))


def fit_vector(store: FeatureStore, y: np.ndarray, train: np.ndarray, validation: np.ndarray,
               model_config: ModelConfig, config: VectorFitConfig, seed: int,
               metadata: dict[str, Any] | None = None, log: bool = True) -> VectorFitResult:
    """Train a fresh :class:`VectorGCModel` on store positions ``train`` (labels ``y`` (len(store), 6),
    a.u.), early-stopped on ``validation``; returns the best epoch's model."""
    import jax.numpy as jnp
    import keras

    from qmlrp.models.equivariant import build_vector_model
    from qmlrp.training.batches import feature_sample

    t0 = time.perf_counter()
    keras.utils.set_random_seed(int(seed))
    model = build_vector_model(model_config, metadata=metadata, n_vectors=y.shape[1] // 3)
    scales = vector_scales(y[train], y.shape[1] // 3)
    model.head.scaling.set_scales(scales)
    model.input_layer.adapt(*feature_sample(store, train, 5000, seed))
    tv = [jnp.asarray(v.value) for v in model.trainable_variables]
    ntv = [jnp.asarray(v.value) for v in model.non_trainable_variables]
    par_weight = float(config.beta_parallel_weight)
    par_scale = float(np.std(parallel_from_vectors(y[train]))) if par_weight > 0 else 1.0
    step = _vector_step(model, scales, par_weight, par_scale)
    rng = np.random.default_rng(int(seed))
    m, v = [jnp.zeros_like(p) for p in tv], [jnp.zeros_like(p) for p in tv]
    t = jnp.asarray(0.0, jnp.float32)
    lr, best, best_epoch, since_best, since_lr = config.learning_rate, np.inf, 0, 0, 0
    best_weights = (tv, ntv)
    history: list[dict[str, float]] = []
    y_val_par = parallel_from_vectors(y[validation])
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(train)
        losses = []
        for s in range(0, order.size, config.batch_size):
            chunk = np.sort(order[s:s + config.batch_size])
            x, yb, w = pad_inputs(molecule_inputs(store, chunk), y[chunk].astype(np.float32), config.batch_size + 1,
                                  config.atom_bucket, config.pair_bucket)
            tv, ntv, m, v, t, loss = step(tv, ntv, m, v, t, x, yb, w, jnp.asarray(lr, jnp.float32))
            losses.append(float(loss) * chunk.size)
        _assign(model, tv, ntv)
        pred_val = predict_vectors(model, store, validation)
        val_par_mae = float(np.nanmean(np.abs(parallel_from_vectors(pred_val) - y_val_par)))
        val_loss = float(vector_loss(pred_val, y[validation], scales, np.ones(len(validation))))
        history.append({"epoch": epoch, "loss": float(np.sum(losses) / train.size), "val_loss": val_loss,
                        "val_beta_parallel_mae": val_par_mae, "learning_rate": lr})
        if val_par_mae < best:
            best, best_epoch, since_best, since_lr = val_par_mae, epoch, 0, 0
            best_weights = (tv, ntv)
        else:
            since_best, since_lr = since_best + 1, since_lr + 1
            if since_lr >= config.lr_patience:
                lr, since_lr = max(lr * config.lr_factor, config.min_learning_rate), 0
        if log and (epoch % 10 == 0 or epoch == 1):
            print(f"epoch {epoch}: loss {history[-1]['loss']:.4f} val loss {val_loss:.4f} "
                  f"val beta_par MAE {val_par_mae:.2f} a.u. (best {best:.2f} @ {best_epoch}) lr {lr:.2e}",
                  file=sys.stderr)
        if since_best >= config.early_stopping_patience:
            break
    _assign(model, *best_weights)
    return VectorFitResult(model, history, best_epoch, float(best), epoch, round(time.perf_counter() - t0, 1),
                           [float(s) for s in scales])
