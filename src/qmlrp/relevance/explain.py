"""Stage ``explain`` (one target): LRP of a trained model over the feature store, the 12-type
summaries (signed / absolute, with / without prediction outliers), the hypothesis test,
faithfulness (AOPC), per-molecule pictures, and metrics.

Outputs (``<plots>`` = ``plots/explain/<target>``):

* ``<plots>/types.csv``: rule, value (signed|absolute), subset (all|no_outliers), type, mean, std,
  median, n (normalised across the explained molecules) and raw_mean (target units) -- a DVC plot;
* ``<plots>/types_<rule>.png`` (and ``types_<rule>_no_outliers.png``): bar charts, error bars =
  standard deviation over molecules; ``<plots>/dvc/types_<rule>[_no_outliers].csv``: the same
  numbers, one row per type (columns signed, absolute, *_std), for ``dvc plots``;
* ``<plots>/aopc.csv``, ``<plots>/perturbation.csv`` and ``perturbation.png``: faithfulness;
* ``<plots>/types.csv`` also holds ``value = share``: the plain share of each type in the
  molecule's total |R| (non-negative, sums to 1; not normalised across molecules);
* ``<plots>/molecules.csv``: per molecule and rule the explained output, the share that reached
  the inputs, the relative conservation error and whether the explanation is empty;
* ``<plots>/molecules/<id>_<rule>.png``: per-molecule figures (:func:`~qmlrp.relevance.plots.molecule_figure`),
  one colour scale across the drawn molecules unless ``draw.same_scale`` is false;
* ``metrics/explain_<target>.json``: per rule the composite used, per-type means, ranking,
  hypothesis outcome, conservation error, absorbed and input shares, the number of empty
  explanations; AOPC table; timing. Nothing per molecule goes there.

Rules are used through the default composite (:func:`~qmlrp.relevance.rules.stable`: LRP-eps at
``explain.stabilise`` layers, ``[]`` for the plain rules), which keeps float32 within ~1e-5 of
float64 for most molecules and leaves no explanation empty.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv, write_json, write_parquet
from qmlrp.params import reject_unknown_keys
from qmlrp.paths import FEATURES, METRICS, MODELS, QM9_TABLE
from qmlrp.relevance.rules import RULE_NAMES, STABLE_LAYERS, Composite, resolve_rules
from qmlrp.relevance.summary import (
    FEATURE_TYPES,
    hypothesis,
    normalise,
    outlier_mask,
    ranking,
    summary_table,
    type_relevance,
    type_shares,
)

PLOTS = Path("plots/explain")


@dataclass(frozen=True)
class ExplainConfig:
    """``params.yaml`` section ``explain`` (see the proposal in the report / params.yaml)."""

    fold: int = 0
    molecules: str = "all"
    batch_size: int = 512
    rules: tuple[str, ...] = ("lrp0", "eps", "ab10", "ab21")
    epsilon: float = 0.1
    gamma: float = 0.25
    composites: dict[str, Any] = field(default_factory=dict)
    stabilise: tuple[str, ...] = STABLE_LAYERS
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outliers: dict[str, Any] = field(default_factory=lambda: {"k_mae": 3.0, "quantile": None})
    draw: dict[str, Any] = field(default_factory=lambda: {"ids": [], "count": 4, "same_scale": True})
    faithfulness: dict[str, Any] = field(default_factory=lambda: {"molecules": 200, "atom_steps": 8,
                                                                   "type_steps": 6, "random_repeats": 3})
    ground_truth: dict[str, Any] = field(default_factory=dict)
    per_molecule: bool = True  # write molecules.csv and shares.parquet (false: the summaries only)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExplainConfig:
        reject_unknown_keys("explain", dict(params), set(cls.__dataclass_fields__))
        values = dict(params)
        for key in ("rules", "stabilise"):
            if key in values:
                values[key] = tuple(values[key] or ())
        values["outputs"] = parse_views(values.get("outputs") or {})
        config = cls(**values)
        if config.molecules not in ("all", "test"):
            raise QmlrpError(f"params.yaml explain.molecules: {config.molecules!r} is not 'all' or 'test'")
        for name in config.rules:
            if name not in RULE_NAMES and name not in config.composites:
                raise QmlrpError(f"params.yaml explain.rules: unknown rule {name!r} (known: {', '.join(RULE_NAMES)})")
        if config.batch_size < 1:
            raise QmlrpError("params.yaml explain.batch_size must be positive")
        return config

    @classmethod
    def load(cls, path: str | Path) -> ExplainConfig:
        from qmlrp.params import stage_params

        return cls.from_params(stage_params("explain", path))

    def resolved_rules(self) -> dict[str, Composite]:
        try:
            return resolve_rules(self.rules, self.epsilon, self.gamma, self.composites, self.stabilise)
        except (ValueError, KeyError) as err:
            raise QmlrpError(f"params.yaml explain: {err}") from None


def parse_output(value: Any, where: str) -> int | tuple[float, ...] | None:
    """Which output to explain: None, a unit index, or coefficients (a list, or text ``"1,0,-2"``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, str):
            parts = [p for p in value.split(",") if p.strip()]
            return int(parts[0]) if len(parts) == 1 and "." not in parts[0] else tuple(float(p) for p in parts)
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise QmlrpError(f"{where}: {value!r} is not an output index or a list of coefficients") from None


