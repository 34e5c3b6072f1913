"""Stage ``evaluate``: per-fold test MAE, mean +- sd over folds, pass/fail against the targets.

Reads ``results/<target>/fold<k>/{predictions.csv, history.csv, run.json}`` written by
:mod:`qmlrp.training.train`; writes ``metrics/evaluate.json`` (compared by ``dvc metrics diff``),
parity data ``plots/evaluate/parity/<target>.csv`` (DVC scatter plot) and PNG figures
``plots/evaluate/images/{parity,learning_curves}_<target>.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.io import write_csv, write_json
from qmlrp.training.config import METRICS_FILE, PLOTS, RESULTS, EvaluateConfig, TrainConfig, get_target


def read_run(results_dir: Path, target: str, fold: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    run_dir = results_dir / target / f"fold{fold}"
    files = [run_dir / "predictions.csv", run_dir / "history.csv", run_dir / "run.json"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise QmlrpError(f"{missing[0]}: not found (run `dvc repro train` for {target} fold {fold})")
    return pd.read_csv(files[0]), pd.read_csv(files[1]), json.loads(files[2].read_text())


def summarize(fold_mae: dict[int, float], threshold: float | None, units: str) -> dict[str, Any]:
    """Mean and sample sd over folds (sd 0 for a single fold) and the pass/fail verdict."""
    values = np.array(list(fold_mae.values()), dtype=float)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
    out: dict[str, Any] = {
        "units": units,
        "n_folds": int(values.size),
        "mae_mean": mean,
        "mae_sd": sd,
        "mae_per_fold": {f"fold{k}": float(v) for k, v in sorted(fold_mae.items())},
    }
    if threshold is not None:
        out["threshold"] = threshold
        out["pass"] = bool(mean <= threshold)
    return out


def evaluate(
    params_path: str | Path = "params.yaml",
    results_dir: str | Path = RESULTS,
    metrics_file: str | Path = METRICS_FILE,
    plots_dir: str | Path = PLOTS,
    make_images: bool = True,
) -> dict[str, Any]:
    """Aggregate the train runs listed in ``params.yaml`` (train.targets x train.folds)."""
    train_config = TrainConfig.load(params_path)
    config = EvaluateConfig.load(params_path)
    results_dir, plots_dir = Path(results_dir), Path(plots_dir)
    metrics: dict[str, Any] = {}
    for name in train_config.targets:
        target = get_target(name)
        fold_mae: dict[int, float] = {}
        parity, curves = [], []
        for fold in train_config.folds:
            predictions, history, run = read_run(results_dir, name, fold)
            fold_mae[fold] = float(np.mean(np.abs(predictions["y_pred"] - predictions["y_true"])))
            parity.append(predictions.assign(fold=fold))
            curves.append(history.assign(fold=fold, best_epoch=run.get("best_epoch")))
        metrics[name] = summarize(fold_mae, config.thresholds.get(name), target.units)
        parity_frame = pd.concat(parity, ignore_index=True)
        write_csv(parity_frame[["id", "fold", "y_true", "y_pred"]], plots_dir / "parity" / f"{name}.csv")
        curve_frame = pd.concat(curves, ignore_index=True)
        write_csv(curve_frame, plots_dir / "learning_curves" / f"{name}.csv")
        if make_images:
            _parity_png(parity_frame, target.name, target.units, metrics[name], plots_dir / "images" / f"parity_{name}.png")
            _curves_png(curve_frame, target.name, target.units, plots_dir / "images" / f"learning_curves_{name}.png")
    checked = [m["pass"] for m in metrics.values() if "pass" in m]
    metrics["all_pass"] = bool(checked) and all(checked)
    n_folds = _protocol_folds(params_path)
    metrics["protocol"] = {"folds_run": len(train_config.folds), "folds_of_protocol": n_folds,
                           "complete": len(train_config.folds) == n_folds}
    write_json(metrics, metrics_file)
    return metrics


def _protocol_folds(params_path: str | Path) -> int:
    """The number of cross-validation folds of the split (``split.n_folds``; 10 by default)."""
    from qmlrp.params import load_params

    return int((load_params(params_path).get("split") or {}).get("n_folds", 10))


def _parity_png(frame: pd.DataFrame, name: str, units: str, summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(frame["y_true"], frame["y_pred"], s=3, alpha=0.4, lw=0)
    lo = float(min(frame["y_true"].min(), frame["y_pred"].min()))
    hi = float(max(frame["y_true"].max(), frame["y_pred"].max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"{name} reference ({units})")
    ax.set_ylabel(f"{name} predicted ({units})")
    ax.set_title(f"{name}: test MAE {summary['mae_mean']:.4g} ± {summary['mae_sd']:.2g} {units} "
                 f"({summary['n_folds']} folds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _curves_png(frame: pd.DataFrame, name: str, units: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for fold, group in frame.groupby("fold"):
        line = ax.plot(group["epoch"], group["val_mae"], lw=1, label=f"fold {fold}")[0]
        ax.plot(group["epoch"], group["train_mae"], lw=0.8, ls=":", color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"MAE ({units}); solid validation, dotted training")
    ax.set_title(f"{name} learning curves", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
