"""Stage ``train``: one target x one fold -> ``models/<target>/fold<k>.keras`` + test predictions.

Protocol (Faber et al. 2017, 10-fold cross-validation): train on the nine other folds, minus a
seeded ``validation_fraction`` held out for early stopping and the learning-rate schedule; test on
the fold. Choices where the papers are silent or we deviate (all in ``params.yaml`` ``train``):

* Loss on the *standardised* target (training-split mean/sd), MAE by default: the reported metric
  is MAE, and L1 is robust to the few QM9 outliers; ``mse`` and ``huber`` are available.
* Adam (Kearnes et al. 2016 used Adam too), learning rate 1e-3 by default, halved when the
  validation MAE has not improved for ``lr_patience`` epochs (reduce-on-plateau: no schedule
  length to tune as the data size changes), floor ``min_learning_rate``.
* Early stopping on validation MAE with ``early_stopping_patience``; the best epoch's weights are
  restored before saving and testing. ``time_limit_minutes`` stops cleanly between epochs.
* Batch size 64 molecules (ragged: ~1150 atoms, ~10k pairs per step).
* ``xla`` compiles the training step with XLA (TensorFlow); batches are then padded to bucketed
  sizes (``xla_atom_bucket``, ``xla_pair_bucket``) so that only a handful of shapes are compiled.
  ``auto`` (default) turns it on from ``xla_min_molecules`` training molecules: for full QM9 the
  one-off compiles (~1 min) buy ~1.5x less CPU per epoch; for the small default they would
  dominate. The JAX backend always gets padded batches (it compiles per shape).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv, write_json
from qmlrp.models.gc import build_model
from qmlrp.models.io import inference_function, model_path, save_model
from qmlrp.paths import FEATURES, FOLDS, MODELS, QM9_TABLE
from qmlrp.training.config import DVCLIVE, RESULTS, TrainConfig, get_target
from qmlrp.training.data import BatchStream, Padding, feature_sample, load_targets, make_split



@keras.saving.register_keras_serializable(package="qmlrp")
class StandardizedLoss(keras.losses.Loss):
    """MAE/MSE/Huber of ``(y_pred - y_true) / scale``: the loss on the standardised target while
    the model itself returns the target's units. Shapes (n, 1)."""

    def __init__(self, kind: str = "mae", scale: float = 1.0, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or f"standardized_{kind}", **kwargs)
        self.kind = kind
        self.scale = float(scale)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        d = (y_pred - y_true) / self.scale
        if self.kind == "mae":
            per = keras.ops.abs(d)
        elif self.kind == "mse":
            per = keras.ops.square(d)
        else:  # huber with delta 1 standard deviation
            a = keras.ops.abs(d)
            per = keras.ops.where(a <= 1.0, 0.5 * keras.ops.square(d), a - 0.5)
        return keras.ops.mean(per, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(kind=self.kind, scale=self.scale)
        return config


class TrainingMonitor(keras.callbacks.Callback):
    """Early stopping on ``val_mae`` keeping the best weights, a wall-clock limit, and logging of
    every epoch to dvclive and to stderr."""

    def __init__(self, live: Any, patience: int, time_limit_s: float | None, log: bool = True) -> None:
        super().__init__()
        self.live = live
        self.patience = patience
        self.time_limit_s = time_limit_s
        self.log = log
        self.best = math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.epochs_run = 0
        self.stop_reason = "max epochs"
        self.history: list[dict[str, float]] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()
        self.epoch_start = self.start

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        now = time.perf_counter()
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", math.nan)),
            "train_mae": float(logs.get("mae", math.nan)),
            "val_mae": float(logs.get("val_mae", math.nan)),
            "learning_rate": lr,
            "epoch_seconds": now - self.epoch_start,
        }
        self.history.append(row)
        self.epochs_run = epoch + 1
        if self.live is not None:
            for key in ("loss", "train_mae", "val_mae", "learning_rate", "epoch_seconds"):
                self.live.log_metric(key, row[key])
            self.live.next_step()
        if row["val_mae"] < self.best:
            self.best, self.best_epoch = row["val_mae"], epoch + 1
            self.best_weights = self.model.get_weights()
        if self.log:
            print(
                f"epoch {epoch + 1:4d}  loss {row['loss']:.4f}  train_mae {row['train_mae']:.5g}  "
                f"val_mae {row['val_mae']:.5g}  lr {lr:.2e}  {row['epoch_seconds']:.1f}s",
                file=sys.stderr,
                flush=True,
            )
        if epoch + 1 - self.best_epoch >= self.patience:
            self.stop_reason = f"early stopping (no val_mae improvement for {self.patience} epochs)"
            self.model.stop_training = True
        elif self.time_limit_s is not None and now - self.start + row["epoch_seconds"] > self.time_limit_s:
            self.stop_reason = "time limit"
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def open_live(live_dir: str | Path, target: str, fold: int, metadata: dict[str, Any]) -> Any:
    """dvclive logger for ``live_dir/<target>/fold<k>`` (no DVC experiment, no dvc.yaml edits).

    dvclive 3.x raises in a Git repository without commits (``scm.get_rev()``); training then goes
    on without it (``results/.../history.csv`` holds the same curves) after a warning.
    """
    from dvclive import Live

    try:
        live = Live(dir=str(Path(live_dir) / target / f"fold{fold}"), save_dvc_exp=False, dvcyaml=False)
    except Exception as err:  # noqa: BLE001 - dvclive/scmrepo errors have no common base class
        print(f"warning: dvclive disabled ({err.__class__.__name__}: {err})", file=sys.stderr)
        return None
    live.log_params(metadata)
    return live


