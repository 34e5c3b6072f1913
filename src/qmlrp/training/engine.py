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
from qmlrp.training.schedule import make_schedule

ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7
"""Keras' Adam defaults."""


@dataclass(frozen=True)
class ModelRun:
    """One model of a program.

    Attributes:
        name: e.g. ``alpha/fold0``.
        target: what it learns (column and units).
        y: target values indexed by store position (target units): (len(store),) for a scalar
            target, (len(store), n_outputs) for a vector one (NaN = padding, masked out).
        train, validation: store positions.
        seed: initial weights and batch order (``train.seed + fold`` in the stages).
        metadata: saved with the model (target, fold, sizes, ...).
        schedule: this model's learning-rate schedule (default: ``config.schedule``), so that
            schedules can be compared inside one program.
    """

    name: str
    target: Target
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


def _build(run: ModelRun, store: FeatureStore, config: TrainConfig) -> tuple[Any, np.ndarray, np.ndarray]:
    import keras

    from qmlrp.models.gc import build_model
    from qmlrp.training.batches import feature_sample

    keras.utils.set_random_seed(int(run.seed))
    width = n_outputs_of(run)
    model = build_model(config.model, metadata=run.metadata, n_outputs=width)
    mean, std = target_statistics(run.y[run.train])
    model.head.target_scaling.set_statistics(mean, std)
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


