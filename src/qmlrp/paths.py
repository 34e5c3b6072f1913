"""Where the stages read and write (relative to the repository root; mirrored in dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

QM9_TABLE = Path("data/qm9.parquet")
INGEST_REJECTS = Path("data/ingest_rejects.csv")
FEATURES = Path("data/features")
FEATURIZE_FAILURES = Path("data/featurize_failures.csv")
FOLDS = Path("data/folds.parquet")
METRICS = Path("metrics")
MODELS = Path("models")
CHECKPOINTS = Path("scratch/checkpoints")
"""Resumable training state of runs in progress (never versioned)."""

BETA_DATA = Path("data/beta")
"""The beta model's own data: the molecules of the published labels (``labels/beta/<level>``),
ingested from QM9 by id, featurized and split: ``qm9.parquet`` (with the label column),
``features/``, ``folds.parquet``."""


def dataset_paths(dataset: str) -> tuple[Path, Path, Path]:
    """(table, feature store, folds) of a target's dataset: ``qm9`` (the ingest sample) or ``beta``."""
    if dataset == "qm9":
        return QM9_TABLE, FEATURES, FOLDS
    if dataset == "beta":
        return BETA_DATA / "qm9.parquet", BETA_DATA / "features", BETA_DATA / "folds.parquet"
    raise ValueError(f"unknown dataset {dataset!r}; choose qm9 or beta")
