"""Stage ``label_beta``: β labels for a selection of QM9 molecules, run as Dask tasks.

One task per molecule (:func:`label_task`) on a ``dask.distributed`` cluster:

* ``scheduler: local`` - ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``;
* ``scheduler: address`` - ``Client(address)`` for a scheduler that is already running
  (``dask scheduler`` + ``dask worker ... --nthreads 1`` started by the user);
* ``scheduler: slurm`` / ``pbs`` - ``dask_jobqueue.SLURMCluster`` / ``PBSCluster`` from the
  ``jobqueue`` options (:func:`jobqueue_kwargs`), scaled to ``jobqueue.jobs`` batch jobs.

Results are taken with ``distributed.as_completed`` as they arrive. Each finished row is
appended (fsync'd) to ``_journal.jsonl`` at once and compacted into an atomically written
Parquet shard every ``shard_size`` rows, so killing the run (even with SIGKILL) loses at most
the molecules in flight; a rerun recovers the journal and skips every finished id. Failures are
appended to ``_failures.jsonl`` with their reason and counted in the metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from qmlrp.errors import InputError, QmlrpError
from qmlrp.labels import records
from qmlrp.labels.beta import Level, LabelFailure, compute_beta_for_molecule, program_versions

__all__ = [
    "StageConfig",
    "INPUT_COLUMNS",
    "load_molecules",
    "select_molecules",
    "resolve_openblas_coretype",
    "worker_env",
    "jobqueue_kwargs",
    "dask_client",
    "label_task",
    "run_stage",
    "compute_metrics",
]

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("id", "smiles", "n_atoms", "atomic_numbers", "coordinates")
SCHEDULERS = ("local", "address", "slurm", "pbs")
_WHERE = "params.yaml:label_beta"


@dataclass
class StageConfig:
    """Validated ``label_beta`` parameters (see ``params.yaml``)."""

    level: Level
    input: Path = Path("data/qm9.parquet")
    output: str = "data/labels/beta/{level}"
    metrics: Path = Path("metrics/label_beta.json")
    count: int | None = 100
    seed: int = 0
    max_atoms: int | None = None
    shard_size: int = 25
    workers: int = 2
    threads_per_worker: int = 1
    scheduler: str = "local"
    address: str | None = None
    jobqueue: dict[str, Any] = field(default_factory=dict)
    openblas_coretype: str | None = "auto"
    retry_failed: bool = False
    progress: bool = True
    max_pending: int = 2000

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "StageConfig":
        """Translate a params section; bad values raise :class:`InputError`."""
        p = dict(params)
        try:
            level = Level.from_params(p)
        except (TypeError, ValueError) as err:
            raise InputError(_WHERE, f"level of theory: {err}") from err

        def opt_int(key: str, default: int | None, minimum: int) -> int | None:
            v = p.get(key, default)
            if v is None or (v == 0 and key in ("count", "max_atoms")):
                return None
            try:
                iv = int(v)
            except (TypeError, ValueError):
                raise InputError(_WHERE, f"{key} must be an integer, got {v!r}") from None
            if iv < minimum:
                raise InputError(_WHERE, f"{key} must be >= {minimum}, got {iv}")
            return iv

        scheduler = str(p.get("scheduler", "local")).lower()
        if scheduler not in SCHEDULERS:
            raise InputError(_WHERE, f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        address = p.get("address")
        if scheduler == "address" and not address:
            raise InputError(_WHERE, "scheduler 'address' needs 'address: tcp://host:port'")
        jq = p.get("jobqueue") or {}
        if not isinstance(jq, Mapping):
            raise InputError(_WHERE, "jobqueue must be a mapping")
        output = str(p.get("output", cls.output))
        if "{" in output and "{level}" not in output:
            raise InputError(_WHERE, f"output may only use the placeholder {{level}}: {output!r}")
        return cls(
            level=level,
            input=Path(p.get("input", cls.input)),
            output=output,
            metrics=Path(p.get("metrics", cls.metrics)),
            count=opt_int("count", 100, 1),
            seed=int(opt_int("seed", 0, 0) or 0),
            max_atoms=opt_int("max_atoms", None, 1),
            shard_size=int(opt_int("shard_size", 25, 1) or 25),
            workers=int(opt_int("workers", 2, 1) or 1),
            threads_per_worker=int(opt_int("threads_per_worker", 1, 1) or 1),
            scheduler=scheduler,
            address=str(address) if address else None,
            jobqueue=dict(jq),
            openblas_coretype=(None if p.get("openblas_coretype", "auto") in (None, "", False, "none")
                               else str(p.get("openblas_coretype", "auto"))),
            retry_failed=bool(p.get("retry_failed", False)),
            progress=bool(p.get("progress", True)),
            max_pending=int(opt_int("max_pending", 2000, 1) or 2000),
        )

    def output_dir(self) -> Path:
        """Label directory of this level (``{level}`` replaced by :meth:`Level.slug`)."""
        return Path(self.output.replace("{level}", self.level.slug()))


# ----------------------------------------------------------------------------- selection


def load_molecules(path: str | Path) -> pd.DataFrame:
    """Read the columns of the QM9 table that β labelling needs (see :data:`INPUT_COLUMNS`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "input table not found (run the ingest stage first)")
    try:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except Exception as err:
        raise InputError(str(path), f"not a readable Parquet file: {err}") from err
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        raise InputError(str(path), f"missing columns {missing}")
    return pd.read_parquet(path, columns=list(INPUT_COLUMNS))


