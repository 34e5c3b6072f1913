"""Ground truth for atom relevance: an additive target with known per-atom contributions.

Following the graph-attribution benchmark of Sanchez-Lengeling et al. (NeurIPS 2020), the same
Weave GC model is trained on Wildman-Crippen logP, which *is* a sum of per-atom contributions
(RDKit ``_CalcCrippenContribs``, hydrogens included). Atom relevance (its 21 features plus half
of each of its pairs) is then compared with the true contributions by Kendall's tau per molecule
-- for each LRP rule, gradient x input and a random attribution.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from rdkit.Chem import rdMolDescriptors

from qmlrp.errors import QmlrpError
from qmlrp.features.molecule import build_molecule
from qmlrp.features.store import FeatureStore
from qmlrp.relevance.faithfulness import gradient_times_input
from qmlrp.relevance.model_lrp import ModelLRP, atom_totals, explain_batches
from qmlrp.relevance.rules import Composite


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


def train_additive_model(store: FeatureStore, positions: np.ndarray, y: np.ndarray, validation: np.ndarray,
                         y_validation: np.ndarray, model_params: Mapping[str, Any], epochs: int,
                         time_limit_s: float, batch_size: int = 64, seed: int = 0,
                         learning_rate: float = 1e-3, patience: int = 12) -> tuple[keras.Model, dict[str, Any]]:
    """Train a :class:`GraphConvModel` (``model_params`` as ``train.model``) on targets ``y``.

    MAE on the standardised target, Adam, early stopping on validation MAE (best weights kept),
    a wall-clock limit. Returns the model and a small log.
    """
    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model
    from qmlrp.training.data import BatchStream, feature_sample
    from qmlrp.training.train import StandardizedLoss

    keras.utils.set_random_seed(seed)
    config = ModelConfig.from_params(dict(model_params))
    model = build_model(config)
    mean, std = float(np.mean(y)), float(np.std(y))
    model.head.target_scaling.set_statistics(mean, std)
    model.input_layer.adapt(*feature_sample(store, positions, 5000, seed))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=StandardizedLoss("mae", std),
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    full = np.zeros(len(store))
    full[positions] = y
    full[validation] = y_validation
    train_ds = BatchStream(store, positions, full, batch_size, shuffle=True, seed=seed).to_dataset()
    val_ds = BatchStream(store, validation, full, batch_size).to_dataset()
    start = time.perf_counter()

    class Limit(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if time.perf_counter() - start > time_limit_s:
                self.model.stop_training = True

    stop = keras.callbacks.EarlyStopping(monitor="val_mae", patience=patience, restore_best_weights=True)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_mae", factor=0.5, patience=5, min_lr=1e-5)
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[plateau, stop, Limit()], verbose=0,
                        shuffle=False)
    val = history.history.get("val_mae", [np.nan])
    return model, {"epochs_run": len(val), "best_val_mae": float(np.nanmin(val)),
                   "fit_seconds": round(time.perf_counter() - start, 1), "target_mean": mean, "target_std": std}


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
                     settings: Mapping[str, Any], model_params: Mapping[str, Any]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The whole experiment: contributions, training, test MAE, Kendall tau table."""
    from qmlrp.models.io import inference_function
    from qmlrp.models.inputs import batch_to_inputs

    data = crippen_data(store, table)
    if data.positions.size < 20:
        raise QmlrpError(f"Crippen experiment: only {data.positions.size} molecules could be rebuilt")
    seed = int(settings.get("seed", 0))
    train, val, test = split_indices(data.positions.size, float(settings.get("test_fraction", 0.1)),
                                     float(settings.get("validation_fraction", 0.1)), seed,
                                     settings.get("max_train_molecules"))
    model, log = train_additive_model(
        store, data.positions[train], data.target[train], data.positions[val], data.target[val], model_params,
        epochs=int(settings.get("epochs", 100)), time_limit_s=60.0 * float(settings.get("time_limit_minutes", 10)),
        seed=seed)
    forward = inference_function(model)
    pred = np.concatenate([forward(batch_to_inputs(store.batch(data.positions[test][k:k + 256])))
                           for k in range(0, test.size, 256)])
    rows, frame = kendall_table(model, store, data, test, rules, pair_share=float(settings.get("pair_share", 0.5)), seed=seed)
    summary = {
        "target": "crippen_logp",
        "n_train": int(train.size), "n_validation": int(val.size), "n_test": int(test.size),
        "test_mae": float(np.mean(np.abs(pred - data.target[test]))),
        "target_std": float(np.std(data.target)),
        **log,
        "kendall_tau": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
    }
    return summary, frame


def methods_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Methods sorted by decreasing mean tau."""
    return [r["method"] for r in sorted(rows, key=lambda r: -r["tau_mean"])]
