"""Stages ``train_beta_vector@{fold}`` and ``evaluate_beta_vector``: the equivariant beta_par model (issue 18).

Per fold (the folds of ``train_beta``, ``data/beta/folds.parquet``; the same seeded validation split):

* the equivariant GC (trained by :func:`qmlrp.training.engine.fit`, resumable from
  ``scratch/checkpoints/beta_vector-fold<k>.npz``) -> ``models/beta_vector/fold<k>.npz``,
  ``results/beta_vector/fold<k>/{predictions.parquet, history.csv, run.json}``; with
  ``train_beta_vector.members`` N > 1 a seed ensemble of N such networks (seeds ``train.seed + k + 1000 s``,
  one program), member 0 at ``models/beta_vector/fold<k>.npz``, the others in
  ``models/beta_vector/members/fold<k>/`` with ``members.json`` (written for N = 1 too: DVC's out), the test
  predictions the mean of the members' vectors (beta_par derived from the mean vectors); ``run.json`` has the
  ensemble's test metrics, every member's (``member_runs``) and member 0's training record at its top level;
* the equivariant linear baseline (:mod:`qmlrp.training.vector_linear`) ->
  ``results/beta_vector_linear/fold<k>/{predictions.parquet, run.json}``.

``predictions.parquet``: id, y_true, y_pred as lists of 6 float64 ``[mu (3), beta_vec (3)]`` (a.u., QM9
frame), and the derived ``beta_parallel_true``/``beta_parallel_pred``. ``evaluate_beta_vector`` pools the
folds into ``metrics/beta_vector.json`` (:func:`qmlrp.targets.vectors.vector_metrics` per model, pooled
and per fold, mean +- sd of the per-fold beta_par MAE/MAD) beside the invariant GC's beta_par record
(``results/beta``, when present).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_json, write_parquet
from qmlrp.params import load_params
from qmlrp.paths import MODELS, dataset_paths
from qmlrp.training.config import RESULTS, TrainConfig
from qmlrp.training.equivariant_fold import fit_equivariant_fold, member_seed
from qmlrp.targets import get_target
from qmlrp.targets.labels import load_labels
from qmlrp.targets.vectors import parallel_from_vectors, vector_metrics

TARGET = "beta_vector"
LINEAR = "beta_vector_linear"
METRICS = Path("metrics/beta_vector.json")
SECTION = "train_beta_vector"


@dataclass(frozen=True)
class VectorStageSettings:
    """A ``train_beta_vector``-like section read: training settings, the labels folder, networks per fold."""

    config: TrainConfig
    labels: str
    members: int = 1


def stage_settings(params_path: str | Path = "params.yaml", section: str = SECTION) -> VectorStageSettings:
    """The ``train`` section with ``section`` (``train_beta_vector``; ``train_alpha_tensor`` for the tensor head)
    laid over it (any ``train`` key; ``pair_units``, the vector head's per-pair widths of its bond dipoles, empty =
    none, goes into the model as ``pair_head_units``; ``head_units``, the per-atom widths before the head's scalars,
    goes into the model, whose other fields are ``train.model``'s; ``members``, the vector head's networks per fold,
    default 1), and ``beta_data.labels``. Unknown keys and bad values are refused in one line."""
    params = load_params(params_path)
    overrides = dict(params.get(section) or {})
    head_units = overrides.pop("head_units", [64])
    pair_units = overrides.pop("pair_units", [])
    members = overrides.pop("members", 1)
    if pair_units and section != SECTION:
        raise QmlrpError(f"params.yaml {section}.pair_units: only the vector head ({SECTION}) has bond dipoles")
    if members != 1 and section != SECTION:
        raise QmlrpError(f"params.yaml {section}.members: only the vector head ({SECTION}) trains seed ensembles")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise QmlrpError(f"params.yaml {section}.members: {members!r} is not a whole number of networks >= 1")
    for key in ("targets", "folds", "model"):  # the rest is checked with the train keys (did-you-mean)
        if key in overrides:
            raise QmlrpError(f"params.yaml {section}.{key}: not a setting of this model (head_units and pair_units "
                             f"are; the trunk is train.model)")
    train = dict(params.get("train") or {})
    model = {**dict(train.get("model") or {}), "head_units": head_units, "pair_head_units": pair_units}
    config = TrainConfig.from_params({**train, **overrides, "model": model}, section=section)
    labels = (params.get("beta_data") or {}).get("labels")
    if not labels:
        raise QmlrpError("params.yaml beta_data.labels: no label folder given")
    return VectorStageSettings(config, str(labels), members)


def stage_config(params_path: str | Path = "params.yaml", section: str = SECTION) -> tuple[TrainConfig, str]:
    """``(training settings, labels folder)`` of :func:`stage_settings`."""
    settings = stage_settings(params_path, section)
    return settings.config, settings.labels


def write_vector_predictions(ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: Path) -> None:
    """``predictions.parquet``: id, y_true, y_pred (lists of 6, a.u.), beta_parallel_true/pred."""
    write_parquet(pa.table({
        "id": pa.array(np.asarray(ids, np.int64)),
        "y_true": pa.array(list(np.asarray(y_true, np.float64)), pa.list_(pa.float64())),
        "y_pred": pa.array(list(np.asarray(y_pred, np.float64)), pa.list_(pa.float64())),
        "beta_parallel_true": pa.array(parallel_from_vectors(y_true)),
        "beta_parallel_pred": pa.array(parallel_from_vectors(y_pred)),
    }), path)


def train_vector_fold(fold: int, params_path: str | Path = "params.yaml", models_dir: str | Path = MODELS,
                      results_dir: str | Path = RESULTS, config: TrainConfig | None = None,
                      checkpoint: str | Path | None = None, log: bool = True) -> dict[str, Any]:
    """Train and test both equivariant models on ``fold``; returns the GC's run summary. The GC resumes from
    ``checkpoint`` (default ``scratch/checkpoints/beta_vector-fold<k>.npz``) after an interruption."""
    from qmlrp.data.split import make_split
    from qmlrp.training.vector_linear import descriptors, fit_linear

    settings = stage_settings(params_path)
    labels, members = settings.labels, settings.members
    config = config or settings.config
    _, features, folds = dataset_paths("beta")
    store = FeatureStore.open(features)
    target = get_target(TARGET)
    y = load_labels(store, labels, target)
    split = make_split(store, folds, int(fold), config.validation_fraction, config.seed, config.max_train_molecules)
    ids_test, y_test = store.ids[split.test], y[split.test]

    d = descriptors(store, np.arange(len(store)))
    linear = fit_linear(d[split.train], y[split.train], d[split.validation], y[split.validation])
    y_lin = linear.predict(d[split.test])
    lin_dir = Path(results_dir) / LINEAR / f"fold{fold}"
    write_vector_predictions(ids_test, y_test, y_lin, lin_dir / "predictions.parquet")
    write_json({"target": LINEAR, "fold": int(fold), "penalties": list(linear.penalties),
                "n_features": int(d.shape[-1]), **vector_metrics(y_test, y_lin)}, lin_dir / "run.json")

    metadata = {"target": TARGET, "units": "a.u.", "fold": int(fold), "vectors": ["dipole", "beta_vec"],
                "frame": "QM9 coordinates (Angstrom)", "n_train": int(split.train.size),
                "n_validation": int(split.validation.size), "n_test": int(split.test.size),
                "architecture": asdict(config.model)}
    trained = fit_equivariant_fold(store, target, y, split, config, metadata, models_dir, results_dir,
                                   write_vector_predictions, checkpoint, log, members, manifest=True)
    result, y_pred = trained.results[0], trained.y_pred
    member_rows = [{"member": s, "seed": member_seed(config.seed, fold, s), "model": str(file),
                    "best_epoch": r.best_epoch, "epochs_run": r.epochs_run, "stop_reason": r.stop_reason,
                    "best_val_beta_parallel_mae": r.best_val_mae,
                    "test_beta_parallel_mae_over_mad": vector_metrics(y_test, p)["beta_parallel"]["mae_over_mad"]}
                   for s, (r, file, p) in enumerate(zip(trained.results, trained.files, trained.member_predictions))]
    run_dir = Path(results_dir) / TARGET / f"fold{fold}"
    summary = {**{k: v for k, v in metadata.items() if k != "architecture"}, **vector_metrics(y_test, y_pred),
               "members": members, "member_runs": member_rows,
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stop_reason": result.stop_reason,
               "best_val_beta_parallel_mae": result.best_val_mae, "fit_seconds": result.fit_seconds,
               "vector_scales": list(np.asarray(result.target_std, np.float64)[::3]),
               "train": {k: v for k, v in asdict(config).items() if k not in ("targets", "folds", "model")},
               "model": str(trained.files[0]),
               "linear_beta_parallel_mae_over_mad": vector_metrics(y_test, y_lin)["beta_parallel"]["mae_over_mad"]}
    write_json(summary, run_dir / "run.json")
    if log:
        print(json.dumps({"fold": fold, "members": members, "beta_parallel": summary["beta_parallel"],
                          "linear": summary["linear_beta_parallel_mae_over_mad"]}), file=sys.stderr)
    return summary


def _pooled(frames: list[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.concat(frames)
    return np.stack(frame["y_true"].map(np.asarray)), np.stack(frame["y_pred"].map(np.asarray))


def _summary(results_dir: Path, name: str, n_folds: int) -> dict[str, Any] | None:
    files = {k: results_dir / name / f"fold{k}" / "predictions.parquet" for k in range(n_folds)}
    present = {k: p for k, p in files.items() if p.exists()}
    if not present:
        return None
    frames = {k: pd.read_parquet(p) for k, p in present.items()}
    per_fold = {k: vector_metrics(*_pooled([f])) for k, f in frames.items()}
    ratios = np.array([m["beta_parallel"]["mae_over_mad"] for m in per_fold.values()])
    return {"folds": sorted(present), "complete": len(present) == n_folds, "pooled": vector_metrics(*_pooled(list(frames.values()))),
            "beta_parallel_mae_over_mad_fold_mean": float(ratios.mean()),
            "beta_parallel_mae_over_mad_fold_sd": float(ratios.std(ddof=1)) if ratios.size > 1 else 0.0,
            "per_fold": {str(k): {"beta_parallel": m["beta_parallel"], "sign_accuracy": m["beta_parallel_sign_accuracy"]}
                         for k, m in per_fold.items()}}


def _invariant(results_dir: Path, n_folds: int) -> dict[str, Any] | None:
    """The invariant GC's beta_par record (``results/beta/fold<k>/predictions.csv``), if present."""
    files = [results_dir / "beta" / f"fold{k}" / "predictions.csv" for k in range(n_folds)]
    frames = [pd.read_csv(p) for p in files if p.exists()]
    if not frames:
        return None
    ratios = []
    for f in frames:
        mad = float(np.mean(np.abs(f.y_true - f.y_true.mean())))
        ratios.append(float(np.mean(np.abs(f.y_pred - f.y_true))) / mad)
    pooled = pd.concat(frames)
    mad = float(np.mean(np.abs(pooled.y_true - pooled.y_true.mean())))
    mae = float(np.mean(np.abs(pooled.y_pred - pooled.y_true)))
    return {"folds": len(frames), "pooled": {"mae": mae, "mad": mad, "mae_over_mad": mae / mad},
            "beta_parallel_mae_over_mad_fold_mean": float(np.mean(ratios)),
            "beta_parallel_sign_accuracy": float(np.mean(np.sign(pooled.y_true) == np.sign(pooled.y_pred)))}


