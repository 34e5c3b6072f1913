"""Combined models of the ``autoencoder`` stage (issue 11): input -> DAE encoder -> code (68) ->
decoder -> reconstructed MG -> a trained Weave model, first frozen, then with the DAE fine-tuned
through the supervised loss (Weave frozen); and LRP from the prediction back to the code units.

Which models: ``params.yaml autoencoder.targets`` (``models/<target>/fold<fold>.npz``, or
``<model_dirs[target]>/<target>/fold<fold>.npz``; an absent file is skipped with a note). Per target:

* **Molecules**: the target's dataset (:attr:`~qmlrp.training.config.Target.dataset`). ``qm9``:
  the stage's store and split (the DAE's own training / held-out folds). ``beta``: the labelled
  molecules of ``data/beta`` (its own store and split; held-out fold = the autoencoder's ``fold``
  of that split, fine-tuning on its other folds). The DAE was trained on QM9's training folds
  only; how many of the held-out beta molecules it saw there is reported (``dae_training_overlap``).
* **Labels**: :func:`qmlrp.targets.labels.load_labels`; NaN = no label (padding of the frequency
  vector, QM9's doubled frequency records). Molecules without any label are left out (counted).
* **MAE** (target units): :func:`~qmlrp.targets.spectra.masked_mae` over real labels only -- for the
  frequencies, over each molecule's real modes (the padding never counts).
* **Fine-tuning loss**: mean over real label entries of ``|prediction - label| / std_k`` (``std_k``
  the Weave model's target scaling per output), i.e. the masked MAE of the standardised target.
* **Code LRP**: a scalar target explains its output; a vector target (the frequencies) explains two
  linear functionals :data:`VECTOR_VIEWS` (as ``explain.outputs``): ``omega1`` (output 0, the
  highest mode) and ``mode_sum`` (per-molecule coefficients, 1 on each molecule's own real modes).

Metrics (``metrics/autoencoder_combined.json``): per target ``dataset``, ``n_test``, ``n_train``,
``unlabelled_left_out``, ``mae_plain``/``mae_frozen``/``mae_finetuned`` and ``code_lrp`` (for a
vector target: one summary per view). Plots: ``code_relevance_<name>.csv/png`` and
``code_units_<name>.csv`` (``<name>`` = target, or ``<target>_<view>``).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.figures import saved_figure
from qmlrp.paths import BETA_DATA
from qmlrp.training.autoencoder import (AutoencoderParams, FlatBatches, _num, fit_flat, flat_batches, fold_positions,
                                        seeded_subset)
from qmlrp.targets.spectra import masked_mae

MODES = "modes"
VECTOR_VIEWS: dict[str, int | str] = {"omega1": 0, "mode_sum": MODES}
"""Functionals explained on the code for a vector target: output index, or ``modes`` (the sum over
the molecule's own real modes)."""


# -- molecules and labels --------------------------------------------------------------------------
def labelled(y: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The store positions among ``positions`` whose label row ``y[p]`` ((n,) or (n, T)) has at
    least one finite entry."""
    positions = np.asarray(positions, np.int64)
    rows = np.asarray(y, np.float64).reshape(len(y), -1)[positions]
    return positions[np.isfinite(rows).any(axis=1)]


@dataclass
class TargetData:
    """One target's molecules for the combined models.

    Attributes:
        dataset: ``qm9`` or ``beta``; store: its :class:`~qmlrp.features.store.FeatureStore`.
        train, test: labelled store positions (fine-tuning / held-out fold).
        y: (len(store),) or (len(store), T) labels, target units, NaN = none.
        unlabelled: molecules of train + test left out for having no label.
        dae_training_overlap: held-out molecules that were among the DAE's training molecules.
    """

    dataset: str
    store: Any
    train: np.ndarray
    test: np.ndarray
    y: np.ndarray
    unlabelled: int
    dae_training_overlap: int


def target_data(target: Any, fold: int, qm9: tuple[Any, np.ndarray, np.ndarray, Path], beta_data: Path,
                dae_train_ids: np.ndarray) -> TargetData:
    """The molecules and labels of ``target`` (see the module docstring).

    Args:
        target: a :class:`~qmlrp.training.config.Target`.
        fold: the held-out fold (the autoencoder's).
        qm9: ``(store, train, test, table)`` of the stage's own data.
        beta_data: folder with ``qm9.parquet``, ``features/``, ``folds.parquet`` of the beta molecules.
        dae_train_ids: ids of the DAE's training molecules.
    """
    from qmlrp.features.store import FeatureStore
    from qmlrp.targets.labels import load_labels

    if target.dataset == "qm9":
        store, train, test, table = qm9
    elif target.dataset == "beta":
        beta_data = Path(beta_data)
        if not (beta_data / "features").exists():
            raise QmlrpError(f"{beta_data}/features: not found (run `dvc repro beta_data` first)")
        store = FeatureStore.open(beta_data / "features")
        train, test = fold_positions(store, beta_data / "folds.parquet", fold)
        table = beta_data / "qm9.parquet"
    else:
        raise QmlrpError(f"target {target.name}: unknown dataset {target.dataset!r}")
    y = load_labels(store, table, target)
    kept_train, kept_test = labelled(y, train), labelled(y, test)
    if kept_test.size == 0 or kept_train.size == 0:
        raise QmlrpError(f"target {target.name}: no labelled molecules in fold {fold} or in the other folds")
    overlap = int(np.isin(store.ids[kept_test], dae_train_ids).sum())
    return TargetData(target.dataset, store, kept_train, kept_test, y,
                      int(train.size + test.size - kept_train.size - kept_test.size), overlap)


# -- predictions, MAE, fine-tuning -----------------------------------------------------------------
def combined_predict(autoencoder: Any, weave: Any, store: Any, positions: np.ndarray, batch_size: int = 64,
                     use_autoencoder: bool = True) -> np.ndarray:
    """(n, n_outputs) predictions (target units) of the combined model (``use_autoencoder=False``:
    the plain model on the same padded code path) for the molecules at ``positions``."""
    import keras

    from qmlrp.models.autoencoder import CombinedModel, atom_mask

    model = CombinedModel(autoencoder, weave, use_autoencoder=use_autoencoder)
    parts = []
    for _, flat, n in flat_batches(store, np.asarray(positions), batch_size):
        inputs = {"flat": autoencoder.scaling.transform(flat, n), "atom_mask": atom_mask(n)}
        parts.append(np.asarray(keras.ops.convert_to_numpy(model(inputs, training=False)), np.float64))
    return np.concatenate(parts).reshape(len(positions), -1)


def combined_mae(autoencoder: Any, weave: Any, store: Any, positions: np.ndarray, y: np.ndarray,
                 batch_size: int = 64, use_autoencoder: bool = True) -> tuple[float, np.ndarray]:
    """``(MAE, predictions)`` of the combined (or plain) model on the molecules at ``positions``:
    MAE (target units) over the real (finite) labels of ``y`` (len(store),) or (len(store), T)
    only; predictions (n,) for a scalar target, (n, T) for a vector one."""
    pred = combined_predict(autoencoder, weave, store, positions, batch_size, use_autoencoder)
    truth = np.asarray(y, np.float64)[positions]
    pred = pred.reshape(truth.shape)
    return masked_mae(pred, truth), pred


def weave_std(weave: Any, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(T,) the Weave model's target-scaling sd per output (else the sd of the training labels)."""
    import keras

    scaling = getattr(weave.head, "target_scaling", None)
    if scaling is not None:
        return np.asarray(keras.ops.convert_to_numpy(scaling.std), np.float64).reshape(-1)
    rows = np.asarray(y, np.float64).reshape(len(y), -1)[train]
    return np.nanstd(rows, axis=0)


def finetune(autoencoder_path: Path, weave: Any, store: Any, train: np.ndarray, y: np.ndarray,
             p: AutoencoderParams) -> Any:
    """A fresh copy of the DAE fine-tuned through the supervised loss with the Weave model frozen, in the one
    training loop (:func:`~qmlrp.training.autoencoder.fit_flat`); returns the tuned autoencoder. The loss: the
    mean over real labels of ``|prediction - label| / std_k`` (:func:`weave_std`), the masked MAE of the
    standardised target. ``y`` (len(store),) or (len(store), T), NaN = no label (masked)."""
    import keras

    from qmlrp.models.autoencoder import CombinedModel, load_autoencoder

    keras.utils.set_random_seed(p.seed)
    ae = load_autoencoder(autoencoder_path)
    weave.trainable = False
    std = weave_std(weave, y, train)
    if not np.all(std > 0):
        raise QmlrpError("fine-tuning: the target's standard deviation must be positive")
    fit_flat(CombinedModel(ae, weave), FlatBatches(store, ae.scaling, p.batch_size, targets=y), train, std, "mae",
             p.finetune_epochs, p.finetune_learning_rate, p.seed, "finetune")
    return ae


# -- LRP on the code -------------------------------------------------------------------------------
def view_coefficients(view: int | str, y_rows: np.ndarray) -> np.ndarray | int:
    """The output selection of a view for molecules with label rows ``y_rows`` (n, T): an index, or
    (``modes``) per-molecule coefficients (n, T), 1 on each molecule's real (finite) modes."""
    if view == MODES:
        return np.isfinite(np.asarray(y_rows, np.float64)).astype(np.float64)
    if isinstance(view, (int, np.integer)):
        return int(view)
    raise QmlrpError(f"unknown view output {view!r}: an output index or {MODES!r}")


def code_lrp(autoencoder: Any, weave_path: Path, store: Any, positions: np.ndarray, y: np.ndarray,
             view: int | str | None, weave_rules: Any, rule: Any, types: np.ndarray,
             batch_size: int = 64) -> tuple[Any, dict[str, np.ndarray]]:
    """LRP of the frozen combined model's (functional of the) prediction onto the code, in batches.

    Returns ``(CodeExplanation of all molecules, descriptors {name: (n,)})``; ``view`` None for a
    scalar target, else a :data:`VECTOR_VIEWS` value.
    """
    from qmlrp.features.dense import flatten
    from qmlrp.models.io import load_model
    from qmlrp.relevance.code import CodeExplanation, descriptors, explain_code
    from qmlrp.relevance.model_lrp import ModelLRP

    lrp = ModelLRP(load_model(weave_path))
    rows = np.asarray(y, np.float64).reshape(len(y), -1)
    parts, desc = [], {}
    for s in range(0, len(positions), batch_size):
        pos = positions[s : s + batch_size]
        batch = store.batch(pos)
        output = None if view is None else view_coefficients(view, rows[pos])
        parts.append(explain_code(autoencoder, lrp, batch, flatten(batch), store.n_atoms[pos], weave_rules, rule,
                                  types, output=output))
        for k, v in descriptors(batch).items():
            desc.setdefault(k, []).append(v)
    cat = lambda f: np.concatenate([getattr(e, f) for e in parts])  # noqa: E731
    joined = CodeExplanation(cat("output"), cat("code"), cat("r_code"), cat("r_weave_inputs"), cat("absorbed_weave"),
                             cat("absorbed_decoder"), cat("unit_types"))
    return joined, {k: np.concatenate(v) for k, v in desc.items()}


def write_code_relevance(target: str, units: str, r_code: np.ndarray, unit_types: np.ndarray,
                         corr: dict[str, np.ndarray], out_dir: Path, top: int = 5) -> dict[str, Any]:
    """Per-unit summaries across molecules (CSV + bar chart with error bars); returns the metrics.
    ``target``: the file name part (target, or ``<target>_<view>``)."""
    from qmlrp.models.autoencoder import FEATURE_TYPES

    out_dir.mkdir(parents=True, exist_ok=True)
    signed_m, signed_sd = r_code.mean(0), r_code.std(0)
    abs_m, abs_sd = np.abs(r_code).mean(0), np.abs(r_code).std(0)
    type_mean = unit_types.mean(0)  # (C, 12)
    names = list(corr)
    with open(out_dir / f"code_relevance_{target}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unit", "signed_mean", "signed_sd", "abs_mean", "abs_sd", "top_type", "top_descriptor",
                    "top_correlation"])
        for u in range(r_code.shape[1]):
            cs = np.array([corr[n][u] for n in names])
            best = int(np.nanargmax(np.abs(cs))) if np.any(np.isfinite(cs)) else None
            w.writerow([u, f"{signed_m[u]:.6g}", f"{signed_sd[u]:.6g}", f"{abs_m[u]:.6g}", f"{abs_sd[u]:.6g}",
                        FEATURE_TYPES[int(np.argmax(np.abs(type_mean[u])))],
                        "" if best is None else names[best], "" if best is None else f"{cs[best]:.4f}"])
    with open(out_dir / f"code_units_{target}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unit", *FEATURE_TYPES])
        for u in range(r_code.shape[1]):
            w.writerow([u, *(f"{v:.6g}" for v in type_mean[u])])
    with saved_figure(out_dir / f"code_relevance_{target}.png", nrows=2, figsize=(13, 7), sharex=True,
                      dpi=110) as (fig, axes):
        x = np.arange(r_code.shape[1])
        axes[0].bar(x, signed_m, yerr=signed_sd, capsize=1.5, color="tab:blue")
        axes[0].set_ylabel(f"signed relevance ({units})")
        axes[1].bar(x, abs_m, yerr=abs_sd, capsize=1.5, color="tab:orange")
        axes[1].set_ylabel(f"|relevance| ({units})")
        axes[1].set_xlabel("code unit")
        fig.suptitle(f"{target}: LRP relevance per code unit, mean ± sd over held-out molecules")
    order = np.argsort(-abs_m)[:top]
    top_units = []
    for u in order:
        cs = {n: _num(corr[n][u]) for n in names}
        top_units.append({"unit": int(u), "abs_mean": float(abs_m[u]), "signed_mean": float(signed_m[u]),
                          "types": {t: float(type_mean[u, k]) for k, t in enumerate(FEATURE_TYPES)},
                          "correlations": cs})
    dead = int(np.sum(np.all(r_code == 0, axis=0)))
    return {"top_units": top_units, "units_without_relevance": dead}


def summarise_code_lrp(name: str, units: str, e: Any, desc: Mapping[str, np.ndarray], p: AutoencoderParams,
                       plots: Path, functional: str) -> dict[str, Any]:
    """Write the per-unit tables/plot of one explained functional and return its metrics."""
    from qmlrp.relevance.code import correlations

    corr = correlations(e.code, dict(desc))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(e.output != 0, e.r_code.sum(1) / e.output, np.nan)
    return {"functional": functional, "rule": p.lrp_rule, "epsilon": p.lrp_epsilon, "molecules": int(len(e.output)),
            "max_conservation_error": float(e.conservation_error().max()),
            "mean_code_share": _num(float(np.nanmean(share))) if np.isfinite(share).any() else None,
            **write_code_relevance(name, units, e.r_code, e.unit_types, corr, plots)}


# -- the stage's part ------------------------------------------------------------------------------
def run_combined(p: AutoencoderParams, store: Any, train: np.ndarray, test: np.ndarray, model: Any,
                 model_path: Path, models_dir: Path, plots: Path, table: Path, log: Any = print,
                 beta_data: Path = BETA_DATA) -> dict[str, Any]:
    """Combined-model MAEs (plain / frozen / fine-tuned) and the code LRP for each target of
    ``p.targets`` with a trained model (module docstring); returns the combined metrics.

    Args:
        store, train, test, table: the stage's QM9 store, the DAE's training / held-out positions, its table.
        model, model_path: the trained DAE and its file (fine-tuning starts from a fresh copy).
        beta_data: the beta molecules' folder (``qmlrp.paths.BETA_DATA``).
    """
    from qmlrp.models.autoencoder import column_types
    from qmlrp.models.io import load_model
    from qmlrp.models.io import model_path as weave_path
    from qmlrp.relevance.rules import STABLE_LAYERS, get_rule, resolve_rules
    from qmlrp.targets import get_target

    out: dict[str, Any] = {"fold": p.fold, "targets": {}, "skipped": {}}
    rule = get_rule(p.lrp_rule, p.lrp_epsilon)
    weave_rules = resolve_rules([p.lrp_rule], p.lrp_epsilon, stabilise=STABLE_LAYERS)[p.lrp_rule]
    types = column_types()
    dae_train_ids = store.ids[train]
    for name in p.targets:
        path = weave_path(p.model_dirs.get(name, models_dir), name, p.fold)
        if not path.exists():
            out["skipped"][name] = f"no trained model {path}"
            log(f"autoencoder: {name}: skipped (no {path})")
            continue
        target = get_target(name)
        d = target_data(target, p.fold, (store, train, test, table), beta_data, dae_train_ids)
        weave = load_model(path)
        plain, _ = combined_mae(model, weave, d.store, d.test, d.y, use_autoencoder=False)
        frozen, _ = combined_mae(model, weave, d.store, d.test, d.y)
        t0 = time.time()
        tuned_ae = finetune(model_path, weave, d.store, d.train, d.y, p)
        tuned, _ = combined_mae(tuned_ae, weave, d.store, d.test, d.y)
        entry: dict[str, Any] = {
            "dataset": d.dataset, "units": target.units, "n_outputs": target.n_outputs,
            "n_test": int(d.test.size), "n_train": int(d.train.size), "unlabelled_left_out": d.unlabelled,
            "dae_training_overlap": d.dae_training_overlap,
            "mae_over": "real modes only (NaN padding masked)" if target.n_outputs > 1 else "labelled molecules",
            "mae_plain": _num(plain), "mae_frozen": _num(frozen), "mae_finetuned": _num(tuned),
            "finetune_epochs": p.finetune_epochs, "finetune_seconds": round(time.time() - t0, 1)}
        log(f"autoencoder: {name} ({d.dataset}, {d.test.size} held out): test MAE plain {plain:.4g}, "
            f"frozen {frozen:.4g}, fine-tuned {tuned:.4g} {target.units}")
        chosen = seeded_subset(d.test, p.lrp_molecules, p.seed)
        if target.n_outputs == 1:
            e, desc = code_lrp(model, path, d.store, chosen, d.y, None, weave_rules, rule, types)
            entry["code_lrp"] = summarise_code_lrp(name, target.units, e, desc, p, plots, "the prediction")
        else:
            entry["code_lrp"] = {}
            for view, output in VECTOR_VIEWS.items():
                e, desc = code_lrp(model, path, d.store, chosen, d.y, output, weave_rules, rule, types)
                functional = "sum over the molecule's real modes" if output == MODES else f"output {output}"
                entry["code_lrp"][view] = summarise_code_lrp(f"{name}_{view}", target.units, e, desc, p, plots,
                                                             functional)
        out["targets"][name] = entry
    return out
