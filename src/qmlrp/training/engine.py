"""``fit()``: the one training loop. K models (folds, targets, schedules) trained as one program.

The K models share an architecture; their parameters are stacked along a leading model axis and
one compiled step (``jax.jit(jax.vmap(step))`` over Keras' ``stateless_call``) advances all of
them, each on its own molecules (its fold's training set, its own shuffling seed). K = 1 is an
ordinary single-model run; K = 20 is the whole 10-fold study of two targets in one program, which
is what fills a GPU. Each model's result equals a run of that model alone (same seed) up to float
round-off: batches, initial weights and schedules depend only on the model's own seed.

All models of one program have the same head width (``jax.vmap`` stacks equal shapes): a scalar
target (width 1) or the padded frequency vector (width 81); :func:`fit_grouped` splits a mixed
list into one program per width. Labels are (K, S, T) per step: a vector target's padding (NaN)
is masked -- mask = label finite, NaNs replaced by 0 on the host before the compiled step -- so the
loss and the train/validation MAE are means over real entries only (a molecule with more modes
weighs more). With every label finite (the scalar targets) this is the unmasked computation.

What differs between kinds of target (:mod:`qmlrp.targets.kinds`) -- the model built, how its outputs
are scaled, the loss, coordinates among the inputs, validation on the kind's own metric -- comes from
:mod:`qmlrp.training.kind_training`: the equivariant mu/beta_vec target, for instance, trains the
:class:`~qmlrp.models.equivariant.VectorGCModel` with one scale per 3-vector and no shift (a mean vector
would have a direction), the Euclidean error per vector as loss and beta_par's MAE for early stopping.

Per model and epoch: Adam (Keras' formulation) on the loss of the standardised target, the
learning-rate schedule of :mod:`qmlrp.training.schedule`, optionally an exponential moving average
of the weights (validated and kept instead of the raw weights), validation MAE in target units,
early stopping with the best epoch's weights kept, a wall-clock limit. A model that has stopped sits
out the remaining steps (weight 0, no update).

Interruptions lose at most one checkpoint interval: ``checkpoint`` (a ``.npz``) holds every
model's weights, optimiser state, best weights, schedule state and history, and a rerun with the
same configuration resumes from it (a checkpoint of another configuration is refused by name).

Requires the JAX backend of Keras (``KERAS_BACKEND=jax``); it runs unchanged on CPU and GPU.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.targets import Target
from qmlrp.training.config import TrainConfig
from qmlrp.training.kind_training import training_of
from qmlrp.training.schedule import make_schedule

ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7
"""Keras' Adam defaults."""


@dataclass(frozen=True)
class ModelRun:
    """One model of a program.

    Attributes:
        name: e.g. ``alpha/fold0``.
        target: what it learns (column and units); None for a model whose batches carry their own
            labels (the autoencoder, :func:`train_program`).
        y: target values indexed by store position (target units): (len(store),) for a scalar
            target, (len(store), n_outputs) for a vector one (NaN = padding, masked out); unused
            (may be empty) without ``target``.
        train, validation: store positions.
        seed: initial weights and batch order (``train.seed + fold`` in the stages).
        metadata: saved with the model (target, fold, sizes, ...).
        schedule: this model's learning-rate schedule (default: ``config.schedule``), so that
            schedules can be compared inside one program.
    """

    name: str
    target: Target | None
    y: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    seed: int
    metadata: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None


@dataclass
class FitResult:
    """One trained model with the best epoch's weights, and its learning curve."""

    name: str
    model: Any
    history: list[dict[str, float]]
    best_epoch: int
    best_val_mae: float
    epochs_run: int
    stop_reason: str
    fit_seconds: float
    target_mean: float | list[float]
    target_std: float | list[float]
    cpu_seconds_before_resume: float = 0.0
    """The training loop's CPU-seconds in earlier processes up to the checkpoint it resumed from (0: not resumed)."""


