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
