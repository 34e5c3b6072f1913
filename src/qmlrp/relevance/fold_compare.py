"""Stage ``compare_folds`` (the full study): the seed's hypotheses on the explanations of retrained models.

:mod:`qmlrp.relevance.compare` spreads one model's explanation over its molecules (bootstrap). Here each
fold's model is a model retrained on other molecules, so the spread over the folds says whether a verdict
belongs to the property or to one particular network (issue 19).

Input: the explain stages' metrics, ``<metrics root>/fold<k>/explain_<target>.json`` for every fold ``k``
present; a key ``target/view`` (e.g. ``frequencies/omega1``) names one view of a vector target. A
profile is the rule's ``share_means``: the mean over the molecules of each of the 12 feature types'
share of a molecule's total |relevance| (dimensionless, summing to 1).

Per comparison ``subject ~ similar vs control`` and fold: Spearman's rho and the cosine similarity of the
profiles (:func:`qmlrp.relevance.compare.spearman` / ``cosine``) and ``delta = sim(subject, similar) -
sim(subject, control)``; then mean, sd, min, max of delta over the folds and the share of folds with
delta > 0. A subject explained on fewer folds (a model trained on fold 0 only) is compared, from its own
fold, with the similar and control models of every fold (its ``subject_folds`` say so). A key listed in
``external`` has one profile from outside this study's explain stages: the ``profiles[key]`` of a metrics file
(e.g. the beta_par model of ``studies/qm9-2k``, ``metrics/explain_beta_vector.json``, explained with the same rule),
compared with the similar and control models of every fold (``subject_folds`` ``[-1]``, ``subject_source`` the
file): the spread is then over the retrained similar and control models. Per target the
explain stage's geometric-vs-electronic test (:func:`qmlrp.relevance.summary.hypothesis`) is counted over
the folds.

Outputs: ``metrics/compare_folds.json``, ``plots/compare_folds/deltas.csv`` (per comparison, fold and
similarity), ``profiles.csv`` (mean and sd over folds per key and type) and one figure per comparison.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.io import write_csv, write_json
from qmlrp.params import parse_section
from qmlrp.relevance.compare import SIMILARITIES, Comparison
from qmlrp.relevance.summary import FEATURE_TYPES

METRICS_ROOT = Path("metrics/explain")
PLOTS = Path("plots/compare_folds")
METRICS_FILE = Path("metrics/compare_folds.json")


@dataclass(frozen=True)
class FoldCompareConfig:
    """``params.yaml`` section ``compare_folds``."""

    rule: str = "eps"
    comparisons: tuple[dict[str, str], ...] = field(default_factory=tuple)
    hypothesis_targets: tuple[str, ...] = ("alpha", "zpve")
    external: dict[str, str] = field(default_factory=dict)
    """key -> a metrics file (path from the study folder) whose ``profiles[key]`` is that key's one profile."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FoldCompareConfig:
        values = dict(params)
        values["hypothesis_targets"] = tuple(values.get("hypothesis_targets", cls.hypothesis_targets))
        config = parse_section(cls, "compare_folds", values)
        for k, c in enumerate(config.comparisons):
            if not isinstance(c, Mapping) or set(c) != {"subject", "similar", "control"}:
                raise QmlrpError(f"params.yaml compare_folds.comparisons[{k}]: expected the keys subject, "
                                 f"similar, control; got {c!r}")
        return config

    def parsed(self) -> list[Comparison]:
        return [Comparison(str(c["subject"]), str(c["similar"]), str(c["control"])) for c in self.comparisons]


def folds_present(root: Path) -> list[int]:
    """The folds with a ``fold<k>/`` folder of explain metrics under ``root``, ascending."""
    found = [int(m.group(1)) for p in Path(root).glob("fold*") if (m := re.fullmatch(r"fold(\d+)", p.name))]
    return sorted(found)


def _rule_metrics(root: Path, fold: int, key: str, rule: str) -> dict[str, Any] | None:
    target, _, view = key.partition("/")
    path = Path(root) / f"fold{fold}" / f"explain_{target}.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    if view:
        if view not in m.get("views", {}):
            raise QmlrpError(f"{path}: no view {view!r} (views: {', '.join(m.get('views', {})) or 'none'})")
        m = m["views"][view]
    if rule not in m.get("rules", {}):
        raise QmlrpError(f"{path}: rule {rule!r} not explained (rules: {', '.join(m.get('rules', {}))})")
    return m["rules"][rule]


EXTERNAL_FOLD = -1
"""The fold key of a profile read from an ``external`` file (one profile, not a model of this study's folds)."""


def read_external_profile(path: str | Path, key: str, rule: str) -> dict[int, np.ndarray]:
    """``{EXTERNAL_FOLD: (12,) profile}`` from ``path``'s ``profiles[key]`` (its ``rule`` must be ``rule``);
    a missing or unsuitable file is one QmlrpError line."""
    path = Path(path)
    try:
        m = json.loads(path.read_text())
        shares = m["profiles"][key]
        profile = np.array([float(shares[t]) for t in FEATURE_TYPES])
    except FileNotFoundError:
        raise QmlrpError(f"compare_folds.external.{key}: {path} not found") from None
    except (ValueError, KeyError, TypeError) as error:
        raise QmlrpError(f"compare_folds.external.{key}: {path} has no profiles.{key} of the 12 feature types "
                         f"({type(error).__name__}: {error})") from None
    if m.get("rule") != rule:
        raise QmlrpError(f"compare_folds.external.{key}: {path} was explained with rule {m.get('rule')!r}, "
                         f"not {rule!r}")
    return {EXTERNAL_FOLD: profile}


