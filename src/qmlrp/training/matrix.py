"""The ``train`` matrix of a pipeline on a Dask cluster: one task per (target, fold) model, DVC records each.

For a CPU cluster without a GPU: every model that ``dvc status`` shows as not up to date
(``train@<target>-<fold>``) becomes one Dask task, which runs ``qmlrp train --target T --fold K``
as a process of its own in the pipeline's folder (so one model's crash costs only that model, and
a killed model resumes from its checkpoint when it is submitted again). As each task finishes, the
submitting process records it with ``dvc commit train@T-K``, so that ``dvc.lock`` holds every model
as it lands and ``dvc repro`` afterwards has nothing left to train. Where tasks run is the
``cluster`` section of ``params.yaml`` (:class:`MatrixCluster`): local worker processes, a running
scheduler's address, or SLURM/PBS batch jobs through dask-jobqueue (:mod:`qmlrp.cluster`). The
pipeline's folder must be on a file system the workers share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qmlrp.cluster import Jobqueue, dask_client
from qmlrp.errors import QmlrpError
from qmlrp.params import load_params, parse_section

SECTION = "cluster"
STAGE = "train"


@dataclass(frozen=True)
class MatrixCluster:
    """``params.yaml`` section ``cluster``: where the models of the ``train`` matrix run.

    ``workers`` local worker processes (``scheduler: local``), each training one model at a time
    with ``threads_per_worker`` cores; ``address`` of a running scheduler; ``jobqueue`` batch-job
    options for ``slurm`` / ``pbs`` (:class:`qmlrp.cluster.Jobqueue`)."""

    scheduler: Literal["local", "address", "slurm", "pbs"] = "local"
    workers: int = 1
    threads_per_worker: int = 2
    address: str | None = None
    jobqueue: Jobqueue = field(default_factory=Jobqueue)
    openblas_coretype: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1:
            raise ValueError("workers and threads_per_worker must be >= 1")
        if self.scheduler == "address" and not self.address:
            raise ValueError("scheduler 'address' needs 'address: tcp://host:port'")

    @classmethod
    def load(cls, params_path: str | Path) -> MatrixCluster:
        return parse_section(cls, SECTION, dict(load_params(params_path).get(SECTION) or {}))


def parse_stage(name: str) -> tuple[str, int]:
    """``train@alpha-3`` -> ``("alpha", 3)``."""
    prefix = f"{STAGE}@"
    target, _, fold = name.removeprefix(prefix).rpartition("-")
    if not name.startswith(prefix) or not target or not fold.isdigit():
        raise QmlrpError(f"{name}: not a stage of the {STAGE} matrix (expected {STAGE}@<target>-<fold>)")
    return target, int(fold)


def _dvc(args: Sequence[str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise QmlrpError(f"dvc {' '.join(args)} in {cwd}: {last}")
    return done.stdout


def pending_models(pipeline: Path) -> list[tuple[str, int]]:
    """(target, fold) of every ``train`` stage of ``pipeline/dvc.yaml`` that is not up to date, in
    the order of the matrix."""
    status = json.loads(_dvc(["status", "--json", "dvc.yaml"], pipeline) or "{}")
    return [parse_stage(name) for name in status if name.startswith(f"{STAGE}@")]


def train_one(pipeline: str, target: str, fold: int, threads: int) -> dict[str, Any]:
    """The Dask task: ``qmlrp train`` of one model as a child process in ``pipeline``; its run summary.

    Raises RuntimeError with the last line of the child's stderr when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "qmlrp", "train", "--target", target, "--fold", str(fold)],
                          cwd=pipeline, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"{STAGE}@{target}-{fold}: {last}")
    return json.loads((Path(pipeline) / "results" / target / f"fold{fold}" / "run.json").read_text())


def run_matrix(
    pipeline: str | Path = ".",
    params_path: str | Path = "params.yaml",
    models: Sequence[tuple[str, int]] | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, str]:
    """Train ``models`` (default: every pending one) on the configured Dask cluster and record each
    with ``dvc commit`` as it finishes; returns ``{stage: "done" | error line}``. A model that fails
    costs only itself."""
    from distributed import as_completed

    pipeline = Path(pipeline).resolve()
    cluster = MatrixCluster.load(pipeline / params_path)
    todo = list(models) if models is not None else pending_models(pipeline)
    if not todo:
        report("train matrix: every model is up to date")
        return {}
    outcome: dict[str, str] = {}
    t0 = time.perf_counter()
    with dask_client(cluster) as client:
        futures = {client.submit(train_one, str(pipeline), target, fold, cluster.threads_per_worker,
                                 key=f"{STAGE}@{target}-{fold}", pure=False): f"{STAGE}@{target}-{fold}"
                   for target, fold in todo}
        for future in as_completed(futures):
            stage = futures[future]
            try:
                summary = future.result()
            except Exception as err:  # noqa: BLE001 - a failed model is reported, the others go on
                outcome[stage] = str(err)
                report(f"{stage}: failed: {err}")
                continue
            _dvc(["commit", "--force", stage], pipeline)
            outcome[stage] = "done"
            report(f"{stage}: test MAE {summary['test_mae']:.5g} {summary['units']} "
                   f"({summary['epochs_run']} epochs) recorded in dvc.lock "
                   f"[{time.perf_counter() - t0:.0f} s]")
    return outcome
