"""One fold of an equivariant target (mu/beta_vec, the alpha tensor): train with the one engine, publish the
model files, predict the test molecules with those (float16) files, write predictions and history.

A fold may be a seed ensemble (``members`` > 1): N networks that differ only in their seed
(:func:`member_seed`), trained as one program of the engine (each with its own early stopping), their
test predictions averaged. Member 0 is the fold's model (``models/<target>/fold<k>.npz``, the file
``predict`` and the published sets use); members 1.. and ``members.json`` go to
``models/<target>/members/fold<k>/`` (:mod:`qmlrp.models.members`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.data.split import Split
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv
from qmlrp.paths import CHECKPOINTS
from qmlrp.targets import Target
from qmlrp.training.config import TrainConfig

MEMBER_SEED_STRIDE = 1000
"""Member s of fold k is seeded ``train.seed + k + 1000 s`` (s = 0: the single network's seed)."""


def member_seed(seed: int, fold: int, member: int) -> int:
    """The seed (initial weights, batch order) of ensemble member ``member`` of ``fold``."""
    return int(seed) + int(fold) + MEMBER_SEED_STRIDE * int(member)


@dataclass(frozen=True)
class EquivariantFold:
    """A trained fold: one result, file and test prediction (n_test, T) per member, and their mean."""

    results: list[Any]
    files: list[Path]
    member_predictions: list[np.ndarray]
    y_pred: np.ndarray


def fit_equivariant_fold(store: FeatureStore, target: Target, y: np.ndarray, split: Split, config: TrainConfig,
                         metadata: dict[str, Any], models_dir: str | Path, results_dir: str | Path,
                         write_predictions: Callable[[np.ndarray, np.ndarray, np.ndarray, Path], None],
                         checkpoint: str | Path | None = None, log: bool = True, members: int = 1,
                         manifest: bool = False) -> EquivariantFold:
    """Train ``members`` networks on the fold (one program, resumable from ``checkpoint``, default
    ``scratch/checkpoints/<target>-fold<k>.npz``, removed once the files are written), save them, and write
    ``results_dir/<target>/fold<k>/{predictions.parquet (the members' mean, a.u.), history.csv (a member
    column)}`` and, for an ensemble (or with ``manifest``), ``members.json`` (files, seeds) beside its members."""
    from qmlrp.io import write_json
    from qmlrp.models.io import load_model, save_model
    from qmlrp.models.members import member_path, members_dir
    from qmlrp.training.engine import ModelRun, fit
    from qmlrp.training.vector_fit import predict_vectors

    fold = int(split.fold)
    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    checkpoint = Path(checkpoint or CHECKPOINTS / f"{target.name}-fold{fold}.npz")
    runs = [ModelRun(f"{target.name}/fold{fold}" + (f"/member{s}" if s else ""), target, y, split.train,
                     split.validation, member_seed(config.seed, fold, s), {**metadata, "member": s, "seed": member_seed(config.seed, fold, s)})
            for s in range(members)]
    results = fit(store, runs, config, checkpoint=checkpoint, log=log)
    files = [member_path(models_dir, target.name, fold, s) for s in range(members)]
    for result, file in zip(results, files):
        save_model(result.model, file)
    if members > 1 or manifest:
        write_json({"target": target.name, "fold": fold, "members": members,
                    "seed_rule": f"train.seed + fold + {MEMBER_SEED_STRIDE} member", "files": [f.name for f in files],
                    "seeds": [member_seed(config.seed, fold, s) for s in range(members)]},
                   members_dir(models_dir, target.name, fold) / "members.json")
    checkpoint.unlink(missing_ok=True)  # the run is written: a finished model is never resumed
    predictions = [predict_vectors(load_model(file), store, split.test) for file in files]  # the published (float16) files'
    y_pred = np.mean(predictions, axis=0)
    run_dir = Path(results_dir) / target.name / f"fold{fold}"
    write_predictions(store.ids[split.test], y[split.test], y_pred, run_dir / "predictions.parquet")
    history = pd.concat([pd.DataFrame(r.history).assign(member=s) for s, r in enumerate(results)], ignore_index=True)
    write_csv(history, run_dir / "history.csv")
    return EquivariantFold(list(results), files, predictions, y_pred)
