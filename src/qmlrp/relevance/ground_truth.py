"""Ground truth for atom relevance: an additive target with known per-atom contributions.

Following the graph-attribution benchmark of Sanchez-Lengeling et al. (NeurIPS 2020), the same
Weave GC model is trained on Wildman-Crippen logP, which *is* a sum of per-atom contributions
(RDKit ``_CalcCrippenContribs``, hydrogens included). Atom relevance (its 21 features plus half
of each of its pairs) is then compared with the true contributions by Kendall's tau per molecule
-- for each LRP rule, gradient x input and a random attribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from rdkit.Chem import rdMolDescriptors

from qmlrp.errors import QmlrpError
from qmlrp.io import write_csv, write_json
from qmlrp.params import parse_section, stage_params
from qmlrp.features.molecule import build_molecule
from qmlrp.features.store import FeatureStore
from qmlrp.relevance.faithfulness import gradient_times_input
from qmlrp.relevance.model_lrp import ModelLRP, atom_totals, explain_batches
from qmlrp.relevance.rules import Composite
from qmlrp.training.config import Target


@dataclass(frozen=True)
class CrippenData:
    """Per-atom Crippen logP contributions aligned with the store's atoms.

    Attributes:
        positions: (n,) store positions of the molecules that could be built.
        target: (n,) molecular logP (sum of contributions).
        contributions: list of (n_atoms_m,) per-atom contributions, store atom order.
    """

    positions: np.ndarray
    target: np.ndarray
    contributions: list[np.ndarray]


def crippen_data(store: FeatureStore, table: str | Path) -> CrippenData:
    """Crippen contributions of every store molecule (rebuilt from ``data/qm9.parquet``).

    Molecules whose rebuilt atom count differs from the store's are skipped (none expected: the
    store was featurized from the same molecules, atoms in XYZ order).
    """
    frame = pd.read_parquet(table, columns=["id", "smiles", "atomic_numbers", "coordinates"]).set_index("id")
    positions, target, contributions = [], [], []
    for pos, mol_id in enumerate(store.ids):
        if int(mol_id) not in frame.index:
            continue
        row = frame.loc[int(mol_id)]
        numbers = np.asarray(row["atomic_numbers"])
        try:
            mol, _ = build_molecule(numbers, np.asarray(row["coordinates"]).reshape(-1, 3), row["smiles"], str(mol_id))
        except QmlrpError:
            continue
        if mol.GetNumAtoms() != int(store.n_atoms[pos]):
            continue
        contrib = np.array([c[0] for c in rdMolDescriptors._CalcCrippenContribs(mol)], np.float64)
        positions.append(pos)
        target.append(contrib.sum())
        contributions.append(contrib)
    return CrippenData(np.array(positions, np.int64), np.array(target), contributions)


CRIPPEN_TARGET = Target("crippen", "crippen_logp", "logP units")
CRIPPEN_MODEL = Path("models/crippen/model.npz")
CRIPPEN_RESULTS = Path("models/crippen")


@dataclass(frozen=True)
class CrippenConfig:
    """``params.yaml`` section ``train_crippen``: the split of the molecules RDKit could rebuild and
    the training budget; every other training choice is the ``train`` section's (``model``
    overrides ``train.model``)."""

    seed: int = 20171010
    test_fraction: float = 0.1
    validation_fraction: float = 0.1
    max_train_molecules: int | None = None
    epochs: int = 40
    time_limit_minutes: float | None = 5.0
    model: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, params_path: str | Path) -> CrippenConfig:
        return parse_section(cls, "train_crippen", stage_params("train_crippen", params_path))


def train_crippen(params_path: str | Path, features: str | Path, table: str | Path,
                  model_file: str | Path = CRIPPEN_MODEL, results_dir: str | Path = CRIPPEN_RESULTS) -> dict[str, Any]:
    """Stage ``train_crippen``: the Weave model trained on Crippen logP with :func:`fit` (JAX).

    Writes the model (``model.npz``) and ``split.json``, ``history.csv``, ``run.json``
    (the test molecules' ids, so the explain stage scores exactly the held-out molecules),
    all in ``models/crippen/``.
    """
    from qmlrp.models.io import save_model
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.engine import ModelRun, fit
    from qmlrp.training.train import hardware

    settings = CrippenConfig.load(params_path)
    base = TrainConfig.load(params_path)
    model = replace(base.model, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.model.items()})
    config = replace(base, epochs=settings.epochs, time_limit_minutes=settings.time_limit_minutes,
                     early_stopping_patience=min(base.early_stopping_patience, settings.epochs), model=model)
    store = FeatureStore.open(features)
    data = crippen_data(store, table)
    if data.positions.size < 20:
        raise QmlrpError(f"Crippen experiment: only {data.positions.size} molecules could be rebuilt")
    train, val, test = split_indices(data.positions.size, settings.test_fraction, settings.validation_fraction,
                                     settings.seed, settings.max_train_molecules)
    y = np.zeros(len(store))
    y[data.positions] = data.target
    metadata = {"target": "crippen", "column": "crippen_logp", "units": CRIPPEN_TARGET.units, "fold": 0,
                "n_train": int(train.size), "n_validation": int(val.size), "n_test": int(test.size),
                "architecture": asdict(config.model)}
    run = ModelRun("crippen", CRIPPEN_TARGET, y, data.positions[train], data.positions[val], settings.seed, metadata)
    result = fit(store, [run], config)[0]
    save_model(result.model, model_file)
    results_dir = Path(results_dir)
    write_json({"test_ids": [int(i) for i in store.ids[data.positions[test]]]}, results_dir / "split.json")
    write_csv(pd.DataFrame(result.history), results_dir / "history.csv")
    summary = {**{k: v for k, v in metadata.items() if k != "architecture"}, "best_val_mae": result.best_val_mae,
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stop_reason": result.stop_reason,
               "fit_seconds": result.fit_seconds, "target_mean": result.target_mean,
               "target_std": result.target_std, "hardware": hardware()}
    write_json(summary, results_dir / "run.json")
    return summary


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


def split_indices(n: int, test_fraction: float, validation_fraction: float, seed: int,
                  max_train: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random train / validation / test indices into ``range(n)``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    n_val = max(1, int(round(validation_fraction * n)))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if max_train is not None:
        train = train[:max_train]
    return np.sort(train), np.sort(val), np.sort(test)


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
