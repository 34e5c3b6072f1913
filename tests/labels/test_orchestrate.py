"""Stage label_beta: selection, params, Dask run, failures, kill-and-resume, jobqueue config."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from qmlrp.errors import InputError, QmlrpError
from qmlrp.labels import records
from qmlrp.labels.orchestrate import (
    StageConfig,
    jobqueue_kwargs,
    label_task,
    resolve_openblas_coretype,
    run_stage,
    select_molecules,
    worker_env,
)

REPO = Path(__file__).resolve().parents[2]

# Hand-written geometries (Å).
BASE = {
    "O": ([8, 1, 1], [0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, -0.469]),
    "F": ([9, 1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.917]),
    "C": ([6, 1, 1, 1, 1], [0.0, 0.0, 0.0, 0.629, 0.629, 0.629, -0.629, -0.629, 0.629,
                            -0.629, 0.629, -0.629, 0.629, -0.629, -0.629]),
    "N": ([7, 1, 1, 1], [0.0, 0.0, 0.0, 0.0, 0.94, 0.38, 0.81, -0.47, 0.38, -0.81, -0.47, 0.38]),
    "C=O": ([6, 8, 1, 1], [0.0, 0.0, -0.53, 0.0, 0.0, 0.68, 0.0, 0.94, -1.11, 0.0, -0.94, -1.11]),
}
RADICAL = ("[CH3]", [6, 1, 1, 1], [0.0, 0.0, 0.0, 1.08, 0.0, 0.0, -0.54, 0.94, 0.0, -0.54, -0.94, 0.0])


def molecule_table(n: int, radical_id: int | None = None, seed: int = 0) -> pd.DataFrame:
    """``n`` small closed-shell molecules (slightly jiggled copies), ids 1..n; one radical."""
    rng = np.random.default_rng(seed)
    names = list(BASE)
    rows = []
    for i in range(1, n + 1):
        if i == radical_id:
            smi, z, xyz = RADICAL
        else:
            smi = names[(i - 1) % len(names)]
            z, xyz = BASE[smi]
        coords = np.asarray(xyz, dtype=float) + rng.normal(scale=0.01, size=len(xyz))
        rows.append({"id": i, "smiles": smi, "n_atoms": len(z),
                     "atomic_numbers": np.asarray(z, dtype=np.int8),
                     "coordinates": coords, "alpha_bohr3": 0.0})
    return pd.DataFrame(rows)


def stage_params(tmp: Path, **over) -> dict:
    p = {
        "method": "rhf", "basis": "sto-3g", "conv_tol": 1e-9,
        "input": str(tmp / "qm9.parquet"), "output": str(tmp / "labels" / "{level}"),
        "metrics": str(tmp / "metrics" / "label_beta.json"),
        "count": 6, "seed": 1, "max_atoms": None, "shard_size": 2, "workers": 1,
        "threads_per_worker": 1, "scheduler": "local", "progress": False,
    }
    p.update(over)
    return p


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


# ----------------------------------------------------------------------------- pure parts


def test_selection_is_deterministic_capped_and_extends() -> None:
    table = molecule_table(30).sample(frac=1.0, random_state=3)  # row order must not matter
    a = select_molecules(table, 10, seed=5, max_atoms=4)
    b = select_molecules(molecule_table(30), 10, seed=5, max_atoms=4)
    assert list(a["id"]) == list(b["id"])
    assert (a["n_atoms"] <= 4).all() and len(a) == 10
    more = select_molecules(table, 15, seed=5, max_atoms=4)
    assert list(more["id"][:10]) == list(a["id"])
    assert len(select_molecules(table, None, seed=5)) == 30
    assert list(select_molecules(table, 10, seed=6, max_atoms=4)["id"]) != list(a["id"])


def test_params_validation(tmp_path: Path) -> None:
    cfg = StageConfig.from_params(stage_params(tmp_path, method="rks", xc="b3lyp5", basis="6-31G"))
    assert cfg.output_dir() == tmp_path / "labels" / "rks-b3lyp5-6-31g"
    assert cfg.level.grid_level == 3
    # YAML reads 1e-10 (no dot) as a string; it is coerced, not passed on to PySCF as text
    cfg = StageConfig.from_params(stage_params(tmp_path, conv_tol="1e-10", grid_level="4"))
    assert cfg.level.conv_tol == 1e-10 and cfg.level.grid_level == 4
    assert cfg.openblas_coretype == "auto"
    for bad in ({"scheduler": "kubernetes"}, {"method": "ccsd"}, {"workers": 0},
                {"scheduler": "address"}, {"count": "many"}, {"output": "x/{basis}"},
                {"conv_tol": "tight"}, {"density_fit": "yes"}, {"grid_level": 12},
                {"seed": -1}):
        with pytest.raises(InputError):
            StageConfig.from_params(stage_params(tmp_path, **bad))


def test_worker_environment_and_openblas_coretype(tmp_path: Path) -> None:
    cfg = StageConfig.from_params(stage_params(tmp_path, threads_per_worker=2,
                                               openblas_coretype="Zen"))
    env = worker_env(cfg)
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_CORETYPE"] == "Zen"
    assert resolve_openblas_coretype(None) is None
    assert resolve_openblas_coretype("auto") in (None, "Haswell")


def test_jobqueue_translation_slurm_and_pbs(tmp_path: Path) -> None:
    jq = {"jobs": 4, "cores": 16, "memory": "64GB", "walltime": "12:00:00", "queue": "normal",
          "account": "chem42", "job_script_prologue": ["module load python"],
          "job_extra_directives": ["--exclusive"]}
    cfg = StageConfig.from_params(stage_params(tmp_path, scheduler="slurm", jobqueue=jq,
                                               openblas_coretype="auto"))
    kw = jobqueue_kwargs(cfg)
    assert kw["cores"] == 16 and kw["processes"] == 16 and kw["memory"] == "64GB"
    assert kw["queue"] == "normal" and kw["account"] == "chem42"
    assert kw["worker_extra_args"][:2] == ["--resources", "slot=1"]
    assert "export OMP_NUM_THREADS=1" in kw["job_script_prologue"]
    assert any("OPENBLAS_CORETYPE=Haswell" in ln for ln in kw["job_script_prologue"])
    assert kw["job_script_prologue"][-1] == "module load python"

    import dask_jobqueue

    for cls, directive in ((dask_jobqueue.SLURMCluster, "#SBATCH"),
                           (dask_jobqueue.PBSCluster, "#PBS")):
        cluster = cls(**kw)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        assert directive in script and "--resources slot=1" in script
        assert "--nthreads 1" in script and "--nworkers 16" in script
        assert "module load python" in script and "12:00:00" in script


# ----------------------------------------------------------------------------- Dask runs


def test_label_task_records_failure_reason() -> None:
    z, xyz = RADICAL[1], RADICAL[2]
    out = label_task({"id": 9, "smiles": "[CH3]", "n_atoms": 4, "atomic_numbers": z,
                      "coordinates": xyz}, {"method": "rhf", "basis": "sto-3g"})
    assert out == {"id": 9, "ok": False, "reason": out["reason"]}
    assert "open shell" in out["reason"]


def test_run_records_failures_and_skips_on_rerun(tmp_path: Path, client) -> None:
    table = molecule_table(8, radical_id=3)
    table.to_parquet(tmp_path / "qm9.parquet")
    cfg = StageConfig.from_params(stage_params(tmp_path, count=None))
    m = run_stage(cfg, client=client)
    assert (m["n_selected"], m["n_done"], m["n_failed"], m["n_pending"]) == (8, 7, 1, 0)
    assert m["complete"] and m["n_computed_this_run"] == 8
    assert m["failure_kinds"] == {"open shell": 1}
    out = cfg.output_dir()
    fails = records.read_failures(out)
    assert list(fails["id"]) == [3] and "open shell" in fails["reason"][0]
    labels = records.read_labels(out)
    assert sorted(labels["id"]) == [1, 2, 4, 5, 6, 7, 8]
    assert (labels["method"] == "rhf").all() and (labels["basis"] == "sto-3g").all()
    assert labels["beta_au"].map(len).eq(27).all()
    assert np.isfinite(labels["beta_vec_au"]).all()
    saved = json.loads(cfg.metrics.read_text())
    assert saved["n_done"] == 7 and saved["n_failed"] == 1
    assert not (out / records.JOURNAL_FILE).exists()
    # rerun: nothing to do, nothing duplicated
    m2 = run_stage(cfg, client=client)
    assert m2["n_computed_this_run"] == 0 and m2["n_skipped_done"] == 7 and m2["n_failed"] == 1
    assert len(records.read_labels(out)) == 7
    # a different level in the same output is refused
    other = StageConfig.from_params(stage_params(tmp_path, count=None, basis="6-31g",
                                                 output=str(out)))
    with pytest.raises(QmlrpError, match="never mix"):
        run_stage(other, client=client)


def test_missing_input_is_a_user_error(tmp_path: Path) -> None:
    cfg = StageConfig.from_params(stage_params(tmp_path))
    with pytest.raises(InputError, match="ingest"):
        run_stage(cfg)
    pd.DataFrame({"id": [1], "smiles": ["C"]}).to_parquet(tmp_path / "qm9.parquet")
    with pytest.raises(InputError, match="missing columns"):
        run_stage(cfg)


def _all_shard_ids(out: Path) -> list[int]:
    ids: list[int] = []
    for p in sorted(out.glob("part-*.parquet")):
        ids += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    return ids


def test_kill_and_resume_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL the whole stage (main process and Dask workers) mid-run, then resume."""
    n = 40
    molecule_table(n, radical_id=2).to_parquet(tmp_path / "qm9.parquet")
    params = stage_params(tmp_path, count=None, basis="6-31g", shard_size=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label_beta": params}))
    cfg = StageConfig.from_params(params)
    out = cfg.output_dir()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline" / "label_beta.py"), "--params",
         str(tmp_path / "params.yaml")],
        cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            if len(list(out.glob("part-*.parquet"))) >= 2:
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
    before_shards = set(_all_shard_ids(out))
    before_journal = {int(r["id"]) for r in records.read_jsonl(out / records.JOURNAL_FILE)}
    before = before_shards | before_journal
    failed_before = set(records.read_failures(out)["id"])
    assert 4 <= len(before) < n - 1, "the kill should land mid-run"

    m = run_stage(cfg)  # resume in-process with a fresh local cluster
    ids = _all_shard_ids(out)
    assert len(ids) == len(set(ids)), "a molecule was written twice"
    assert set(ids) == set(range(1, n + 1)) - {2}
    assert m["n_done"] == n - 1 and m["n_failed"] == 1 and m["complete"]
    assert m["n_recovered_from_journal"] == len(before_journal - before_shards)
    assert m["n_skipped_done"] == len(before)
    assert m["n_computed_this_run"] == n - len(before) - len(failed_before)
    assert set(records.read_failures(out)["id"]) == {2}
