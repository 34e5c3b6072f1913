"""One fold of an equivariant target (mu/beta_vec, the alpha tensor): train with the one engine, publish the
model file, predict the test molecules with that (float16) file, write predictions and history."""

from __future__ import annotations

from collections.abc import Callable
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


def fit_equivariant_fold(store: FeatureStore, target: Target, y: np.ndarray, split: Split, config: TrainConfig,
                         metadata: dict[str, Any], models_dir: str | Path, results_dir: str | Path,
                         write_predictions: Callable[[np.ndarray, np.ndarray, np.ndarray, Path], None],
                         checkpoint: str | Path | None = None, log: bool = True) -> tuple[Any, np.ndarray, Path]:
    """``(fit result, test predictions (n_test, T) in a.u., model file)``; resumes from ``checkpoint``
    (default ``scratch/checkpoints/<target>-fold<k>.npz``), removed once the run is written. Writes
    ``results_dir/<target>/fold<k>/{predictions.parquet, history.csv}``."""
    from qmlrp.models.io import load_model, model_path, save_model
    from qmlrp.training.engine import ModelRun, fit
    from qmlrp.training.vector_fit import predict_vectors

    fold = int(split.fold)
    checkpoint = Path(checkpoint or CHECKPOINTS / f"{target.name}-fold{fold}.npz")
    run = ModelRun(f"{target.name}/fold{fold}", target, y, split.train, split.validation, config.seed + fold, metadata)
    result = fit(store, [run], config, checkpoint=checkpoint, log=log)[0]
    file = model_path(models_dir, target.name, fold)
    save_model(result.model, file)
    checkpoint.unlink(missing_ok=True)  # the run is written: a finished model is never resumed
    y_pred = predict_vectors(load_model(file), store, split.test)  # the published (float16) file's
    run_dir = Path(results_dir) / target.name / f"fold{fold}"
    write_predictions(store.ids[split.test], y[split.test], y_pred, run_dir / "predictions.parquet")
    write_csv(pd.DataFrame(result.history), run_dir / "history.csv")
    return result, y_pred, file
