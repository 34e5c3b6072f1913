"""Running (or resuming) ``label_beta``: one Dask task per molecule, every result journalled.

Results are taken with ``distributed.as_completed`` as they arrive. Each finished row that passes
the sanity checks (:mod:`qmlrp.labels.sanity`) is appended (fsync'd) to ``_journal.jsonl`` at
once and compacted into an atomically written Parquet shard every ``shard_size`` rows, so killing
the run (even with SIGKILL) loses at most the molecules in flight; a rerun recovers the journal
and skips every id already in the label folder - in particular every label already published in
the git-tracked folder. Failures go to ``_failures.jsonl`` with their reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.labels import records
from qmlrp.labels.beta import Level, LabelFailure, compute_beta, build_molecule, program_versions
from qmlrp.cluster import dask_client
from qmlrp.labels.config import LabelBetaParams, Sanity
from qmlrp.labels.sanity import check_geometry, check_result
from qmlrp.labels.selection import load_molecules, molecule_tasks, select_molecules

__all__ = ["label_task", "run_stage", "compute_metrics", "qmlrp_revision", "RunCounts"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def qmlrp_revision() -> str | None:
    """``git describe``-like revision of the qmlrp source tree (``<hash>`` or ``<hash>-dirty``
    when ``src/qmlrp/labels`` has uncommitted changes); None outside a git checkout."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=src, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, text=True,
                               capture_output=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def _versions(revision: str | None) -> dict[str, str]:
    v = dict(program_versions())
    if revision:
        v["qmlrp"] = f"{v['qmlrp']}+g{revision}"
    return v