def read_profiles(root: Path, key: str, rule: str, folds: list[int]) -> dict[int, np.ndarray]:
    """fold -> (12,) profile of explanation ``key`` under ``rule``, for the folds that have it."""
    out = {}
    for f in folds:
        r = _rule_metrics(root, f, key, rule)
        if r is not None:
            out[f] = np.array([float(r["share_means"][t]) for t in FEATURE_TYPES])
    return out


def compare_over_folds(profiles: Mapping[str, Mapping[int, np.ndarray]], c: Comparison,
                       source: str | Path | None = None) -> tuple[dict[str, Any], list[dict]]:
    """One comparison on every fold with both the similar and the control model: the summary and per-fold rows
    (``source``: the file of an external subject profile, recorded in the summary)."""
    subject = profiles[c.subject]
    folds = sorted(set(profiles[c.similar]) & set(profiles[c.control]))
    if not subject or not folds:
        raise QmlrpError(f"compare_folds: {c.subject} ~ {c.similar} vs {c.control}: no fold explains all three")
    rows = []
    for f in folds:
        s_fold = f if f in subject else min(subject)
        for name, fn in SIMILARITIES.items():
            sim = float(fn(subject[s_fold], profiles[c.similar][f]))
            con = float(fn(subject[s_fold], profiles[c.control][f]))
            rows.append({"comparison": f"{c.subject} ~ {c.similar} vs {c.control}", "fold": f, "subject_fold": s_fold,
                         "similarity": name, "with_similar": sim, "with_control": con, "delta": sim - con})
    frame = pd.DataFrame(rows)
    summary: dict[str, Any] = {"subject": c.subject, "similar": c.similar, "control": c.control, "folds": folds,
                               "subject_folds": sorted(set(frame["subject_fold"].astype(int)))}
    if source is not None:
        summary["subject_source"] = str(source)
    for name in SIMILARITIES:
        d = frame[frame["similarity"] == name]
        summary[name] = {
            **{col: {"mean": float(d[col].mean()), "sd": float(d[col].std(ddof=1)) if len(d) > 1 else None}
               for col in ("with_similar", "with_control")},
            "delta": {"mean": float(d["delta"].mean()), "sd": float(d["delta"].std(ddof=1)) if len(d) > 1 else None,
                      "min": float(d["delta"].min()), "max": float(d["delta"].max())},
            "share_of_folds_delta_above_0": float((d["delta"] > 0).mean()),
        }
    return summary, rows


def hypothesis_over_folds(root: Path, target: str, rule: str, folds: list[int]) -> dict[str, Any] | None:
    """The explain stage's geometric-vs-electronic test of ``target``, counted over the folds that explain it."""
    tests = {f: r["hypothesis"] for f in folds if (r := _rule_metrics(root, f, target, rule)) is not None}
    if not tests:
        return None
    share = np.array([t["share_geometric_above"] for t in tests.values()], dtype=float)
    return {"folds": sorted(tests), "predicted_higher": next(iter(tests.values()))["predicted_higher"],
            "observed_higher": {f: t["observed_higher"] for f, t in tests.items()},
            "holds_in_folds": int(sum(bool(t["holds"]) for t in tests.values())),
            "share_geometric_above": {"mean": float(share.mean()), "min": float(share.min()), "max": float(share.max())}}


def run_compare_folds(config: FoldCompareConfig, metrics_root: str | Path = METRICS_ROOT,
                      plots_dir: str | Path = PLOTS, metrics_file: str | Path = METRICS_FILE) -> dict[str, Any]:
    """The stage: read every fold's profiles, compare, write metrics, tables and figures."""
    from qmlrp.relevance.plots import fold_profile_figure

    root = Path(metrics_root)
    folds = folds_present(root)
    comparisons = config.parsed()
    if not folds:
        raise QmlrpError(f"{root}: no fold<k>/ folders of explain metrics (run the explain stages first)")
    if not comparisons:
        raise QmlrpError("params.yaml compare_folds.comparisons: nothing to compare")
    keys = sorted({k for c in comparisons for k in (c.subject, c.similar, c.control)})
    profiles = {k: read_external_profile(config.external[k], k, config.rule) if k in config.external
                else read_profiles(root, k, config.rule, folds) for k in keys}
    results, rows = {}, []
    for c in comparisons:
        summary, fold_rows = compare_over_folds(profiles, c, config.external.get(c.subject))
        results[f"{c.subject} ~ {c.similar} vs {c.control}"] = summary
        rows += fold_rows
        deltas = {r["fold"]: r["delta"] for r in fold_rows if r["similarity"] == "spearman"}
        fold_profile_figure(profiles, c, deltas, config.rule, Path(plots_dir) / f"{c.subject.replace('/', '_')}.png")
    table = [{"explanation": k, "type": t, "mean_share": float(np.mean([p[i] for p in profiles[k].values()])),
              "sd_over_folds": float(np.std([p[i] for p in profiles[k].values()], ddof=1)) if len(profiles[k]) > 1
              else None, "n_folds": len(profiles[k])}
             for k in keys for i, t in enumerate(FEATURE_TYPES) if profiles[k]]
    write_csv(pd.DataFrame(rows), Path(plots_dir) / "deltas.csv")
    write_csv(pd.DataFrame(table), Path(plots_dir) / "profiles.csv")
    hypotheses = {t: h for t in config.hypothesis_targets
                  if (h := hypothesis_over_folds(root, t, config.rule, folds)) is not None}
    metrics = {"rule": config.rule, "folds": folds, "n_folds": {k: len(v) for k, v in profiles.items()},
               "comparisons": results, "geometric_vs_electronic": hypotheses}
    write_json(metrics, metrics_file)
    return metrics