def predict_positions(model: keras.Model, store: FeatureStore, positions: np.ndarray, batch_size: int) -> np.ndarray:
    """(len(positions),) predictions in target units, in the order of ``positions``."""
    stream = BatchStream(store, positions, None, batch_size=batch_size)
    forward = inference_function(model)
    out = [forward(inputs) for inputs, _ in stream]
    return np.concatenate(out) if out else np.zeros(0)


def train_fold(
    target_name: str,
    fold: int,
    params_path: str | Path = "params.yaml",
    features: str | Path = FEATURES,
    table: str | Path = QM9_TABLE,
    folds_path: str | Path = FOLDS,
    models_dir: str | Path = MODELS,
    results_dir: str | Path = RESULTS,
    live_dir: str | Path | None = DVCLIVE,
    config: TrainConfig | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """Train one model; write the model, test predictions and a run summary. Returns the summary.

    Outputs: ``models_dir/<target>/fold<k>.keras``; ``results_dir/<target>/fold<k>/predictions.csv``
    (id, y_true, y_pred in target units) and ``run.json``; dvclive logs in
    ``live_dir/<target>/fold<k>/`` (skipped when ``live_dir`` is None).
    """
    config = config or TrainConfig.load(params_path)
    target = get_target(target_name)
    t0 = time.perf_counter()
    keras.utils.set_random_seed(int(config.seed) + int(fold))
    store = FeatureStore.open(features)
    y = load_targets(store, table, target)
    split = make_split(store, folds_path, fold, config.validation_fraction, config.seed, config.max_train_molecules)
    mean, std = float(np.mean(y[split.train])), float(np.std(y[split.train]))

    metadata = {
        "target": target.name,
        "column": target.column,
        "units": target.units,
        "fold": int(fold),
        "n_train": int(split.train.size),
        "n_validation": int(split.validation.size),
        "n_test": int(split.test.size),
    }
    model = build_model(config.model, metadata=metadata)
    model.head.target_scaling.set_statistics(mean, std)
    model.input_layer.adapt(*feature_sample(store, split.train, config.scaling_sample, config.seed))
    # JAX compiles every step for its input shapes: it always gets bucket-padded batches.
    static = config.use_xla(split.train.size) or keras.backend.backend() == "jax"
    padding = Padding(config.xla_atom_bucket, config.xla_pair_bucket) if static else None
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=StandardizedLoss(config.loss, std),
        weighted_metrics=[keras.metrics.MeanAbsoluteError(name="mae")],
        jit_compile=static,
    )
    train_ds = BatchStream(store, split.train, y, config.batch_size, shuffle=True, seed=config.seed + fold,
                           padding=padding).to_backend_dataset()
    val_ds = BatchStream(store, split.validation, y, config.batch_size, padding=padding).to_backend_dataset()

    live = open_live(live_dir, target.name, fold, metadata) if live_dir is not None else None
    time_limit = None if config.time_limit_minutes is None else 60.0 * float(config.time_limit_minutes)
    monitor = TrainingMonitor(live, config.early_stopping_patience, time_limit, log=log)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_mae", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_learning_rate
    )
    t_fit = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=[plateau, monitor], verbose=0, shuffle=False)
    fit_seconds = time.perf_counter() - t_fit

    path = model_path(models_dir, target.name, fold)
    save_model(model, path)
    y_pred = predict_positions(model, store, split.test, config.batch_size)
    y_true = y[split.test]
    test_mae = float(np.mean(np.abs(y_pred - y_true)))
    run_dir = Path(results_dir) / target.name / f"fold{fold}"
    write_csv(pd.DataFrame({"id": store.ids[split.test], "y_true": y_true, "y_pred": y_pred}), run_dir / "predictions.csv")
    summary = {
        **metadata,
        "test_mae": test_mae,
        "best_val_mae": float(monitor.best),
        "best_epoch": int(monitor.best_epoch),
        "epochs_run": int(monitor.epochs_run),
        "stop_reason": monitor.stop_reason,
        "fit_seconds": round(fit_seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "train_molecules_per_second": round(split.train.size * monitor.epochs_run / fit_seconds, 1),
        "xla": bool(static),
        "target_mean": mean,
        "target_std": std,
        "model": str(path),
    }
    write_json(summary, run_dir / "run.json")
    write_csv(pd.DataFrame(monitor.history), run_dir / "history.csv")
    if live is not None:
        live.summary.update({"test_mae": test_mae, "best_epoch": int(monitor.best_epoch)})
        live.end()
    if log:
        print(json.dumps({k: summary[k] for k in ("target", "fold", "test_mae", "best_epoch", "epochs_run", "fit_seconds")}),
              file=sys.stderr)
    return summary