def label_task(task: Mapping[str, Any], level: Mapping[str, Any], threads: int = 1,
               sanity: Mapping[str, Any] | None = None,
               revision: str | None = None) -> dict[str, Any]:
    """Compute and check the labels of one molecule (runs on a Dask worker).

    Args:
        task: ``id``, ``smiles``, ``n_atoms``, ``atomic_numbers`` (Z list), ``coordinates``
            (flattened, Å).
        level: :meth:`Level.as_dict` of the level of theory.
        threads: OpenMP threads for PySCF.
        sanity: fields of :class:`~qmlrp.labels.config.Sanity` (defaults when None).
        revision: qmlrp source revision to record with the versions.

    Returns:
        ``{"id", "ok": True, "row": <label row>}`` or ``{"id", "ok": False, "reason": str}``;
        never raises for a per-molecule problem.
    """
    mol_id = int(task["id"])
    try:
        from pyscf import lib

        lib.num_threads(int(threads))
        lv = Level(**dict(level))
        checks = Sanity(**dict(sanity or {}))
        z = [int(a) for a in task["atomic_numbers"]]
        check_geometry(z, task["coordinates"], checks)
        mol = build_molecule(z, task["coordinates"], lv.basis, cart=lv.cart,
                             max_memory_mb=lv.max_memory_mb)
        res = compute_beta(mol, lv)
        check_result(z, res, checks)
        versions = _versions(revision)
        row = records.make_row(
            mol_id=mol_id, smiles=str(task.get("smiles", "")), n_atoms=int(task["n_atoms"]),
            method=lv.method, xc=lv.xc, basis=lv.basis,
            grid_level=lv.grid_level if lv.method == "rks" else None,
            density_fit=lv.density_fit, energy=res.energy, dipole=res.dipole,
            alpha=res.alpha, beta=res.beta, beta_parallel=res.beta_parallel,
            beta_vec=res.beta_vec, n_basis=res.n_basis, cphf_residual=res.cphf_residual,
            wall_s=res.wall_s, cpu_s=res.cpu_s, source="pyscf",
            program="; ".join(f"{k} {v}" for k, v in versions.items()), versions=versions,
            computed_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return {"id": mol_id, "ok": True, "row": row}
    except LabelFailure as err:
        return {"id": mol_id, "ok": False, "reason": str(err)}
    except Exception as err:  # any other library error is a recorded failure, not a crash
        return {"id": mol_id, "ok": False, "reason": f"{type(err).__name__}: {err}"}


class _ShardWriter:
    """Journal every finished row at once; compact into a Parquet shard every ``size`` rows."""

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        self.pending: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        records.append_jsonl(self.directory / records.JOURNAL_FILE, [row])
        self.pending.append(row)
        if len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            records.write_shard(self.pending, self.directory)
            self.pending = []
        journal = self.directory / records.JOURNAL_FILE
        if journal.exists():
            journal.unlink()


class RunCounts:
    """Molecules finished by this run: ``ok`` labelled, ``failed`` with a recorded reason."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0


def _run_tasks(client: Any, todo: pd.DataFrame, cfg: LabelBetaParams, out: Path,
               counts: RunCounts) -> None:
    """Submit ``todo`` to ``client`` (at most ``max_pending`` at once); store results as they
    complete, counting them in ``counts`` (so an interrupted run still reports its work)."""
    from distributed import as_completed
    from tqdm import tqdm

    level = cfg.level.as_dict()
    sanity = asdict(cfg.sanity)
    revision = qmlrp_revision()
    submit_kw: dict[str, Any] = {"pure": False}
    if cfg.scheduler in ("slurm", "pbs"):
        submit_kw["resources"] = {"slot": 1}
    source = molecule_tasks(todo)
    writer = _ShardWriter(out, cfg.shard_size)
    ac = as_completed()
    pending: set[Any] = set()
    ids: dict[Any, int] = {}

    def submit_next() -> bool:
        task = next(source, None)
        if task is None:
            return False
        fut = client.submit(label_task, task, level, cfg.threads_per_worker, sanity, revision,
                            key=f"label-beta-{task['id']}-{os.getpid()}-{time.time_ns()}",
                            **submit_kw)
        ids[fut.key] = task["id"]
        pending.add(fut)
        ac.add(fut)
        return True

    interactive = sys.stderr.isatty()
    bar = tqdm(total=len(todo), desc=f"label_beta {cfg.level.slug()}", unit="mol",
               file=sys.stderr, disable=not cfg.progress, dynamic_ncols=interactive,
               mininterval=0.1 if interactive else 30.0)
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
                counts.ok += 1
            else:
                records.record_failures(out, [(res["id"], res["reason"])])
                counts.failed += 1
            bar.update(1)
            bar.set_postfix(failed=counts.failed, refresh=False)
            submit_next()
    finally:
        writer.flush()
        bar.close()
        for fut in pending:
            fut.cancel()


def _reason_kind(reason: str) -> str:
    head = reason.split("(")[0].split(":")[0].strip()
    return head[:60] or "unknown"


def compute_metrics(cfg: LabelBetaParams, selected_ids: list[int], out: Path, *, wall_s: float,
                    counts: RunCounts, n_skipped: int, n_recovered: int,
                    complete: bool) -> dict[str, Any]:
    """Metrics of the label folder restricted to the selected molecules (β in a.u., times in s)."""
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
    mol_cpu = mine["cpu_s"].to_numpy(dtype=float)
    n_done, n_failed = int(len(mine)), int(len(fails))
    n_run = counts.ok + counts.failed
    return {
        "level": cfg.level.identity(),
        "labels_dir": str(out),
        "n_labels_in_dir": int(len(labels)),
        "n_requested": int(cfg.count) if cfg.count is not None else len(sel),
        "n_selected": len(sel),
        "n_done": n_done,
        "n_failed": n_failed,
        "n_pending": len(sel) - n_done - n_failed,
        "complete": bool(complete and len(sel) == n_done + n_failed),
        "failure_kinds": dict(Counter(_reason_kind(r) for r in fails["reason"])),
        "n_computed_this_run": n_run,
        "n_ok_this_run": counts.ok,
        "n_failed_this_run": counts.failed,
        "n_skipped_done": int(n_skipped),
        "n_recovered_from_journal": int(n_recovered),
        "beta_parallel_mean_au": bp_mean,
        "beta_parallel_sd_au": bp_sd,
        "beta_vec_mean_au": bv_mean,
        "beta_vec_sd_au": bv_sd,
        "wall_s": round(wall_s, 3),
        "molecule_wall_s_mean": float(np.nanmean(mol_wall)) if mol_wall.size else None,
        "molecule_cpu_s_mean": float(np.nanmean(mol_cpu)) if mol_cpu.size else None,
        "run_s_per_molecule": round(wall_s / n_run, 3) if n_run else None,
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


def run_stage(cfg: LabelBetaParams, *, client: Any = None) -> dict[str, Any]:
    """Run (or resume) the stage; write shards, failures and the metrics JSON; return metrics.

    Molecules already in the label folder (the published set) are never recomputed; recorded
    failures are skipped unless ``retry_failed``.

    Args:
        cfg: stage parameters.
        client: an existing ``distributed.Client`` to use instead of creating one.

    Raises:
        KeyboardInterrupt: after flushing finished work and writing partial metrics.
        QmlrpError: bad input table, or the folder holds labels of another level.
    """
    t0 = time.perf_counter()
    table = load_molecules(cfg.input)
    selected = select_molecules(table, cfg.count, cfg.seed, cfg.max_atoms)
    out = cfg.output_dir()
    metrics_path = Path(cfg.metrics)
    if metrics_path.is_dir():
        raise QmlrpError(f"params.yaml label_beta.metrics: {metrics_path} is a folder")
    for folder, key in ((metrics_path.parent, "metrics"), (out, "output")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise QmlrpError(f"params.yaml label_beta.{key}: cannot create folder {folder}: "
                             f"{err.strerror or err}") from None
    records.ensure_level(out, cfg.level.identity())
    records.check_rows_level(out, cfg.level.identity())
    n_recovered = records.recover_journal(out)
    done = records.done_ids(out)
    skip = set(done)
    if not cfg.retry_failed:
        skip |= set(int(i) for i in records.read_failures(out)["id"])
    todo = selected[~selected["id"].isin(skip)]
    n_skipped = int(selected["id"].isin(done).sum())
    log.info("label_beta: %d selected, %d done, %d to run", len(selected), n_skipped, len(todo))

    counts = RunCounts()
    complete = False
    try:
        with _sigterm_as_interrupt():
            if len(todo):
                if client is not None:
                    _run_tasks(client, todo, cfg, out, counts)
                else:
                    with dask_client(cfg) as own:
                        _run_tasks(own, todo, cfg, out, counts)
            complete = True
    finally:
        metrics = compute_metrics(cfg, selected["id"].tolist(), out,
                                  wall_s=time.perf_counter() - t0, counts=counts,
                                  n_skipped=n_skipped, n_recovered=n_recovered, complete=complete)
        metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in metrics.items()}
        _write_json_atomic(metrics_path, metrics)
    return metrics