MODES = "modes"
"""A view's output: the sum of the molecule's own real vibrational modes (per-molecule coefficients)."""


def parse_views(value: Any) -> dict[str, dict[str, Any]]:
    """``explain.outputs``: target -> {view name: output index | coefficients | "modes"}."""
    from qmlrp.targets import get_target

    if not isinstance(value, Mapping):
        raise QmlrpError(f"params.yaml explain.outputs: expected target -> {{view: output}}, got {value!r}")
    views: dict[str, dict[str, Any]] = {}
    for target, entries in value.items():
        get_target(str(target))
        if not isinstance(entries, Mapping) or not entries:
            raise QmlrpError(f"params.yaml explain.outputs.{target}: expected a mapping view name -> output")
        views[str(target)] = {}
        for view, sel in entries.items():
            if not str(view).replace("_", "").isalnum():
                raise QmlrpError(f"params.yaml explain.outputs.{target}: view name {view!r} must be a word")
            where = f"params.yaml explain.outputs.{target}.{view}"
            views[str(target)][str(view)] = MODES if sel == MODES else parse_output(sel, where)
    return views


def _log(message: str) -> None:
    print(f"explain: {message}", file=sys.stderr, flush=True)


def _chunks(positions: np.ndarray, size: int) -> list[np.ndarray]:
    return [positions[k:k + size] for k in range(0, positions.size, size)]


@dataclass
class _Subject:
    """What every view of one target's explanation shares: data, model, predictions' inputs."""

    spec: Any
    store: FeatureStore
    table: Path
    y_all: np.ndarray          # (n_store,) or (n_store, n_outputs), NaN padding
    n_modes: np.ndarray | None  # (n_store,) real vibrational modes (vector targets) or None
    model: Any
    lrp: Any
    forward: Any
    split: Any
    positions: np.ndarray


def _selector(subject: _Subject, selection: Any) -> Any:
    """``positions -> output selection`` for :meth:`ModelLRP.explain_inputs` (``"modes"``: one
    row of coefficients per molecule, 1 on its real modes)."""
    if selection != MODES:
        return lambda positions: selection
    if subject.n_modes is None:
        raise QmlrpError(f"params.yaml explain.outputs.{subject.spec.name}: 'modes' needs a vector target")
    width = int(subject.spec.n_outputs)

    def rows(positions: np.ndarray) -> np.ndarray:
        return (np.arange(width)[None, :] < subject.n_modes[positions][:, None]).astype(np.float64)

    return rows


def _functional(values: np.ndarray, coefficients: Any, n_outputs: int) -> np.ndarray:
    """(n,) ``sum_k c_k v_k`` of (n,) or (n, n_outputs) values (NaN padding counts 0)."""
    from qmlrp.relevance.model_lrp import output_coefficients

    v = np.asarray(values, np.float64).reshape(len(values), -1)
    c = output_coefficients(coefficients, n_outputs, len(v))
    return np.where(c != 0, np.nan_to_num(v) * c, 0.0).sum(1)


