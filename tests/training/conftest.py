"""A tiny QM9 pipeline in a temporary folder: ingest -> featurize -> split -> train (2 folds x 2 targets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
N_MOLECULES = 60
FOLDS = [0, 1]


def small_params(root: Path, **train: object) -> Path:
    """The repository's params.yaml with the train section shrunk for tests."""
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update({"folds": FOLDS, "epochs": 2, "batch_size": 16, **train})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """``data/{qm9.parquet, features/, folds.parquet}`` for a seeded sample of 60 molecules."""
    from qmlrp.data.ingest import ingest
    from qmlrp.data.split import split
    from qmlrp.features.featurize import featurize_table

    root = tmp_path_factory.mktemp("small")
    data = root / "data"
    ingest(source="qm9pack", output=data / "qm9.parquet", rejects=data / "rejects.csv", metrics=root / "ingest.json",
           limit=N_MOLECULES, seed=1, on_error="fail")
    featurize_table(data / "qm9.parquet", data / "features", data / "failures.csv", root / "featurize.json",
                    workers=1, chunk_size=N_MOLECULES, scratch_root=root / "scratch")
    split(data / "features", data / "folds.parquet", root / "split.json", n_folds=10, seed=1)
    return root


@pytest.fixture(scope="session")
def trained(small_data) -> dict:
    """Train alpha and zpve on folds 0 and 1 (2 epochs each); returns the run summaries."""
    from qmlrp.training.train import train_fold

    params = small_params(small_data)
    data = small_data / "data"
    summaries = {}
    for target in ("alpha", "zpve"):
        for fold in FOLDS:
            summaries[(target, fold)] = train_fold(
                target, fold, params_path=params, features=data / "features", table=data / "qm9.parquet",
                folds_path=data / "folds.parquet", models_dir=small_data / "models",
                results_dir=small_data / "results", live_dir=small_data / "dvclive", log=False,
            )
    return summaries