def select_molecules(table: pd.DataFrame, count: int | None, seed: int,
                     max_atoms: int | None = None) -> pd.DataFrame:
    """Deterministic random selection: ``count`` molecules with ``n_atoms <= max_atoms``.

    The eligible rows are ordered by id and permuted with ``numpy.random.default_rng(seed)``;
    the first ``count`` are taken (all when ``count`` is None), so raising ``count`` extends an
    earlier selection instead of replacing it.
    """
    eligible = table
    if max_atoms is not None:
        eligible = eligible[eligible["n_atoms"] <= max_atoms]
    eligible = eligible.sort_values("id", kind="stable").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(eligible))
    if count is not None:
        order = order[:count]
    return eligible.iloc[order].reset_index(drop=True)


# ----------------------------------------------------------------------------- environment


def resolve_openblas_coretype(value: str | None) -> str | None:
    """``auto``: ``Haswell`` on CPUs with AVX2+FMA (the OpenBLAS 0.3.3 bundled with the PySCF
    wheel falls back to SSE3 'Prescott' kernels on CPUs newer than it knows), else unset."""
    if value is None:
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


def worker_env(cfg: StageConfig) -> dict[str, str]:
    """Environment of each worker process: thread counts, malloc settings, OpenBLAS core type."""
    t = str(cfg.threads_per_worker)
    env = {"OMP_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "MKL_NUM_THREADS": t, **MALLOC_ENV}
    core = resolve_openblas_coretype(cfg.openblas_coretype)
    if core:
        env["OPENBLAS_CORETYPE"] = core
    return env


def jobqueue_kwargs(cfg: StageConfig) -> dict[str, Any]:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` / ``PBSCluster``.

    ``jobqueue`` params: ``cores`` (per job), ``memory``, ``walltime``, ``queue``, ``account``,
    ``processes`` (Dask workers per job; default ``cores // threads_per_worker``),
    ``job_extra_directives``, ``job_script_prologue`` (extra shell lines, e.g. ``module load``),
    ``local_directory``, ``log_directory``, ``python``, ``interface``, ``resource_spec`` (PBS).
    Every worker runs one molecule at a time (Dask resource ``slot=1``) with
    ``threads_per_worker`` OpenMP threads.
    """
    jq = dict(cfg.jobqueue)
    cores = int(jq.get("cores", 1))
    tpw = cfg.threads_per_worker
    processes = int(jq.get("processes") or max(1, cores // tpw))
    prologue = [f"export {k}={v}" for k, v in worker_env(cfg).items()
                if k != "OPENBLAS_CORETYPE"]
    core = cfg.openblas_coretype
    if core is not None and str(core).lower() == "auto":
        prologue.append("grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo "
                        "&& export OPENBLAS_CORETYPE=Haswell")
    elif core:
        prologue.append(f"export OPENBLAS_CORETYPE={core}")
    prologue.extend(str(x) for x in jq.get("job_script_prologue", []) or [])
    kw: dict[str, Any] = {
        "cores": cores,
        "processes": processes,
        "memory": str(jq.get("memory", f"{4 * cores}GB")),
        "walltime": str(jq.get("walltime", "24:00:00")),
        "job_script_prologue": prologue,
        "worker_extra_args": ["--resources", "slot=1"] + list(jq.get("worker_extra_args", []) or []),
        "job_extra_directives": list(jq.get("job_extra_directives", []) or []),
    }
    for key in ("queue", "account", "local_directory", "log_directory", "python", "interface",
                "resource_spec", "job_name"):
        if jq.get(key):
            kw[key] = jq[key]
    return kw


@contextlib.contextmanager
def dask_client(cfg: StageConfig) -> Iterator[Any]:
    """A ``distributed.Client`` for the configured scheduler; the cluster is closed on exit."""
    from distributed import Client, LocalCluster

    if cfg.scheduler == "address":
        try:
            client = Client(cfg.address, timeout="30s")
        except OSError as err:
            raise QmlrpError(f"{_WHERE}: cannot reach Dask scheduler {cfg.address}: {err}") from err
        try:
            yield client
        finally:
            client.close()
        return
    if cfg.scheduler == "local":
        env = worker_env(cfg)
        # glibc reads MALLOC_* when a process starts: they must be inherited at spawn time
        # (the nanny's ``env`` is applied only after the worker process has started)
        saved = {k: os.environ.get(k) for k in MALLOC_ENV}
        os.environ.update(MALLOC_ENV)
        try:
            cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", env=env, silence_logs=logging.ERROR)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        import dask_jobqueue

        cls = dask_jobqueue.SLURMCluster if cfg.scheduler == "slurm" else dask_jobqueue.PBSCluster
        cluster = cls(**jobqueue_kwargs(cfg))
        cluster.scale(jobs=int(cfg.jobqueue.get("jobs", 1)))
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# ----------------------------------------------------------------------------- the task


@lru_cache(maxsize=1)
def _program() -> str:
    return "; ".join(f"{k} {v}" for k, v in program_versions().items())


def label_task(task: Mapping[str, Any], level: Mapping[str, Any], threads: int = 1) -> dict[str, Any]:
    """Compute the labels of one molecule (runs on a Dask worker).

    Args:
        task: ``id``, ``smiles``, ``n_atoms``, ``atomic_numbers`` (Z list), ``coordinates``
            (flattened, Ångström).
        level: :meth:`Level.as_dict` of the level of theory.
        threads: OpenMP threads for PySCF.

    Returns:
        ``{"id", "ok": True, "row": <label row>}`` or ``{"id", "ok": False, "reason": str}``;
        never raises for a per-molecule problem.
    """
    mol_id = int(task["id"])
    try:
        from pyscf import lib

        lib.num_threads(int(threads))
        lv = Level(**dict(level))
        res = compute_beta_for_molecule(task["atomic_numbers"], task["coordinates"], lv)
        row = records.make_row(
            mol_id=mol_id, smiles=str(task.get("smiles", "")), n_atoms=int(task["n_atoms"]),
            method=lv.method, xc=lv.xc, basis=lv.basis,
            grid_level=lv.grid_level if lv.method == "rks" else None,
            density_fit=lv.density_fit, energy=res.energy, dipole=res.dipole,
            alpha=res.alpha, beta=res.beta, beta_parallel=res.beta_parallel,
            beta_vec=res.beta_vec, n_basis=res.n_basis, cphf_residual=res.cphf_residual,
            wall_s=res.wall_s, cpu_s=res.cpu_s, source="pyscf", program=_program())
        return {"id": mol_id, "ok": True, "row": row}
    except LabelFailure as err:
        return {"id": mol_id, "ok": False, "reason": str(err)}
    except Exception as err:  # any other library error is a recorded failure, not a crash
        return {"id": mol_id, "ok": False, "reason": f"{type(err).__name__}: {err}"}


# ----------------------------------------------------------------------------- running


class _ShardWriter:
    """Journal every finished row at once; compact into a Parquet shard every ``size`` rows."""

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        self.pending: list[dict[str, Any]] = []
        self.n_written = 0

    def add(self, row: dict[str, Any]) -> None:
        records.append_jsonl(self.directory / records.JOURNAL_FILE, [row])
        self.pending.append(row)
        if len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            records.write_shard(self.pending, self.directory)
            self.n_written += len(self.pending)
            self.pending = []
        journal = self.directory / records.JOURNAL_FILE
        if journal.exists():
            journal.unlink()


def _tasks(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    for row in frame.itertuples(index=False):
        yield {
            "id": int(row.id),
            "smiles": str(row.smiles),
            "n_atoms": int(row.n_atoms),
            "atomic_numbers": [int(z) for z in row.atomic_numbers],
            "coordinates": [float(c) for c in row.coordinates],
        }


def _run_tasks(client: Any, todo: pd.DataFrame, cfg: StageConfig, out: Path) -> tuple[int, int]:
    """Submit ``todo`` to ``client``; write results as they complete. Returns (n_ok, n_failed)."""
    from distributed import as_completed
    from tqdm import tqdm

    level = cfg.level.as_dict()
    submit_kw: dict[str, Any] = {"pure": False}
    if cfg.scheduler in ("slurm", "pbs"):
        submit_kw["resources"] = {"slot": 1}
    source = _tasks(todo)
    writer = _ShardWriter(out, cfg.shard_size)
    n_ok = n_failed = 0
    ac = as_completed()
    pending: set[Any] = set()
    ids: dict[Any, int] = {}

    def submit_next() -> bool:
        task = next(source, None)
        if task is None:
            return False
        fut = client.submit(label_task, task, level, cfg.threads_per_worker,
                            key=f"label-beta-{task['id']}-{os.getpid()}-{time.time_ns()}",
                            **submit_kw)
        ids[fut.key] = task["id"]
        pending.add(fut)
        ac.add(fut)
        return True

    bar = tqdm(total=len(todo), desc=f"label_beta {cfg.level.slug()}", unit="mol",
               file=sys.stderr, disable=not cfg.progress, dynamic_ncols=True)
    try:
        for _ in range(cfg.max_pending):
            if not submit_next():
                break
        for fut in ac:
            pending.discard(fut)
            try:
                res = fut.result()
            except Exception as err:  # worker died, task could not be deserialised, ...
                res = {"id": ids[fut.key], "ok": False,
                       "reason": f"Dask task error: {type(err).__name__}: {err}"}
            if res["ok"]:
                writer.add(res["row"])
                n_ok += 1
            else:
                records.record_failures(out, [(res["id"], res["reason"])])
                n_failed += 1
            bar.update(1)
            bar.set_postfix(failed=n_failed, refresh=False)
            submit_next()
    finally:
        writer.flush()
        bar.close()
        for fut in pending:
            fut.cancel()
    return n_ok, n_failed


def _reason_kind(reason: str) -> str:
    head = reason.split("(")[0].split(":")[0].strip()
    return head[:60] or "unknown"


def compute_metrics(cfg: StageConfig, selected_ids: list[int], out: Path, *, wall_s: float,
                    n_computed: int, n_skipped: int, n_recovered: int,
                    complete: bool) -> dict[str, Any]:
    """Metrics of the label directory restricted to the selected molecules."""
    labels = records.read_labels(out)
    sel = set(int(i) for i in selected_ids)
    mine = labels[labels["id"].isin(sel)]
    fails = records.read_failures(out)
    fails = fails[fails["id"].isin(sel)]

    def stats(col: str) -> tuple[float | None, float | None]:
        v = mine[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return None, None
        return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0

    bp_mean, bp_sd = stats("beta_parallel_au")
    bv_mean, bv_sd = stats("beta_vec_au")
    mol_wall = mine["wall_s"].to_numpy(dtype=float)
    n_done, n_failed = int(len(mine)), int(len(fails))
    return {
        "level": cfg.level.identity(),
        "labels_dir": str(out),
        "n_requested": int(cfg.count) if cfg.count is not None else len(sel),
        "n_selected": len(sel),
        "n_done": n_done,
        "n_failed": n_failed,
        "n_pending": len(sel) - n_done - n_failed,
        "complete": bool(complete and len(sel) == n_done + n_failed),
        "failure_kinds": dict(Counter(_reason_kind(r) for r in fails["reason"])),
        "n_computed_this_run": int(n_computed),
        "n_skipped_done": int(n_skipped),
        "n_recovered_from_journal": int(n_recovered),
        "beta_parallel_mean_au": bp_mean,
        "beta_parallel_sd_au": bp_sd,
        "beta_vec_mean_au": bv_mean,
        "beta_vec_sd_au": bv_sd,
        "wall_s": round(wall_s, 3),
        "molecule_wall_s_mean": float(np.mean(mol_wall)) if mol_wall.size else None,
        "run_s_per_molecule": round(wall_s / n_computed, 3) if n_computed else None,
        "workers": cfg.workers if cfg.scheduler == "local" else None,
        "scheduler": cfg.scheduler,
    }


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False,
                              default=lambda o: None) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (batch-system cancel, ``kill``) into KeyboardInterrupt so shards get flushed."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(cfg: StageConfig, *, client: Any = None) -> dict[str, Any]:
    """Run (or resume) the stage; write shards, failures and the metrics JSON; return metrics.

    Args:
        cfg: stage configuration.
        client: an existing ``distributed.Client`` to use instead of creating one.

    Raises:
        KeyboardInterrupt: after flushing finished work and writing partial metrics.
    """
    t0 = time.perf_counter()
    table = load_molecules(cfg.input)
    bad = table["coordinates"].map(len) != 3 * table["n_atoms"]
    if bad.any():
        raise InputError(str(cfg.input), f"coordinates length != 3*n_atoms for ids "
                                         f"{table.loc[bad, 'id'].head(5).tolist()}")
    selected = select_molecules(table, cfg.count, cfg.seed, cfg.max_atoms)
    out = cfg.output_dir()
    records.ensure_level(out, cfg.level.identity())
    n_recovered = records.recover_journal(out)
    done = records.done_ids(out)
    skip = set(done)
    if not cfg.retry_failed:
        skip |= set(int(i) for i in records.read_failures(out)["id"])
    todo = selected[~selected["id"].isin(skip)]
    n_skipped = int(selected["id"].isin(done).sum())
    log.info("label_beta: %d selected, %d done, %d to run", len(selected), n_skipped, len(todo))

    n_ok = n_failed = 0
    complete = False
    try:
        with _sigterm_as_interrupt():
            if len(todo):
                if client is not None:
                    n_ok, n_failed = _run_tasks(client, todo, cfg, out)
                else:
                    with dask_client(cfg) as own:
                        n_ok, n_failed = _run_tasks(own, todo, cfg, out)
            complete = True
    finally:
        metrics = compute_metrics(cfg, selected["id"].tolist(), out,
                                  wall_s=time.perf_counter() - t0, n_computed=n_ok + n_failed,
                                  n_skipped=n_skipped, n_recovered=n_recovered, complete=complete)
        metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in metrics.items()}
        _write_json_atomic(cfg.metrics, metrics)
    return metrics
