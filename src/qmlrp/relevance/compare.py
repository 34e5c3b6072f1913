"""Stage ``compare_explanations``: is one property's relevance pattern closer to a second
property's than to a third's? (The seed's hypotheses: beta_parallel explained like alpha, the
frequencies like ZPVE.)

Input: the explain stage's per-molecule type shares (``plots/explain/<key>/shares.parquet``: per
molecule and rule, each of the 12 feature types' share of the molecule's total |relevance|, summing
to 1). An explanation's *profile* is the mean share per type over its molecules.

Statistics, per comparison ``subject ~ similar vs control``:

* ``similarity(a, b)``: Spearman's rank correlation of the two 12-type profiles (does the ranking of
  feature types agree?) and the cosine similarity of the profiles (do the shares agree?);
* ``delta = similarity(subject, similar) - similarity(subject, control)``: > 0 supports the hypothesis;
* the spread: a bootstrap over molecules (each explanation resampled on its own, seeded), giving the
  standard deviation and the 2.5/97.5 % percentiles of every similarity and of delta, and the share of
  bootstrap replicates with delta <= 0 (a one-sided bootstrap p-value).

Nothing is decided yes/no here; the numbers and their spread are the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.io import write_csv, write_json
from qmlrp.params import parse_section
from qmlrp.relevance.summary import FEATURE_TYPES

EXPLAIN_PLOTS = Path("plots/explain")
PLOTS = Path("plots/compare")
METRICS_FILE = Path("metrics/compare_explanations.json")


@dataclass(frozen=True)
class Comparison:
    """``subject`` is expected closer to ``similar`` than to ``control`` (explanation keys such as
    ``beta``, ``alpha`` or ``frequencies/mode_sum``: folders under ``plots/explain``)."""

    subject: str
    similar: str
    control: str


@dataclass(frozen=True)
class CompareConfig:
    """``params.yaml`` section ``compare_explanations``."""

    rule: str = "eps"
    bootstrap: int = 1000
    seed: int = 0
    comparisons: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CompareConfig:
        config = parse_section(cls, "compare_explanations", dict(params))
        if config.bootstrap < 10:
            raise QmlrpError("params.yaml compare_explanations.bootstrap: at least 10 replicates")
        for k, c in enumerate(config.comparisons):
            if not isinstance(c, Mapping) or set(c) != {"subject", "similar", "control"}:
                raise QmlrpError(f"params.yaml compare_explanations.comparisons[{k}]: expected the keys subject, "
                                 f"similar, control; got {c!r}")
        return config

    def parsed(self) -> list[Comparison]:
        return [Comparison(str(c["subject"]), str(c["similar"]), str(c["control"])) for c in self.comparisons]


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho between rows of ``a`` and ``b`` ((..., 12) each; average ranks for ties)."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=-1)
    rb = rankdata(b, axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    return (ra * rb).sum(-1) / np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity between rows of ``a`` and ``b`` ((..., 12) each)."""
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


SIMILARITIES = {"spearman": spearman, "cosine": cosine}


def read_shares(key: str, rule: str, root: Path = EXPLAIN_PLOTS) -> np.ndarray:
    """(n_molecules, 12) type shares of explanation ``key`` under ``rule``."""
    path = Path(root) / key / "shares.parquet"
    if not path.exists():
        raise QmlrpError(f"{path}: not found (run the explain stage for {key.split('/')[0]} first)")
    frame = pd.read_parquet(path)
    frame = frame[frame["rule"] == rule]
    if frame.empty:
        raise QmlrpError(f"{path}: no molecules explained with rule {rule!r}")
    return frame[list(FEATURE_TYPES)].to_numpy(np.float64)


