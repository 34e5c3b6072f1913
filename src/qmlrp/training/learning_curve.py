"""Stage ``beta_learning_curve``: β∥ test MAE versus the number of training labels.

For every fold of ``beta_learning_curve.folds`` and every fraction of ``fractions``, the fold's
model (:func:`qmlrp.training.train.fold_run`: train on the other folds minus the validation
hold-out, test on the fold) is trained on a seeded subsample of ``round(fraction × n_train)`` of its
training molecules. The subsamples of one fold are nested (each is a prefix of one seeded
permutation of the fold's training set), so the curve's steps differ only by the added labels;
validation and test molecules are the fold's own at every size. All models of the curve are trained
as one program by :func:`qmlrp.training.engine.fit`; every other training choice (epochs, schedule,
architecture, ...) is the ``train`` section's.

Three reference models are fitted on every split of the curve (same training, validation and test
molecules; :mod:`qmlrp.training.baselines`, penalties chosen on the validation molecules): ridge
regression on Morgan count fingerprints (topology), kernel ridge on Coulomb-matrix eigenvalues
(geometry) and the training-set mean. They tell whether a Weave model at MAE ≈ MAD fails for want of
labels (the references fail too) or by itself (a reference does better). The same references are
fitted, on the same splits, to a control target of the same molecules, QM9's α (``alpha_bohr3``): if
they learn it at this label count, a failure on β∥ belongs to β∥, not to the label count as such.

Outputs: ``metrics/beta_learning_curve.json`` (per size: n_train, MAE mean ± sd over folds,
MAE/MAD, the same for ``ridge_``, ``krr_`` and ``mean_``, and ``control_<ref>_mae_over_mad``),
``plots/beta/learning_curve.csv`` and ``plots/beta/learning_curve.png`` (left: log-log MAE against
n_train, the four models, the labels' MAD and the bar 0.3 × MAD; right: MAE/MAD of the references on
β∥ and on the control). MAD is the mean absolute deviation of the data set's labels from their mean
(all its molecules), as in ``metrics/beta_data.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.figures import saved_figure
from qmlrp.io import write_csv, write_json
from qmlrp.paths import METRICS, dataset_paths
from qmlrp.training.baselines import reference_inputs, reference_maes

if TYPE_CHECKING:
    from qmlrp.features.store import FeatureStore
    from qmlrp.targets import Target
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.engine import FitResult, ModelRun

CURVE_METRICS = METRICS / "beta_learning_curve.json"
CURVE_TABLE = Path("plots/beta/learning_curve.csv")
CURVE_PNG = Path("plots/beta/learning_curve.png")
REFERENCES = {"ridge": "ridge on Morgan count fingerprints",
              "krr": "kernel ridge on Coulomb-matrix eigenvalues",
              "mean": "training-set mean"}
"""Reference models trained on every split of the curve (the Weave model's splits), besides it."""
CONTROL = ("alpha_bohr3", "QM9 α", "a₀³")
"""(column, name, units) of the control target: the references refitted to it on the same splits."""
MAD_BAR = 0.3
"""The β model's bar: test MAE ≤ ``MAD_BAR`` × MAD of the labels."""


@dataclass(frozen=True)
class LearningCurveParams:
    """``params.yaml`` section ``beta_learning_curve``.

    Attributes:
        fractions: shares of each fold's training set, each in (0, 1].
        folds: test folds (each a model per fraction).
        seed: of the subsampling (one permutation per fold: ``default_rng([seed, fold])``).
    """

    fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    folds: tuple[int, ...] = tuple(range(10))
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be a non-empty list of numbers in (0, 1], got {list(self.fractions)}")
        if len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions repeat a value: {list(self.fractions)}")
        if not self.folds or len(set(self.folds)) != len(self.folds) or min(self.folds) < 0:
            raise ValueError(f"folds must be distinct non-negative fold numbers, got {list(self.folds)}")


def subsample(train: np.ndarray, fractions: tuple[float, ...], seed: int, fold: int) -> list[np.ndarray]:
    """Nested seeded subsamples of the (n,) store positions ``train``, one per fraction: the
    first ``round(f × n)`` of one permutation (``default_rng([seed, fold])``), sorted.

    Raises:
        QmlrpError: a fraction leaves fewer than 2 molecules (the target's sd would be 0).
    """
    order = np.random.default_rng([int(seed), int(fold)]).permutation(np.asarray(train, dtype=np.int64))
    sizes = [int(round(f * order.size)) for f in fractions]
    for f, n in zip(fractions, sizes):
        if n < 2:
            raise QmlrpError(f"params.yaml beta_learning_curve.fractions: {f:g} of fold {fold}'s "
                             f"{order.size} training molecules leaves {n} (at least 2 needed)")
    return [np.sort(order[:n]) for n in sizes]


def _sd(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


class _Planned(NamedTuple):
    """One model of the curve: its training fraction, test fold, run (subsampled train) and (n_test,) test positions."""

    fraction: float
    fold: int
    run: ModelRun
    test: np.ndarray


def _plan(store: FeatureStore, table: str | Path, folds_path: str | Path, target: Target,
          curve: LearningCurveParams, config: TrainConfig) -> list[_Planned]:
    """The curve's models, fold by fold and fraction by fraction (nested seeded subsamples of each fold's training set)."""
    from qmlrp.training.train import fold_run

    planned = []
    for fold in curve.folds:
        run, split = fold_run(store, table, folds_path, target.name, fold, config)
        for fraction, train in zip(curve.fractions, subsample(run.train, curve.fractions, curve.seed, fold)):
            metadata = {**run.metadata, "n_train": int(train.size), "fraction": float(fraction)}
            planned.append(_Planned(fraction, fold, replace(run, name=f"{run.name}/n{train.size}", train=train,
                                                            metadata=metadata), split.test))
    return planned


def _control_labels(table: str | Path, store: FeatureStore) -> np.ndarray:
    """(n_molecules,) control target (``CONTROL``, in its units) in store order; QmlrpError if one is missing."""
    control = pd.read_parquet(table, columns=["id", CONTROL[0]]).set_index("id")[CONTROL[0]].reindex(
        [int(i) for i in store.ids]).to_numpy(np.float64)
    if not np.all(np.isfinite(control)):
        raise QmlrpError(f"{table}: no {CONTROL[0]} (the control target) for molecule id "
                         f"{int(np.asarray(store.ids)[~np.isfinite(control)][0])}")
    return control


def _per_model(planned: list[_Planned], results: list[FitResult], store: FeatureStore, fingerprints: np.ndarray,
               coulomb: np.ndarray, control: np.ndarray) -> pd.DataFrame:
    """One row per model: fraction, fold, sizes, test MAE (target units), the references' MAEs on the target and
    on the control, best epoch and epochs run."""
    from qmlrp.training.train import predict_positions

    rows = []
    for (fraction, fold, run, test), result in zip(planned, results):
        pred = predict_positions(result.model, store, test, 256)
        rows.append({"fraction": float(fraction), "fold": int(fold), "n_train": int(run.train.size),
                     "n_test": int(test.size), "test_mae": float(np.mean(np.abs(pred - run.y[test]))),
                     **reference_maes(fingerprints, coulomb, run.y, run.train, run.validation, test),
                     **{f"control_{k}": v for k, v in reference_maes(
                         fingerprints, coulomb, control, run.train, run.validation, test).items()},
                     "best_epoch": int(result.best_epoch), "epochs_run": int(result.epochs_run)})
    return pd.DataFrame(rows)


def _size_entries(per_model: pd.DataFrame, fractions: tuple[float, ...], mad: float,
                  control_mad: float) -> list[dict[str, Any]]:
    """Per fraction: n_train, MAE mean ± sd over folds (target units), MAE/MAD and pass, for the model and each
    reference, and the references' MAE/MAD on the control."""
    sizes = []
    for fraction in fractions:
        group = per_model[per_model["fraction"] == float(fraction)].sort_values("fold")
        maes = group["test_mae"].tolist()
        mean = float(np.mean(maes))
        entry = {"fraction": float(fraction), "n_train": int(round(group["n_train"].mean())),
                 "n_train_per_fold": [int(n) for n in group["n_train"]], "mae_mean": mean, "mae_sd": _sd(maes),
                 "mae_over_mad": mean / mad if mad > 0 else None, "mae_per_fold": maes,
                 "pass": bool(mean <= MAD_BAR * mad)}
        for model in REFERENCES:
            values = group[f"{model}_mae"].tolist()
            entry[f"{model}_mae_mean"] = float(np.mean(values))
            entry[f"{model}_mae_sd"] = _sd(values)
            entry[f"{model}_mae_over_mad"] = float(np.mean(values)) / mad if mad > 0 else None
        for model in REFERENCES:
            entry[f"control_{model}_mae_over_mad"] = float(group[f"control_{model}_mae"].mean()) / control_mad
        sizes.append(entry)
    return sizes


def _curve_frame(sizes: list[dict[str, Any]], mad: float) -> pd.DataFrame:
    """The curve's table (one row per size) with the labels' MAD and the bar as columns."""
    columns = ("fraction", "n_train", "mae_mean", "mae_sd", "mae_over_mad") + tuple(
        f"{m}_mae_{x}" for m in REFERENCES for x in ("mean", "sd", "over_mad")) + tuple(
        f"control_{m}_mae_over_mad" for m in REFERENCES)
    frame = pd.DataFrame([{k: s[k] for k in columns} for s in sizes])
    frame["mad"] = mad
    frame["mae_bar"] = MAD_BAR * mad
    return frame


def _log_sizes(sizes: list[dict[str, Any]], target: Target, mad: float) -> None:
    """One stderr line per size: the model's and the references' MAEs, and the control's MAE/MAD."""
    for s in sizes:
        print(f"{target.name} n_train {s['n_train']}: test MAE {s['mae_mean']:.4g} {target.units} "
              f"({s['mae_mean'] / mad if mad > 0 else float('nan'):.3g} MAD); fingerprint ridge "
              f"{s['ridge_mae_mean']:.4g}, Coulomb kernel ridge {s['krr_mae_mean']:.4g}, training mean "
              f"{s['mean_mae_mean']:.4g}; control {CONTROL[1]} (MAE/MAD): ridge "
              f"{s['control_ridge_mae_over_mad']:.3g}, kernel ridge {s['control_krr_mae_over_mad']:.3g}",
              file=sys.stderr)


def learning_curve(
    params_path: str | Path = "params.yaml",
    target_name: str = "beta",
    metrics_file: str | Path = CURVE_METRICS,
    table_file: str | Path = CURVE_TABLE,
    png_file: str | Path = CURVE_PNG,
    data: tuple[Path, Path, Path] | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """Train the curve's models as one program; write and return the metrics.

    Args:
        params_path: sections ``train`` and ``beta_learning_curve``.
        target_name: the target (default ``beta``; its dataset gives table, features and folds).
        data: (table, feature store, folds) instead of the target's dataset paths (tests).
    """
    from qmlrp.features.store import FeatureStore
    from qmlrp.params import parse_section, stage_params
    from qmlrp.targets import get_target
    from qmlrp.training.dataset_config import target_config
    from qmlrp.training.engine import fit

    config = target_config(target_name, params_path)
    curve = parse_section(LearningCurveParams, "beta_learning_curve", stage_params("beta_learning_curve", params_path))
    target = get_target(target_name)
    table, features, folds_path = data or dataset_paths(target.dataset)
    if not Path(features).exists():
        raise QmlrpError(f"{features}: not found (run `dvc repro beta_data` first)")
    t0 = time.perf_counter()
    store = FeatureStore.open(features)
    planned = _plan(store, table, folds_path, target, curve, config)
    results = fit(store, [p.run for p in planned], config, log=log)
    fingerprints, coulomb = reference_inputs(table, store.ids)
    control = _control_labels(table, store)
    per_model = _per_model(planned, results, store, fingerprints, coulomb, control)

    y = planned[0].run.y
    mad = float(np.mean(np.abs(y - np.mean(y))))
    control_mad = float(np.mean(np.abs(control - np.mean(control))))
    sizes = _size_entries(per_model, curve.fractions, mad, control_mad)
    metrics: dict[str, Any] = {
        "target": target.name, "column": target.column, "units": target.units,
        "n_molecules": int(len(store.ids)), "label_mad": mad, "mae_bar": MAD_BAR * mad,
        "folds": [int(f) for f in curve.folds], "seed": int(curve.seed), "epochs": int(config.epochs),
        "models_in_program": len(planned), "total_seconds": round(time.perf_counter() - t0, 1),
        "control": {"column": CONTROL[0], "name": CONTROL[1], "units": CONTROL[2], "label_mad": control_mad},
        "sizes": sizes, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(curve).items()},
    }
    frame = _curve_frame(sizes, mad)
    write_csv(frame, table_file)
    _curve_png(frame, target.name, target.units, len(curve.folds), png_file)
    write_json(metrics, metrics_file)
    if log:
        _log_sizes(sizes, target, mad)
    return metrics


def _curve_png(frame: pd.DataFrame, name: str, units: str, n_folds: int, path: str | Path) -> None:
    """Left: log-log MAE (mean ± sd over folds) against n_train, with the MAD and the bar as lines.
    Right: MAE/MAD of the references on the target and on the control target."""
    import matplotlib.ticker

    mad = float(frame["mad"].iloc[0])
    markers = {"ridge": "s", "krr": "D", "mean": "^"}
    with saved_figure(path, figsize=(11, 4.2), ncols=2) as (_, (ax, ratio)):
        folds = f"{n_folds} fold{'s' if n_folds > 1 else ''}"
        ax.errorbar(frame["n_train"], frame["mae_mean"], yerr=frame["mae_sd"].fillna(0.0).to_numpy(), marker="o",
                    capsize=3, lw=1.2, label=f"Weave model (test MAE, mean ± sd over {folds})")
        for model, style in markers.items():
            ax.errorbar(frame["n_train"], frame[f"{model}_mae_mean"], yerr=frame[f"{model}_mae_sd"].fillna(0.0).to_numpy(),
                        marker=style, capsize=3, lw=1.0, alpha=0.8, label=f"{REFERENCES[model]} (same splits)")
        ax.axhline(mad, color="grey", ls="--", lw=1, label=f"MAD of the labels ({mad:.3g} {units})")
        ax.axhline(MAD_BAR * mad, color="tab:red", ls=":", lw=1, label=f"bar {MAD_BAR:g} × MAD ({MAD_BAR * mad:.3g} {units})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(frame["n_train"].tolist())
        ax.set_xlabel("training molecules")
        ax.set_ylabel(f"{name} test MAE ({units})")
        ax.set_title(f"{name}: test MAE against training-set size", fontsize=10)
        ax.legend(fontsize=7)

        ratio.plot(frame["n_train"], frame["mae_over_mad"], marker="o", lw=1.2, color="C0", label=f"Weave, {name}")
        for i, (model, style) in enumerate(markers.items(), start=1):
            ratio.plot(frame["n_train"], frame[f"{model}_mae_over_mad"], marker=style, lw=1.0, color=f"C{i}",
                       label=f"{REFERENCES[model]}, {name}")
            ratio.plot(frame["n_train"], frame[f"control_{model}_mae_over_mad"], marker=style, lw=1.0, ls="--",
                       color=f"C{i}", mfc="none", label=f"{REFERENCES[model]}, control {CONTROL[1]}")
        ratio.axhline(MAD_BAR, color="tab:red", ls=":", lw=1, label=f"bar {MAD_BAR:g}")
        ratio.set_xscale("log")
        ratio.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ratio.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ratio.set_xticks(frame["n_train"].tolist())
        ratio.set_ylim(0.0, max(1.2, float(np.nanmax(frame[[c for c in frame.columns if c.endswith("over_mad")]].to_numpy())) * 1.05))
        ratio.set_xlabel("training molecules")
        ratio.set_ylabel("test MAE / MAD of the target's labels (1 = the mean)")
        ratio.set_title(f"{name} against a control target of the same molecules ({CONTROL[1]}, {CONTROL[2]})", fontsize=10)
        ratio.legend(fontsize=7)