@dataclass
class Program:
    """What the loop (:func:`train_program`) trains: K built models of one architecture and their batches.

    Attributes:
        runs: names, seeds (batch order), training and validation store positions.
        models: the K Keras models (the first is the ``stateless_call`` template); they get the kept weights.
        batches: ``inputs(chunks) -> (inputs, y (K, S, T), w (K, S))`` for K store-position chunks
            (:class:`~qmlrp.training.batches.HostBatches`, or device batches with ``arrays``/``gather``).
        loss: ``(pred (S, T), y (S, T), mask (S, T), scale (T,), loss name) -> scalar`` (JAX).
        means, stds: per model (T,) output statistics, recorded; ``stds`` (K, T) is the loss' ``scale``.
        metric: ``(pred (n, T), y (n, T)) -> float`` validation metric of the kind, or None for the MAE
            over real labels (a run without validation molecules validates as NaN: last weights kept).
    """

    runs: Sequence[ModelRun]
    models: list[Any]
    batches: Any
    loss: Callable[[Any, Any, Any, Any, str], Any]
    means: list[np.ndarray]
    stds: np.ndarray
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None


def require_jax() -> None:
    """Raise a one-line error unless Keras runs on JAX."""
    import keras

    if keras.backend.backend() != "jax":
        raise QmlrpError(f"the training engine needs KERAS_BACKEND=jax (this process runs Keras on "
                         f"{keras.backend.backend()}); set it before starting qmlrp")


