"""The full study's published models: compact, safe to load, and they reproduce their record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

STUDY = Path(__file__).resolve().parents[2] / "studies" / "qm9-full"
PUBLISHED = sorted((STUDY / "models").glob("*/fold*.npz"))


def test_published_set_is_within_budget() -> None:
    if not PUBLISHED:
        pytest.skip("no published models in studies/qm9-full/models")
    total = sum(p.stat().st_size for p in PUBLISHED)
    assert total <= 120 * 2**20, f"{total / 2**20:.1f} MB"  # 20 models at 5.8 MB (float16 kernels)


@pytest.mark.parametrize("path", PUBLISHED, ids=[f"{p.parent.name}-{p.stem}" for p in PUBLISHED])
def test_published_model_reproduces_its_test_predictions(path: Path, qm9pack_frame, tmp_path: Path) -> None:
    from qmlrp.data.ingest import records_to_table
    from qmlrp.data.qm9pack_source import record_from_row
    from qmlrp.features.featurize import featurize_table
    from qmlrp.features.store import FeatureStore
    from qmlrp.models.io import load_model
    from qmlrp.training.train import predict_positions

    import pyarrow.parquet as pq

    target, fold = path.parent.name, int(path.stem.removeprefix("fold"))
    run_dir = STUDY / "results" / target / f"fold{fold}"
    recorded = pd.read_csv(run_dir / "predictions.csv")
    run = json.loads((run_dir / "run.json").read_text())
    assert np.isclose(run["test_mae"], np.mean(np.abs(recorded.y_pred - recorded.y_true)))
    sample = recorded.sample(n=30, random_state=0).sort_values("id")
    table = tmp_path / "qm9.parquet"
    pq.write_table(records_to_table(record_from_row(qm9pack_frame.loc[int(i)]) for i in sample.id), table)
    featurize_table(table, tmp_path / "features", tmp_path / "failures.csv", tmp_path / "featurize.json",
                    workers=1, chunk_size=30, scratch_root=tmp_path / "scratch")
    store = FeatureStore.open(tmp_path / "features")
    model = load_model(path)
    assert model.metadata["target"] == target and model.metadata["fold"] == fold
    again = predict_positions(model, store, store.positions(sample.id.to_numpy()), 16)
    np.testing.assert_allclose(again, sample.y_pred.to_numpy(), rtol=0, atol=1e-4 * run["target_std"])


WATER = "3\nwater\nO 0.000 0.000 0.1173\nH 0.000 0.7572 -0.4692\nH 0.000 -0.7572 -0.4692\n"


@pytest.mark.integration
def test_predict_without_local_models_uses_the_published_ensemble(tmp_path: Path) -> None:
    """A fresh clone has no ``models/``: ``predict`` says it uses the published full-QM9 models and
    how many folds of each target, and predicts with them."""
    import subprocess
    import sys

    if not PUBLISHED:
        pytest.skip("no published models in studies/qm9-full/models")
    (tmp_path / "water.xyz").write_text(WATER)
    done = subprocess.run([sys.executable, "-m", "qmlrp", "predict", "water.xyz", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    note = next(line for line in done.stderr.splitlines() if line.startswith("note: "))
    for target in {p.parent.name for p in PUBLISHED}:
        n = sum(p.parent.name == target for p in PUBLISHED)
        assert f"{target}: {n} fold model" in note, note
    values = json.loads(done.stdout)["molecules"][0]
    assert values["alpha"]["n_models"] == sum(p.parent.name == "alpha" for p in PUBLISHED)
    assert 3.0 < values["alpha"]["mean"] < 30.0  # QM9's water: 6.31 bohr^3; an extreme, tiny molecule
