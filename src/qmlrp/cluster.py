"""Where the work runs: a ``dask.distributed`` client for the configured scheduler (the ``label_beta``
molecules, the models of a study's ``train`` matrix).

* ``scheduler: local`` - ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``;
* ``scheduler: address`` - ``Client(address)`` for a scheduler that is already running
  (``dask scheduler`` + ``dask worker ... --nthreads 1`` started by the user);
* ``scheduler: slurm`` / ``pbs`` - ``dask_jobqueue.SLURMCluster`` / ``PBSCluster`` from the
  ``jobqueue`` options (:func:`jobqueue_kwargs`), scaled to ``jobqueue.jobs`` batch jobs.

No scheduling logic lives here: Dask (and the batch system) place the tasks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from qmlrp.errors import QmlrpError

__all__ = ["Jobqueue", "ClusterSettings", "MALLOC_ENV", "resolve_openblas_coretype", "worker_env",
           "jobqueue_kwargs", "dask_client"]


@dataclass(frozen=True)
class Jobqueue:
    """Batch-job options for ``scheduler: slurm | pbs`` (passed to dask-jobqueue).

    Attributes:
        jobs: batch jobs to start.
        cores: cores per job.
        memory: memory per job, e.g. ``"64GB"`` (``None``: 4 GB per core).
        walltime: job time limit ``"HH:MM:SS"``.
        processes: Dask workers per job (``None``: ``cores // threads_per_worker``).
        queue, account, resource_spec, job_name, interface, python, local_directory,
            log_directory: passed through to dask-jobqueue when set.
        job_extra_directives: extra ``#SBATCH``/``#PBS`` lines.
        job_script_prologue: shell lines run before the worker starts (e.g. ``module load``).
        worker_extra_args: extra ``dask worker`` arguments.
    """

    jobs: int = 1
    cores: int = 1
    memory: str | None = None
    walltime: str = "24:00:00"
    processes: int | None = None
    queue: str | None = None
    account: str | None = None
    resource_spec: str | None = None
    job_name: str | None = None
    interface: str | None = None
    python: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    worker_extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.cores < 1 or (self.processes is not None and self.processes < 1):
            raise ValueError("jobqueue.jobs, cores and processes must be >= 1")


class ClusterSettings(Protocol):
    """What a params section that runs on Dask holds (``label_beta``, a study's ``cluster``)."""

    scheduler: str  # local | address | slurm | pbs
    workers: int
    threads_per_worker: int
    address: str | None
    jobqueue: Jobqueue
    openblas_coretype: str | None


def resolve_openblas_coretype(value: str | None) -> str | None:
    """``auto``: ``Haswell`` on CPUs with AVX2+FMA (the OpenBLAS 0.3.3 bundled with the PySCF
    wheel falls back to SSE3 'Prescott' kernels on CPUs newer than it knows), else unset."""
    if value is None or str(value).lower() in ("", "none"):
        return None
    if str(value).lower() != "auto":
        return str(value)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    return "Haswell" if "avx2" in flags and "fma" in flags else None


#: glibc malloc settings for the workers. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which
#: also freezes glibc's mmap threshold at 128 kB: PySCF's large temporaries are then mmap'd and
#: page-faulted afresh on every allocation (measured: 5x the page faults, ~25% more CPU time).
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(128 * 2**20), "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}


def worker_env(cfg: ClusterSettings) -> dict[str, str]:
    """Environment of each worker process: thread counts, malloc settings, OpenBLAS core type."""
    t = str(cfg.threads_per_worker)
    env = {"OMP_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "MKL_NUM_THREADS": t, **MALLOC_ENV}
    core = resolve_openblas_coretype(cfg.openblas_coretype)
    if core:
        env["OPENBLAS_CORETYPE"] = core
    return env


def jobqueue_kwargs(cfg: ClusterSettings) -> dict[str, Any]:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` / ``PBSCluster``.

    Every worker runs one molecule at a time (Dask resource ``slot=1``) with
    ``threads_per_worker`` OpenMP threads; ``processes`` defaults to
    ``cores // threads_per_worker`` workers per job.
    """
    jq = cfg.jobqueue
    processes = jq.processes or max(1, jq.cores // cfg.threads_per_worker)
    prologue = [f"export {k}={v}" for k, v in worker_env(cfg).items() if k != "OPENBLAS_CORETYPE"]
    core = cfg.openblas_coretype
    if core is not None and str(core).lower() == "auto":
        prologue.append("grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo "
                        "&& export OPENBLAS_CORETYPE=Haswell")
    elif core and str(core).lower() != "none":
        prologue.append(f"export OPENBLAS_CORETYPE={core}")
    prologue.extend(jq.job_script_prologue)
    kw: dict[str, Any] = {
        "cores": jq.cores,
        "processes": processes,
        "memory": jq.memory or f"{4 * jq.cores}GB",
        "walltime": jq.walltime,
        "job_script_prologue": prologue,
        "worker_extra_args": ["--resources", "slot=1", *jq.worker_extra_args],
        "job_extra_directives": list(jq.job_extra_directives),
    }
    for key in ("queue", "account", "local_directory", "log_directory", "python", "interface",
                "resource_spec", "job_name"):
        value = getattr(jq, key)
        if value:
            kw[key] = value
    return kw


@contextlib.contextmanager
def _inherited_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for processes spawned inside the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def dask_client(cfg: ClusterSettings) -> Iterator[Any]:
    """A ``distributed.Client`` for the configured scheduler; the cluster is closed on exit.

    Raises:
        QmlrpError: the scheduler address cannot be reached, or dask-jobqueue is missing.
    """
    from distributed import Client, LocalCluster

    if cfg.scheduler == "address":
        try:
            client = Client(cfg.address, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise QmlrpError(f"params.yaml address: cannot reach Dask scheduler "
                             f"{cfg.address}: {err}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if cfg.scheduler == "local":
        # glibc reads MALLOC_* when a process starts: they must be inherited at spawn time
        # (the nanny's ``env`` is applied only after the worker process has started)
        with _inherited_env(MALLOC_ENV):
            cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", env=worker_env(cfg),
                                   silence_logs=logging.ERROR)
    else:
        try:
            import dask_jobqueue
        except ImportError:
            raise QmlrpError(f"scheduler {cfg.scheduler!r} needs dask-jobqueue "
                             "(pip install dask-jobqueue)") from None
        cls = dask_jobqueue.SLURMCluster if cfg.scheduler == "slurm" else dask_jobqueue.PBSCluster
        cluster = cls(**jobqueue_kwargs(cfg))
        cluster.scale(jobs=cfg.jobqueue.jobs)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