def run_explain(
    target: str,
    config: ExplainConfig,
    features: str | Path | None = None,
    table: str | Path | None = None,
    folds: str | Path | None = None,
    models_dir: str | Path = MODELS,
    plots_dir: str | Path = PLOTS,
    metrics_dir: str | Path = METRICS,
) -> dict[str, Any]:
    """Run the stage for one target; returns the metrics written to ``metrics/explain_<target>.json``.

    Data default to the target's dataset (:func:`qmlrp.paths.dataset_paths`). A target listed in
    ``explain.outputs`` is explained once per view (``<plots>/<target>/<view>/``; metrics under
    ``views``); any other target's only output is explained into ``<plots>/<target>/``.
    """
    from qmlrp.models.io import inference_function, load_model, model_path
    from qmlrp.paths import dataset_paths
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.targets import get_target
    from qmlrp.targets.labels import load_labels
    from qmlrp.data.split import make_split

    spec = get_target(target)
    default_table, default_features, default_folds = dataset_paths(spec.dataset)
    features, table = Path(features or default_features), Path(table or default_table)
    folds = Path(folds or default_folds)
    store = FeatureStore.open(features)
    y_all = load_labels(store, table, spec)
    model = load_model(model_path(models_dir, target, config.fold))
    split = make_split(store, folds, config.fold, 0.1, 0)
    positions = np.arange(len(store)) if config.molecules == "all" else split.test
    # molecules without a label (e.g. QM9's few records with a doubled frequency list) are not explained
    labelled = np.isfinite(y_all.reshape(len(store), -1)).any(axis=1)
    if not labelled[positions].all():
        _log(f"{target}: {int((~labelled[positions]).sum())} molecules without a label are left out "
             f"(ids {', '.join(map(str, store.ids[positions][~labelled[positions]][:10]))})")
        positions = positions[labelled[positions]]
    n_modes = np.isfinite(y_all).sum(axis=1) if spec.n_outputs > 1 else None  # the labels' real modes
    subject = _Subject(spec, store, table, y_all, n_modes, model, ModelLRP(model), inference_function(model),
                       split, positions)
    views = config.outputs.get(target)
    out = Path(plots_dir) / target
    if not views:
        metrics = {"target": target, "units": spec.units, "fold": config.fold,
                   **_explain_view(subject, config, None, out, target)}
    else:
        metrics = {"target": target, "units": spec.units, "fold": config.fold,
                   "views": {view: {"output": sel if not isinstance(sel, tuple) else list(sel),
                                    **_explain_view(subject, config, sel, out / view, f"{target} {view}")}
                             for view, sel in views.items()}}
    write_json(metrics, Path(metrics_dir) / f"explain_{target}.json")
    return metrics


@dataclass
class _RuleChunks:
    """One rule's per-chunk results, in chunk order: (n_chunk, 12) type arrays and (n_chunk,) per-molecule values."""

    signed: list[np.ndarray] = field(default_factory=list)
    absolute: list[np.ndarray] = field(default_factory=list)
    totals: list[np.ndarray] = field(default_factory=list)
    shares: list[np.ndarray] = field(default_factory=list)
    cons: list[np.ndarray] = field(default_factory=list)
    share: list[np.ndarray] = field(default_factory=list)
    reached: list[np.ndarray] = field(default_factory=list)
    empty: list[np.ndarray] = field(default_factory=list)


@dataclass
class _Pass:
    """The relevance pass over a view's molecules: per-rule chunks, ids and mean shares per chunk, (n,)
    explained outputs and their labels (target units), (n,) outlier mask, forward and LRP seconds."""

    chunks: dict[str, _RuleChunks]
    ids: list[np.ndarray]
    mean_share: list[np.ndarray]
    y_pred: np.ndarray
    y_true: np.ndarray
    outliers: np.ndarray
    t_forward: float
    t_lrp: float


