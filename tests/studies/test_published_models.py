"""The full study's published models: compact, safe to load, and they reproduce their record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.models.io import find_models
from qmlrp.models.published import read_manifest

STUDY = Path(__file__).resolve().parents[2] / "studies" / "qm9-full"
MODELS = STUDY / "models"
MANIFEST = read_manifest(MODELS)
PUBLISHED = sorted(p for names in (MANIFEST[1] if MANIFEST else {}).values() for name in names
                   for p in (MODELS / name).glob("fold*.npz"))
"""Every model file the manifest can choose (all candidate sets: a set waiting to replace another too)."""


def test_published_set_is_within_budget() -> None:
    if not PUBLISHED:
        pytest.skip("no published models in studies/qm9-full/models")
    in_use = find_models(MODELS)  # what predict uses: 10 folds each of alpha and ZPVE
    total = sum(p.stat().st_size for t in ("alpha", "zpve") for _, p in in_use.get(t, []))
    assert total <= 120 * 2**20, f"{total / 2**20:.1f} MB"  # 20 models at 5.8 MB (float16 kernels)
    largest = max(PUBLISHED, key=lambda p: p.stat().st_size)
    assert largest.stat().st_size <= 6 * 2**20, f"{largest}: {largest.stat().st_size / 2**20:.1f} MB"


def test_every_target_folder_is_in_the_manifest() -> None:
    """A model folder the manifest does not name would never be used by predict."""
    if not PUBLISHED:
        pytest.skip("no published models in studies/qm9-full/models")
    named = {MODELS / name for names in MANIFEST[1].values() for name in names}
    on_disk = {p.parent for p in MODELS.rglob("fold*.npz")}
    assert on_disk <= named, sorted(map(str, on_disk - named))


@pytest.mark.parametrize("path", PUBLISHED, ids=[f"{p.parent.relative_to(MODELS)}-{p.stem}".replace("/", "-")
                                                 for p in PUBLISHED])
def test_published_model_reproduces_its_test_predictions(path: Path, qm9pack_frame, tmp_path: Path) -> None:
    from qmlrp.data.ingest import records_to_table
    from qmlrp.data.qm9pack_source import record_from_row
    from qmlrp.features.featurize import featurize_table
    from qmlrp.features.store import FeatureStore
    from qmlrp.models.io import load_model
    from qmlrp.training.train import predict_positions

    import pyarrow.parquet as pq

    target, fold = path.parent.name, int(path.stem.removeprefix("fold"))
    run_dir = STUDY / "results" / path.parent.relative_to(MODELS) / f"fold{fold}"  # results mirror models
    run = json.loads((run_dir / "run.json").read_text())
    if (run_dir / "predictions.csv").exists():  # a scalar target
        recorded = pd.read_csv(run_dir / "predictions.csv")
    else:  # a padded vector (the frequencies): lists of values, y_true NaN past the molecule's modes
        recorded = pd.read_parquet(run_dir / "predictions.parquet")
    y_true, y_pred = (np.stack(recorded[c].to_numpy()) for c in ("y_true", "y_pred"))
    assert np.isclose(run["test_mae"], np.nanmean(np.abs(y_pred - y_true)))
    sample = recorded.sample(n=30, random_state=0).sort_values("id")
    table = tmp_path / "qm9.parquet"
    pq.write_table(records_to_table(record_from_row(qm9pack_frame.loc[int(i)]) for i in sample.id), table)
    featurize_table(table, tmp_path / "features", tmp_path / "failures.csv", tmp_path / "featurize.json",
                    workers=1, chunk_size=30, scratch_root=tmp_path / "scratch")
    store = FeatureStore.open(tmp_path / "features")
    model = load_model(path)
    assert model.metadata["target"] == target and model.metadata["fold"] == fold
    again = predict_positions(model, store, store.positions(sample.id.to_numpy()), 16)
    scaled = np.abs(again - np.stack(sample.y_pred.to_numpy())) / np.asarray(run["target_std"])  # per output
    assert scaled.max() <= 1e-4, f"largest difference {scaled.max():.2e} target sd"


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
    in_use = find_models(MODELS)
    for target, models in in_use.items():
        assert f"{target}: {len(models)} fold model" in note, note
        assert models[0][1].parent.relative_to(MODELS).as_posix() in note, note  # the set it chose
    values = json.loads(done.stdout)["molecules"][0]
    assert values["alpha"]["n_models"] == len(in_use["alpha"])
    assert 3.0 < values["alpha"]["mean"] < 30.0  # QM9's water: 6.31 bohr^3; an extreme, tiny molecule


@pytest.mark.integration
def test_explain_without_local_models_uses_the_set_the_manifest_chose(tmp_path: Path) -> None:
    """``explain`` reads the same manifest: omega1 lives in spectra/omega1, not in a top-level folder."""
    import subprocess
    import sys

    if "omega1" not in find_models(MODELS):
        pytest.skip("no published omega1 model in studies/qm9-full/models")
    (tmp_path / "water.xyz").write_text(WATER)
    done = subprocess.run([sys.executable, "-m", "qmlrp", "explain", "water.xyz", "--target", "omega1",
                           "--out", "pictures"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    note = next(line for line in done.stderr.splitlines() if line.startswith("note: "))
    assert str(MODELS / "spectra" / "omega1" / "fold0.npz") in note, note
    assert "conservation error" in done.stdout and list((tmp_path / "pictures").glob("water_omega1_*.png"))
