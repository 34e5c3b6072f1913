"""Stage ``evaluate``: per-fold test MAE, mean +- sd over folds, pass/fail against the targets.

Reads ``results/<target>/fold<k>/{predictions.csv or .parquet, history.csv, run.json}`` written by
:mod:`qmlrp.training.train`; writes ``metrics/evaluate.json`` (compared by ``dvc metrics diff``),
parity data ``plots/evaluate/parity/<target>.csv`` (DVC scatter plot) and PNG figures
``plots/evaluate/images/{parity,learning_curves}_<target>.png``.

Every target also gets ``test_label_mad`` (mean absolute deviation of the test labels, mean over
folds) and ``mae_over_mad`` (the beta model's bar is 0.3). The frequency vector (``frequencies``,
cm^-1, highest first) gets, beside the MAE over all real modes: the MAE per mode index
(``plots/evaluate/frequencies_per_mode.csv``, pooled over the folds' test molecules; mode 1 =
omega_1), omega_1's MAE (index 0) against ``evaluate.thresholds.omega1``, and spectrum-level scores
on unit-stick spectra (:mod:`qmlrp.targets.spectra`: SIS with 15 cm^-1 FWHM Gaussians on 0..4000
cm^-1, and the Wasserstein-1 distance), each a mean over test molecules, mean +- sd over folds.
With both ``frequencies`` and ``omega1`` trained, ``omega1_joint_vs_separate`` sets omega_1 of the
joint model beside the separate scalar model's. Figures: ``images/parity_frequencies_omega1.png``,
``images/per_mode_mae_frequencies.png`` and ``images/spectra_frequencies.png`` (predicted vs
reference sticks for four test molecules). The per-fold table (``folds.csv``, ``folds.md``) and the errors by
molecule size (``by_size/<target>.csv``): :mod:`qmlrp.training.fold_table`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.figures import saved_figure
from qmlrp.io import write_csv, write_json
from qmlrp.training.config import EvaluateConfig, METRICS_FILE, PLOTS, RESULTS, TrainConfig
from qmlrp.targets import Target, get_target
from qmlrp.targets.kinds import PADDED_VECTOR
from qmlrp.targets.spectra import label_mad, masked_mae, spectrum_scores
from qmlrp.training.fold_table import heavy_atoms, size_table, write_fold_tables

SPECTRA_SHOWN = 4
"""Test molecules drawn in ``images/spectra_frequencies.png`` (the first ones of the first fold)."""


def read_run(results_dir: Path, target: str, fold: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``(predictions, history, run.json)`` of one run; a vector target's predictions come from
    ``predictions.parquet`` (y_true, y_pred: lists), a scalar's from ``predictions.csv``."""
    run_dir = results_dir / target / f"fold{fold}"
    kind = get_target(target).kind
    vector = kind.predictions_file.endswith(".parquet")
    files = [run_dir / kind.predictions_file, run_dir / "history.csv",
             run_dir / "run.json"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise QmlrpError(f"{missing[0]}: not found (run `dvc repro train` for {target} fold {fold})")
    if vector:
        from qmlrp.io import read_parquet

        predictions = read_parquet(files[0], hint=f"rerun `dvc repro train` for {target} fold {fold}").to_pandas()
    else:
        predictions = pd.read_csv(files[0])
    return predictions, pd.read_csv(files[1]), json.loads(files[2].read_text())


def vector_arrays(predictions: pd.DataFrame, width: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` (n, width) float64 from a ``predictions.parquet`` frame (NaN padding)."""
    try:
        y_true = np.array([np.asarray(v, np.float64) for v in predictions["y_true"]]).reshape(len(predictions), -1)
        y_pred = np.array([np.asarray(v, np.float64) for v in predictions["y_pred"]]).reshape(len(predictions), -1)
    except (KeyError, ValueError) as err:
        raise QmlrpError(f"{where}: malformed predictions ({err})") from None
    if y_true.shape[1] != width or y_pred.shape[1] != width:
        raise QmlrpError(f"{where}: expected lists of {width} values, got {y_true.shape[1]} and {y_pred.shape[1]}")
    return y_true, y_pred


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


def with_mad(summary: dict[str, Any], fold_mad: dict[int, float], mad_threshold: float | None = None) -> dict[str, Any]:
    """``summary`` plus ``test_label_mad`` (mean over folds of the test labels' MAD) and
    ``mae_over_mad`` (``mae_mean`` / that MAD); with ``mad_threshold`` the verdict
    ``mae_over_mad <= mad_threshold`` too (``pass`` is then both verdicts)."""
    mad = float(np.mean(list(fold_mad.values())))
    ratio = float(summary["mae_mean"] / mad) if mad > 0 else None
    out = {**summary, "test_label_mad": mad, "mae_over_mad": ratio}
    if mad_threshold is not None:
        out["mad_threshold"] = mad_threshold
        out["pass_mad"] = bool(ratio is not None and ratio <= mad_threshold)
        out["pass"] = bool(out.get("pass", True) and out["pass_mad"])
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def evaluate(
    params_path: str | Path = "params.yaml",
    results_dir: str | Path = RESULTS,
    metrics_file: str | Path = METRICS_FILE,
    plots_dir: str | Path = PLOTS,
    make_images: bool = True,
    table: str | Path | None = None,
) -> dict[str, Any]:
    """Aggregate the train runs listed in ``params.yaml`` (train.targets x train.folds).

    A run that is not there yet (no ``run.json``: a study trained model by model) is left out and
    named in ``protocol.missing``; ``protocol.complete`` is true only when every target has every
    fold of the split. A target with no run at all is an error. With the ingest ``table`` the scalar
    targets' errors by molecule size are written too (:mod:`qmlrp.training.fold_table`)."""
    train_config = TrainConfig.load(params_path)
    config = EvaluateConfig.load(params_path)
    results_dir, plots_dir = Path(results_dir), Path(plots_dir)
    metrics: dict[str, Any] = {}
    names = (*train_config.targets, *[t for t in config.also if t not in train_config.targets])
    present = {name: tuple(f for f in train_config.folds if (results_dir / name / f"fold{f}" / "run.json").exists())
               for name in names}
    missing = [f"{name}/fold{f}" for name in names for f in train_config.folds if f not in present[name]]
    heavy = heavy_atoms(Path(table)) if table is not None and Path(table).exists() else None
    for name in names:
        target = get_target(name)
        if not present[name]:
            raise QmlrpError(f"{results_dir / name}: no trained fold (run `dvc repro train` for {name})")
        if target.kind is PADDED_VECTOR:
            metrics[name] = evaluate_vector(target, present[name], results_dir, plots_dir, config, make_images)
            continue
        fold_mae: dict[int, float] = {}
        fold_mad: dict[int, float] = {}
        parity, curves = [], []
        for fold in present[name]:
            predictions, history, run = read_run(results_dir, name, fold)
            fold_mae[fold] = masked_mae(predictions["y_pred"].to_numpy(), predictions["y_true"].to_numpy())
            fold_mad[fold] = label_mad(predictions["y_true"].to_numpy())
            parity.append(predictions.assign(fold=fold))
            curves.append(history.assign(fold=fold, best_epoch=run.get("best_epoch")))
        metrics[name] = with_mad(summarize(fold_mae, config.thresholds.get(name), target.units), fold_mad,
                                 config.mad_thresholds.get(name))
        parity_frame = pd.concat(parity, ignore_index=True)
        write_csv(parity_frame[["id", "fold", "y_true", "y_pred"]], plots_dir / "parity" / f"{name}.csv")
        if heavy is not None:
            write_csv(size_table(parity_frame, heavy), plots_dir / "by_size" / f"{name}.csv")
        curve_frame = pd.concat(curves, ignore_index=True)
        write_csv(curve_frame, plots_dir / "learning_curves" / f"{name}.csv")
        if make_images:
            _parity_png(parity_frame, target.name, target.units, metrics[name], plots_dir / "images" / f"parity_{name}.png")
            _curves_png(curve_frame, target.name, target.units, plots_dir / "images" / f"learning_curves_{name}.png")
    if "omega1" in metrics and isinstance(metrics.get("frequencies"), dict):
        joint, separate = metrics["frequencies"]["omega1"], metrics["omega1"]
        metrics["omega1_joint_vs_separate"] = {
            "units": "cm^-1", "threshold": config.thresholds.get("omega1"),
            "joint_mae_mean": joint["mae_mean"], "joint_mae_sd": joint["mae_sd"],
            "separate_mae_mean": separate["mae_mean"], "separate_mae_sd": separate["mae_sd"],
            "joint_minus_separate": float(joint["mae_mean"] - separate["mae_mean"]),
        }
    checked = [m["pass"] for m in metrics.values() if "pass" in m]
    metrics["all_pass"] = bool(checked) and all(checked)
    n_folds = _protocol_folds(params_path)
    folds_run = len(set.intersection(*(set(f) for f in present.values())))
    metrics["protocol"] = {"folds_run": folds_run, "folds_of_protocol": n_folds,
                           "complete": folds_run == n_folds and not missing}
    if missing:
        metrics["protocol"]["missing"] = missing
    write_fold_tables(results_dir, names, train_config.folds, metrics, n_folds, plots_dir)
    write_json(metrics, metrics_file)
    return metrics


def evaluate_vector(target: Target, folds: tuple[int, ...], results_dir: Path, plots_dir: Path,
                    config: EvaluateConfig, make_images: bool = True) -> dict[str, Any]:
    """Metrics of a frequency-vector target (see the module docstring); writes its plots."""
    name, width = target.name, target.n_outputs
    fold_mae, fold_mad, fold_omega1, fold_sis, fold_w1 = {}, {}, {}, {}, {}
    abs_sum, count = np.zeros(width), np.zeros(width, np.int64)
    parity, curves, shown = [], [], []
    for fold in folds:
        predictions, history, run = read_run(results_dir, name, fold)
        y_true, y_pred = vector_arrays(predictions, width, str(results_dir / name / f"fold{fold}"))
        labelled = np.isfinite(y_true).any(axis=1)  # QM9's doubled records have no label
        ids, y_true, y_pred = predictions["id"].to_numpy()[labelled], y_true[labelled], y_pred[labelled]
        if not labelled.any():
            raise QmlrpError(f"{results_dir / name / f'fold{fold}'}: no test molecule with a label")
        fold_mae[fold] = masked_mae(y_pred, y_true)
        fold_mad[fold] = label_mad(y_true)
        fold_omega1[fold] = masked_mae(y_pred[:, 0], y_true[:, 0])
        sis_values, w1_values = spectrum_scores(y_pred, y_true)
        fold_sis[fold], fold_w1[fold] = float(np.mean(sis_values)), float(np.mean(w1_values))
        real = np.isfinite(y_true)
        abs_sum += np.where(real, np.abs(y_pred - np.where(real, y_true, 0.0)), 0.0).sum(axis=0)
        count += real.sum(axis=0)
        parity.append(pd.DataFrame({"id": ids, "fold": fold, "y_true": y_true[:, 0], "y_pred": y_pred[:, 0]}))
        curves.append(history.assign(fold=fold, best_epoch=run.get("best_epoch")))
        if not shown:
            shown = [(int(i), t, p, s, w) for i, t, p, s, w in
                     zip(ids[:SPECTRA_SHOWN], y_true, y_pred, sis_values, w1_values)]
    per_mode = pd.DataFrame({"mode": np.arange(1, width + 1),
                             "mae": np.where(count > 0, abs_sum / np.maximum(count, 1), np.nan), "n": count})
    write_csv(per_mode, plots_dir / f"{name}_per_mode.csv")
    with_data = per_mode[per_mode["n"] > 0]
    worst = with_data.loc[with_data["mae"].idxmax()]
    out = with_mad(summarize(fold_mae, config.thresholds.get(name), target.units), fold_mad)
    out["mae_is_over"] = "all real modes of all test molecules"
    out["omega1"] = summarize(fold_omega1, config.thresholds.get("omega1"), target.units)
    out["per_mode_mae"] = {"omega1": float(per_mode["mae"].iloc[0]), "median": float(with_data["mae"].median()),
                           "max": float(worst["mae"]), "max_at_mode": int(worst["mode"]),
                           "modes_with_data": int(len(with_data))}
    from qmlrp.targets.spectra import FWHM, GRID

    sis_mean, sis_sd = _mean_sd(list(fold_sis.values()))
    w1_mean, w1_sd = _mean_sd(list(fold_w1.values()))
    out["spectrum"] = {"sis_mean": sis_mean, "sis_sd": sis_sd, "wasserstein1_mean": w1_mean, "wasserstein1_sd": w1_sd,
                       "wasserstein1_units": target.units, "sticks": "unit (QM9 has no intensities)",
                       "broadening": f"gaussian, FWHM {FWHM:g} cm^-1",
                       "grid_cm1": [float(GRID[0]), float(GRID[-1]), float(GRID[1] - GRID[0])]}
    parity_frame = pd.concat(parity, ignore_index=True)
    write_csv(parity_frame, plots_dir / "parity" / f"{name}_omega1.csv")
    curve_frame = pd.concat(curves, ignore_index=True)
    write_csv(curve_frame, plots_dir / "learning_curves" / f"{name}.csv")
    if make_images:
        images = plots_dir / "images"
        _parity_png(parity_frame, f"{name} omega_1", target.units, out["omega1"], images / f"parity_{name}_omega1.png")
        _curves_png(curve_frame, name, target.units, images / f"learning_curves_{name}.png")
        _per_mode_png(per_mode, name, target.units, out["per_mode_mae"], images / f"per_mode_mae_{name}.png")
        _spectra_png(shown, name, images / f"spectra_{name}.png")
    return out


def _protocol_folds(params_path: str | Path) -> int:
    """The number of cross-validation folds of the split (``split.n_folds``; 10 by default)."""
    from qmlrp.params import load_params

    return int((load_params(params_path).get("split") or {}).get("n_folds", 10))


def _parity_png(frame: pd.DataFrame, name: str, units: str, summary: dict[str, Any], path: Path) -> None:
    with saved_figure(path, figsize=(4.5, 4.5)) as (fig, ax):
        ax.scatter(frame["y_true"], frame["y_pred"], s=3, alpha=0.4, lw=0)
        lo = float(min(frame["y_true"].min(), frame["y_pred"].min()))
        hi = float(max(frame["y_true"].max(), frame["y_pred"].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"{name} reference ({units})")
        ax.set_ylabel(f"{name} predicted ({units})")
        ax.set_title(f"{name}: test MAE {summary['mae_mean']:.4g} ± {summary['mae_sd']:.2g} {units} "
                     f"({summary['n_folds']} folds)", fontsize=9)


def _curves_png(frame: pd.DataFrame, name: str, units: str, path: Path) -> None:
    with saved_figure(path, figsize=(6, 4)) as (fig, ax):
        for fold, group in frame.groupby("fold"):
            line = ax.plot(group["epoch"], group["val_mae"], lw=1, label=f"fold {fold}")[0]
            ax.plot(group["epoch"], group["train_mae"], lw=0.8, ls=":", color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"MAE ({units}); solid validation, dotted training")
        ax.set_title(f"{name} learning curves", fontsize=9)
        ax.legend(fontsize=6, ncol=2)


def _per_mode_png(per_mode: pd.DataFrame, name: str, units: str, summary: dict[str, Any], path: Path) -> None:
    with saved_figure(path, figsize=(7, 4)) as (fig, ax):
        data = per_mode[per_mode["n"] > 0]
        ax.bar(data["mode"], data["mae"], width=0.8, color="tab:blue", label="test MAE per mode (all folds)")
        ax.axhline(float(np.nanmean(data["mae"])), color="k", lw=0.8, ls="--", label="mean over mode indices")
        ax.set_xlabel("mode index (1 = omega_1, the highest frequency; descending)")
        ax.set_ylabel(f"MAE ({units})")
        ax.set_title(f"{name}: MAE per mode index (omega_1: {summary['omega1']:.3g} {units})", fontsize=9)
        ax.legend(fontsize=7)


def _spectra_png(shown: list[tuple[int, np.ndarray, np.ndarray, float, float]], name: str, path: Path) -> None:
    """Mirror plots: reference sticks up, predicted sticks down (unit sticks), per molecule."""
    rows = max(len(shown), 1)
    with saved_figure(path, nrows=rows, ncols=1, figsize=(7, 1.9 * rows), squeeze=False) as (fig, axes):
        for ax, (mol_id, y_true, y_pred, s, w) in zip(axes[:, 0], shown):
            real = np.isfinite(y_true)
            ax.vlines(y_true[real], 0, 1, color="tab:blue", lw=1, label="reference (QM9, B3LYP)")
            ax.vlines(y_pred[real], -1, 0, color="tab:orange", lw=1, label="predicted")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlim(0, 4000)
            ax.set_yticks([])
            ax.set_title(f"id {mol_id}: {int(real.sum())} modes, SIS {s:.3f}, W1 {w:.1f} cm$^{{-1}}$", fontsize=8)
        axes[-1, 0].set_xlabel("wavenumber (cm$^{-1}$)")
        axes[0, 0].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"{name}: predicted vs reference stick spectra (unit sticks; test molecules)", fontsize=9)
