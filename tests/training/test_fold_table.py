"""The record's per-fold table and the errors by molecule size, on hand-made runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qmlrp.training.fold_table import fold_frame, heavy_atoms, markdown_table, size_table


def _run(results: Path, target: str, fold: int, mae: float, **extra: object) -> None:
    d = results / target / f"fold{fold}"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"test_mae": mae, "units": "eV", "epochs_run": 12, **extra}))


def test_fold_rows_and_markdown(tmp_path: Path) -> None:
    _run(tmp_path, "zpve", 0, 0.0072, models_in_program=3)  # no commit, inside a multi-model program
    _run(tmp_path, "zpve", 1, 0.0083, commit="4825bbd0123", process_cpu_seconds=1224.0)
    frame = fold_frame(tmp_path, ("zpve",), (0, 1, 2))
    assert list(frame["fold"]) == [0, 1] and frame.loc[1, "commit"] == "4825bbd"
    assert np.isnan(frame.loc[0, "cpu_hours"]) and frame.loc[1, "cpu_hours"] == 0.34
    metrics = {"zpve": {"mae_mean": 0.00775, "mae_sd": 0.000778, "n_folds": 2, "threshold": 0.00975, "pass": True}}
    lines = markdown_table(frame, ("zpve",), metrics, 10).splitlines()
    assert lines[0] == "| fold | zpve test MAE (eV) | trained at | CPU-h per model |"
    assert lines[2] == "| 0 | 0.007200 | not recorded | in a multi-model program |"
    assert lines[3] == "| 1 | 0.008300 | 4825bbd | 0.34 |"
    assert lines[4] == "| **mean ± sd** | **0.007750 ± 0.000778 (2 of 10 folds)** | | |"
    assert lines[5] == "| bar (10-fold mean) | 0.00975 — met so far | | |"
    metrics["zpve"].update(mae_mean=0.0110, n_folds=10, **{"pass": False})
    assert markdown_table(frame, ("zpve",), metrics, 10).splitlines()[5] == \
        "| bar (10-fold mean) | 0.00975 — not met (by 0.00125) | | |"


def test_errors_by_heavy_atom_count(tmp_path: Path) -> None:
    table = tmp_path / "qm9.parquet"
    pq.write_table(pa.table({"id": [3, 4, 5, 6], "atomic_numbers": [[8, 1, 1], [6, 6, 1, 1], [7, 6, 1], [6, 1, 1, 1, 1]]}),
                   table)
    heavy = heavy_atoms(table)
    assert heavy.to_dict() == {3: 1, 4: 2, 5: 2, 6: 1}
    parity = pd.DataFrame({"id": [3, 4, 5, 6, 99], "y_true": [6.3, 16.3, 15.0, 16.0, 1.0],
                           "y_pred": [20.9, 1.4, 14.0, 15.5, 0.0]})
    table_ = size_table(parity, heavy)  # id 99 is not in the table: left out
    assert table_[["heavy_atoms", "molecules", "worst_id"]].to_dict("records") == [
        {"heavy_atoms": 1, "molecules": 2, "worst_id": 3}, {"heavy_atoms": 2, "molecules": 2, "worst_id": 4}]
    np.testing.assert_allclose(table_["mae"], [(14.6 + 0.5) / 2, (14.9 + 1.0) / 2])
    np.testing.assert_allclose(table_["max_abs_error"], [14.6, 14.9])


def test_record_table_is_replaced_between_its_markers() -> None:
    from qmlrp.training.fold_table import TABLE_END, TABLE_START, record_table, with_table

    record = f"# Record\n\nprose\n{TABLE_START}\n| old |\n{TABLE_END}\n\nmore prose\n"
    new = with_table(record, "| fold | a |\n| 0 | 1 |\n")
    assert new == f"# Record\n\nprose\n{TABLE_START}\n| fold | a |\n| 0 | 1 |\n{TABLE_END}\n\nmore prose\n"
    assert record_table(new) == "| fold | a |\n| 0 | 1 |\n"
    assert with_table("no markers", "| x |") == "no markers" and record_table("no markers") == ""
