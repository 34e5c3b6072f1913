"""``qmlrp train-alpha-tensor --fold K``: the equivariant polarizability-tensor model (issue 18 item 6).

Per fold (the folds of ``train_beta``, ``data/beta/folds.parquet``; the same seeded validation split):

* the Weave trunk with the tensor head (:mod:`qmlrp.models.tensor_head`), trained by
  :func:`qmlrp.training.engine.fit` (resumable from ``scratch/checkpoints/alpha_tensor-fold<k>.npz``)
  -> ``models/alpha_tensor/fold<k>.npz``, ``results/alpha_tensor/fold<k>/{predictions.parquet, history.csv,
  run.json}``;
* the equivariant linear baseline (:mod:`qmlrp.training.tensor_linear`) ->
  ``results/alpha_tensor_linear/fold<k>/{predictions.parquet, run.json}``.

``predictions.parquet``: id, y_true, y_pred as lists of 6 float64 ``(xx, yy, zz, xy, xz, yz)`` (a.u., QM9
frame), and the derived ``isotropic_true/pred``, ``anisotropy_true/pred``. ``run.json`` holds
:func:`qmlrp.targets.tensors.tensor_metrics` (MAE and MAD of the isotropic alpha, the anisotropy, each
component, and the Frobenius error). Settings: ``train`` with ``train_alpha_tensor`` laid over it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qmlrp.features.store import FeatureStore
from qmlrp.io import write_json, write_parquet
from qmlrp.paths import MODELS, dataset_paths
from qmlrp.targets import get_target
from qmlrp.targets.labels import load_labels
from qmlrp.targets.tensors import anisotropy, isotropic, tensor_metrics
from qmlrp.training.config import RESULTS, TrainConfig
from qmlrp.training.equivariant_fold import fit_equivariant_fold
from qmlrp.training.vector_stage import stage_config

TARGET = "alpha_tensor"
LINEAR = "alpha_tensor_linear"
SECTION = "train_alpha_tensor"


def write_tensor_predictions(ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: Path) -> None:
    """``predictions.parquet``: id, y_true, y_pred (lists of 6, a.u.), isotropic_true/pred, anisotropy_true/pred."""
    write_parquet(pa.table({
        "id": pa.array(np.asarray(ids, np.int64)),
        "y_true": pa.array(list(np.asarray(y_true, np.float64)), pa.list_(pa.float64())),
        "y_pred": pa.array(list(np.asarray(y_pred, np.float64)), pa.list_(pa.float64())),
        "isotropic_true": pa.array(isotropic(y_true)), "isotropic_pred": pa.array(isotropic(y_pred)),
        "anisotropy_true": pa.array(anisotropy(y_true)), "anisotropy_pred": pa.array(anisotropy(y_pred)),
    }), path)


def train_tensor_fold(fold: int, params_path: str | Path = "params.yaml", models_dir: str | Path = MODELS,
                      results_dir: str | Path = RESULTS, config: TrainConfig | None = None,
                      checkpoint: str | Path | None = None, log: bool = True, features: str | Path | None = None,
                      folds: str | Path | None = None, labels: str | Path | None = None) -> dict[str, Any]:
    """Train and test the tensor model and its linear baseline on ``fold``; returns the model's run summary.
    ``features``, ``folds``, ``labels`` default to ``data/beta`` and ``beta_data.labels``."""
    from qmlrp.data.split import make_split
    from qmlrp.training.tensor_linear import fit_linear_tensor, tensor_descriptors

    stage, stage_labels = stage_config(params_path, section=SECTION)
    config = config or stage
    _, default_features, default_folds = dataset_paths("beta")
    store = FeatureStore.open(features or default_features)
    target = get_target(TARGET)
    y = load_labels(store, labels or stage_labels, target)
    split = make_split(store, folds or default_folds, int(fold), config.validation_fraction, config.seed,
                       config.max_train_molecules)
    ids_test, y_test = store.ids[split.test], y[split.test]

    s, d = tensor_descriptors(store, np.arange(len(store)))
    linear = fit_linear_tensor((s[split.train], d[split.train]), y[split.train],
                               (s[split.validation], d[split.validation]), y[split.validation])
    y_lin = linear.predict(s[split.test], d[split.test])
    lin_metrics = tensor_metrics(y_test, y_lin)
    lin_dir = Path(results_dir) / LINEAR / f"fold{fold}"
    write_tensor_predictions(ids_test, y_test, y_lin, lin_dir / "predictions.parquet")
    write_json({"target": LINEAR, "fold": int(fold), "penalties": list(linear.penalties), **lin_metrics},
               lin_dir / "run.json")

    metadata = {"target": TARGET, "units": "a.u.", "fold": int(fold), "components": ["xx", "yy", "zz", "xy", "xz", "yz"],
                "frame": "QM9 coordinates (Angstrom)", "n_train": int(split.train.size),
                "n_validation": int(split.validation.size), "n_test": int(split.test.size),
                "architecture": asdict(config.model)}
    trained = fit_equivariant_fold(store, target, y, split, config, metadata, models_dir, results_dir,
                                   write_tensor_predictions, checkpoint, log)
    result, y_pred, file = trained.results[0], trained.y_pred, trained.files[0]
    run_dir = Path(results_dir) / TARGET / f"fold{fold}"
    summary = {**{k: v for k, v in metadata.items() if k != "architecture"}, **tensor_metrics(y_test, y_pred),
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stop_reason": result.stop_reason,
               "best_val_frobenius_mae": result.best_val_mae, "fit_seconds": result.fit_seconds,
               "tensor_scales": {"isotropic": float(np.asarray(result.target_std)[0]),
                                 "traceless": float(np.asarray(result.target_std)[3])},
               "train": {k: v for k, v in asdict(config).items() if k not in ("targets", "folds", "model")},
               "model": str(file),
               "linear": {key: lin_metrics[key] for key in ("isotropic", "anisotropy", "frobenius")}}
    write_json(summary, run_dir / "run.json")
    if log:
        print(json.dumps({"fold": fold, "isotropic": summary["isotropic"], "frobenius": summary["frobenius"],
                          "linear_isotropic_mae_over_mad": lin_metrics["isotropic"]["mae_over_mad"]}), file=sys.stderr)
    return summary
