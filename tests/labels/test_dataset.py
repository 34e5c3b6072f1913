"""Stage ``beta_data``: published labels -> the β∥ model's table, features and folds (real QM9
molecules from qmlrp's sources, made-up β values with hand-computed statistics)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.data.ingest import ingest
from qmlrp.data.split import assign_folds
from qmlrp.errors import QmlrpError
from qmlrp.labels.dataset import BetaDataParams, build_beta_data
from qmlrp.params import parse_section
from tests.data.test_ingest import qm9_text
from tests.labels.beta_folder import write_labels

# QM9 id -> made-up beta_parallel (a.u.); id 60 has NaN (mu ~ 0) and must be excluded
MAIN = {10: 10.0, 20: 20.0, 30: 30.0, 40: -40.0, 50: 5.0, 60: math.nan}
# the larger basis: ids 10, 20, 30 in common (finite at both); 60 is NaN at the main level, 70 only here
COMPARE = {10: 20.0, 20: 20.0, 30: 50.0, 60: 7.0, 70: 3.0}


def run_stage(tmp_path: Path, **params: object) -> tuple[dict, Path]:
    labels = write_labels(tmp_path / "labels" / "rks-b3lyp5-6-31g", MAIN)
    compare = write_labels(tmp_path / "labels" / "rks-b3lyp5-6-31g_2df_p_", COMPARE, basis="6-31g(2df,p)")
    p = parse_section(BetaDataParams, "beta_data", {"labels": str(labels), "compare": str(compare), "n_folds": 2,
                                                    **params})
    out = tmp_path / "data" / "beta"
    metrics = build_beta_data(p, output=out, metrics=tmp_path / "beta_data.json",
                              basis_table=tmp_path / "basis_effect.csv", scratch_root=tmp_path / "scratch")
    assert json.loads((tmp_path / "beta_data.json").read_text()) == metrics
    return metrics, out


def test_ingest_by_ids_reads_exactly_those_molecules(tmp_path, qm9_record):
    wanted = [40, 10, 2720, 67]
    ingest("qm9pack", tmp_path / "a.parquet", tmp_path / "r.csv", tmp_path / "m.json", limit=None, ids=wanted)
    table = pd.read_parquet(tmp_path / "a.parquet")
    assert table["id"].tolist() == sorted(wanted)
    assert table.set_index("id").loc[67, "smiles"] == qm9_record(67).smiles

    folder = tmp_path / "xyz"
    folder.mkdir()
    for index in (1, 3, 67, 214):
        rec = qm9_record(index)
        (folder / f"{rec.name}.xyz").write_text(qm9_text(rec))
    (folder / "dsgdb9nsd_000099.xyz").write_text("not an xyz file\n")  # not wanted: never parsed
    ingest(str(folder), tmp_path / "x.parquet", tmp_path / "rx.csv", tmp_path / "mx.json", limit=None, ids=[3, 214])
    assert pd.read_parquet(tmp_path / "x.parquet")["id"].tolist() == [3, 214]
    assert pd.read_csv(tmp_path / "rx.csv").empty

    with pytest.raises(QmlrpError, match="no molecule with QM9 id 5$"):
        ingest(str(folder), tmp_path / "y.parquet", tmp_path / "ry.csv", tmp_path / "my.json", limit=None, ids=[3, 5])


def test_beta_data_table_folds_statistics_and_basis_effect(tmp_path):
    m, out = run_stage(tmp_path)
    table = pd.read_parquet(out / "qm9.parquet").set_index("id")
    kept = [10, 20, 30, 40, 50]
    assert table.index.tolist() == kept
    assert table["beta_parallel_au"].tolist() == [10.0, 20.0, 30.0, -40.0, 5.0]
    assert table["beta_vec_au"].tolist() == [21.0, 41.0, 61.0, 81.0, 11.0]
    assert table.loc[20, "smiles"] == "NC(N)=O" and table.loc[20, "alpha_bohr3"] > 0  # QM9's own columns kept
    folds = pd.read_parquet(out / "folds.parquet")
    assert folds["id"].tolist() == kept
    assert folds["fold"].tolist() == assign_folds(np.array(kept), 2, 20171010).tolist()
    assert sorted(pd.read_parquet(out / "features" / "molecules.parquet")["id"]) == kept

    # 10, 20, 30, -40, 5: mean 5; |deviations| 5, 15, 25, 45, 0 -> MAD 90/5 = 18; sd sqrt(2900/4)
    s = m["beta_parallel_au"]
    assert s["n"] == 5 and s["mean"] == pytest.approx(5.0) and s["mad"] == pytest.approx(18.0)
    assert s["sd"] == pytest.approx(math.sqrt(725.0)) and s["mae_bar"] == pytest.approx(5.4)
    assert (m["n_labelled"], m["n_finite_beta_parallel"], m["n_molecules"], m["n_excluded"]) == (6, 5, 5, 1)
    assert m["excluded_ids"] == [60]
    assert m["excluded_by_reason"] == {"labels: beta_parallel_au is NaN (dipole ~ 0)": 1}
    assert m["level"] == "rks-b3lyp5-6-31g" and m["level_identity"]["basis"] == "6-31g"

    # basis effect on 10, 20, 30: (10, 20, 30) vs (20, 20, 50): r = 300 / sqrt(200 * 600) = sqrt(3)/2,
    # ratios 2, 1, 5/3 -> 14/9, |differences| 10, 0, 20 -> 10
    b = m["basis_effect"]
    assert b["n"] == 3 and b["pearson_r"] == pytest.approx(math.sqrt(3) / 2)
    assert b["mean_ratio"] == pytest.approx(14 / 9) and b["mean_abs_difference_au"] == pytest.approx(10.0)
    assert b["compare_identity"]["basis"] == "6-31g(2df,p)"
    table = pd.read_csv(tmp_path / "basis_effect.csv")
    assert table["id"].tolist() == [10, 20, 30]
    assert table["beta_parallel_au_rks-b3lyp5-6-31g_2df_p_"].tolist() == [20.0, 20.0, 50.0]
    assert table["difference_au"].tolist() == [10.0, 0.0, 20.0]


def test_featurization_failure_is_listed_not_fatal(tmp_path, qm9_record):
    folder = tmp_path / "xyz"
    folder.mkdir()
    for index in MAIN:
        rec = qm9_record(index)
        if index == 50:  # second atom 0.3 Angstrom from the first: outside the featurizer's domain
            rec.coordinates[1] = rec.coordinates[0] + np.array([0.3, 0.0, 0.0])
        (folder / f"{rec.name}.xyz").write_text(qm9_text(rec))
    m, out = run_stage(tmp_path, source=str(folder), compare=None)
    assert (m["n_ingested"], m["n_featurized"], m["n_molecules"]) == (5, 4, 4)
    assert sorted(m["excluded_ids"]) == [50, 60]
    assert any(k.startswith("featurize: ") for k in m["excluded_by_reason"])
    # 10, 20, 30, -40: mean 5; |deviations| 5, 15, 25, 45 -> MAD 22.5
    assert m["beta_parallel_au"]["mad"] == pytest.approx(22.5)
    assert m["basis_effect"] is None
    assert pd.read_parquet(out / "folds.parquet")["id"].tolist() == [10, 20, 30, 40]


@pytest.mark.integration
def test_params_typo_is_rejected_before_any_work(tmp_path):
    with pytest.raises(QmlrpError, match=r"params.yaml beta_data: unknown key 'lables' \(did you mean 'labels'\?\)"):
        parse_section(BetaDataParams, "beta_data", {"lables": "labels/beta/x"})
    (tmp_path / "params.yaml").write_text("beta_data:\n  n_fold: 3\n")
    done = subprocess.run([sys.executable, "-m", "qmlrp", "beta-data"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: params.yaml beta_data: unknown key 'n_fold' (did you mean 'n_folds'?)"
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_missing_label_folder_is_one_line(tmp_path):
    p = BetaDataParams(labels=str(tmp_path / "nowhere"), compare=None)
    with pytest.raises(QmlrpError, match="nowhere: no such label folder"):
        build_beta_data(p, output=tmp_path / "out", metrics=tmp_path / "m.json", basis_table=tmp_path / "b.csv")
