"""The label_beta run: failures with reasons, no recomputation of published labels,
kill-and-resume, levels never mix, exit status when every molecule failed."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.labels.test_commands import run as run_cli
from qmlrp.errors import QmlrpError
from qmlrp.labels import records
from qmlrp.labels.config import LabelBetaParams
from qmlrp.labels.run import run_stage
from tests.labels.molecules import molecule_table, stage_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _all_shard_ids(out: Path) -> list[int]:
    ids: list[int] = []
    for p in sorted(out.glob("part-*.parquet")):
        ids += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    return ids


def _digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("part-*.parquet")}


@pytest.mark.integration
def test_run_records_failures_and_skips_on_rerun(tmp_path: Path, client) -> None:
    molecule_table(8, radical_id=3, squeezed_id=5).to_parquet(tmp_path / "qm9.parquet")
    cfg = LabelBetaParams.from_mapping(stage_params(tmp_path, count=None))
    m = run_stage(cfg, client=client)
    assert (m["n_selected"], m["n_done"], m["n_failed"], m["n_pending"]) == (8, 6, 2, 0)
    assert (m["n_computed_this_run"], m["n_ok_this_run"], m["n_failed_this_run"]) == (8, 6, 2)
    assert m["complete"] and m["failure_kinds"] == {"open shell": 1, "geometry": 1}
    out = cfg.output_dir()
    fails = records.read_failures(out).set_index("id")["reason"].to_dict()
    assert fails == {3: "open shell (9 electrons): closed-shell RHF/RKS only",
                     5: "geometry: atoms 0 and 1 are 0.020 Å apart (< 0.5 Å)"}
    labels = records.read_labels(out)
    assert sorted(labels["id"]) == [1, 2, 4, 6, 7, 8]
    assert (labels["method"] == "rhf").all() and (labels["basis"] == "sto-3g").all()
    assert labels["beta_au"].map(len).eq(27).all() and np.isfinite(labels["beta_vec_au"]).all()
    assert (labels["energy_hartree"] < 0).all() and (labels["cpu_s"] > 0).all()
    assert labels["pyscf_properties_version"].notna().all()
    saved = json.loads(Path(cfg.metrics).read_text())
    assert saved["n_done"] == 6 and saved["n_failed"] == 2
    assert not (out / records.JOURNAL_FILE).exists()
    # rerun: nothing to do, nothing duplicated, no shard rewritten
    before = _digests(out)
    m2 = run_stage(cfg, client=client)
    assert m2["n_computed_this_run"] == 0 and m2["n_skipped_done"] == 6 and m2["n_failed"] == 2
    assert _digests(out) == before
    # a different level in the same folder is refused
    other = LabelBetaParams.from_mapping(stage_params(tmp_path, count=None, basis="6-31g",
                                                      output=str(out)))
    with pytest.raises(QmlrpError, match="never mix"):
        run_stage(other, client=client)
    assert sorted(records.read_labels(out)["id"]) == [1, 2, 4, 6, 7, 8]
    # ... and so is a shard of another level copied into this folder
    first = sorted(out.glob("part-*.parquet"))[0]
    row = {**pq.read_table(first).to_pylist()[0], "id": 99, "basis": "6-31g"}
    stray = records.write_shard([row], out)
    with pytest.raises(QmlrpError, match=r"rows of level \('rhf', 'hf', '6-31g'\) .* never mix"):
        run_stage(cfg, client=client)
    stray.unlink()


@pytest.mark.integration
def test_kill_and_resume_from_the_published_set(tmp_path: Path) -> None:
    """A published set (an earlier run's shards) is extended; a SIGKILL of the whole stage
    (main process and Dask workers) mid-run loses nothing finished; no label is recomputed."""
    n = 40
    molecule_table(n, radical_id=2).to_parquet(tmp_path / "qm9.parquet")
    params = stage_params(tmp_path, count=None, basis="6-31g", shard_size=2)
    cfg = LabelBetaParams.from_mapping(params)
    out = cfg.output_dir()
    # the published set: the first 6 of the same seeded order, computed earlier
    published = run_stage(LabelBetaParams.from_mapping({**params, "count": 6}))
    assert published["n_done"] + published["n_failed"] == 6
    pub_ids = records.done_ids(out)
    pub_digests = _digests(out)

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label_beta": params}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline" / "label_beta.py"), "--params",
         str(tmp_path / "params.yaml")],
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(set(_all_shard_ids(out)) - pub_ids) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"stage ended before it could be killed: {proc.stderr.read()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    shard_ids = _all_shard_ids(out)
    journal_ids = {int(r["id"]) for r in records.read_jsonl(out / records.JOURNAL_FILE)}
    assert len(shard_ids) == len(set(shard_ids)), "a molecule was written twice"
    assert not journal_ids & pub_ids, "a published label was recomputed"
    before = set(shard_ids) | journal_ids
    failed_before = set(records.read_failures(out)["id"])
    assert len(pub_ids) + 4 <= len(before) < n - 1, "the kill should land mid-run"

    m = run_stage(cfg)  # resume in-process with a fresh local cluster
    ids = _all_shard_ids(out)
    assert len(ids) == len(set(ids)), "a molecule was written twice"
    assert set(ids) == set(range(1, n + 1)) - {2}
    assert m["n_done"] == n - 1 and m["n_failed"] == 1 and m["complete"]
    assert m["n_recovered_from_journal"] == len(journal_ids - set(shard_ids))
    assert m["n_skipped_done"] == len(before)
    assert m["n_computed_this_run"] == n - len(before) - len(failed_before)
    assert set(records.read_failures(out)["id"]) == {2}
    # the published shards are untouched, byte for byte
    assert {k: v for k, v in _digests(out).items() if k in pub_digests} == pub_digests


def test_every_molecule_failed_exits_non_zero(tmp_path: Path, capsys) -> None:
    table = molecule_table(2, radical_id=1, squeezed_id=2)
    table.to_parquet(tmp_path / "qm9.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"label_beta": stage_params(tmp_path, count=None)}))
    code, out, err = run_cli(["label-beta", "--params", str(params)], capsys)
    assert code == 1
    assert "label-beta: 0/2 labelled, 2 failed, 2 computed" in out
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: label-beta: every molecule failed (geometry x1, open shell x1)")
    # a rerun computes nothing, and still says so
    code, out, err = run_cli(["label-beta", "--params", str(params)], capsys)
    assert code == 1 and "0/2 labelled, 2 failed, 0 computed" in out
    # one good molecule among them: success
    molecule_table(3, radical_id=1, squeezed_id=2).to_parquet(tmp_path / "qm9.parquet")
    code, out, err = run_cli(["label-beta", "--params", str(params)], capsys)
    assert code == 0 and "1/3 labelled, 2 failed, 1 computed" in out and err == ""