def _compile_steps(template: Any, config: TrainConfig, source: Any, n_models: int) -> tuple[Callable, Callable]:
    """(train_step, predict_step), both jitted and vmapped over the model axis."""
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
        d = (pred - y) / std
        if kind == "mae":
            per = jnp.abs(d)
        elif kind == "mse":
            per = d * d
        else:
            a = jnp.abs(d)
            per = jnp.where(a <= 1.0, 0.5 * d * d, a - 0.5)
        n = jnp.maximum(jnp.sum(w), 1.0)
        return jnp.sum(per * w) / n, (new_ntv, jnp.sum(jnp.abs(pred - y) * w))

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
    if n_models > 1:
        return jax.jit(jax.vmap(one_step, in_axes=train_axes)), jax.jit(jax.vmap(one_predict, in_axes=predict_axes))
    # One model: the same step without the model axis (XLA's CPU gathers and scatters run ~2x
    # slower with a batch dimension, even of size 1).
    return jax.jit(_unbatched(one_step, train_axes)), jax.jit(_unbatched(one_predict, predict_axes))


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
    import jax
    import jax.numpy as jnp

    from qmlrp.training.batches import DeviceBatches, HostBatches

    require_jax()
    if not runs:
        raise QmlrpError("fit: no models to train")
    widths = {n_outputs_of(r) for r in runs}
    if len(widths) > 1:
        named = ", ".join(f"{r.name} {n_outputs_of(r)}" for r in runs)
        raise QmlrpError(f"fit: one program trains models of one head width, got {named}; "
                         f"use fit_grouped (one program per width)")
    for r in runs:
        for part, positions in (("training", r.train), ("validation", r.validation)):
            if not np.any(np.isfinite(np.asarray(r.y)[positions])):
                raise QmlrpError(f"fit: {r.name} has no finite {part} label")
    k_models, batch_size = len(runs), int(config.batch_size)
    kind = source or config.batches
    if kind == "auto":
        kind = "device" if jax.default_backend() != "cpu" else "host"
    targets = [r.y for r in runs]
    batches: Any = (DeviceBatches(store, targets, batch_size) if kind == "device"
                    else HostBatches(store, targets, batch_size, config.xla_atom_bucket, config.xla_pair_bucket))
    arrays = getattr(batches, "arrays", None)

    built = [_build(r, store, config) for r in runs]
    models = [b[0] for b in built]
    means = [b[1] for b in built]
    stds = np.stack([b[2] for b in built])  # (K, T)
    template = models[0]
    n_tv, n_ntv = len(template.trainable_variables), len(template.non_trainable_variables)
    tv = _stack([[v.value for v in m.trainable_variables] for m in models])
    ntv = _stack([[v.value for v in m.non_trainable_variables] for m in models])
    m_state = [jnp.zeros_like(a) for a in tv]
    v_state = [jnp.zeros_like(a) for a in tv]
    t_state = jnp.zeros(k_models, jnp.int32)
    ema = [a for a in tv] if config.ema_decay is not None else []
    std_arr = jnp.asarray(stds, jnp.float32)
    train_step, predict_step = _compile_steps(template, config, batches, k_models)

    schedules = [make_schedule(r.schedule or config.schedule, config.learning_rate, config.epochs, config.warmup_epochs,
                               config.lr_factor, config.lr_patience, config.min_learning_rate) for r in runs]
    histories: list[list[dict[str, float]]] = [[] for _ in runs]
    best = [math.inf] * k_models
    best_epoch = [0] * k_models
    best_weights: list[tuple[list[np.ndarray], list[np.ndarray]] | None] = [None] * k_models
    stopped = [""] * k_models
    start_epoch, elapsed_before = 0, 0.0

    ckpt = _Checkpoint(Path(checkpoint) if checkpoint else None, _fingerprint(runs, config))
    state = ckpt.load()
    if state is not None:
        meta = state["meta"]
        tv, ntv = _tree_from(state, "tv", n_tv), _tree_from(state, "ntv", n_ntv)
        m_state, v_state = _tree_from(state, "m", n_tv), _tree_from(state, "v", n_tv)
        t_state = jnp.asarray(state["t"])
        if config.ema_decay is not None:
            ema = _tree_from(state, "ema", n_tv)
        for k in range(k_models):
            if f"best{k}_tv0" in state:
                best_weights[k] = ([state[f"best{k}_tv{i}"] for i in range(n_tv)],
                                   [state[f"best{k}_ntv{i}"] for i in range(n_ntv)])
        histories, best, best_epoch, stopped = meta["histories"], meta["best"], meta["best_epoch"], meta["stopped"]
        for sched, s in zip(schedules, meta["schedules"]):
            sched.restore(s)
        start_epoch, elapsed_before = int(meta["epoch"]), float(meta["elapsed"])
        if log:
            print(f"fit: resumed {k_models} model(s) at epoch {start_epoch} from {ckpt.path}", file=sys.stderr)

    def save_checkpoint(epoch: int, elapsed: float) -> None:
        arrays_out: dict[str, np.ndarray] = {"t": np.asarray(t_state)}
        for prefix, tree in (("tv", tv), ("ntv", ntv), ("m", m_state), ("v", v_state), ("ema", ema)):
            arrays_out.update(_tree_arrays(prefix, tree))
        for k, bw in enumerate(best_weights):
            if bw is not None:
                arrays_out.update(_tree_arrays(f"best{k}_tv", bw[0]))
                arrays_out.update(_tree_arrays(f"best{k}_ntv", bw[1]))
        ckpt.save(arrays_out, {"epoch": epoch, "elapsed": elapsed, "histories": histories, "best": best,
                               "best_epoch": best_epoch, "stopped": stopped,
                               "schedules": [s.state() for s in schedules]})

    def validate(weights: list[Any], stats: list[Any]) -> np.ndarray:
        """(K,) validation MAE in target units, over real (finite) labels only."""
        steps = max(-(-r.validation.size // batch_size) for r in runs)
        abs_sum, count = np.zeros(k_models), np.zeros(k_models)
        for s in range(steps):
            chunks = [r.validation[s * batch_size:(s + 1) * batch_size] for r in runs]
            batch, y, w = batches.inputs(chunks)
            y, mask = masked_labels(y, w)
            pred = np.asarray(predict_step(weights, stats, batch, jnp.asarray(w), arrays))
            abs_sum += np.sum(np.abs(pred - y) * mask, axis=(1, 2))
            count += np.sum(mask, axis=(1, 2))
        return abs_sum / count

    time_limit = None if config.time_limit_minutes is None else 60.0 * float(config.time_limit_minutes)
    t_start = time.perf_counter()
    last_save = t_start
    epoch = start_epoch
    steps_per_model = [-(-r.train.size // batch_size) for r in runs]
    while epoch < config.epochs and not all(stopped):
        t_epoch = time.perf_counter()
        orders = [np.random.default_rng([r.seed, epoch]).permutation(r.train) for r in runs]
        n_steps = max(steps_per_model)
        losses, abs_errs = [], []
        counts = np.zeros(k_models)  # real labels seen per model (host side, exact)
        for s in range(n_steps):
            chunks = [orders[k][s * batch_size:(s + 1) * batch_size] if not stopped[k] else np.zeros(0, np.int64)
                      for k in range(k_models)]
            lr = jnp.asarray([schedules[k].rate(s, epoch + s / steps_per_model[k]) for k in range(k_models)],
                             jnp.float32)
            batch, y, w = batches.inputs(chunks)
            y, mask = masked_labels(y, w)
            tv, ntv, m_state, v_state, t_state, ema, loss, abs_err = train_step(
                tv, ntv, m_state, v_state, t_state, ema, batch, jnp.asarray(y), jnp.asarray(w), jnp.asarray(mask),
                std_arr, lr, arrays)
            losses.append(loss)
            abs_errs.append(abs_err)
            counts += mask.sum(axis=(1, 2))
        loss_sum = np.asarray(jnp.sum(jnp.stack(losses), axis=0))
        train_mae = np.asarray(jnp.sum(jnp.stack(abs_errs), axis=0)) / np.maximum(counts, 1.0)
        weights = ema if config.ema_decay is not None else tv
        val_mae = validate(weights, ntv)
        epoch += 1
        now = time.perf_counter()
        elapsed = elapsed_before + now - t_start
        for k, run in enumerate(runs):
            if stopped[k]:
                continue
            row = {"epoch": epoch, "loss": float(loss_sum[k] / steps_per_model[k]), "train_mae": float(train_mae[k]),
                   "val_mae": float(val_mae[k]), "learning_rate": float(schedules[k].rate(0, epoch)),
                   "epoch_seconds": round(now - t_epoch, 2)}
            histories[k].append(row)
            schedules[k].end_epoch(row["val_mae"])
            if row["val_mae"] < best[k]:
                best[k], best_epoch[k] = row["val_mae"], epoch
                best_weights[k] = (_slice(weights, k), _slice(ntv, k))
            if epoch - best_epoch[k] >= config.early_stopping_patience:
                stopped[k] = f"early stopping (no val_mae improvement for {config.early_stopping_patience} epochs)"
            if on_epoch is not None:
                on_epoch(k, row)
        if time_limit is not None and elapsed + (now - t_epoch) > time_limit:
            stopped = [s or "time limit" for s in stopped]
        if log:
            parts = "  ".join(f"{r.name} {val_mae[k]:.4g}" for k, r in enumerate(runs))
            print(f"epoch {epoch:4d}  {now - t_epoch:6.1f}s  val_mae: {parts}", file=sys.stderr, flush=True)
        if ckpt.path is not None and (now - last_save >= 60.0 * config.checkpoint_minutes
                                      or epoch >= config.epochs or all(stopped)):
            save_checkpoint(epoch, elapsed)
            last_save = time.perf_counter()
    fit_seconds = elapsed_before + time.perf_counter() - t_start

    results = []
    for k, (run, model) in enumerate(zip(runs, models)):
        bw = best_weights[k] or (_slice(tv, k), _slice(ntv, k))
        for var, value in zip(model.trainable_variables, bw[0]):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, bw[1]):
            var.assign(value)
        results.append(FitResult(name=run.name, model=model, history=histories[k], best_epoch=int(best_epoch[k]),
                                 best_val_mae=float(best[k]), epochs_run=len(histories[k]),
                                 stop_reason=stopped[k] or "max epochs", fit_seconds=round(fit_seconds, 1),
                                 target_mean=_statistic(means[k]), target_std=_statistic(stds[k])))
    return results


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
