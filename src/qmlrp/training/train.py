"""Stage ``train`` (one target x one fold) and the study's program (many of them at once).

Protocol (Faber et al. 2017, 10-fold cross-validation): train on the nine other folds, minus a
seeded ``validation_fraction`` held out for early stopping and the learning-rate schedule; test on
the fold. The loop itself is :func:`qmlrp.training.engine.fit`; this module turns folds into
:class:`ModelRun` s and writes what a run leaves behind:

* ``models/<target>/fold<k>.npz`` -- the weights (:func:`qmlrp.models.io.save_model`);
* ``results/<target>/fold<k>/predictions.csv`` (id, y_true, y_pred in target units) for a scalar
  target, ``predictions.parquet`` for a vector one (id, n_modes, y_true and y_pred as lists of 81
  float64, y_true NaN-padded; frequencies in cm^-1, highest first), ``history.csv`` (one row per
  epoch) and ``run.json`` (test MAE -- over real entries only --, epochs, time, hardware);
* ``dvclive/<target>/fold<k>/`` -- the learning curves as dvclive logs.

Choices where the papers are silent (all in ``params.yaml`` ``train``): the loss is the MAE of the
standardised target (the reported metric is MAE; L1 is robust to QM9's few outliers); Adam;
``schedule`` plateau (halve on a plateau) or cosine (warm-up + cosine decay); early stopping on the
validation MAE with the best epoch's weights kept; batch size 64 molecules (~1150 atoms, ~10k pairs).
Runs of different head widths (scalar targets, the 81 frequencies) are trained as one program per
width (:func:`qmlrp.training.engine.fit_grouped`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv, write_json, write_parquet
from qmlrp.paths import FEATURES, FOLDS, MODELS, QM9_TABLE
from qmlrp.training.config import DVCLIVE, RESULTS, TrainConfig
from qmlrp.targets import get_target
from qmlrp.data.split import Split, make_split
from qmlrp.targets.labels import load_labels
from qmlrp.training.engine import FitResult, ModelRun, fit_grouped
from qmlrp.targets.spectra import masked_mae


def code_version() -> dict[str, Any]:
    """The git commit of the code that runs (``commit``; ``code_modified`` when ``src/`` differs from it),
    or ``{}`` outside a git checkout."""
    import subprocess

    src = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True, text=True,
                               timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "code_modified": bool(dirty)}


def hardware() -> dict[str, Any]:
    """Where a run ran: CPU model and count, accelerator (JAX's view)."""
    import jax

    devices = jax.devices()
    return {"platform": jax.default_backend(), "devices": [d.device_kind for d in devices],
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "jax": jax.__version__}


def fold_run(store: FeatureStore, table: str | Path, folds_path: str | Path, target_name: str, fold: int,
             config: TrainConfig, tag: str = "") -> tuple[ModelRun, Split]:
    """The :class:`ModelRun` of ``target_name`` tested on ``fold`` (and its split)."""
    target = get_target(target_name)
    y = load_labels(store, table, target)
    split = make_split(store, folds_path, fold, config.validation_fraction, config.seed, config.max_train_molecules)
    metadata = {"target": target.name, "column": target.column, "units": target.units, "fold": int(fold),
                "n_train": int(split.train.size), "n_validation": int(split.validation.size),
                "n_test": int(split.test.size), "architecture": asdict(config.model)}
    name = f"{target.name}/fold{fold}" + (f"/{tag}" if tag else "")
    return ModelRun(name, target, y, split.train, split.validation, int(config.seed) + int(fold), metadata), split


def predict_positions(model: Any, store: FeatureStore, positions: np.ndarray, batch_size: int) -> np.ndarray:
    """Predictions in target units, in the order of ``positions``: (len(positions),) for a scalar
    head, (len(positions), n_outputs) for a vector head."""
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import inference_function

    forward = inference_function(model)
    out = [forward(batch_to_inputs(store.batch(positions[s:s + batch_size])))
           for s in range(0, positions.size, batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


def write_predictions(ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, run_dir: Path) -> None:
    """``predictions.csv`` (id, y_true, y_pred) for (n,) labels; ``predictions.parquet`` (id int64,
    n_modes, y_true and y_pred as float64 lists of T values, y_true NaN-padded) for (n, T)."""
    if np.ndim(y_true) == 1:
        write_csv(pd.DataFrame({"id": ids, "y_true": y_true, "y_pred": y_pred}), run_dir / "predictions.csv")
        return
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    write_parquet(pa.table({
        "id": pa.array(np.asarray(ids, np.int64)),
        "n_modes": pa.array(np.isfinite(y_true).sum(axis=1).astype(np.int64)),
        "y_true": pa.array(list(y_true), pa.list_(pa.float64())),
        "y_pred": pa.array(list(y_pred), pa.list_(pa.float64())),
    }), run_dir / "predictions.parquet")


def write_run(result: FitResult, run: ModelRun, split: Split, store: FeatureStore, config: TrainConfig,
              model_file: Path, run_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save the model, predict the test fold with the saved file, write predictions/history/run.json.

    ``test_mae`` is the published (float16-kernel) model's; ``test_mae_float32_weights`` the same
    model before rounding, so that the cost of the compact format is on record."""
    from qmlrp.models.io import load_model, save_model

    save_model(result.model, model_file)
    # The record is the published file's: predict with the model as loaded back (float16 kernels).
    y_pred = predict_positions(load_model(model_file), store, split.test, 256)
    y_true = run.y[split.test]
    test_mae = masked_mae(y_pred, y_true)
    y_full = predict_positions(result.model, store, split.test, 256)
    test_mae_float32 = masked_mae(y_full, y_true)
    write_predictions(store.ids[split.test], y_true, y_pred, run_dir)
    unlabelled = int(np.sum(~np.any(np.isfinite(np.asarray(y_true).reshape(len(y_true), -1)), axis=1)))
    write_csv(pd.DataFrame(result.history), run_dir / "history.csv")
    epochs = max(result.epochs_run, 1)
    summary = {
        **{k: v for k, v in run.metadata.items() if k != "architecture"},
        "test_mae": test_mae,
        "test_mae_float32_weights": test_mae_float32,
        **({"n_test_unlabelled": unlabelled} if unlabelled else {}),
        "model_bytes": model_file.stat().st_size,
        "best_val_mae": result.best_val_mae,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason,
        "schedule": config.schedule,
        "fit_seconds": result.fit_seconds,
        "seconds_per_epoch": round(result.fit_seconds / epochs, 2),
        "target_mean": result.target_mean,
        "target_std": result.target_std,
        "model": str(model_file),
        **(extra or {}),
    }
    write_json(summary, run_dir / "run.json")
    return summary


def _live_logger(live_dir: Path | None, runs: Sequence[ModelRun]) -> tuple[Any, list[Any]]:
    """dvclive loggers, one per run (None where dvclive cannot start, e.g. a Git repo without commits)."""
    if live_dir is None:
        return None, []
    from dvclive import Live

    lives = []
    for run in runs:
        try:
            live = Live(dir=str(Path(live_dir) / run.name), save_dvc_exp=False, dvcyaml=False)
            live.log_params({k: v for k, v in run.metadata.items() if k != "architecture"})
        except Exception as err:  # noqa: BLE001 - dvclive/scmrepo errors have no common base class
            print(f"warning: dvclive disabled for {run.name} ({err.__class__.__name__}: {err})", file=sys.stderr)
            live = None
        lives.append(live)

    def on_epoch(k: int, row: dict[str, float]) -> None:
        if lives[k] is not None:
            for key in ("loss", "train_mae", "val_mae", "learning_rate", "epoch_seconds"):
                lives[k].log_metric(key, row[key])
            lives[k].next_step()

    return on_epoch, lives


def train_program(
    jobs: Sequence[tuple[str, int]],
    config: TrainConfig,
    features: str | Path = FEATURES,
    table: str | Path = QM9_TABLE,
    folds_path: str | Path = FOLDS,
    models_dir: str | Path = MODELS,
    results_dir: str | Path = RESULTS,
    live_dir: str | Path | None = DVCLIVE,
    checkpoint: str | Path | None = None,
    log: bool = True,
) -> list[dict[str, Any]]:
    """Train every ``(target, fold)`` of ``jobs`` in one program; write each run; the summaries."""
    from qmlrp.errors import QmlrpError
    from qmlrp.targets import vector_targets

    vector = sorted({t for t, _ in jobs if t in vector_targets()})
    if vector:
        command = "train-alpha-tensor" if vector[0] == "alpha_tensor" else "train-beta-vector"
        raise QmlrpError(f"target {vector[0]!r} is trained by `qmlrp {command} --fold K` "
                         "(the equivariant model), not by `qmlrp train`")
    t0, cpu0 = time.perf_counter(), time.process_time()
    store = FeatureStore.open(features)
    pairs = [fold_run(store, table, folds_path, target, fold, config) for target, fold in jobs]
    runs = [p[0] for p in pairs]
    on_epoch, lives = _live_logger(Path(live_dir) if live_dir is not None else None, runs)
    results = fit_grouped(store, runs, config, checkpoint=checkpoint, on_epoch=on_epoch, log=log)
    where, version = hardware(), code_version()
    summaries = []
    for (target, fold), result, (run, split) in zip(jobs, results, pairs):
        from qmlrp.models.io import model_path

        summary = write_run(result, run, split, store, config, model_path(models_dir, target, fold),
                            Path(results_dir) / target / f"fold{fold}",
                            {"models_in_program": len(runs), "hardware": where, **version,
                             "total_seconds": round(time.perf_counter() - t0, 1),
                             # this process and, for a resumed run, the earlier ones' training loops
                             "process_cpu_seconds": round(time.process_time() - cpu0 + result.cpu_seconds_before_resume, 1),
                             "cpu_seconds_before_resume": result.cpu_seconds_before_resume})
        summaries.append(summary)
    if checkpoint is not None:  # the run is written: a finished program is never resumed
        Path(checkpoint).unlink(missing_ok=True)
    for live, summary in zip(lives, summaries):
        if live is not None:
            live.summary.update({"test_mae": summary["test_mae"], "best_epoch": summary["best_epoch"]})
            live.end()
    if log:
        for s in summaries:
            print(json.dumps({k: s[k] for k in ("target", "fold", "test_mae", "best_epoch", "epochs_run",
                                                "fit_seconds")}), file=sys.stderr)
    return summaries


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
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Train one model (the per-fold DVC stage); returns its summary. With ``checkpoint``, the run
    resumes from it after an interruption (written every ``train.checkpoint_minutes``, removed
    once the run is written)."""
    config = config or TrainConfig.load(params_path)
    return train_program([(target_name, int(fold))], config, features, table, folds_path, models_dir,
                         results_dir, live_dir, checkpoint=checkpoint, log=log)[0]


def with_overrides(config: TrainConfig, **values: Any) -> TrainConfig:
    """``config`` with some fields replaced (e.g. a schedule variant)."""
    return replace(config, **values)
