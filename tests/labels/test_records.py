"""Label table: schema, atomic shards, level guard, journal recovery, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.labels import records


def row(i: int, bpar: float = 1.0) -> dict:
    beta = np.arange(27, dtype=float).reshape(3, 3, 3) + i
    return records.make_row(
        mol_id=i, smiles="C", n_atoms=5, method="rhf", xc="hf", basis="sto-3g", grid_level=None,
        density_fit=False, energy=-40.0 - i, dipole=np.array([0.0, 0.0, 0.5]),
        alpha=np.eye(3) * 10, beta=beta, beta_parallel=bpar, beta_vec=2.0, n_basis=9,
        cphf_residual=1e-8, wall_s=0.1, cpu_s=0.1, source="pyscf", program="pyscf 2.14")


def test_shards_round_trip_and_read_with_pandas(tmp_path: Path) -> None:
    d = tmp_path / "labels"
    records.ensure_level(d, {"method": "rhf", "basis": "sto-3g"})
    records.write_shard([row(1), row(2)], d)
    records.write_shard([row(3)], d)
    assert records.write_shard([], d) is None
    df = records.read_labels(d)
    assert sorted(df["id"]) == [1, 2, 3]
    assert records.done_ids(d) == {1, 2, 3}
    # pandas reads the directory as a dataset; _level.json etc. are ignored
    direct = pd.read_parquet(d)
    assert sorted(direct["id"]) == [1, 2, 3]
    got = records.beta_tensor(df.set_index("id").loc[2])
    np.testing.assert_array_equal(got, np.arange(27).reshape(3, 3, 3) + 2)
    assert df.loc[df["id"] == 1, "alpha_iso_au"].item() == pytest.approx(10.0)
    # no temporary files left behind
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_level_guard_refuses_to_mix(tmp_path: Path) -> None:
    d = tmp_path / "labels"
    records.ensure_level(d, {"method": "rks", "xc": "b3lyp5", "basis": "6-31g"})
    records.ensure_level(d, {"method": "rks", "xc": "b3lyp5", "basis": "6-31g"})  # same: fine
    with pytest.raises(QmlrpError, match="never mix"):
        records.ensure_level(d, {"method": "rks", "xc": "b3lyp5", "basis": "6-31g(2df,p)"})
    orphan = tmp_path / "orphan"
    records.write_shard([row(1)], orphan)
    with pytest.raises(QmlrpError, match="refusing"):
        records.ensure_level(orphan, {"method": "rhf"})


def test_journal_recovery_deduplicates(tmp_path: Path) -> None:
    d = tmp_path / "labels"
    records.write_shard([row(1)], d)
    # a crash after the shard with ids 1 was written but before the journal was removed,
    # plus a half-written last line
    records.append_jsonl(d / records.JOURNAL_FILE, [row(1), row(2), row(2)])
    with open(d / records.JOURNAL_FILE, "a") as fh:
        fh.write('{"id": 3, "smi')
    assert records.recover_journal(d) == 1
    assert not (d / records.JOURNAL_FILE).exists()
    df = records.read_labels(d)
    assert sorted(df["id"]) == [1, 2]
    assert records.recover_journal(d) == 0


def test_failures_keep_latest_reason_and_drop_later_successes(tmp_path: Path) -> None:
    d = tmp_path / "labels"
    d.mkdir()
    records.record_failures(d, [(5, "SCF not converged"), (6, "open shell")])
    records.record_failures(d, [(5, "CPHF/CPKS not converged")])
    f = records.read_failures(d)
    assert dict(zip(f["id"], f["reason"])) == {5: "CPHF/CPKS not converged", 6: "open shell"}
    records.write_shard([row(6)], d)  # 6 succeeded on a retry
    assert list(records.read_failures(d)["id"]) == [5]
