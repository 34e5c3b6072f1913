"""The rows of a label folder (the β labels' ``part-*.parquet`` shards) aligned with a feature store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore


def label_rows(store: FeatureStore, labels: str | Path) -> pd.DataFrame:
    """One row per store molecule, in store order (index: QM9 id), from the label folder ``labels``.

    Raises:
        QmlrpError: one line when the folder holds no labels or a featurized molecule has none.
    """
    from qmlrp.labels.records import read_labels

    frame = read_labels(labels)
    if frame.empty:
        raise QmlrpError(f"{labels}: no β labels found (a folder of part-*.parquet shards)")
    frame = frame.set_index("id")
    missing = np.setdiff1d(store.ids, frame.index.to_numpy())
    if missing.size:
        raise QmlrpError(f"{labels}: {missing.size} featurized molecules have no label (e.g. id {missing[0]})")
    return frame.loc[store.ids]


def mae_mad(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``{"mae", "mad", "mae_over_mad"}`` of predictions against labels (MAD: of the labels about their mean)."""
    mae = float(np.mean(np.abs(pred - true)))
    mad = float(np.mean(np.abs(true - np.mean(true))))
    return {"mae": mae, "mad": mad, "mae_over_mad": mae / mad if mad > 0 else float("nan")}
