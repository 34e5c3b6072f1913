"""The harmonic-frequency targets: labels (sorted, padded), spectrum scores, statistics, the vector
head's model files, evaluation on synthetic results, and training + ``qmlrp predict`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from qmlrp.errors import QmlrpError
from qmlrp.targets import spectra
from qmlrp.targets import get_target
from tests.training.conftest import FOLDS, REPO_PARAMS


# -- spectrum maths -----------------------------------------------------------------------------
def test_linearity_and_mode_counts():
    assert spectra.is_linear(np.array([[0, 0, 0], [0, 0, 1.2], [0, 0, 2.4], [0, 0, -1.06]]))  # acetylene-like
    assert not spectra.is_linear(np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))  # water
    assert spectra.is_linear(np.array([[0, 0, 0], [0, 0, 1.1]]))
    assert spectra.n_modes(3, linear=False) == 3 and spectra.n_modes(4, linear=True) == 7
    assert spectra.n_modes(29, linear=False) == 81
    with pytest.raises(QmlrpError, match="no vibrational modes"):
        spectra.n_modes(1, linear=True)


def test_frequency_vector_sorts_descending_and_pads():
    v = spectra.frequency_vector([1595.0, 3657.0, 3756.0], 5)
    np.testing.assert_array_equal(v[:3], [3756.0, 3657.0, 1595.0])
    assert np.isnan(v[3:]).all() and v.shape == (5,)
    with pytest.raises(QmlrpError, match="4 modes do not fit a head of 3"):
        spectra.frequency_vector([1.0, 2.0, 3.0, 4.0], 3)


def test_sis_known_cases():
    sticks = np.array([3000.0, 1600.0, 700.0])
    assert spectra.sis(sticks, sticks) == pytest.approx(1.0, abs=1e-12)
    near, far = spectra.sis(sticks + 5.0, sticks), spectra.sis(sticks + 300.0, sticks)
    assert 0.0 < far < near < 1.0
    assert spectra.sis(sticks + 5.0, sticks) == pytest.approx(spectra.sis(sticks, sticks + 5.0))  # symmetric
    # two sticks 2000 cm^-1 apart do not overlap: written out, Gaussians of FWHM 15 on the 2 cm^-1 grid,
    # normalised, floored at 1e-8, normalised again; SID = sum p ln(p/q) + q ln(q/p)
    grid, sigma = np.arange(0.0, 4001.0, 2.0), 15.0 / np.sqrt(8 * np.log(2))

    def spike(centre: float) -> np.ndarray:
        g = np.exp(-0.5 * ((grid - centre) / sigma) ** 2)
        g = np.maximum(g / g.sum(), 1e-8)
        return g / g.sum()

    p, q = spike(3000.0), spike(1000.0)
    sid = np.sum(p * np.log(p / q) + q * np.log(q / p))
    assert spectra.sis([3000.0], [1000.0]) == pytest.approx(1.0 / (1.0 + sid), rel=1e-9)
    assert 0.02 < 1.0 / (1.0 + sid) < 0.04  # ~ 1 / (1 + 2 (ln 1e8 - entropy of one spike))


def test_wasserstein_known_cases():
    assert spectra.wasserstein1([1000.0], [1012.5]) == pytest.approx(12.5)
    assert spectra.wasserstein1([0.0, 10.0], [5.0, 10.0]) == pytest.approx(2.5)  # half the weight moves 5
    assert spectra.wasserstein1([0.0], [0.0, 10.0]) == pytest.approx(5.0)  # unit totals: 1/2 moves 10
    a = np.array([3100.0, 1700.0, 900.0, np.nan])
    assert spectra.wasserstein1(a, a[:3][::-1] + 4.0) == pytest.approx(4.0)  # NaN padding ignored
    with pytest.raises(QmlrpError, match="without sticks"):
        spectra.wasserstein1([np.nan], [1.0])


def test_masked_mae_and_mad_by_hand():
    y_true = np.array([[10.0, 4.0, np.nan], [20.0, 8.0, 1.0]])
    y_pred = np.array([[11.0, 4.0, 1e6], [17.0, 8.0, 3.0]])
    assert spectra.masked_mae(y_pred, y_true) == pytest.approx((1 + 0 + 3 + 0 + 2) / 5)
    # per-mode means 15, 6, 1 -> deviations 5, 2, 5, 2, 0
    assert spectra.label_mad(y_true) == pytest.approx(14 / 5)
    assert spectra.label_mad(np.array([1.0, 3.0, np.nan])) == pytest.approx(1.0)


def test_spectrum_scores_use_the_reference_modes_only():
    y_true = np.array([[3000.0, 1500.0, np.nan, np.nan]])
    y_pred = np.array([[3010.0, 1490.0, 50.0, 60.0]])  # outputs beyond the molecule's modes are ignored
    s, w = spectra.spectrum_scores(y_pred, y_true)
    assert w[0] == pytest.approx(10.0) and 0.0 < s[0] < 1.0


# -- labels ------------------------------------------------------------------------------------
WATER = ([8, 1, 1], [0, 0, 0, 0.96, 0, 0, -0.24, 0.93, 0], [1595.0, 3657.0, 3756.0])
HCN = ([6, 7, 1], [0, 0, 0, 0, 0, 1.15, 0, 0, -1.07], [727.0, 727.0, 2200.0, 3440.0])


def label_table(tmp_path: Path, rows: list[tuple[int, tuple]]) -> tuple[SimpleNamespace, Path]:
    frame = pd.DataFrame({"id": [r[0] for r in rows], "atomic_numbers": [r[1][0] for r in rows],
                          "coordinates": [r[1][1] for r in rows], "frequencies_cm1": [r[1][2] for r in rows]})
    path = tmp_path / "qm9.parquet"
    frame.to_parquet(path)
    return SimpleNamespace(ids=np.array([r[0] for r in rows])), path


def test_load_targets_sorts_pads_and_takes_omega1(tmp_path):
    from qmlrp.targets.labels import load_labels

    store, table = label_table(tmp_path, [(3, WATER), (5, HCN)])
    y = load_labels(store, table, get_target("frequencies"))
    assert y.shape == (2, 81) and y.dtype == np.float64
    np.testing.assert_array_equal(y[0, :3], [3756.0, 3657.0, 1595.0])  # 3N-6 = 3
    np.testing.assert_array_equal(y[1, :4], [3440.0, 2200.0, 727.0, 727.0])  # linear: 3N-5 = 4
    assert np.isnan(y[0, 3:]).all() and np.isnan(y[1, 4:]).all()
    np.testing.assert_array_equal(load_labels(store, table, get_target("omega1")), [3756.0, 3440.0])


def test_load_targets_drops_doubled_and_miscounted_records_and_refuses_too_many(tmp_path, capsys):
    from qmlrp.targets.labels import load_labels

    doubled = (WATER[0], WATER[1], WATER[2] + [1600.0, 3650.0, 3750.0])
    store, table = label_table(tmp_path, [(3, WATER), (7, doubled)])
    y = load_labels(store, table, get_target("frequencies"))
    assert np.isfinite(y[0, :3]).all() and np.isnan(y[1]).all()
    assert "1 molecule(s) list two sets of harmonic frequencies" in capsys.readouterr().err
    assert np.isnan(load_labels(store, table, get_target("omega1"))[1])
    # a record whose count is neither the modes nor twice them (QM9 lists 3N-6 values for five linear
    # molecules, e.g. cyanogen, id 25) gets no label and a warning; the good molecules beside it keep theirs
    store, table = label_table(tmp_path, [(3, WATER), (9, (WATER[0], WATER[1], [1.0, 2.0])),
                                          (5, (HCN[0], HCN[1], HCN[2][:3]))])
    y = load_labels(store, table, get_target("frequencies"))
    np.testing.assert_array_equal(y[0, :3], [3756.0, 3657.0, 1595.0])
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    err = capsys.readouterr().err
    assert "2 molecule(s) list another number of harmonic frequencies" in err
    assert "9 (2 listed, 3 modes)" in err and "5 (3 listed, 4 modes)" in err
    chain = ([6] * 29, np.arange(87.0) * 1.5, list(np.arange(1.0, 91.0)))  # linear: 82 modes, 90 given
    store, table = label_table(tmp_path, [(11, chain)])
    with pytest.raises(QmlrpError, match="id 11 lists 90 harmonic frequencies, more than the 81"):
        load_labels(store, table, get_target("frequencies"))


def test_every_target_has_a_label_source_and_an_unknown_one_is_one_line(tmp_path):
    """Labels are made by the target's source (``Target.source`` -> ``LABEL_SOURCES``): a column target reads its
    column, a new source needs no change to load_labels, an unknown one is refused in one line."""
    from dataclasses import replace

    from qmlrp.targets import TARGETS
    from qmlrp.targets.labels import LABEL_SOURCES, load_labels

    assert {t.source for t in TARGETS.values()} <= set(LABEL_SOURCES)
    assert {t.name for t in TARGETS.values() if t.source == "modes"} == {"frequencies", "omega1"}
    store, table = label_table(tmp_path, [(3, WATER), (5, HCN)])
    import pandas as pd

    frame = pd.read_parquet(table).assign(alpha_bohr3=[9.5, 17.25])
    frame.to_parquet(table)
    np.testing.assert_array_equal(load_labels(store, table, get_target("alpha")), [9.5, 17.25])
    with pytest.raises(QmlrpError, match="target alpha: unknown label source 'nope'; choose one of column, modes"):
        load_labels(store, table, replace(get_target("alpha"), source="nope"))


def test_target_statistics_survive_padding_only_modes():
    from qmlrp.training.engine import masked_labels
    from qmlrp.training.kind_training import target_statistics

    y = np.array([[10.0, 4.0, np.nan], [20.0, np.nan, np.nan], [30.0, np.nan, np.nan]])
    mean, sd = target_statistics(y)
    real = np.array([10.0, 20.0, 30.0, 4.0])
    assert mean[0] == pytest.approx(20.0) and sd[0] == pytest.approx(np.std([10.0, 20.0, 30.0]))
    assert mean[1] == pytest.approx(4.0) and sd[1] == pytest.approx(np.std(real))  # one value: pooled sd
    assert mean[2] == pytest.approx(np.mean(real)) and sd[2] == pytest.approx(np.std(real))  # never real
    scalar = np.array([1.0, 2.0, 4.0])
    m, s = target_statistics(scalar)
    assert (m[0], s[0]) == (np.mean(scalar), np.std(scalar))  # all finite: exactly np.mean / np.std
    labels, mask = masked_labels(np.array([[[1.0, np.nan], [np.inf, 2.0], [5.0, 6.0]]]), np.array([[1.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(mask, [[[1, 0], [0, 1], [0, 0]]])
    np.testing.assert_array_equal(labels, [[[1, 0], [0, 2], [5, 6]]])


def test_vector_head_model_file_round_trip(tmp_path):
    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model
    from qmlrp.models.inputs import batch_to_inputs, random_batch
    from qmlrp.models.io import inference_function, load_model, save_model

    config = ModelConfig(head_units=(8,), embedding_width=8, atom_width=8, pair_width=8, atom_hidden=8, pair_hidden=8)
    from dataclasses import asdict

    model = build_model(config, metadata={"architecture": asdict(config), "target": "frequencies"}, n_outputs=81)
    assert model.metadata["n_outputs"] == 81 and model.head.n_outputs == 81
    mean, sd = np.linspace(3500.0, 100.0, 81), np.linspace(200.0, 50.0, 81)
    model.head.target_scaling.set_statistics(mean, sd)
    save_model(model, tmp_path / "fold0.npz")
    header = json.loads(bytes(np.load(tmp_path / "fold0.npz")["header"]).decode())
    assert header["metadata"]["n_outputs"] == 81
    loaded = load_model(tmp_path / "fold0.npz")
    inputs = batch_to_inputs(random_batch([3, 5, 4], seed=1))
    out = inference_function(loaded)(inputs)
    assert out.shape == (3, 81)
    np.testing.assert_allclose(out, np.broadcast_to(mean, (3, 81)), rtol=1e-6)  # zero-initialised output unit
    with pytest.raises(ValueError, match="disagrees"):
        build_model(config, metadata={"n_outputs": 81}, n_outputs=1)
    scalar = build_model(config, metadata={"architecture": asdict(config)})
    assert "n_outputs" not in scalar.metadata and inference_function(scalar)(inputs).shape == (3,)


# -- evaluation on synthetic results -----------------------------------------------------------
def write_synthetic(root: Path) -> dict[int, float]:
    """results/{frequencies,omega1}/fold{0,1}: frequencies predicted with a shift of 2 (fold 0) and
    4 (fold 1) cm^-1 on every real mode; omega1 off by 1 cm^-1. Returns the shifts."""
    shift = {0: 2.0, 1: 4.0}
    rows = {0: [[3000.0, 1600.0, 800.0], [3200.0, 1400.0, 600.0, 500.0, 400.0, 300.0]],
            1: [[3100.0, 1500.0, 700.0], [2900.0, 1300.0, 900.0, 450.0, 350.0, 250.0]]}
    for fold, mols in rows.items():
        y_true = np.array([spectra.frequency_vector(m, 81) for m in mols])
        y_pred = np.where(np.isfinite(y_true), y_true + shift[fold], 1234.0)
        run = root / "frequencies" / f"fold{fold}"
        run.mkdir(parents=True)
        from qmlrp.training.train import write_predictions

        write_predictions(np.array([10 + fold, 20 + fold]), y_true, y_pred, run)
        pd.DataFrame({"epoch": [1, 2], "train_mae": [9.0, 8.0], "val_mae": [9.5, 8.5]}).to_csv(run / "history.csv", index=False)
        (run / "run.json").write_text(json.dumps({"best_epoch": 2}))
        run = root / "omega1" / f"fold{fold}"
        run.mkdir(parents=True)
        pd.DataFrame({"id": [10 + fold, 20 + fold], "y_true": y_true[:, 0], "y_pred": y_true[:, 0] + 1.0}).to_csv(
            run / "predictions.csv", index=False)
        pd.DataFrame({"epoch": [1], "train_mae": [3.0], "val_mae": [3.5]}).to_csv(run / "history.csv", index=False)
        (run / "run.json").write_text(json.dumps({"best_epoch": 1}))
    return shift


def test_evaluate_frequencies_on_synthetic_results(tmp_path):
    from qmlrp.training.evaluate import evaluate

    write_synthetic(tmp_path / "results")
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(targets=["frequencies", "omega1"], folds=FOLDS)
    params["evaluate"].update(thresholds={"omega1": 3.15}, also=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    plots = tmp_path / "plots"
    metrics = evaluate(tmp_path / "params.yaml", tmp_path / "results", tmp_path / "evaluate.json", plots)
    f = metrics["frequencies"]
    assert f["mae_per_fold"] == {"fold0": 2.0, "fold1": 4.0}  # the 1234 padding predictions never count
    assert f["mae_mean"] == pytest.approx(3.0) and f["mae_sd"] == pytest.approx(np.sqrt(2.0))
    assert f["omega1"]["mae_mean"] == pytest.approx(3.0) and f["omega1"]["pass"] is True  # 3 <= 3.15
    # per-mode MAD: fold 0 modes 1-3 deviate 100, 100, 100 (each twice), modes 4-6 only one molecule: 0
    assert f["test_label_mad"] == pytest.approx(np.mean([600 / 9, 600 / 9]))
    assert f["mae_over_mad"] == pytest.approx(3.0 / (600 / 9))
    assert f["spectrum"]["wasserstein1_mean"] == pytest.approx(3.0)  # every stick shifted by 2 or 4
    assert 0.0 < f["spectrum"]["sis_mean"] < 1.0
    assert f["per_mode_mae"]["omega1"] == pytest.approx(3.0) and f["per_mode_mae"]["modes_with_data"] == 6
    per_mode = pd.read_csv(plots / "frequencies_per_mode.csv")
    assert list(per_mode.columns) == ["mode", "mae", "n"] and len(per_mode) == 81
    np.testing.assert_allclose(per_mode["mae"][:3], 3.0)
    np.testing.assert_allclose(per_mode["mae"][3:6], 3.0)  # one molecule per fold: (2 + 4) / 2
    assert per_mode["n"].tolist()[:7] == [4, 4, 4, 2, 2, 2, 0] and per_mode["mae"][6:].isna().all()
    o = metrics["omega1"]
    assert o["mae_mean"] == pytest.approx(1.0) and o["pass"] is True
    assert o["test_label_mad"] == pytest.approx(100.0) and o["mae_over_mad"] == pytest.approx(0.01)
    both = metrics["omega1_joint_vs_separate"]
    assert (both["joint_mae_mean"], both["separate_mae_mean"]) == (pytest.approx(3.0), pytest.approx(1.0))
    assert both["joint_minus_separate"] == pytest.approx(2.0)
    for image in ("spectra_frequencies", "per_mode_mae_frequencies", "parity_frequencies_omega1", "parity_omega1"):
        assert (plots / "images" / f"{image}.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(plots / "parity" / "frequencies_omega1.csv")["y_true"].tolist() == [3000.0, 3200.0, 3100.0, 2900.0]
    assert json.loads((tmp_path / "evaluate.json").read_text()) == metrics


def test_evaluate_refuses_malformed_vector_predictions(tmp_path):
    from qmlrp.io import write_parquet
    from qmlrp.training.evaluate import evaluate

    write_synthetic(tmp_path / "results")
    write_parquet(pa.table({"id": [1], "n_modes": [2], "y_true": [[1.0, 2.0]], "y_pred": [[1.0, 2.0]]}),
                  tmp_path / "results" / "frequencies" / "fold1" / "predictions.parquet")
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(targets=["frequencies"], folds=FOLDS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(QmlrpError, match="fold1: expected lists of 81 values, got 2"):
        evaluate(tmp_path / "params.yaml", tmp_path / "results", tmp_path / "m.json", tmp_path / "plots",
                 make_images=False)


# -- trained end to end (tiny models) ------------------------------------------------------------
def test_trained_frequency_runs_write_padded_predictions(trained_frequencies, small_data):
    from qmlrp.models.io import load_model

    for fold in FOLDS:
        run = trained_frequencies / "results" / "frequencies" / f"fold{fold}"
        table = pd.read_parquet(run / "predictions.parquet")
        assert list(table.columns) == ["id", "n_modes", "y_true", "y_pred"]
        assert table["id"].dtype == np.int64 and {len(v) for v in table["y_true"]} == {81}
        y_true, y_pred = np.stack(table["y_true"]), np.stack(table["y_pred"])
        assert (np.isfinite(y_true).sum(axis=1) == table["n_modes"]).all()
        for row, n in zip(y_true, table["n_modes"]):  # real modes first, descending; then padding
            assert np.isfinite(row[:n]).all() and np.isnan(row[n:]).all() and np.all(np.diff(row[:n]) <= 0)
        summary = json.loads((run / "run.json").read_text())
        assert summary["test_mae"] == pytest.approx(np.mean(np.abs(y_pred - y_true)[np.isfinite(y_true)]))
        assert summary["models_in_program"] == 4 and len(summary["target_std"]) == 81
        model = load_model(trained_frequencies / "models" / "frequencies" / f"fold{fold}.npz")
        assert model.head.n_outputs == 81 and model.metadata["n_outputs"] == 81
        assert (trained_frequencies / "results" / "omega1" / f"fold{fold}" / "predictions.csv").exists()


def test_predict_lists_real_modes_and_draws_the_spectrum(trained_frequencies, qm9_record, tmp_path):
    from tests.training.test_predict import invoke, xyz_block

    water, hcn, bigger = qm9_record(3), qm9_record(5), qm9_record(4000)
    path = tmp_path / "three.xyz"
    path.write_text("".join(xyz_block(r.atomic_numbers, r.coordinates, n)
                            for r, n in ((water, "water"), (hcn, "hcn"), (bigger, "bigger"))))
    models = trained_frequencies / "models"
    png = tmp_path / "spectrum.png"
    result = invoke("predict", str(path), "--models-dir", str(models), "--json", "--spectrum", str(png))
    assert result.exit_code == 0, result.output
    molecules = json.loads(result.stdout)["molecules"]
    expected = [3, 4, 3 * bigger.atomic_numbers.size - 6]
    assert [m["frequencies"]["n_modes"] for m in molecules] == expected
    assert [len(m["frequencies"]["mean"]) for m in molecules] == expected
    assert [m["frequencies"]["linear"] for m in molecules] == [False, True, False]
    assert all(m["frequencies"]["units"] == "cm^-1" and m["frequencies"]["n_models"] == 2 for m in molecules)
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the means are the fold models' outputs, cut to the real modes
    from qmlrp.training.predict import Ensemble, featurize_files

    featurized, _ = featurize_files([path])
    from qmlrp.features.pairs import make_batch
    from qmlrp.models.inputs import batch_to_inputs

    ensemble = Ensemble(models, targets=["frequencies"], expected_folds=FOLDS)
    mean = ensemble.predict(batch_to_inputs(make_batch([f.graph for f in featurized], np.arange(3))))["frequencies"][0]
    for k, m in enumerate(molecules):
        np.testing.assert_allclose(m["frequencies"]["mean"], mean[k, : expected[k]], rtol=1e-5)
    text = invoke("predict", str(path), "--models-dir", str(models))
    assert text.exit_code == 0, text.output
    assert "three#2: frequencies (cm^-1, 3N-5, linear = 4 modes, highest first, 2 models)" in text.stdout
    assert "omega1 (cm^-1, 2 models)" in text.stdout.splitlines()[0]
    import shutil

    shutil.copytree(models / "omega1", tmp_path / "scalar_only" / "omega1")
    refused = invoke("predict", str(path), "--models-dir", str(tmp_path / "scalar_only"), "--spectrum",
                     str(tmp_path / "x.png"))
    assert refused.exit_code != 0 and "has no frequencies model" in str(refused.exception or refused.output)
