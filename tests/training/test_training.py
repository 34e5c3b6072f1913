"""Training and evaluation on a tiny QM9 sample: splits, the input stream, run outputs, metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.training.config import EvaluateConfig, TrainConfig
from tests.training.conftest import FOLDS, REPO_PARAMS, small_params


def test_repository_params_parse():
    import yaml

    params = yaml.safe_load(REPO_PARAMS.read_text())
    config = TrainConfig.from_params(params["train"])
    assert config.targets[:2] == ("alpha", "zpve") and config.folds == (0, 1)  # the demo; all 10: studies/qm9-2k
    assert config.targets.index("frequencies") > 1 and config.targets.index("omega1") > 1
    assert config.model.head_units == (2000,)
    thresholds = EvaluateConfig.from_params(params["evaluate"]).thresholds
    assert (thresholds["alpha"], thresholds["zpve"], thresholds["omega1"]) == (0.227, 0.00975, 3.15)
    with pytest.raises(QmlrpError, match="unknown key 'learning_rat' .did you mean 'learning_rate'"):
        TrainConfig.from_params({**params["train"], "learning_rat": 1.0})
    with pytest.raises(QmlrpError, match="train.loss: 'l3' is not one of"):
        TrainConfig.from_params({**params["train"], "loss": "l3"})
    with pytest.raises(QmlrpError, match="unknown target"):
        TrainConfig.from_params({**params["train"], "targets": ["gap"]})
    with pytest.raises(QmlrpError, match="train.schedule: 'linear' is not one of 'plateau', 'cosine'"):
        TrainConfig.from_params({**params["train"], "schedule": "linear"})
    with pytest.raises(QmlrpError, match=r"^params.yaml train.model: unknown key 'head_unit'"):
        TrainConfig.from_params({**params["train"], "model": {"head_unit": [10]}})
    with pytest.raises(QmlrpError, match=r"^params.yaml train.model.depth: expected an integer, got 'two'$"):
        TrainConfig.from_params({**params["train"], "model": {"depth": "two"}})
    assert TrainConfig.from_params({**params["train"], "learning_rate": "1e-3"}).learning_rate == 1e-3


def test_the_study_params_parse():
    import yaml

    from qmlrp.training.study import StudyConfig

    study = REPO_PARAMS.parent / "studies" / "qm9-full" / "params.yaml"
    config = TrainConfig.load(study)
    assert config.targets == ("alpha", "zpve") and config.model.head_units == (2000,)
    assert StudyConfig.load(study).compare_schedules == ("plateau",)
    assert yaml.safe_load(study.read_text())["ingest"]["limit"] is None


def test_schedules_known_values():
    from qmlrp.training.schedule import CosineSchedule, PlateauSchedule

    cosine = CosineSchedule(learning_rate=1e-3, epochs=11, warmup_epochs=1.0, min_learning_rate=1e-5)
    assert cosine.rate(0, 0.0) == pytest.approx(4e-5)
    assert cosine.rate(0, 0.5) == pytest.approx(4e-5 + 0.5 * (1e-3 - 4e-5))
    assert cosine.rate(0, 1.0) == pytest.approx(1e-3)
    assert cosine.rate(0, 6.0) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert cosine.rate(0, 11.0) == pytest.approx(1e-5)
    plateau = PlateauSchedule(learning_rate=1e-3, factor=0.5, patience=2, min_learning_rate=3e-4)
    for mae, expected in [(1.0, 1e-3), (0.99995, 1e-3), (0.9, 1e-3), (0.9, 1e-3), (0.95, 5e-4), (0.9, 5e-4),
                          (0.9, 3e-4)]:
        plateau.end_epoch(mae)
        assert plateau.rate(0, 0.0) == pytest.approx(expected)


def test_split_is_disjoint_and_matches_the_fold_file(small_data):
    from qmlrp.features.store import FeatureStore
    from qmlrp.data.split import make_split

    data = small_data / "data"
    store = FeatureStore.open(data / "features")
    folds = pd.read_parquet(data / "folds.parquet").set_index("id")["fold"]
    split = make_split(store, data / "folds.parquet", 3, validation_fraction=0.2, seed=7)
    parts = [split.train, split.validation, split.test]
    assert sum(p.size for p in parts) == len(store)
    assert len(np.unique(np.concatenate(parts))) == len(store)
    assert set(folds.loc[store.ids[split.test]]) == {3}
    assert 3 not in set(folds.loc[store.ids[np.concatenate([split.train, split.validation])]])
    assert split.validation.size == round(0.2 * (len(store) - split.test.size))
    again = make_split(store, data / "folds.parquet", 3, validation_fraction=0.2, seed=7)
    np.testing.assert_array_equal(again.validation, split.validation)
    capped = make_split(store, data / "folds.parquet", 3, validation_fraction=0.2, seed=7, max_train_molecules=10)
    assert capped.train.size == 10 and set(capped.train) <= set(split.train)



def bad_fold_files(folder, good) -> dict[str, tuple[object, str]]:
    """name -> (path, the reason after ``path: ``) of fold files that must be refused in one line."""
    import shutil

    frame = pd.read_parquet(good)
    out = {}
    path = folder / "truncated.parquet"
    path.write_bytes(good.read_bytes()[:300])
    out["truncated"] = (path, "unreadable Parquet (truncated or corrupt? Could not open Parquet input source "
                              f"'{path}': Parquet magic bytes not found in footer. Either the file is corrupted or "
                              "this is not a parquet file.) (run `dvc repro split`)")
    path = folder / "empty.parquet"
    path.write_bytes(b"")
    out["empty"] = (path, "empty file, not Parquet (run `dvc repro split`)")
    path = folder / "twice.parquet"
    pd.concat([frame, frame.iloc[[4]]]).to_parquet(path)
    out["twice"] = (path, f"id {frame.id.iloc[4]} is listed 2 times")
    path = folder / "nulls.parquet"
    frame.assign(fold=frame.fold.astype("Int64").where(frame.index != 2)).to_parquet(path)
    out["nulls"] = (path, "column 'fold' holds float64 values (nulls?), expected integers")
    path = folder / "nofold.parquet"
    frame[["id"]].to_parquet(path)
    out["nofold"] = (path, "unreadable Parquet (truncated or corrupt? No match for FieldRef.Name(fold) in id: int64")
    shutil.copy(good, folder / "good.parquet")
    return out


def test_bad_fold_files_are_one_line(small_data, tmp_path):
    from qmlrp.features.store import FeatureStore
    from qmlrp.data.split import make_split

    store = FeatureStore.open(small_data / "data" / "features")
    for name, (path, reason) in bad_fold_files(tmp_path, small_data / "data" / "folds.parquet").items():
        with pytest.raises(QmlrpError) as err:
            make_split(store, path, 0, validation_fraction=0.1, seed=1)
        assert str(err.value).startswith(f"{path}: {reason}"), name
        assert "\n" not in str(err.value)
    with pytest.raises(QmlrpError) as err:
        make_split(store, tmp_path / "absent.parquet", 0, validation_fraction=0.1, seed=1)
    assert str(err.value) == f"{tmp_path / 'absent.parquet'}: not found (run `dvc repro split`)"


@pytest.mark.integration
def test_train_with_a_truncated_fold_file_is_one_line(small_data, tmp_path):
    """``qmlrp train`` end to end: one error line naming data/folds.parquet, exit status 2."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(small_data / "data", tmp_path / "data")
    folds = tmp_path / "data" / "folds.parquet"
    folds.write_bytes(folds.read_bytes()[:300])
    small_params(tmp_path)
    done = subprocess.run([sys.executable, "-m", "qmlrp", "train", "--target", "alpha", "--fold", "0"], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == ("error: data/folds.parquet: unreadable Parquet (truncated or corrupt? Could not open Parquet "
                           "input source 'data/folds.parquet': Parquet magic bytes not found in footer. Either the "
                           "file is corrupted or this is not a parquet file.) (run `dvc repro split`)\n")


def test_train_writes_model_predictions_and_logs(small_data, trained):
    from qmlrp.models.io import load_model

    for (target, fold), summary in trained.items():
        run = small_data / "results" / target / f"fold{fold}"
        predictions = pd.read_csv(run / "predictions.csv")
        assert summary["n_test"] == len(predictions) > 0
        assert np.isclose(summary["test_mae"], np.mean(np.abs(predictions.y_pred - predictions.y_true)))
        folds = pd.read_parquet(small_data / "data" / "folds.parquet").set_index("id")["fold"]
        assert set(folds.loc[predictions.id]) == {fold}
        assert json.loads((run / "run.json").read_text())["epochs_run"] == 2
        assert len(pd.read_csv(run / "history.csv")) == 2
        live = small_data / "dvclive" / target / f"fold{fold}"
        assert (live / "plots" / "metrics" / "val_mae.tsv").exists() and (live / "metrics.json").exists()
        model = load_model(small_data / "models" / target / f"fold{fold}.npz")
        assert model.metadata["target"] == target and model.metadata["fold"] == fold
        # the saved model reproduces the logged test predictions
        from qmlrp.features.store import FeatureStore
        from qmlrp.training.train import predict_positions

        store = FeatureStore.open(small_data / "data" / "features")
        again = predict_positions(model, store, store.positions(predictions.id.to_numpy()), batch_size=7)
        # (float16 kernels on disk: the reloaded model reproduces the recorded predictions, which
        # were made by the reloaded weights too)
        np.testing.assert_allclose(again, predictions.y_pred, rtol=1e-5, atol=1e-5)


def test_evaluate_metrics_and_plots(small_data, trained):
    from qmlrp.training.evaluate import evaluate

    params = small_params(small_data)
    metrics_file = small_data / "metrics" / "evaluate.json"
    plots = small_data / "plots"
    metrics = evaluate(params, small_data / "results", metrics_file, plots)
    assert json.loads(metrics_file.read_text()) == metrics
    for target in ("alpha", "zpve"):
        m = metrics[target]
        maes = [trained[(target, f)]["test_mae"] for f in FOLDS]
        assert np.isclose(m["mae_mean"], np.mean(maes)) and np.isclose(m["mae_sd"], np.std(maes, ddof=1))
        assert m["pass"] is (m["mae_mean"] <= m["threshold"])
        assert list(m["mae_per_fold"]) == ["fold0", "fold1"]
        parity = pd.read_csv(plots / "parity" / f"{target}.csv")
        assert list(parity.columns) == ["id", "fold", "y_true", "y_pred"] and set(parity.fold) == set(FOLDS)
        assert (plots / "images" / f"parity_{target}.png").stat().st_size > 0
        assert (plots / "images" / f"learning_curves_{target}.png").stat().st_size > 0
    assert metrics["all_pass"] is False  # 2 epochs on 48 molecules
    assert metrics["protocol"] == {"folds_run": 2, "folds_of_protocol": 10, "complete": False}


def test_evaluate_names_a_missing_run(small_data, trained, tmp_path):
    """A fold not trained yet (a study trained model by model) is left out and named; the record
    says it is partial. A target with no trained fold at all is an error naming it."""
    from qmlrp.training.evaluate import evaluate

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    params = small_params(tmp_path / "a", folds=[0, 5])
    metrics = evaluate(params, small_data / "results", tmp_path / "m.json", tmp_path / "plots", make_images=False)
    assert metrics["protocol"] == {"folds_run": 1, "folds_of_protocol": 10, "complete": False,
                                   "missing": ["alpha/fold5", "zpve/fold5"]}
    assert metrics["alpha"]["n_folds"] == 1 and list(metrics["alpha"]["mae_per_fold"]) == ["fold0"]
    params = small_params(tmp_path / "b", folds=[5, 6])
    with pytest.raises(QmlrpError, match="alpha: no trained fold"):
        evaluate(params, small_data / "results", tmp_path / "m.json", tmp_path / "plots", make_images=False)
