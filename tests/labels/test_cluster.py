"""Cluster set-up: worker environment, dask-jobqueue SLURM/PBS translation."""

from __future__ import annotations

from pathlib import Path

from qmlrp.cluster import jobqueue_kwargs, resolve_openblas_coretype, worker_env
from qmlrp.labels.config import LabelBetaParams
from tests.labels.molecules import stage_params


def test_worker_environment_and_openblas_coretype(tmp_path: Path) -> None:
    cfg = LabelBetaParams.from_mapping(stage_params(tmp_path, threads_per_worker=2,
                                                    openblas_coretype="Zen"))
    env = worker_env(cfg)
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_CORETYPE"] == "Zen"
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
    assert resolve_openblas_coretype(None) is None
    assert resolve_openblas_coretype("none") is None
    assert resolve_openblas_coretype("auto") in (None, "Haswell")


def test_jobqueue_translation_slurm_and_pbs(tmp_path: Path) -> None:
    jq = {"jobs": 4, "cores": 16, "memory": "64GB", "walltime": "12:00:00", "queue": "normal",
          "account": "chem42", "job_script_prologue": ["module load python"],
          "job_extra_directives": ["--exclusive"]}
    cfg = LabelBetaParams.from_mapping(stage_params(tmp_path, scheduler="slurm", jobqueue=jq,
                                                    openblas_coretype="auto"))
    kw = jobqueue_kwargs(cfg)
    assert kw["cores"] == 16 and kw["processes"] == 16 and kw["memory"] == "64GB"
    assert kw["queue"] == "normal" and kw["account"] == "chem42"
    assert kw["worker_extra_args"][:2] == ["--resources", "slot=1"]
    assert "export OMP_NUM_THREADS=1" in kw["job_script_prologue"]
    assert any("OPENBLAS_CORETYPE=Haswell" in ln for ln in kw["job_script_prologue"])
    assert kw["job_script_prologue"][-1] == "module load python"
    assert "interface" not in kw  # unset options are left to dask-jobqueue

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


def test_default_memory_is_four_gb_per_core(tmp_path: Path) -> None:
    cfg = LabelBetaParams.from_mapping(stage_params(tmp_path, scheduler="pbs", threads_per_worker=2,
                                                    jobqueue={"cores": 8}))
    kw = jobqueue_kwargs(cfg)
    assert kw["memory"] == "32GB" and kw["processes"] == 4
