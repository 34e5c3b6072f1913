"""Test MAE against training epochs for one (target, fold) of a study, and what a bar would take.

The same model trained for several epoch budgets (each its own cosine schedule to the end, so a
longer run is not a continuation of a shorter one): every ``results/**/<target>/fold<k>/run.json`` of
the study -- its own budget (``results/<target>/``, ``results/spectra/<target>/``), the longer ones of
the ``epochs_curve`` stages (``results/epochs/e<E>/``, ``results/epochs-spectra/e<E>/``) and of
``train_long`` (``results/long/``). Writes the curve (``<plots>/<target>.csv`` and ``.png``) and
``metrics/epochs_curve.json``: per budget the test MAE and CPU-hours, and a fit
``MAE(E) = a + b E^-c`` (scipy ``curve_fit``; with three budgets it passes through them) giving the
asymptote ``a`` and the budget where the fit crosses the bar, with the CPU-hours that budget costs
per model and for a 10-fold study on the machine of the runs. A bar below the asymptote is reported
as not reachable by more epochs of this model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.figures import saved_figure
from qmlrp.io import write_csv, write_json


@dataclass(frozen=True)
class EpochsCurveParams:
    """``params.yaml`` section ``epochs_curve`` (or another of the same form, e.g.
    ``epochs_curve_spectra``): which model is trained longer, and for how many epochs (each a stage
    ``epochs_curve@<E>``; the study's own budget is the first point)."""

    target: str = "alpha"
    fold: int = 0
    epochs: tuple[int, ...] = (24, 36)


def read_budgets(results: Path, target: str, fold: int) -> list[dict[str, Any]]:
    """One row per run of ``target``'s ``fold`` under ``results`` (any depth): epochs, test MAE, best
    epoch, process CPU-hours, commit; sorted by epochs."""
    rows = []
    for path in sorted(results.glob(f"**/{target}/fold{fold}/run.json")):
        run = json.loads(path.read_text())
        if run.get("target", target) != target:
            continue
        cpu = run.get("process_cpu_seconds")
        rows.append({"epochs": int(run["epochs_run"]), "test_mae": float(run["test_mae"]),
                     "best_epoch": int(run["best_epoch"]), "stop_reason": run.get("stop_reason"),
                     "cpu_hours": None if cpu is None else round(float(cpu) / 3600, 3),
                     "commit": run.get("commit"), "run": str(path.parent)})
    if not rows:
        raise QmlrpError(f"{results}: no run of {target} fold {fold} (no {target}/fold{fold}/run.json below it)")
    return sorted(rows, key=lambda r: (r["epochs"], r["run"]))


def fit_curve(epochs: np.ndarray, mae: np.ndarray) -> tuple[float, float, float] | None:
    """``(a, b, c)`` of ``MAE(E) = a + b E^-c`` (a >= 0, b > 0, 0 < c <= 4), or None with fewer than 3
    different budgets."""
    from scipy.optimize import curve_fit

    if np.unique(epochs).size < 3:
        return None
    try:
        (a, b, c), _ = curve_fit(lambda e, a, b, c: a + b * e ** -c, epochs, mae,
                                 p0=(0.5 * mae.min(), mae.max() * epochs.min(), 1.0),
                                 bounds=([0.0, 0.0, 1e-3], [mae.min(), np.inf, 4.0]), maxfev=20000)
    except RuntimeError:
        return None
    return float(a), float(b), float(c)


def epochs_for(bar: float, fit: tuple[float, float, float] | None) -> float | None:
    """Epochs where the fitted curve reaches ``bar`` (inf: below the asymptote; None: no fit)."""
    if fit is None:
        return None
    a, b, c = fit
    return math.inf if bar <= a else float(((bar - a) / b) ** (-1.0 / c))


def summarize(rows: list[dict[str, Any]], bar: float | None, n_folds: int = 10) -> dict[str, Any]:
    """The metrics: budgets, fit, epochs for the bar and their CPU-hours per model and study."""
    epochs = np.array([r["epochs"] for r in rows], float)
    mae = np.array([r["test_mae"] for r in rows], float)
    fit = fit_curve(epochs, mae)
    out: dict[str, Any] = {"budgets": rows, "fit": None if fit is None else
                           {"form": "a + b * epochs^-c", "a": fit[0], "b": fit[1], "c": fit[2]}}
    cpu = [r["cpu_hours"] / r["epochs"] for r in rows if r["cpu_hours"]]
    cpu_per_epoch = float(np.median(cpu)) if cpu else None
    out["cpu_hours_per_model_epoch"] = cpu_per_epoch
    if bar is not None:
        needed = epochs_for(bar, fit)
        out["bar"] = bar
        out["bar_met_by"] = [r["epochs"] for r in rows if r["test_mae"] <= bar]
        out["epochs_for_bar"] = None if needed is None else (None if math.isinf(needed) else round(needed, 1))
        out["bar_reachable_by_epochs"] = None if needed is None else not math.isinf(needed)
        if needed is not None and not math.isinf(needed) and cpu_per_epoch is not None:
            out["cpu_hours_for_bar"] = {"per_model": round(needed * cpu_per_epoch, 2),
                                        f"study_{n_folds}_folds": round(n_folds * needed * cpu_per_epoch, 1)}
    return out


def draw(rows: list[dict[str, Any]], metrics: dict[str, Any], target: str, fold: int, units: str,
         path: Path) -> None:
    """Test MAE against the epoch budget, the fitted curve and the bar."""
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        e = [r["epochs"] for r in rows]
        ax.plot(e, [r["test_mae"] for r in rows], "o", label="trained (test fold)")
        fit = metrics.get("fit")
        if fit:
            grid = np.linspace(min(e), max(3 * max(e), 100), 200)
            ax.plot(grid, fit["a"] + fit["b"] * grid ** -fit["c"], "-", lw=1,
                    label=f"fit a + b E^-c (a = {fit['a']:.3g})")
        if metrics.get("bar") is not None:
            ax.axhline(metrics["bar"], color="k", ls="--", lw=1, label=f"bar {metrics['bar']:g}")
        ax.set_xlabel("epochs (each budget its own warm-up + cosine schedule)")
        ax.set_ylabel(f"test MAE ({units})")
        ax.set_title(f"{target}, fold {fold}, all of QM9: test MAE against training epochs")
        ax.legend(fontsize=8)


def run_epochs_curve(target: str, fold: int, bar: float | None, units: str, results: Path = Path("results"),
                     metrics_file: Path = Path("metrics/epochs_curve.json"),
                     plots: Path = Path("plots/epochs_curve")) -> dict[str, Any]:
    """The stage: read the budgets, fit, write metrics and plots; returns the metrics."""
    rows = read_budgets(results, target, fold)
    metrics = {"target": target, "fold": fold, "units": units, **summarize(rows, bar)}
    import pandas as pd

    write_csv(pd.DataFrame(rows)[["epochs", "test_mae", "best_epoch", "cpu_hours"]], plots / f"{target}.csv")
    draw(rows, metrics, target, fold, units, plots / f"{target}.png")
    write_json(metrics, metrics_file)
    return metrics
