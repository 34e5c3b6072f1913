"""Ground truth for atom relevance: an additive target with known per-atom contributions.

Following the graph-attribution benchmark of Sanchez-Lengeling et al. (NeurIPS 2020), the same
Weave GC model is trained on Wildman-Crippen logP, which *is* a sum of per-atom contributions
(RDKit ``_CalcCrippenContribs``, hydrogens included). Atom relevance (its 21 features plus half
of each of its pairs) is then compared with the true contributions by Kendall's tau per molecule
-- for each LRP rule, gradient x input and a random attribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.relevance.faithfulness import gradient_times_input
from qmlrp.relevance.model_lrp import ModelLRP, atom_totals, explain_batches
from qmlrp.relevance.rules import Composite
from qmlrp.paths import CRIPPEN_MODEL, CRIPPEN_RESULTS
from qmlrp.targets.crippen import CrippenData, crippen_data


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(kendalltau(a, b).statistic)


def kendall_table(
    model: keras.Model,
    store: FeatureStore,
    data: CrippenData,
    test: np.ndarray,
    rules: Mapping[str, Composite],
    batch_size: int = 256,
    pair_share: float = 0.5,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Kendall tau per molecule between atom relevance and true contributions.

    Args:
        test: indices into ``data`` (not store positions) of the molecules to score.
        pair_share: share of each pair's relevance given to each of its atoms (0.5: split evenly).
    Returns:
        rows ``{method, tau_mean, tau_median, tau_sem, n}`` and a per-molecule frame (id, method, tau).
    """
    positions = data.positions[test]
    batches = [store.batch(positions[k:k + batch_size]) for k in range(0, positions.size, batch_size)]
    lrp = ModelLRP(model)
    explanations = explain_batches(lrp, batches, rules)
    gxi = gradient_times_input(model)
    ga, gp = zip(*(gxi(b) for b in batches))
    first = next(iter(explanations.values()))
    owner = first.atom_molecule
    truth = np.concatenate([data.contributions[k] for k in test])
    per_atom: dict[str, np.ndarray] = {name: e.atom_relevance(pair_share) for name, e in explanations.items()}
    per_atom["gradient_x_input"] = atom_totals(np.concatenate(ga), np.concatenate(gp), first.pair_atoms, pair_share)
    per_atom["random"] = np.random.default_rng(seed).random(truth.size)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=first.n_molecules))])
    records = []
    for method, values in per_atom.items():
        for m in range(first.n_molecules):
            a, b = bounds[m], bounds[m + 1]
            records.append({"id": int(first.ids[m]), "method": method, "tau": _kendall(values[a:b], truth[a:b])})
    frame = pd.DataFrame(records)
    rows = []
    for method, group in frame.groupby("method", sort=False):
        tau = group["tau"].dropna().to_numpy()
        rows.append({"method": method, "tau_mean": float(tau.mean()), "tau_median": float(np.median(tau)),
                     "tau_sem": float(tau.std(ddof=1) / np.sqrt(tau.size)) if tau.size > 1 else 0.0,
                     "n": int(tau.size)})
    return rows, frame


def run_ground_truth(store: FeatureStore, table: str | Path, rules: Mapping[str, Composite],
                     pair_share: float = 0.5, model_file: str | Path = CRIPPEN_MODEL,
                     results_dir: str | Path = CRIPPEN_RESULTS, seed: int = 0) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score the trained Crippen model (stage ``train_crippen``) on its held-out molecules: test
    MAE and the Kendall tau table of every rule, gradient x input and random."""
    import json

    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import inference_function, load_model

    model = load_model(model_file)
    split_file = Path(results_dir) / "split.json"
    if not split_file.exists():
        raise QmlrpError(f"{split_file}: not found (run `dvc repro train_crippen` first)")
    test_ids = set(json.loads(split_file.read_text())["test_ids"])
    data = crippen_data(store, table)
    test = np.array([k for k, pos in enumerate(data.positions) if int(store.ids[pos]) in test_ids], np.int64)
    if test.size == 0:
        raise QmlrpError(f"{split_file}: none of its test molecules is in the feature store")
    forward = inference_function(model)
    pred = np.concatenate([forward(batch_to_inputs(store.batch(data.positions[test][k:k + 256])))
                           for k in range(0, test.size, 256)])
    rows, frame = kendall_table(model, store, data, test, rules, pair_share=pair_share, seed=seed)
    run = json.loads((Path(results_dir) / "run.json").read_text())
    summary = {
        "target": "crippen_logp",
        "n_train": run["n_train"], "n_validation": run["n_validation"], "n_test": int(test.size),
        "test_mae": float(np.mean(np.abs(pred - data.target[test]))),
        "target_std": float(np.std(data.target)),
        "epochs_run": run["epochs_run"], "best_val_mae": run["best_val_mae"],
        "kendall_tau": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
    }
    return summary, frame


def methods_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Methods sorted by decreasing mean tau."""
    return [r["method"] for r in sorted(rows, key=lambda r: -r["tau_mean"])]
