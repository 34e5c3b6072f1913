"""Stage ``compare_budgets`` (the full study): one target's explanations after two training budgets.

α's 12-epoch models (0.358 a₀³ over 10 folds) and its 72-epoch ones (below the 0.227 bar) are the same
architecture trained on the same folds for longer. Does the better model explain α differently? A change
means something only if it is larger than what retraining alone does, so the reference is the similarity
between the models of *different* folds at one budget (trained on other molecules, as
:mod:`qmlrp.relevance.fold_compare` spreads its verdicts).

Input: the explain stages' metrics of each budget, ``<root>/fold<k>/explain_<target>.json``; a profile is
the rule's ``share_means`` (mean share of |relevance| per feature type, 12 values summing to 1).

Per fold explained at both budgets: Spearman's rho and the cosine similarity of its two profiles
(``same_fold``), the shift of every type's share (long - short); over all pairs of different folds of one
budget, the same similarities (``between_folds``: the retraining reference); per budget, the explain
stage's geometric-vs-electronic test counted over its folds.

Outputs: ``metrics/compare_budgets.json``; ``plots/compare_budgets/<target>.csv`` (per type: mean and sd
over the folds of each budget, and the shift) and ``<target>.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.figures import saved_figure
from qmlrp.io import write_csv, write_json
from qmlrp.params import parse_section
from qmlrp.relevance.compare import SIMILARITIES
from qmlrp.relevance.fold_compare import (
    folds_present,
    hypothesis_over_folds,
    read_profiles,
)
from qmlrp.relevance.summary import FEATURE_TYPES

PLOTS = Path("plots/compare_budgets")
METRICS_FILE = Path("metrics/compare_budgets.json")


@dataclass(frozen=True)
class BudgetCompareConfig:
    """``params.yaml`` section ``compare_budgets``: the target, the rule, and the two budgets as
    ``{label: folder of fold<k>/explain_<target>.json}`` (the shorter first)."""

    target: str = "alpha"
    rule: str = "eps"
    budgets: dict[str, str] = field(default_factory=lambda: {"12 epochs": "metrics/explain",
                                                              "72 epochs": "metrics/explain_long"})

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BudgetCompareConfig:
        config = parse_section(cls, "compare_budgets", dict(params))
        if not isinstance(config.budgets, Mapping) or len(config.budgets) != 2:
            raise QmlrpError(f"params.yaml compare_budgets.budgets: expected two entries {{label: folder}}, "
                             f"got {config.budgets!r}")
        return config


def _spread(values: list[float]) -> dict[str, float | int | None]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def similarities(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float | int | None]] | None:
    """Spearman and cosine similarity over ``pairs`` of profiles: mean, sd, min, max, n; None without pairs."""
    if not pairs:
        return None
    return {name: _spread([float(fn(a, b)) for a, b in pairs]) for name, fn in SIMILARITIES.items()}


def compare_profiles(short: Mapping[int, np.ndarray], long: Mapping[int, np.ndarray]) -> dict[str, Any]:
    """The two budgets' profiles (fold -> (12,)) compared: same fold, between folds, per-type shift."""
    folds = sorted(set(short) & set(long))
    if not folds:
        raise QmlrpError("compare_budgets: no fold is explained at both budgets (run the explain stages of both)")
    shift = np.stack([long[f] - short[f] for f in folds])  # (n_folds, 12)
    return {
        "folds_compared": folds,
        "same_fold": similarities([(short[f], long[f]) for f in folds]),
        "between_folds": {"short": similarities([(short[f], short[g]) for f, g in combinations(sorted(short), 2)]),
                          "long": similarities([(long[f], long[g]) for f, g in combinations(sorted(long), 2)])},
        "share_shift": {t: {"mean": float(shift[:, i].mean()),
                            "sd": float(shift[:, i].std(ddof=1)) if len(folds) > 1 else None}
                        for i, t in enumerate(FEATURE_TYPES)},
    }


def draw(short: Mapping[int, np.ndarray], long: Mapping[int, np.ndarray], labels: list[str], target: str, rule: str,
         path: Path) -> None:
    """Each budget's mean share per feature type over its folds (error bars: sd over the retrained models)."""
    x = np.arange(len(FEATURE_TYPES))
    with saved_figure(path, figsize=(11, 4.2)) as (_, ax):
        for j, (label, profiles) in enumerate(zip(labels, (short, long))):
            stack = np.stack(list(profiles.values()))
            sd = stack.std(0, ddof=1) if len(stack) > 1 else None
            ax.bar(x + (j - 0.5) * 0.4, stack.mean(0), 0.4, yerr=sd, capsize=2, label=f"{label} ({len(stack)} folds)")
        ax.set_xticks(x, FEATURE_TYPES, rotation=35, ha="right")
        ax.set_ylabel("mean share of |relevance| per molecule")
        ax.set_title(f"{target}: explanations (LRP {rule}) of the models after each training budget; "
                     "error bars: sd over retrained models (folds)", fontsize=9)
        ax.legend(fontsize=8)


def run_compare_budgets(config: BudgetCompareConfig, plots_dir: str | Path = PLOTS,
                        metrics_file: str | Path = METRICS_FILE) -> dict[str, Any]:
    """The stage: read both budgets' profiles, compare, write the metrics, the table and the figure."""
    labels = list(config.budgets)
    roots = [Path(config.budgets[label]) for label in labels]
    profiles, hypotheses = [], {}
    for label, root in zip(labels, roots):
        folds = folds_present(root)
        p = read_profiles(root, config.target, config.rule, folds)
        if not p:
            raise QmlrpError(f"{root}: no fold<k>/explain_{config.target}.json (run the explain stages of {label!r})")
        profiles.append(p)
        hypotheses[label] = hypothesis_over_folds(root, config.target, config.rule, sorted(p))
    metrics: dict[str, Any] = {"target": config.target, "rule": config.rule,
                               "budgets": {label: {"root": str(root), "folds": sorted(p)}
                                           for label, root, p in zip(labels, roots, profiles)},
                               **compare_profiles(*profiles), "geometric_vs_electronic": hypotheses}
    verdicts = {label: None if h is None else h["holds_in_folds"] / len(h["folds"]) for label, h in hypotheses.items()}
    metrics["hypothesis_share_of_folds"] = verdicts
    rows = []
    for i, t in enumerate(FEATURE_TYPES):
        row: dict[str, Any] = {"type": t}
        for label, p in zip(labels, profiles):
            shares = np.stack(list(p.values()))[:, i]
            row[f"mean share, {label}"] = float(shares.mean())
            row[f"sd over folds, {label}"] = float(shares.std(ddof=1)) if shares.size > 1 else None
        row["shift, mean over the folds of both"] = metrics["share_shift"][t]["mean"]
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(table, Path(plots_dir) / f"{config.target}.csv")
    draw(profiles[0], profiles[1], labels, config.target, config.rule, Path(plots_dir) / f"{config.target}.png")
    write_json(metrics, metrics_file)
    return metrics
