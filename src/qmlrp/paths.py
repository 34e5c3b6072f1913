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
CRIPPEN_MODEL = Path("models/crippen/model.npz")
"""The Weave model trained on Crippen logP (stage ``train_crippen``)."""
CRIPPEN_RESULTS = Path("models/crippen")
"""Its split.json (test ids), history.csv and run.json."""
PUBLISHED_MODELS = Path(__file__).resolve().parents[2] / "studies" / "qm9-full" / "models"
"""The full study's published ensemble (all of QM9; ``<target>/fold<k>.npz``), in the repository
checkout the package is installed from; ``predict`` and ``explain`` use it when ``models/`` has none."""
CHECKPOINTS = Path("scratch/checkpoints")
"""Resumable training state of runs in progress (never versioned)."""

BETA_DATA = Path("data/beta")
"""The beta model's own data: the molecules of the published labels (``labels/beta/<level>``),
ingested from QM9 by id, featurized and split: ``qm9.parquet`` (with the label column),
``features/``, ``folds.parquet``."""


def models_to_use(models_dir: Path | None) -> tuple[Path, bool]:
    """``(folder, published)``: ``models_dir`` when given; else ``models/`` when it holds a model file;
    else the published full-study ensemble (``published`` True) when this checkout has it."""
    if models_dir is not None:
        return Path(models_dir), False
    if any(MODELS.glob("*/fold*.npz")) or not any(PUBLISHED_MODELS.glob("*/fold*.npz")):
        return MODELS, False
    return PUBLISHED_MODELS, True


def dataset_paths(dataset: str) -> tuple[Path, Path, Path]:
    """(table, feature store, folds) of a target's dataset: ``qm9`` (the ingest sample) or ``beta``."""
    if dataset == "qm9":
        return QM9_TABLE, FEATURES, FOLDS
    if dataset == "beta":
        return BETA_DATA / "qm9.parquet", BETA_DATA / "features", BETA_DATA / "folds.parquet"
    raise ValueError(f"unknown dataset {dataset!r}; choose qm9 or beta")