def bootstrap_profiles(shares: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 12) mean profiles of ``n`` resamples (with replacement) of the molecules of ``shares``."""
    m = shares.shape[0]
    # mean of the resampled rows = (how often each row was drawn) @ shares / m; memory O(m)
    return np.stack([np.bincount(rng.integers(0, m, size=m), minlength=m) @ shares / m for _ in range(n)])


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"sd": float(np.std(values, ddof=1)), "p2_5": float(np.percentile(values, 2.5)),
            "p97_5": float(np.percentile(values, 97.5))}


def compare(profiles: Mapping[str, np.ndarray], boot: Mapping[str, np.ndarray], c: Comparison) -> dict[str, Any]:
    """Similarities and delta of one comparison: point values on the full profiles, spread from
    the bootstrap profiles (``boot[key]``: (n_boot, 12))."""
    out: dict[str, Any] = {"subject": c.subject, "similar": c.similar, "control": c.control}
    for name, fn in SIMILARITIES.items():
        s_sim = fn(profiles[c.subject], profiles[c.similar])
        s_con = fn(profiles[c.subject], profiles[c.control])
        b_sim = fn(boot[c.subject], boot[c.similar])
        b_con = fn(boot[c.subject], boot[c.control])
        delta = b_sim - b_con
        out[name] = {
            "with_similar": {"value": float(s_sim), **_spread(b_sim)},
            "with_control": {"value": float(s_con), **_spread(b_con)},
            "delta": {"value": float(s_sim - s_con), **_spread(delta)},
            "bootstrap_share_delta_le_0": float(np.mean(delta <= 0)),
        }
    return out


def run_compare(config: CompareConfig, explain_root: str | Path = EXPLAIN_PLOTS, plots_dir: str | Path = PLOTS,
                metrics_file: str | Path = METRICS_FILE) -> dict[str, Any]:
    """The stage: read every explanation named in the comparisons, compare, write metrics and plots."""
    comparisons = config.parsed()
    if not comparisons:
        raise QmlrpError("params.yaml compare_explanations.comparisons: nothing to compare")
    keys = sorted({k for c in comparisons for k in (c.subject, c.similar, c.control)})
    shares = {k: read_shares(k, config.rule, Path(explain_root)) for k in keys}
    rng = np.random.default_rng(config.seed)
    profiles = {k: v.mean(0) for k, v in shares.items()}
    boot = {k: bootstrap_profiles(shares[k], config.bootstrap, rng) for k in keys}
    results = [compare(profiles, boot, c) for c in comparisons]
    rows = [{"explanation": k, "type": t, "mean_share": float(profiles[k][i]),
             "bootstrap_sd": float(boot[k][:, i].std(ddof=1)), "n_molecules": int(shares[k].shape[0])}
            for k in keys for i, t in enumerate(FEATURE_TYPES)]
    out = Path(plots_dir)
    write_csv(pd.DataFrame(rows), out / "profiles.csv")
    for c, r in zip(comparisons, results):
        profile_bars(profiles, boot, c, r, config.rule, out / f"{_slug(c.subject)}.png")
    metrics = {"rule": config.rule, "bootstrap": config.bootstrap, "seed": config.seed,
               "n_molecules": {k: int(v.shape[0]) for k, v in shares.items()},
               "comparisons": {f"{c.subject} ~ {c.similar} vs {c.control}": r for c, r in zip(comparisons, results)}}
    write_json(metrics, metrics_file)
    return metrics


def _slug(key: str) -> str:
    return key.replace("/", "_")


def profile_bars(profiles: Mapping[str, np.ndarray], boot: Mapping[str, np.ndarray], c: Comparison,
                 result: Mapping[str, Any], rule: str, path: Path) -> None:
    """Grouped bars: the three explanations' mean share per feature type, error bars = bootstrap sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys: Sequence[str] = (c.subject, c.similar, c.control)
    x = np.arange(len(FEATURE_TYPES))
    width = 0.27
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for j, k in enumerate(keys):
        ax.bar(x + (j - 1) * width, profiles[k], width, yerr=boot[k].std(0, ddof=1), capsize=2, label=k)
    ax.set_xticks(x, FEATURE_TYPES, rotation=35, ha="right")
    ax.set_ylabel("mean share of |relevance| per molecule (dimensionless)")
    d = result["spearman"]["delta"]
    ax.set_title(f"{c.subject}: closer to {c.similar} than to {c.control}? (LRP {rule})\n"
                 f"Spearman rho {result['spearman']['with_similar']['value']:.2f} vs "
                 f"{result['spearman']['with_control']['value']:.2f}; delta {d['value']:+.2f} "
                 f"[{d['p2_5']:+.2f}, {d['p97_5']:+.2f}] (95% bootstrap); error bars: bootstrap sd of the means")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
