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
* ``<plots>/molecules/<id>_<rule>.png``: atom relevance on the 2D depiction;
* ``metrics/explain_<target>.json``: per rule the per-type means, ranking, hypothesis outcome,
  conservation error and absorbed share; AOPC table; timing. Nothing per molecule goes there.
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

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv, write_json
from qmlrp.params import reject_unknown_keys
from qmlrp.paths import FEATURES, FOLDS, METRICS, MODELS, QM9_TABLE
from qmlrp.relevance.rules import RULE_NAMES, Composite, resolve_rules
from qmlrp.relevance.summary import FEATURE_TYPES, hypothesis, normalise, outlier_mask, ranking, summary_table, type_relevance

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
    outliers: dict[str, Any] = field(default_factory=lambda: {"k_mae": 3.0, "quantile": None})
    draw: dict[str, Any] = field(default_factory=lambda: {"ids": [], "count": 4})
    faithfulness: dict[str, Any] = field(default_factory=lambda: {"molecules": 200, "atom_steps": 8,
                                                                   "type_steps": 6, "random_repeats": 3})
    ground_truth: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ExplainConfig:
        reject_unknown_keys("explain", dict(params), set(cls.__dataclass_fields__))
        values = dict(params)
        if "rules" in values:
            values["rules"] = tuple(values["rules"])
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
            return resolve_rules(self.rules, self.epsilon, self.gamma, self.composites)
        except (ValueError, KeyError) as err:
            raise QmlrpError(f"params.yaml explain: {err}") from None


def _log(message: str) -> None:
    print(f"explain: {message}", file=sys.stderr, flush=True)


def _chunks(positions: np.ndarray, size: int) -> list[np.ndarray]:
    return [positions[k:k + size] for k in range(0, positions.size, size)]