@dataclass
class _Summary:
    """A view's summaries: the long types table, per-molecule rows and type shares, and per-rule metrics."""

    types: pd.DataFrame
    per_molecule: list[pd.DataFrame]
    per_molecule_shares: list[pd.DataFrame]
    rule_metrics: dict[str, Any]


def _relevance_pass(subject: _Subject, config: ExplainConfig, rules: dict[str, Composite], select: Any,
                    width: int, label: str) -> _Pass:
    """Forward and LRP over ``subject.positions`` chunk by chunk (``width`` model outputs), summarised per chunk;
    logs the pass."""
    from qmlrp.models.inputs import batch_to_inputs

    store, lrp, positions = subject.store, subject.lrp, subject.positions
    chunks = _chunks(positions, config.batch_size)
    per_rule = {r: _RuleChunks() for r in rules}
    ids: list[np.ndarray] = []
    mean_share: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    t_forward = t_lrp = 0.0
    for chunk in chunks:
        batch = store.batch(chunk)
        inputs = batch_to_inputs(batch)
        sel = select(chunk)
        t0 = time.perf_counter()
        outputs.append(_functional(np.asarray(subject.forward(inputs)).reshape(chunk.size, -1), sel, width))
        t_forward += time.perf_counter() - t0
        truths.append(_functional(subject.y_all[chunk], sel, width))
        t0 = time.perf_counter()
        explanations = lrp.explain_inputs(inputs, rules, batch.ids, output=sel)
        t_lrp += time.perf_counter() - t0
        for name, e in explanations.items():
            args = (e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, e.n_molecules)
            acc = per_rule[name]
            acc.signed.append(type_relevance(*args))
            acc.absolute.append(type_relevance(*args, absolute=True))
            acc.totals.append(type_relevance(*args, absolute=True, reduce="sum"))
            acc.shares.append(type_shares(*args))
            acc.cons.append(e.relative_conservation_error())
            acc.share.append(e.absorbed_share())
            acc.reached.append(e.input_share())
            acc.empty.append(e.empty())
        mean_share.append(e.mean_share())
        ids.append(np.asarray(batch.ids))
    y_pred = np.concatenate(outputs)
    y_true = np.concatenate(truths)
    outliers = outlier_mask(y_true, y_pred, config.outliers.get("k_mae"), config.outliers.get("quantile"))
    _log(f"{label}: {positions.size} molecules, {len(rules)} rules, forward {t_forward:.1f}s, "
         f"LRP {t_lrp:.1f}s, {int(outliers.sum())} outliers")
    return _Pass(per_rule, ids, mean_share, y_pred, y_true, outliers, t_forward, t_lrp)


