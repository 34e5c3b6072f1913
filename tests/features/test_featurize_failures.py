"""The featurize stage records every molecule it cannot featurize, with the reason, and refuses
duplicate ids: non-finite coordinates, unparsable SMILES, overlapping atoms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.features.featurize import featurize_table
from qmlrp.features.store import FeatureStore


def write_table(path, rows) -> None:
    pq.write_table(pa.table({
        "id": [r[0] for r in rows], "name": [f"gdb_{r[0]}" for r in rows], "smiles": [r[1] for r in rows],
        "atomic_numbers": [np.asarray(r[2], np.int8).tolist() for r in rows],
        "coordinates": [np.asarray(r[3], float).reshape(-1).tolist() for r in rows],
    }), path)


def run(tmp_path, rows, workers: int = 1, chunk_size: int = 10):
    table = tmp_path / "qm9.parquet"
    write_table(table, rows)
    metrics = featurize_table(table, tmp_path / "features", tmp_path / "failures.csv", tmp_path / "m.json",
                              workers=workers, chunk_size=chunk_size, scratch_root=tmp_path / "scratch")
    return metrics, pd.read_csv(tmp_path / "failures.csv")


def test_bad_molecules_are_listed_with_their_reason(tmp_path, qm9_record):
    methane, water, ethane = qm9_record(1), qm9_record(3), qm9_record(7)
    nan_methane = np.array(methane.coordinates, float)
    nan_methane[2, 0] = np.nan  # used to give a carbon with formal charge -4
    overlap = np.array(water.coordinates, float)
    overlap[1] = overlap[0]
    rows = [
        (1, methane.smiles, methane.atomic_numbers, methane.coordinates),
        (2, methane.smiles, methane.atomic_numbers, nan_methane),
        (3, "C1CC(", ethane.atomic_numbers, ethane.coordinates),  # used to fall back to the geometry silently
        (4, water.smiles, water.atomic_numbers, overlap),
        (7, ethane.smiles, ethane.atomic_numbers, ethane.coordinates),
    ]
    metrics, failures = run(tmp_path, rows)
    assert metrics["n_featurized"] == 2 and metrics["n_failed"] == 3
    assert metrics["n_bond_orders_from_geometry"] == 0
    assert FeatureStore.open(tmp_path / "features").ids.tolist() == [1, 7]
    reasons = dict(zip(failures["id"], failures["reason"]))
    assert reasons == {
        2: f"atom 3: non-finite coordinate {nan_methane[2].tolist()}",
        3: "RDKit cannot parse the SMILES 'C1CC('",
        4: "atoms 1 and 2 are 0.000 Å apart (less than 0.5 Å: overlapping atoms)",
    }


def test_duplicate_ids_are_refused(tmp_path, qm9_record):
    m = qm9_record(1)
    rows = [(1, m.smiles, m.atomic_numbers, m.coordinates), (5, m.smiles, m.atomic_numbers, m.coordinates),
            (1, m.smiles, m.atomic_numbers, m.coordinates)]
    with pytest.raises(QmlrpError) as err:
        run(tmp_path, rows)
    assert str(err.value) == f"{tmp_path / 'qm9.parquet'}: QM9 id 1 appears more than once"
    assert not (tmp_path / "features").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crash_in_rdkit_costs_one_molecule(tmp_path, qm9_record, monkeypatch, workers):
    import os
    import signal

    from qmlrp.features import featurize

    real = featurize._featurize_row

    def crash_on_water(row):
        if row[0] == "gdb_3":
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(row)

    monkeypatch.setattr(featurize, "_featurize_row", crash_on_water)
    methane, water = qm9_record(1), qm9_record(3)
    metrics, failures = run(tmp_path, [(1, methane.smiles, methane.atomic_numbers, methane.coordinates),
                                       (3, water.smiles, water.atomic_numbers, water.coordinates)],
                            workers=workers, chunk_size=1)  # workers=2: the crash happens inside a pool worker
    assert metrics["n_featurized"] == 1 and metrics["n_failed"] == 1
    assert failures.to_dict("records") == [
        {"id": 3, "name": "gdb_3", "reason": "RDKit crashed on this molecule (the perceiving process crashed (SIGSEGV))"}]