def run_explain(
    target: str,
    config: ExplainConfig,
    features: str | Path = FEATURES,
    table: str | Path = QM9_TABLE,
    folds: str | Path = FOLDS,
    models_dir: str | Path = MODELS,
    plots_dir: str | Path = PLOTS,
    metrics_dir: str | Path = METRICS,
) -> dict[str, Any]:
    """Run the stage for one target; returns the metrics written to ``metrics/explain_<target>.json``."""
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import inference_function, load_model, model_path
    from qmlrp.relevance.faithfulness import faithfulness_table, forward_function, gradient_times_input
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.relevance.plots import perturbation_curves, type_bars
    from qmlrp.training.config import get_target
    from qmlrp.training.data import load_targets, make_split

    spec = get_target(target)
    rules = config.resolved_rules()
    store = FeatureStore.open(features)
    y_all = load_targets(store, table, spec)
    model = load_model(model_path(models_dir, target, config.fold))
    split = make_split(store, folds, config.fold, 0.1, 0)
    positions = np.arange(len(store)) if config.molecules == "all" else split.test
    out = Path(plots_dir) / target
    out.mkdir(parents=True, exist_ok=True)

    # -- relevance over all molecules, summarised per chunk ---------------------------------
    lrp = ModelLRP(model)
    forward = inference_function(model)
    chunks = _chunks(positions, config.batch_size)
    signed = {r: [] for r in rules}
    absolute = {r: [] for r in rules}
    totals = {r: [] for r in rules}
    cons = {r: [] for r in rules}
    share = {r: [] for r in rules}
    mean_share: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    t_forward = t_lrp = 0.0
    for chunk in chunks:
        batch = store.batch(chunk)
        inputs = batch_to_inputs(batch)
        t0 = time.perf_counter()
        outputs.append(forward(inputs))
        t_forward += time.perf_counter() - t0
        t0 = time.perf_counter()
        explanations = lrp.explain_inputs(inputs, rules, batch.ids)
        t_lrp += time.perf_counter() - t0
        for name, e in explanations.items():
            args = (e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, e.n_molecules)
            signed[name].append(type_relevance(*args))
            absolute[name].append(type_relevance(*args, absolute=True))
            totals[name].append(type_relevance(*args, absolute=True, reduce="sum"))
            cons[name].append(e.conservation_error() / np.maximum(np.abs(e.output), 1e-12))
            share[name].append(e.absorbed_share())
        mean_share.append(e.mean_share())
    y_pred = np.concatenate(outputs)
    y_true = y_all[positions]
    outliers = outlier_mask(y_true, y_pred, config.outliers.get("k_mae"), config.outliers.get("quantile"))
    _log(f"{target}: {positions.size} molecules, {len(rules)} rules, forward {t_forward:.1f}s, "
         f"LRP {t_lrp:.1f}s, {int(outliers.sum())} outliers")

    rows = []
    rule_metrics: dict[str, Any] = {}
    for name in rules:
        per_kind = {"signed": np.concatenate(signed[name]), "absolute": np.concatenate(absolute[name])}
        means: dict[str, dict[str, float]] = {}
        for kind, raw in per_kind.items():
            norm, _ = normalise(raw)
            for subset, keep in (("all", None), ("no_outliers", ~outliers)):
                tab = summary_table(norm, keep)
                tab["raw_mean"] = summary_table(raw, keep)["mean"]
                tab.insert(0, "subset", subset)
                tab.insert(0, "value", kind)
                tab.insert(0, "rule", name)
                rows.append(tab)
                if subset == "all":
                    means[kind] = dict(zip(tab["type"], map(float, tab["mean"])))
        abs_norm, _ = normalise(per_kind["absolute"])
        tot_norm, _ = normalise(np.concatenate(totals[name]))
        c = np.concatenate(cons[name])
        s = np.concatenate(share[name])
        rule_metrics[name] = {
            "type_means": means,
            "ranking_absolute": ranking(np.array([means["absolute"][t] for t in FEATURE_TYPES])),
            "ranking_signed": ranking(np.array([means["signed"][t] for t in FEATURE_TYPES])),
            "hypothesis": hypothesis(abs_norm, target),
            "hypothesis_no_outliers": hypothesis(abs_norm[~outliers], target),
            "ranking_absolute_totals": ranking(tot_norm.mean(0)),
            "hypothesis_totals": hypothesis(tot_norm, target),
            "conservation_rel_error": {"max": float(c.max()), "median": float(np.median(c))},
            "absorbed_share_of_output": {"median": float(np.nanmedian(s)), "mean": float(np.nanmean(s)),
                                         "max_abs": float(np.nanmax(np.abs(s)))},
        }
    types = pd.concat(rows, ignore_index=True)
    write_csv(types, out / "types.csv")
    for name in rules:
        for subset, suffix in (("all", ""), ("no_outliers", "_no_outliers")):
            t = types[(types["rule"] == name) & (types["subset"] == subset)]
            type_bars(t, f"{target} / {name} / {subset}", out / f"types_{name}{suffix}.png")
            # one small table per rule and subset for `dvc plots` (x: type, y: signed / absolute)
            wide = t.pivot(index="type", columns="value", values=["mean", "std"]).reindex(list(FEATURE_TYPES))
            wide.columns = [v if m == "mean" else f"{v}_std" for m, v in wide.columns]
            write_csv(wide.reset_index(), out / "dvc" / f"types_{name}{suffix}.csv")

    # -- faithfulness on held-out molecules ---------------------------------------------------
    f = config.faithfulness
    sample = split.test[: int(f.get("molecules", 200))]
    faith: dict[str, Any] = {}
    if sample.size:
        batch = store.batch(sample)
        explanations = lrp.explain_inputs(batch_to_inputs(batch), rules, batch.ids)
        attributions = {name: (e.atoms, e.pairs) for name, e in explanations.items()}
        attributions["gradient_x_input"] = gradient_times_input(model)(batch)
        aopc_rows, curves = faithfulness_table(batch, attributions, forward_function(model),
                                               int(f.get("atom_steps", 8)), int(f.get("type_steps", 6)),
                                               int(f.get("random_repeats", 3)))
        write_csv(pd.DataFrame(aopc_rows), out / "aopc.csv")
        write_csv(pd.DataFrame([{"curve": k, "step": s, "drop": float(v)} for k, c in curves.items()
                                for s, v in enumerate(c)]), out / "perturbation.csv")
        perturbation_curves(curves, target, out / "perturbation.png")
        for r in aopc_rows:
            faith.setdefault(r["unit"], {})[r["method"]] = {"aopc": r["aopc"], "sem": r["aopc_sem"]}
        faith["n_molecules"] = int(sample.size)

    # -- pictures -----------------------------------------------------------------------------
    drawn = draw_molecules(store, table, lrp, rules, _draw_ids(store, config.draw, split.test), out / "molecules")

    metrics = {
        "target": target,
        "units": spec.units,
        "fold": config.fold,
        "n_molecules": int(positions.size),
        "model_mae": float(np.mean(np.abs(y_pred - y_true))),
        "outlier_cut": {k: v for k, v in config.outliers.items()},
        "n_outliers": int(outliers.sum()),
        "target_mean_share_of_output": {"median": float(np.nanmedian(np.concatenate(mean_share)))},
        "rules": rule_metrics,
        "faithfulness": faith,
        "timing": {"forward_s": round(t_forward, 3), "lrp_all_rules_s": round(t_lrp, 3), "n_rules": len(rules),
                   "lrp_per_rule_over_forward": round(t_lrp / max(t_forward, 1e-9) / len(rules), 3)},
        "molecules_drawn": drawn,
    }
    write_json(metrics, Path(metrics_dir) / f"explain_{target}.json")
    return metrics