def _fingerprint(runs: Sequence[ModelRun], config: TrainConfig) -> str:
    # what shapes the models' training; not the job list, nor how often a checkpoint is written
    settings = {k: v for k, v in asdict(config).items() if k not in ("targets", "folds", "checkpoint_minutes")}
    text = json.dumps({"config": settings,
                       "runs": [[r.name, r.seed, r.schedule, int(r.train.size), int(r.train.sum()), int(r.validation.sum())]
                                for r in runs]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def n_outputs_of(run: ModelRun) -> int:
    """Head width of ``run``: 1 for (n,) labels, T for (n, T)."""
    return 1 if np.ndim(run.y) == 1 else int(np.shape(run.y)[1])


def _build(run: ModelRun, store: FeatureStore, config: TrainConfig) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(model, mean (T,), scale (T,))``: the model of the run's kind of target, seeded, its input scaling
    fitted on a sample of the training molecules."""
    import keras

    from qmlrp.training.batches import feature_sample

    keras.utils.set_random_seed(int(run.seed))
    model, mean, std = training_of(run.target).build(config.model, run.metadata, run.y[run.train], n_outputs_of(run))
    model.input_layer.adapt(*feature_sample(store, run.train, config.scaling_sample, config.seed))
    return model, mean, std


def masked_labels(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y with NaN -> 0 (K, S, T) float32, mask (K, S, T) float32)`` for one step's labels
    ``y`` (K, S, T) and molecule weights ``w`` (K, S): mask = label finite and slot real."""
    finite = np.isfinite(y)
    mask = (finite & (np.asarray(w)[..., None] > 0)).astype(np.float32)
    return np.where(finite, y, 0.0).astype(np.float32), mask


def _stack(trees: Sequence[Sequence[np.ndarray]]) -> list[Any]:
    import jax.numpy as jnp

    return [jnp.stack([np.asarray(t[i]) for t in trees]) for i in range(len(trees[0]))]


def _slice(tree: Sequence[Any], k: int) -> list[np.ndarray]:
    return [np.asarray(a[k]) for a in tree]


def _compile_steps(template: Any, config: TrainConfig, source: Any, n_models: int,
                   loss: Callable[[Any, Any, Any, Any, str], Any]) -> tuple[Callable, Callable]:
    """(train_step, predict_step), both jitted and vmapped over the model axis; ``loss`` is the kind's
    (:mod:`qmlrp.training.kind_training`)."""
    import jax
    import jax.numpy as jnp

    kind = config.loss
    ema_decay = config.ema_decay
    device = not hasattr(source, "store")  # DeviceBatches: inputs gathered inside the step

    def forward(tv: Any, ntv: Any, inputs: Any, training: bool) -> tuple[Any, Any]:
        out, new_ntv = template.stateless_call(tv, ntv, inputs, training=training)
        return out, new_ntv  # (S, T)

    def loss_fn(tv: Any, ntv: Any, inputs: Any, y: Any, w: Any, std: Any) -> tuple[Any, Any]:
        # y (S, T) with padding replaced by 0; w (S, T) the mask (label finite, slot real)
        pred, new_ntv = forward(tv, ntv, inputs, True)
        return loss(pred, y, w, std, kind), (new_ntv, jnp.sum(jnp.abs(pred - y) * w))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def one_step(tv, ntv, m, v, t, ema, batch, y, w, mask, std, lr, arrays):  # noqa: ANN001
        inputs = source.gather(arrays, batch, w) if device else batch
        (loss, (new_ntv, abs_err)), grads = grad_fn(tv, ntv, inputs, y, mask, std)
        active = jnp.sum(w) > 0
        t1 = t + active.astype(t.dtype)
        tf = t1.astype(jnp.float32)
        alpha = lr * jnp.sqrt(1.0 - ADAM_BETA_2 ** tf) / (1.0 - ADAM_BETA_1 ** tf)
        new_tv, new_m, new_v = [], [], []
        for p, g, mi, vi in zip(tv, grads, m, v):
            mi1 = mi + (g - mi) * (1.0 - ADAM_BETA_1)
            vi1 = vi + (g * g - vi) * (1.0 - ADAM_BETA_2)
            p1 = p - mi1 * alpha / (jnp.sqrt(vi1) + ADAM_EPSILON)
            new_tv.append(jnp.where(active, p1, p))
            new_m.append(jnp.where(active, mi1, mi))
            new_v.append(jnp.where(active, vi1, vi))
        new_ntv = [jnp.where(active, a, b) for a, b in zip(new_ntv, ntv)]
        if ema_decay is not None:
            ema = [jnp.where(active, e * ema_decay + p * (1.0 - ema_decay), e) for e, p in zip(ema, new_tv)]
        return new_tv, new_ntv, new_m, new_v, t1, ema, loss * active, abs_err

    def one_predict(tv, ntv, batch, w, arrays):  # noqa: ANN001
        inputs = source.gather(arrays, batch, w) if device else batch
        return forward(tv, ntv, inputs, False)[0]

    train_axes, predict_axes = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None), (0, 0, 0, 0, None)
    options = step_compiler_options()
    if n_models > 1:
        return (jax.jit(jax.vmap(one_step, in_axes=train_axes), compiler_options=options),
                jax.jit(jax.vmap(one_predict, in_axes=predict_axes)))
    # One model: the same step without the model axis (XLA's CPU gathers and scatters run ~2x
    # slower with a batch dimension, even of size 1).
    return (jax.jit(_unbatched(one_step, train_axes), compiler_options=options),
            jax.jit(_unbatched(one_predict, predict_axes)))


CPU_STEP_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
"""XLA options for the training step on CPU: the memory-optimised schedule reuses the step's
buffers sooner, so more of its working set stays in cache (the step is bound by memory traffic
between fusions). The same operations and fusions, bit-identical results; 1-2 % less CPU per step on
one core, ~6 % with two threads on two cores (``benchmarks/bench_step_variants.py``)."""


def step_compiler_options() -> dict[str, Any] | None:
    """:data:`CPU_STEP_OPTIONS` when JAX runs on the CPU and its XLA knows them, else None (other
    backends, or a jaxlib without the option: the step compiles with XLA's defaults)."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    return CPU_STEP_OPTIONS if _xla_accepts(tuple(CPU_STEP_OPTIONS.items())) else None


@functools.cache
def _xla_accepts(options: tuple[tuple[str, Any], ...]) -> bool:
    """Whether this jaxlib compiles a trivial program with ``options`` (checked once per process)."""
    import jax

    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(np.float32(0.0)).compile()
    except Exception:  # noqa: BLE001 - an unknown option or value: fall back to the defaults
        return False
    return True


def _unbatched(fn: Callable, in_axes: tuple[int | None, ...]) -> Callable:
    """``fn`` applied to the single model of size-1 model axes (the output gets the axis back)."""
    import jax

    def call(*args: Any) -> Any:
        squeezed = [jax.tree.map(lambda a: a[0], arg) if axis == 0 else arg for arg, axis in zip(args, in_axes)]
        return jax.tree.map(lambda a: a[None], fn(*squeezed))

    return call


class _Checkpoint:
    """Atomic ``.npz`` of the whole program state (weights, optimiser, best weights, history)."""

    def __init__(self, path: Path | None, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                state = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as err:
            raise QmlrpError(f"{self.path}: unreadable checkpoint ({err}); delete it to start afresh") from None
        meta = json.loads(str(state.pop("meta")))
        if meta.get("fingerprint") != self.fingerprint:
            raise QmlrpError(f"{self.path}: checkpoint of another configuration (parameters, folds or data "
                             f"changed); delete it to start afresh")
        state["meta"] = meta
        return state

    def save(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, meta=np.array(json.dumps({**meta, "fingerprint": self.fingerprint})), **arrays)
        os.replace(tmp, self.path)


def _tree_arrays(prefix: str, tree: Sequence[Any]) -> dict[str, np.ndarray]:
    return {f"{prefix}{i}": np.asarray(a) for i, a in enumerate(tree)}


def _tree_from(state: dict[str, Any], prefix: str, n: int) -> list[Any]:
    import jax.numpy as jnp

    return [jnp.asarray(state[f"{prefix}{i}"]) for i in range(n)]


@dataclass
class _Weights:
    """The K stacked models' trainable (``tv``) and other (``ntv``) variables and Adam's state (``m``,
    ``v``, step ``t``), with the weights' moving average (``ema``, empty without ``ema_decay``)."""

    tv: list[Any]
    ntv: list[Any]
    m: list[Any]
    v: list[Any]
    t: Any
    ema: list[Any]

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, named for a checkpoint (``t``, ``tv0``, ``m3``, ...)."""
        out: dict[str, np.ndarray] = {"t": np.asarray(self.t)}
        for prefix in ("tv", "ntv", "m", "v", "ema"):
            out.update(_tree_arrays(prefix, getattr(self, prefix)))
        return out


@dataclass
class _Progress:
    """Per-model bookkeeping of a program: histories, best validation MAE (target units), its epoch and
    weights, the stop reason ("" while training) and the schedules; ``epoch`` epochs done, ``elapsed`` s."""

    histories: list[list[dict[str, float]]]
    best: list[float]
    best_epoch: list[int]
    best_weights: list[tuple[list[np.ndarray], list[np.ndarray]] | None]
    stopped: list[str]
    schedules: list[Any]
    epoch: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    """CPU-seconds of the training loop over every process so far (a resumed run adds the earlier ones')."""

    def meta(self) -> dict[str, Any]:
        """The JSON part of a checkpoint."""
        return {"epoch": self.epoch, "elapsed": self.elapsed, "cpu": self.cpu, "histories": self.histories,
                "best": self.best,
                "best_epoch": self.best_epoch, "stopped": self.stopped,
                "schedules": [s.state() for s in self.schedules]}

    def best_arrays(self) -> dict[str, np.ndarray]:
        """The best weights of each model, named for a checkpoint."""
        out: dict[str, np.ndarray] = {}
        for k, bw in enumerate(self.best_weights):
            if bw is not None:
                out.update(_tree_arrays(f"best{k}_tv", bw[0]))
                out.update(_tree_arrays(f"best{k}_ntv", bw[1]))
        return out


def _check_runs(runs: Sequence[ModelRun]) -> None:
    """One head width per program and a finite label in every training and validation set."""
    if not runs:
        raise QmlrpError("fit: no models to train")
    widths = {n_outputs_of(r) for r in runs}
    if len(widths) > 1:
        named = ", ".join(f"{r.name} {n_outputs_of(r)}" for r in runs)
        raise QmlrpError(f"fit: one program trains models of one head width, got {named}; "
                         f"use fit_grouped (one program per width)")
    if len({r.target.kind.name for r in runs}) > 1:
        raise QmlrpError("fit: one program trains targets of one kind, got "
                         + ", ".join(f"{r.name} {r.target.kind.name}" for r in runs))
    for r in runs:
        for part, positions in (("training", r.train), ("validation", r.validation)):
            if not np.any(np.isfinite(np.asarray(r.y)[positions])):
                raise QmlrpError(f"fit: {r.name} has no finite {part} label")


def _batch_source(store: FeatureStore, runs: Sequence[ModelRun], config: TrainConfig, source: str | None) -> Any:
    """Host (ragged, bucketed) or device (whole store on the accelerator) batches of the runs' labels."""
    import jax

    from qmlrp.training.batches import DeviceBatches, HostBatches

    kind = source or config.batches
    if kind == "auto":
        kind = "device" if jax.default_backend() != "cpu" else "host"
    targets = [r.y for r in runs]
    coordinates = training_of(runs[0].target).coordinates  # only host batches carry them
    if kind == "device" and not coordinates:
        return DeviceBatches(store, targets, int(config.batch_size))
    return HostBatches(store, targets, int(config.batch_size), config.xla_atom_bucket, config.xla_pair_bucket,
                       coordinates=coordinates)


def _initial_weights(models: Sequence[Any], ema_decay: float | None) -> _Weights:
    """The K freshly built models stacked along the model axis, Adam's state zero."""
    import jax.numpy as jnp

    tv = _stack([[v.value for v in m.trainable_variables] for m in models])
    ntv = _stack([[v.value for v in m.non_trainable_variables] for m in models])
    return _Weights(tv, ntv, [jnp.zeros_like(a) for a in tv], [jnp.zeros_like(a) for a in tv],
                    jnp.zeros(len(models), jnp.int32), [a for a in tv] if ema_decay is not None else [])


def _resume(state: dict[str, Any], weights: _Weights, progress: _Progress, n_tv: int, n_ntv: int,
            ema_decay: float | None) -> tuple[_Weights, _Progress]:
    """Weights and bookkeeping restored from a loaded checkpoint."""
    import jax.numpy as jnp

    meta = state["meta"]
    weights = _Weights(_tree_from(state, "tv", n_tv), _tree_from(state, "ntv", n_ntv), _tree_from(state, "m", n_tv),
                       _tree_from(state, "v", n_tv), jnp.asarray(state["t"]),
                       _tree_from(state, "ema", n_tv) if ema_decay is not None else weights.ema)
    for k in range(len(progress.best_weights)):
        if f"best{k}_tv0" in state:
            progress.best_weights[k] = ([state[f"best{k}_tv{i}"] for i in range(n_tv)],
                                        [state[f"best{k}_ntv{i}"] for i in range(n_ntv)])
    for sched, s in zip(progress.schedules, meta["schedules"]):
        sched.restore(s)
    progress.histories, progress.best = meta["histories"], meta["best"]
    progress.best_epoch, progress.stopped = meta["best_epoch"], meta["stopped"]
    progress.epoch, progress.elapsed = int(meta["epoch"]), float(meta["elapsed"])
    progress.cpu = float(meta.get("cpu", 0.0))  # checkpoints written before it was recorded: unknown, 0
    return weights, progress


def _validate(runs: Sequence[ModelRun], batches: Any, predict_step: Callable, weights: list[Any], stats: list[Any],
              batch_size: int, metric: Callable[[np.ndarray, np.ndarray], float] | None) -> np.ndarray:
    """(K,) validation metric in target units: the MAE over real (finite) labels, or ``metric`` (the kind's own,
    e.g. beta_par's MAE for mu/beta_vec) over the validation molecules; NaN for a run without any."""
    arrays = getattr(batches, "arrays", None)
    steps = max(-(-r.validation.size // batch_size) for r in runs)
    abs_sum, count = np.zeros(len(runs)), np.zeros(len(runs))
    kept: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in runs]
    for s in range(steps):
        chunks = [r.validation[s * batch_size:(s + 1) * batch_size] for r in runs]
        batch, y, w = batches.inputs(chunks)
        y, mask = masked_labels(y, w)
        pred = np.asarray(predict_step(weights, stats, batch, w, arrays))
        abs_sum += np.sum(np.abs(pred - y) * mask, axis=(1, 2))
        count += np.sum(mask, axis=(1, 2))
        if metric is not None:
            for k in range(len(runs)):
                kept[k].append((pred[k][w[k] > 0], y[k][w[k] > 0]))
    if metric is not None:
        return np.array([metric(np.concatenate([p for p, _ in kept[k]]), np.concatenate([t for _, t in kept[k]]))
                         for k in range(len(runs))])
    return np.divide(abs_sum, count, out=np.full(len(runs), np.nan), where=count > 0)


def _train_epoch(runs: Sequence[ModelRun], batches: Any, train_step: Callable, w: _Weights, progress: _Progress,
                 std_arr: Any, batch_size: int) -> tuple[_Weights, np.ndarray, np.ndarray]:
    """One epoch of every active model: ``(weights, loss sum (K,), train MAE (K,) in target units)``."""
    import jax.numpy as jnp

    arrays = getattr(batches, "arrays", None)
    k_models, epoch = len(runs), progress.epoch
    steps_per_model = [-(-r.train.size // batch_size) for r in runs]
    orders = [np.random.default_rng([r.seed, epoch]).permutation(r.train) for r in runs]
    losses, abs_errs = [], []
    counts = np.zeros(k_models)  # real labels seen per model (host side, exact)
    for s in range(max(steps_per_model)):
        chunks = [orders[k][s * batch_size:(s + 1) * batch_size] if not progress.stopped[k] else np.zeros(0, np.int64)
                  for k in range(k_models)]
        lr = np.asarray([progress.schedules[k].rate(s, epoch + s / steps_per_model[k]) for k in range(k_models)],
                        np.float32)
        batch, y, wt = batches.inputs(chunks)
        y, mask = masked_labels(y, wt)
        # Host arrays go to the compiled step as they are (its C++ dispatch transfers them): a
        # jnp.asarray per array first is Python-side work in every step, the same numbers.
        w.tv, w.ntv, w.m, w.v, w.t, w.ema, loss, abs_err = train_step(
            w.tv, w.ntv, w.m, w.v, w.t, w.ema, batch, y, wt, mask, std_arr, lr, arrays)
        losses.append(loss)
        abs_errs.append(abs_err)
        counts += mask.sum(axis=(1, 2))
    loss_sum = np.asarray(jnp.sum(jnp.stack(losses), axis=0))
    train_mae = np.asarray(jnp.sum(jnp.stack(abs_errs), axis=0)) / np.maximum(counts, 1.0)
    return w, loss_sum, train_mae


def _end_epoch(runs: Sequence[ModelRun], progress: _Progress, loss_sum: np.ndarray, train_mae: np.ndarray,
               val_mae: np.ndarray, weights: list[Any], ntv: list[Any], epoch_seconds: float,
               config: TrainConfig, on_epoch: Callable[[int, dict[str, float]], None] | None) -> None:
    """Each active model's history row, schedule step, best weights and early stopping."""
    batch_size, epoch = int(config.batch_size), progress.epoch
    for k, run in enumerate(runs):
        if progress.stopped[k]:
            continue
        steps = -(-run.train.size // batch_size)
        row = {"epoch": epoch, "loss": float(loss_sum[k] / steps), "train_mae": float(train_mae[k]),
               "val_mae": float(val_mae[k]), "learning_rate": float(progress.schedules[k].rate(0, epoch)),
               "epoch_seconds": round(epoch_seconds, 2)}
        progress.histories[k].append(row)
        progress.schedules[k].end_epoch(row["val_mae"])
        if row["val_mae"] < progress.best[k]:
            progress.best[k], progress.best_epoch[k] = row["val_mae"], epoch
            progress.best_weights[k] = (_slice(weights, k), _slice(ntv, k))
        if epoch - progress.best_epoch[k] >= config.early_stopping_patience:
            progress.stopped[k] = f"early stopping (no val_mae improvement for {config.early_stopping_patience} epochs)"
        if on_epoch is not None:
            on_epoch(k, row)


def _results(runs: Sequence[ModelRun], models: Sequence[Any], w: _Weights, progress: _Progress,
             means: Sequence[np.ndarray], stds: np.ndarray, fit_seconds: float,
             cpu_before: float = 0.0) -> list[FitResult]:
    """Each model with its best weights (the last ones if no epoch improved) and its record;
    ``cpu_before``: the training loop's CPU-seconds in earlier processes (0 unless resumed)."""
    results = []
    for k, (run, model) in enumerate(zip(runs, models)):
        bw = progress.best_weights[k] or (_slice(w.tv, k), _slice(w.ntv, k))
        for var, value in zip(model.trainable_variables, bw[0]):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, bw[1]):
            var.assign(value)
        results.append(FitResult(name=run.name, model=model, history=progress.histories[k],
                                 best_epoch=int(progress.best_epoch[k]), best_val_mae=float(progress.best[k]),
                                 epochs_run=len(progress.histories[k]),
                                 stop_reason=progress.stopped[k] or "max epochs", fit_seconds=round(fit_seconds, 1),
                                 target_mean=_statistic(means[k]), target_std=_statistic(stds[k]),
                                 cpu_seconds_before_resume=round(cpu_before, 1)))
    return results


def fit(
    store: FeatureStore,
    runs: Sequence[ModelRun],
    config: TrainConfig,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    log: bool = True,
    source: str | None = None,
) -> list[FitResult]:
    """Train ``runs`` as one program; returns one :class:`FitResult` per run, in order.

    Args:
        store: featurized molecules (positions in ``runs`` index it).
        runs: the K models (same architecture ``config.model``).
        config: hyper-parameters (``params.yaml`` section ``train``).
        checkpoint: ``.npz`` to resume from and write every ``config.checkpoint_minutes``.
        on_epoch: called with (model index, epoch row) after every epoch of every active model.
        log: one progress line per epoch on stderr.
        source: ``host`` | ``device`` (default: ``config.batches``; ``auto`` = device on a GPU).
    """
    require_jax()
    _check_runs(runs)
    batches = _batch_source(store, runs, config, source)
    built = [_build(r, store, config) for r in runs]
    training = training_of(runs[0].target)
    metric = runs[0].target.kind.metric if training.validate_by_metric else None
    program = Program(runs, [b[0] for b in built], batches, training.loss, [b[1] for b in built],
                      np.stack([b[2] for b in built]), metric)  # stds (K, T)
    return train_program(program, config, checkpoint, on_epoch, log)


def train_program(
    program: Program,
    config: TrainConfig,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    log: bool = True,
) -> list[FitResult]:
    """The loop of :func:`fit` for built models and any batch source (the autoencoder's flat vectors too):
    Adam, schedule, validation, early stopping, time limit and checkpoints as the module docstring says.
    Uses ``config``'s training fields (not ``model``, ``batches``, ``scaling_sample``)."""
    import jax.numpy as jnp

    require_jax()
    runs, models, batches = program.runs, program.models, program.batches
    k_models, batch_size = len(runs), int(config.batch_size)
    n_tv, n_ntv = len(models[0].trainable_variables), len(models[0].non_trainable_variables)
    w = _initial_weights(models, config.ema_decay)
    std_arr = jnp.asarray(program.stds, jnp.float32)
    train_step, predict_step = _compile_steps(models[0], config, batches, k_models, program.loss)
    schedules = [make_schedule(r.schedule or config.schedule, config.learning_rate, config.epochs, config.warmup_epochs,
                               config.lr_factor, config.lr_patience, config.min_learning_rate) for r in runs]
    progress = _Progress([[] for _ in runs], [math.inf] * k_models, [0] * k_models, [None] * k_models,
                         [""] * k_models, schedules)
    ckpt = _Checkpoint(Path(checkpoint) if checkpoint else None, _fingerprint(runs, config))
    state = ckpt.load()
    if state is not None:
        w, progress = _resume(state, w, progress, n_tv, n_ntv, config.ema_decay)
        if log:
            print(f"fit: resumed {k_models} model(s) at epoch {progress.epoch} from {ckpt.path}", file=sys.stderr)
    elapsed_before, cpu_before = progress.elapsed, progress.cpu
    time_limit = None if config.time_limit_minutes is None else 60.0 * float(config.time_limit_minutes)
    t_start = last_save = time.perf_counter()
    cpu_start = time.process_time()
    while progress.epoch < config.epochs and not all(progress.stopped):
        t_epoch = time.perf_counter()
        w, loss_sum, train_mae = _train_epoch(runs, batches, train_step, w, progress, std_arr, batch_size)
        weights = w.ema if config.ema_decay is not None else w.tv
        val_mae = _validate(runs, batches, predict_step, weights, w.ntv, batch_size, program.metric)
        progress.epoch += 1
        now = time.perf_counter()
        progress.elapsed = elapsed_before + now - t_start
        progress.cpu = cpu_before + time.process_time() - cpu_start
        _end_epoch(runs, progress, loss_sum, train_mae, val_mae, weights, w.ntv, now - t_epoch, config, on_epoch)
        if time_limit is not None and progress.elapsed + (now - t_epoch) > time_limit:
            progress.stopped = [s or "time limit" for s in progress.stopped]
        if log:
            parts = "  ".join(f"{r.name} {val_mae[k]:.4g}" for k, r in enumerate(runs))
            print(f"epoch {progress.epoch:4d}  {now - t_epoch:6.1f}s  val_mae: {parts}", file=sys.stderr, flush=True)
        if ckpt.path is not None and (now - last_save >= 60.0 * config.checkpoint_minutes
                                      or progress.epoch >= config.epochs or all(progress.stopped)):
            ckpt.save({**w.arrays(), **progress.best_arrays()}, progress.meta())
            last_save = time.perf_counter()
    return _results(runs, models, w, progress, program.means, program.stds,
                    elapsed_before + time.perf_counter() - t_start, cpu_before)


def _statistic(value: np.ndarray) -> float | list[float]:
    """A per-output statistic for the record: a float for a scalar head, else a list."""
    value = np.asarray(value, np.float64).reshape(-1)
    return float(value[0]) if value.size == 1 else [float(v) for v in value]


def fit_grouped(
    store: FeatureStore,
    runs: Sequence[ModelRun],
    config: TrainConfig,
    checkpoint: str | Path | None = None,
    **kwargs: Any,
) -> list[FitResult]:
    """:func:`fit` for runs of mixed head widths: one program per width (in order of first
    appearance), results in the order of ``runs``; ``on_epoch`` gets indices into ``runs``. With several programs, each
    width's checkpoint gets its own file (``program.npz`` -> ``program-n81.npz``; width 1 keeps
    the given name, so a scalar-only program resumes from the same file as before)."""
    groups: dict[int, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(n_outputs_of(run), []).append(i)
    results: list[FitResult | None] = [None] * len(runs)
    for width, members in groups.items():
        path = None
        if checkpoint is not None:
            path = Path(checkpoint)
            if width != 1 and len(groups) > 1:
                path = path.with_name(f"{path.stem}-n{width}{path.suffix}")
        on_epoch = kwargs.get("on_epoch")
        group_kwargs = dict(kwargs)
        if on_epoch is not None:
            group_kwargs["on_epoch"] = (lambda k, row, members=members: on_epoch(members[k], row))
        for i, result in zip(members, fit(store, [runs[i] for i in members], config, checkpoint=path,
                                          **group_kwargs)):
            results[i] = result
    return [r for r in results if r is not None]
