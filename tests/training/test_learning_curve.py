"""Stage ``beta_learning_curve``: nested seeded subsamples, and the curve end to end on a tiny
β data set (33 real QM9 molecules, made-up labels; 1 epoch) trained as one program."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qmlrp.errors import QmlrpError
from qmlrp.labels.dataset import BetaDataParams, build_beta_data
from qmlrp.params import parse_section
from qmlrp.training.learning_curve import LearningCurveParams, subsample
from tests.labels.beta_folder import write_labels
from tests.training.conftest import run_in_jax

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_subsamples_are_nested_seeded_and_sized():
    train = np.arange(100, 120)
    a = subsample(train, (0.25, 0.5, 1.0), seed=3, fold=1)
    assert [s.size for s in a] == [5, 10, 20]
    assert set(a[0]) <= set(a[1]) <= set(a[2]) and a[2].tolist() == train.tolist()
    assert all(np.all(np.diff(s) > 0) for s in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, subsample(train, (0.25, 0.5, 1.0), seed=3, fold=1)))
    assert not np.array_equal(a[0], subsample(train, (0.25,), seed=3, fold=2)[0])  # each fold its own draw
    with pytest.raises(QmlrpError, match=r"fractions: 0.05 of fold 1's 20 training molecules leaves 1"):
        subsample(train, (0.05,), seed=3, fold=1)


@pytest.mark.parametrize(("values", "message"), [
    ({"fraction": [0.5]}, r"unknown key 'fraction' \(did you mean 'fractions'\?\)"),
    ({"fractions": [0.5, 1.5]}, r"fractions must be .* in \(0, 1\]"),
    ({"fractions": []}, r"fractions must be a non-empty list"),
    ({"folds": [0, 0]}, r"folds must be distinct"),
])
def test_bad_params_are_named(values, message):
    with pytest.raises(QmlrpError, match=f"params.yaml beta_learning_curve.*{message}"):
        parse_section(LearningCurveParams, "beta_learning_curve", values)


@pytest.fixture(scope="module")
def tiny_beta(tmp_path_factory) -> tuple[Path, dict[int, float]]:
    """data/beta for the first 33 QM9 molecules of qm9pack, beta_parallel = 10 (id mod 7) - 30 a.u., 3 folds."""
    from qmlrp.data import qm9pack_source

    root = tmp_path_factory.mktemp("tiny_beta")
    ids = sorted(int(i) for i in qm9pack_source.read_frame()["Index"].head(33))
    labels = {i: 10.0 * (i % 7) - 30.0 for i in ids}
    folder = write_labels(root / "labels" / "rks-b3lyp5-6-31g", labels)
    params = parse_section(BetaDataParams, "beta_data", {"labels": str(folder), "compare": None, "n_folds": 3})
    build_beta_data(params, output=root / "data" / "beta", metrics=root / "beta_data.json",
                    basis_table=root / "basis.csv", scratch_root=root / "scratch")
    return root, labels


def test_learning_curve_end_to_end(tiny_beta):
    root, labels = tiny_beta
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(epochs=5, batch_size=16)
    params["train_beta"] = {"epochs": 1}  # the beta dataset's own section wins over train
    params["beta_learning_curve"] = {"fractions": [0.25, 0.5, 1.0], "folds": [0, 1], "seed": 5}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = root / "data" / "beta"
    run_in_jax(
        "from pathlib import Path\n"
        "from qmlrp.training.learning_curve import learning_curve\n"
        f"learning_curve('params.yaml', metrics_file='curve.json', table_file='curve.csv', png_file='curve.png',"
        f" data=(Path({str(data / 'qm9.parquet')!r}), Path({str(data / 'features')!r}),"
        f" Path({str(data / 'folds.parquet')!r})), log=False)\n", root, timeout=600)
    m = json.loads((root / "curve.json").read_text())

    # 33 molecules in 3 folds of 11; the 22 others lose round(0.1 * 22) = 2 to validation: 20 train
    assert [s["n_train_per_fold"] for s in m["sizes"]] == [[5, 5], [10, 10], [20, 20]]
    assert [s["n_train"] for s in m["sizes"]] == [5, 10, 20]
    assert m["models_in_program"] == 6 and m["folds"] == [0, 1] and m["epochs"] == 1
    values = np.array(list(labels.values()))
    mad = float(np.mean(np.abs(values - values.mean())))
    assert m["label_mad"] == pytest.approx(mad) and m["mae_bar"] == pytest.approx(0.3 * mad)
    for s in m["sizes"]:
        assert len(s["mae_per_fold"]) == 2 and all(np.isfinite(s["mae_per_fold"])) and min(s["mae_per_fold"]) > 0
        assert s["mae_mean"] == pytest.approx(np.mean(s["mae_per_fold"]))
        assert s["mae_sd"] == pytest.approx(np.std(s["mae_per_fold"], ddof=1))
        assert s["mae_over_mad"] == pytest.approx(s["mae_mean"] / mad)
        for ref in ("ridge", "krr", "mean"):
            assert np.isfinite(s[f"{ref}_mae_mean"]) and s[f"{ref}_mae_over_mad"] == pytest.approx(s[f"{ref}_mae_mean"] / mad)
            assert np.isfinite(s[f"control_{ref}_mae_over_mad"]) and s[f"control_{ref}_mae_over_mad"] > 0
    # the training-mean reference at the full training set, recomputed from the fold's split
    from qmlrp.features.store import FeatureStore
    from qmlrp.data.split import make_split

    store = FeatureStore.open(data / "features")
    y = np.array([labels[int(i)] for i in store.ids])
    expected = []
    for fold in (0, 1):
        split = make_split(store, data / "folds.parquet", fold, params["train"]["validation_fraction"],
                           params["train"]["seed"], None)
        expected.append(np.mean(np.abs(y[split.train].mean() - y[split.test])))
    assert m["sizes"][-1]["mean_mae_mean"] == pytest.approx(np.mean(expected))
    # the control target is QM9's α of the same molecules: its training-mean reference, recomputed the same way
    alpha = pd.read_parquet(data / "qm9.parquet", columns=["id", "alpha_bohr3"]).set_index("id")["alpha_bohr3"]
    a = alpha.reindex([int(i) for i in store.ids]).to_numpy()
    assert m["control"]["column"] == "alpha_bohr3" and m["control"]["label_mad"] == pytest.approx(np.mean(np.abs(a - a.mean())))
    expected_control = []
    for fold in (0, 1):
        split = make_split(store, data / "folds.parquet", fold, params["train"]["validation_fraction"],
                           params["train"]["seed"], None)
        expected_control.append(np.mean(np.abs(a[split.train].mean() - a[split.test])))
    assert m["sizes"][-1]["control_mean_mae_over_mad"] == pytest.approx(np.mean(expected_control) / m["control"]["label_mad"])
    table = pd.read_csv(root / "curve.csv")
    assert {"ridge_mae_mean", "krr_mae_mean", "mean_mae_mean", "ridge_mae_over_mad",
            "control_krr_mae_over_mad"} <= set(table.columns)
    assert table["n_train"].tolist() == [5, 10, 20] and table["mae_mean"].tolist() == pytest.approx(
        [s["mae_mean"] for s in m["sizes"]])
    assert (root / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