def _draw_ids(store: FeatureStore, draw: Mapping[str, Any], test: np.ndarray) -> list[int]:
    known = set(int(i) for i in store.ids)
    ids = [int(i) for i in draw.get("ids", []) or [] if int(i) in known]
    ids += [int(store.ids[p]) for p in test[: int(draw.get("count", 0) or 0)] if int(store.ids[p]) not in ids]
    return ids


def draw_molecules(store: FeatureStore, table: str | Path, lrp: Any, rules: Mapping[str, Composite],
                   ids: list[int], out: Path) -> list[int]:
    """Atom relevance pictures ``<out>/<id>_<rule>.png`` for store molecules ``ids``."""
    from qmlrp.features.molecule import build_molecule
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.relevance.plots import molecule_relevance_png

    if not ids:
        return []
    frame = pd.read_parquet(table, columns=["id", "smiles", "atomic_numbers", "coordinates"]).set_index("id")
    batch = store.batch(store.positions(ids))
    explanations = lrp.explain_inputs(batch_to_inputs(batch), rules, batch.ids)
    for m, mol_id in enumerate(ids):
        row = frame.loc[mol_id]
        mol, _ = build_molecule(np.asarray(row["atomic_numbers"]), np.asarray(row["coordinates"]).reshape(-1, 3),
                                row["smiles"], str(mol_id))
        for name, e in explanations.items():
            per_atom = e.atom_relevance()[e.atom_molecule == m]
            molecule_relevance_png(mol, per_atom, out / f"{mol_id}_{name}.png")
    return ids


def run_ground_truth_stage(config: ExplainConfig, params_path: str | Path, features: str | Path = FEATURES,
                           table: str | Path = QM9_TABLE, plots_dir: str | Path = PLOTS,
                           metrics_dir: str | Path = METRICS) -> dict[str, Any]:
    """The Crippen logP ground-truth experiment -> ``metrics/explain_crippen.json``."""
    from qmlrp.params import load_params
    from qmlrp.relevance.ground_truth import run_ground_truth

    settings = dict(config.ground_truth)
    model_params = dict((load_params(params_path).get("train") or {}).get("model") or {})
    model_params.update(settings.pop("model", None) or {})
    store = FeatureStore.open(features)
    summary, frame = run_ground_truth(store, table, config.resolved_rules(), settings, model_params)
    out = Path(plots_dir) / "crippen"
    write_csv(frame, out / "kendall_tau.csv")
    write_json(summary, Path(metrics_dir) / "explain_crippen.json")
    return summary
