"""Stage ``train_crippen``: the Weave model trained on Crippen logP (the ground-truth experiment's model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.data.split import split_indices
from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv, write_json
from qmlrp.params import parse_section, stage_params
from qmlrp.paths import CRIPPEN_MODEL, CRIPPEN_RESULTS
from qmlrp.targets.crippen import CRIPPEN_TARGET, crippen_data


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