def _type_rows(name: str, per_kind: dict[str, np.ndarray], outliers: np.ndarray,
               rows: list[pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Append one rule's summary tables (value x subset) to ``rows``; returns the per-type means over all molecules."""
    means: dict[str, dict[str, float]] = {}
    for kind, raw in per_kind.items():
        norm = raw if kind == "share" else normalise(raw)[0]  # shares are plain: no normalisation
        for subset, keep in (("all", None), ("no_outliers", ~outliers)):
            tab = summary_table(norm, keep)
            tab["raw_mean"] = summary_table(raw, keep)["mean"]
            tab.insert(0, "subset", subset)
            tab.insert(0, "value", kind)
            tab.insert(0, "rule", name)
            rows.append(tab)
            if subset == "all":
                means[kind] = dict(zip(tab["type"], map(float, tab["mean"])))
    return means


def _summarise(subject: _Subject, rules: dict[str, Composite], run: _Pass, label: str) -> _Summary:
    """Per rule: types-table rows, per-molecule rows and shares, and metrics; logs empty explanations."""
    spec, outliers = subject.spec, run.outliers
    all_ids = np.concatenate(run.ids)
    rows: list[pd.DataFrame] = []
    per_molecule = []
    per_molecule_shares = []
    rule_metrics: dict[str, Any] = {}
    for name in rules:
        acc = run.chunks[name]
        per_kind = {"signed": np.concatenate(acc.signed), "absolute": np.concatenate(acc.absolute),
                    "share": np.concatenate(acc.shares)}
        means = _type_rows(name, per_kind, outliers, rows)
        abs_norm, _ = normalise(per_kind["absolute"])
        tot_norm, _ = normalise(np.concatenate(acc.totals))
        c = np.concatenate(acc.cons)
        s = np.concatenate(acc.share)
        r_in = np.concatenate(acc.reached)
        flagged = np.concatenate(acc.empty)
        per_molecule.append(pd.DataFrame({"id": all_ids, "rule": name, "output": run.y_pred, "input_share": r_in,
                                          "conservation_rel_error": c, "empty": flagged}))
        shares_frame = pd.DataFrame(per_kind["share"].astype(np.float32), columns=list(FEATURE_TYPES))
        shares_frame.insert(0, "outlier", outliers)
        shares_frame.insert(0, "rule", name)
        shares_frame.insert(0, "id", all_ids)
        per_molecule_shares.append(shares_frame)
        if flagged.any():
            _log(f"{label} {name}: {int(flagged.sum())} of {flagged.size} molecules have an empty explanation "
                 f"(ids {', '.join(map(str, all_ids[flagged][:10]))}{' ...' if flagged.sum() > 10 else ''})")
        rule_metrics[name] = {
            "composite": rules[name].describe(),
            "empty_explanations": {"count": int(flagged.sum()), "share": float(flagged.mean()),
                                   "ids": [int(i) for i in all_ids[flagged][:20]]},
            "input_share_of_output": {"median": float(np.nanmedian(r_in)), "mean": float(np.nanmean(r_in))},
            "share_means": dict(zip(FEATURE_TYPES, map(float, per_kind["share"].mean(0)))),
            "type_means": means,
            "ranking_absolute": ranking(np.array([means["absolute"][t] for t in FEATURE_TYPES])),
            "ranking_signed": ranking(np.array([means["signed"][t] for t in FEATURE_TYPES])),
            "hypothesis": hypothesis(abs_norm, spec.name),
            "hypothesis_no_outliers": hypothesis(abs_norm[~outliers], spec.name),
            "ranking_absolute_totals": ranking(tot_norm.mean(0)),
            "hypothesis_totals": hypothesis(tot_norm, spec.name),
            "conservation_rel_error": {"max": float(c.max()), "median": float(np.median(c))},
            "absorbed_share_of_output": {"median": float(np.nanmedian(s)), "mean": float(np.nanmean(s)),
                                         "max_abs": float(np.nanmax(np.abs(s)))},
        }
    return _Summary(pd.concat(rows, ignore_index=True), per_molecule, per_molecule_shares, rule_metrics)


def _write_summary(summary: _Summary, rules: dict[str, Composite], out: Path, label: str,
                   per_molecule: bool = True) -> None:
    """``types.csv``, per rule and subset a bar chart and a ``dvc/`` table, and (``per_molecule``)
    ``molecules.csv`` and ``shares.parquet``."""
    from qmlrp.relevance.plots import type_bars

    types = summary.types
    write_csv(types, out / "types.csv")
    if per_molecule:
        write_csv(pd.concat(summary.per_molecule, ignore_index=True), out / "molecules.csv")
        # per-molecule type shares (float32): the input of the cross-target comparison (compare stage)
        write_parquet(pa.Table.from_pandas(pd.concat(summary.per_molecule_shares, ignore_index=True),
                                           preserve_index=False), out / "shares.parquet")
    for name in rules:
        for subset, suffix in (("all", ""), ("no_outliers", "_no_outliers")):
            t = types[(types["rule"] == name) & (types["subset"] == subset)]
            type_bars(t, f"{label} / {name} / {subset}", out / f"types_{name}{suffix}.png")
            # one small table per rule and subset for `dvc plots` (x: type, y: signed / absolute)
            wide = t.pivot(index="type", columns="value", values=["mean", "std"]).reindex(list(FEATURE_TYPES))
            wide = wide[[c for c in wide.columns if c[1] in ("signed", "absolute")]]
            wide.columns = [v if m == "mean" else f"{v}_std" for m, v in wide.columns]
            write_csv(wide.reset_index(), out / "dvc" / f"types_{name}{suffix}.csv")


def _faithfulness(subject: _Subject, config: ExplainConfig, rules: dict[str, Composite], select: Any,
                  test: np.ndarray, out: Path, label: str) -> dict[str, Any]:
    """AOPC on the first held-out (test) molecules: ``aopc.csv``, ``perturbation.csv``/``.png``; returns the metrics."""
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.relevance.faithfulness import faithfulness_table, forward_function, gradient_times_input
    from qmlrp.relevance.plots import perturbation_curves

    f = config.faithfulness
    sample = test[: int(f.get("molecules", 200))]
    faith: dict[str, Any] = {}
    if sample.size:
        batch = subject.store.batch(sample)
        sel = select(sample)
        explanations = subject.lrp.explain_inputs(batch_to_inputs(batch), rules, batch.ids, output=sel)
        attributions = {name: (e.atoms, e.pairs) for name, e in explanations.items()}
        attributions["gradient_x_input"] = gradient_times_input(subject.model, sel)(batch)
        aopc_rows, curves = faithfulness_table(batch, attributions, forward_function(subject.model, sel),
                                               int(f.get("atom_steps", 8)), int(f.get("type_steps", 6)),
                                               int(f.get("random_repeats", 3)))
        write_csv(pd.DataFrame(aopc_rows), out / "aopc.csv")
        write_csv(pd.DataFrame([{"curve": k, "step": s, "drop": float(v)} for k, c in curves.items()
                                for s, v in enumerate(c)]), out / "perturbation.csv")
        perturbation_curves(curves, label, out / "perturbation.png")
        for r in aopc_rows:
            faith.setdefault(r["unit"], {})[r["method"]] = {"aopc": r["aopc"], "sem": r["aopc_sem"]}
        faith["n_molecules"] = int(sample.size)
    return faith


def _draw_view(subject: _Subject, config: ExplainConfig, rules: dict[str, Composite], select: Any,
               test: np.ndarray, y_true: np.ndarray, out: Path, label: str) -> list[int]:
    """Per-molecule pictures of the chosen molecules into ``out/molecules``, labels (target units) as reference."""
    store = subject.store
    reference = dict(zip(store.ids[subject.positions].tolist(), y_true.tolist()))
    return draw_molecules(store, subject.table, subject.lrp, rules, _draw_ids(store, config.draw, test),
                          out / "molecules", label, subject.spec.units, reference,
                          bool(config.draw.get("same_scale", True)), select)


def _explain_view(subject: _Subject, config: ExplainConfig, selection: Any, out: Path, label: str) -> dict[str, Any]:
    """One explained output (``selection``) of ``subject`` over its molecules -> files in ``out``
    and the view's metrics."""
    rules = config.resolved_rules()
    positions = subject.positions
    test = subject.split.test[np.isin(subject.split.test, positions)]  # the fold's labelled molecules
    select = _selector(subject, selection)
    width = int(subject.spec.n_outputs)
    out.mkdir(parents=True, exist_ok=True)

    run = _relevance_pass(subject, config, rules, select, width, label)  # relevance over all molecules, per chunk
    summary = _summarise(subject, rules, run, label)
    _write_summary(summary, rules, out, label, config.per_molecule)
    faith = _faithfulness(subject, config, rules, select, test, out, label)  # on held-out molecules
    drawn = _draw_view(subject, config, rules, select, test, run.y_true, out, label)

    y_pred, y_true, t_forward, t_lrp = run.y_pred, run.y_true, run.t_forward, run.t_lrp
    return {
        "n_molecules": int(positions.size),
        "model_mae": float(np.mean(np.abs(y_pred - y_true))),
        "outlier_cut": {k: v for k, v in config.outliers.items()},
        "n_outliers": int(run.outliers.sum()),
        "target_mean_share_of_output": {"median": float(np.nanmedian(np.concatenate(run.mean_share)))},
        "rules": summary.rule_metrics,
        "faithfulness": faith,
        "timing": {"forward_s": round(t_forward, 3), "lrp_all_rules_s": round(t_lrp, 3), "n_rules": len(rules),
                   "lrp_per_rule_over_forward": round(t_lrp / max(t_forward, 1e-9) / len(rules), 3)},
        "molecules_drawn": drawn,
    }


def _draw_ids(store: FeatureStore, draw: Mapping[str, Any], test: np.ndarray) -> list[int]:
    known = set(int(i) for i in store.ids)
    ids = [int(i) for i in draw.get("ids", []) or [] if int(i) in known]
    ids += [int(store.ids[p]) for p in test[: int(draw.get("count", 0) or 0)] if int(store.ids[p]) not in ids]
    return ids


def molecule_picture(e: Any, m: int, title: str, target: str, units: str, rule: str,
                     reference: float | None) -> Any:
    """The :class:`~qmlrp.relevance.plots.MoleculePicture` of molecule ``m`` (batch index) of
    explanation ``e``: atoms' own feature relevance, pairs' summed feature relevance."""
    from qmlrp.relevance.plots import MoleculePicture

    atoms, pairs = e.molecule(m)
    first_atom = int(np.flatnonzero(e.atom_molecule == m)[0])
    return MoleculePicture(
        title=title, target=target, units=units, rule=rule, predicted=float(e.output[m]), reference=reference,
        atom_relevance=atoms.sum(1).astype(np.float64), pair_relevance=pairs.sum(1).astype(np.float64),
        pair_atoms=e.pair_atoms[e.pair_molecule == m] - first_atom, inputs=float(e.input_total()[m]),
        absorbed_mean=float(e.absorbed_mean[m]), absorbed_other=float(e.absorbed[m] - e.absorbed_mean[m]),
        conservation_error=float(e.conservation_error()[m]), empty=bool(e.empty()[m]))


def draw_molecules(store: FeatureStore, table: str | Path, lrp: Any, rules: Mapping[str, Composite],
                   ids: list[int], out: Path, target: str = "", units: str = "",
                   reference: Mapping[int, float] | None = None, same_scale: bool = True,
                   output: Any = None) -> list[int]:
    """Per-molecule figures ``<out>/<id>_<rule>.png`` for store molecules ``ids``; with
    ``same_scale`` one colour scale per rule across the molecules drawn; ``output`` as for
    :meth:`~qmlrp.relevance.model_lrp.ModelLRP.explain_inputs`."""
    from qmlrp.features.molecule import build_molecule
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.relevance.plots import molecule_figure

    if not ids:
        return []
    frame = pd.read_parquet(table, columns=["id", "smiles", "atomic_numbers", "coordinates"]).set_index("id")
    chosen = store.positions(ids)
    batch = store.batch(chosen)
    selection = output(chosen) if callable(output) else output
    explanations = lrp.explain_inputs(batch_to_inputs(batch), rules, batch.ids, output=selection)
    reference = reference or {}
    mols = []
    for mol_id in ids:
        row = frame.loc[mol_id]
        mol, _ = build_molecule(np.asarray(row["atomic_numbers"]), np.asarray(row["coordinates"]).reshape(-1, 3),
                                row["smiles"], str(mol_id))
        mols.append((mol, row["smiles"]))
    for name, e in explanations.items():
        pictures = [molecule_picture(e, m, f"QM9 {mol_id} ({smiles})", target, units, rules[name].describe(),
                                     reference.get(int(mol_id)))
                    for m, (mol_id, (_, smiles)) in enumerate(zip(ids, mols))]
        scale = max(p.scale() for p in pictures) if same_scale else None
        for (mol, _), mol_id, picture in zip(mols, ids, pictures):
            molecule_figure(mol, picture, out / f"{mol_id}_{name}.png", scale=scale or None)
    return ids


def explain_files(files: list[Path], target: str, rule: str, out: Path, models_dir: str | Path, fold: int = 0,
                  epsilon: float = 0.1, plain: bool = False, same_scale: bool = True,
                  output: int | tuple[float, ...] | None = None,
                  featurized: tuple[Any, list[Any], list[str]] | None = None) -> tuple[list[str], list[str]]:
    """``qmlrp explain``: read (XYZ, SDF: what ``predict`` reads), featurize and explain every
    molecule of ``files``; figures ``<out>/<stem>_<target>_<rule>.png``.

    ``featurized``: the result of :func:`qmlrp.relevance.user_files.featurize_for_explain` when the caller ran it already
    (the CLI does, before anything loads Keras). Returns (one summary line per explained molecule,
    one error line per failed file or molecule, then one warning line per way a molecule lies
    outside QM9's ranges -- both for stderr). Raises :class:`QmlrpError` for a bad target, rule,
    output or model (nothing can be drawn then).
    """
    from qmlrp.features.pairs import make_batch
    from qmlrp.models.io import fold_model, load_model
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.relevance.plots import molecule_figure
    from qmlrp.relevance.rules import get_rule, stable
    from qmlrp.relevance.summary import ranking, type_relevance

    try:
        comp = get_rule(rule, epsilon=epsilon)
    except ValueError as err:
        raise QmlrpError(str(err)) from None
    composite = comp if plain else stable(comp, epsilon)
    if featurized is None:
        from qmlrp.relevance.user_files import featurize_for_explain

        featurized = featurize_for_explain(files, target)
    spec, kept, failures = featurized
    model = load_model(fold_model(models_dir, spec.name, fold))
    if not kept:
        return [], failures
    stems: dict[str, int] = {}
    for mol_in, _, _ in kept:
        stems[Path(mol_in.file).stem] = stems.get(Path(mol_in.file).stem, 0) + 1
    batch = make_batch([g for _, g, _ in kept], np.arange(len(kept)))
    try:
        e = ModelLRP(model).explain(batch, composite, name=rule, output=output)
    except ValueError as err:  # an output the model does not have
        raise QmlrpError(f"--output: {err}") from None
    types = type_relevance(e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, e.n_molecules, absolute=True)
    pictures = [molecule_picture(e, m, f"{mol_in.name} ({Path(mol_in.file).name})", spec.name, spec.units,
                                 composite.describe(), None) for m, (mol_in, _, _) in enumerate(kept)]
    scale = max(p.scale() for p in pictures) if same_scale else None
    lines, seen = [], {}
    for m, ((mol_in, _, mol), picture) in enumerate(zip(kept, pictures)):
        stem = Path(mol_in.file).stem
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if stems[stem] == 1 else f"{stem}_{seen[stem] - 1}"
        png = out / f"{name}_{spec.name}_{rule}.png"
        molecule_figure(mol, picture, png, scale=scale or None)
        flag = "; EMPTY explanation (no input got relevance)" if picture.empty else ""
        lines.append(f"{mol_in.name}: {spec.name} = {e.output[m]:.5g} {spec.units}; inputs carry {picture.inputs:.4g} "
                     f"({e.input_share()[m]:.0%}), target mean {picture.absorbed_mean:.4g}, biases/stabilisers "
                     f"{picture.absorbed_other:.4g}; conservation error {picture.conservation_error:.1e}; "
                     f"top types: {', '.join(ranking(types[m])[:3])}{flag} -> {png}")
    return lines, failures


def run_ground_truth_stage(config: ExplainConfig, params_path: str | Path, features: str | Path = FEATURES,
                           table: str | Path = QM9_TABLE, plots_dir: str | Path = PLOTS,
                           metrics_dir: str | Path = METRICS) -> dict[str, Any]:
    """The Crippen logP ground-truth experiment -> ``metrics/explain_crippen.json``."""
    from qmlrp.relevance.ground_truth import run_ground_truth

    unknown = set(config.ground_truth) - {"pair_share"}
    if unknown:
        raise QmlrpError(f"params.yaml explain.ground_truth: unknown keys {sorted(unknown)} (training settings of the "
                         f"Crippen model live in the section train_crippen)")
    store = FeatureStore.open(features)
    summary, frame = run_ground_truth(store, table, config.resolved_rules(),
                                      pair_share=float(config.ground_truth.get("pair_share", 0.5)))
    out = Path(plots_dir) / "crippen"
    write_csv(frame, out / "kendall_tau.csv")
    write_json(summary, Path(metrics_dir) / "explain_crippen.json")
    return summary