def _invariant_recorded(path: Path = Path("metrics/evaluate.json")) -> dict[str, Any] | None:
    """The invariant GC's beta_par entry of ``metrics/evaluate.json`` (when its fold results are absent)."""
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get("beta")
    if not entry:
        return None
    return {"source": str(path), "folds": entry.get("n_folds"), "mae_mean": entry.get("mae_mean"),
            "test_label_mad": entry.get("test_label_mad"), "mae_over_mad": entry.get("mae_over_mad")}


def evaluate_vector(results_dir: str | Path = RESULTS, metrics_path: str | Path = METRICS, n_folds: int = 10,
                    bar: float = 0.5) -> dict[str, Any]:
    """Write ``metrics/beta_vector.json`` from the fold results; returns it."""
    results_dir = Path(results_dir)
    gc, linear = _summary(results_dir, TARGET, n_folds), _summary(results_dir, LINEAR, n_folds)
    if gc is None and linear is None:
        raise QmlrpError(f"{results_dir}/{TARGET}: no fold results (run `dvc repro train_beta_vector`)")
    out: dict[str, Any] = {"bar_beta_parallel_mae_over_mad": bar, "equivariant_gc": gc, "equivariant_linear": linear,
                           "invariant_gc": _invariant(results_dir, n_folds) or _invariant_recorded()}
    if gc is not None:
        out["passes_bar"] = bool(gc["beta_parallel_mae_over_mad_fold_mean"] <= bar)
    write_json(out, metrics_path)
    return out
