"""Stage ``featurize``: ``data/qm9.parquet`` -> ``data/features/`` (+ the list of molecules that failed).

Work is cut into chunks featurized by a process pool (each chunk's perception in a crash-isolated
child, :mod:`qmlrp.features.isolate`); each finished chunk is written to a scratch
folder keyed by the input's content hash, so an interrupted run resumes where it stopped and loses
at most the chunks in flight. The chunks are merged into the store at the end.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from qmlrp.errors import InputError, QmlrpError
from qmlrp.features.graph import MolecularGraph, graph_from_mol
from qmlrp.features.isolate import Crashed, map_isolated
from qmlrp.features.molecule import BOND_FROM_GEOMETRY, build_molecule
from qmlrp.features.store import write_store
from qmlrp.io import read_parquet, write_csv, write_json

STORE_FILES = ("molecules.parquet", "atoms.parquet", "bonds.parquet")
SCRATCH = Path("data/tmp/featurize")


@dataclass(frozen=True)
class FeaturizeParams:
    """``params.yaml`` section ``featurize`` (parsed by :func:`qmlrp.params.parse_section`)."""

    workers: int = 2
    chunk_size: int = 2000

    def __post_init__(self) -> None:
        if self.workers <= 0 or self.chunk_size <= 0:
            raise ValueError("workers and chunk_size must be positive")


def featurize_geometry(atomic_numbers: np.ndarray, coordinates: np.ndarray, smiles: str | None = None,
                       name: str = "molecule") -> MolecularGraph:
    """Molecular Graph of one molecule (atoms in the given order).

    Args:
        atomic_numbers: (n,) int; coordinates: (n, 3) Angstrom; smiles: optional bond-order template.

    Raises:
        InputError: one line naming ``name`` and why the molecule is outside the domain or unperceivable.
    """
    mol, _ = build_molecule(atomic_numbers, coordinates, smiles, name)
    return graph_from_mol(mol, np.asarray(coordinates).reshape(-1, 3), name)


@dataclass(frozen=True)
class Chunk:
    index: int
    ids: np.ndarray
    names: list[str]
    smiles: list[str]
    atomic_numbers: list[np.ndarray]
    coordinates: list[np.ndarray]


def _featurize_row(row: tuple[str, str, object, object]) -> tuple[MolecularGraph, str]:
    name, smiles, numbers, coords = row
    xyz = np.asarray(coords, dtype=float).reshape(-1, 3)
    mol, origin = build_molecule(np.asarray(numbers), xyz, smiles, name)
    return graph_from_mol(mol, xyz, name), origin


def _failure_reason(result: Exception) -> str:
    if isinstance(result, InputError):
        return result.reason
    if isinstance(result, Crashed):
        return f"RDKit crashed on this molecule ({result})"
    first = (str(result).splitlines() or [result.__class__.__name__])[0]  # RDKit or a malformed row
    return f"cannot featurize ({first})"


def _run_chunk(task: tuple[Chunk, Path]) -> tuple[int, int, int]:
    """Featurize one chunk into ``scratch/chunk-XXXXX`` (in a crash-isolated child: a crash inside
    RDKit costs one molecule, listed as failed); returns (index, n_ok, n_failed)."""
    chunk, scratch = task
    graphs, ids, origins, failures = [], [], [], []
    rows = list(zip(chunk.names, chunk.smiles, chunk.atomic_numbers, chunk.coordinates))
    for mol_id, name, result in zip(chunk.ids, chunk.names, map_isolated(_featurize_row, rows)):
        if isinstance(result, Exception):
            failures.append({"id": int(mol_id), "name": name, "reason": _failure_reason(result)})
            continue
        graphs.append(result[0])
        origins.append(result[1])
        ids.append(int(mol_id))
    target = scratch / f"chunk-{chunk.index:05d}"
    write_store(target, np.array(ids, dtype=np.int64), graphs, origins)
    pd.DataFrame(failures, columns=["id", "name", "reason"]).to_csv(target / "failures.csv", index=False)
    return chunk.index, len(ids), len(failures)


def _content_key(path: Path, chunk_size: int) -> str:
    digest = hashlib.sha256(f"{chunk_size}:".encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def featurize_table(table: str | Path, output: str | Path, failures: str | Path, metrics: str | Path,
                    workers: int = FeaturizeParams.workers, chunk_size: int = FeaturizeParams.chunk_size,
                    scratch_root: str | Path = SCRATCH) -> dict[str, float]:
    """Featurize every molecule of the ingested table; return the metrics written to ``metrics``."""
    table = Path(table)
    if chunk_size <= 0 or workers <= 0:
        raise QmlrpError("featurize.chunk_size and featurize.workers must be positive")
    frame = read_parquet(table, ["id", "name", "smiles", "atomic_numbers", "coordinates"],
                         hint="run `dvc repro ingest`")
    n = frame.num_rows
    scratch = Path(scratch_root) / _content_key(table, chunk_size)
    scratch.mkdir(parents=True, exist_ok=True)
    ids = frame.column("id").to_numpy()
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        dup = unique[counts > 1]
        raise QmlrpError(f"{table}: QM9 id{'s' if len(dup) > 1 else ''} {', '.join(map(str, dup[:5]))} "
                         f"appear{'' if len(dup) > 1 else 's'} more than once")
    names = frame.column("name").to_pylist()
    smiles = frame.column("smiles").to_pylist()
    numbers = frame.column("atomic_numbers").to_pylist()
    coords = frame.column("coordinates").to_pylist()
    n_chunks = (n + chunk_size - 1) // chunk_size
    todo = []
    for k in range(n_chunks):
        if (scratch / f"chunk-{k:05d}" / "failures.csv").exists():
            continue
        s = slice(k * chunk_size, min(n, (k + 1) * chunk_size))
        todo.append((Chunk(k, ids[s], names[s], smiles[s], numbers[s], coords[s]), scratch))
    done_before = n - sum(len(t[0].ids) for t in todo)
    progress = tqdm(total=n, initial=done_before, desc="featurize", unit="mol", file=sys.stderr, mininterval=2.0, disable=None)
    if todo:
        if workers == 1:
            for task in todo:
                progress.update(sum(_run_chunk(task)[1:]))
        else:
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with context.Pool(workers) as pool:
                for _, ok, bad in pool.imap_unordered(_run_chunk, todo):
                    progress.update(ok + bad)
    progress.close()
    return _merge(scratch, n_chunks, n, Path(output), Path(failures), Path(metrics))


def _merge(scratch: Path, n_chunks: int, n_input: int, output: Path, failures: Path, metrics: Path) -> dict[str, float]:
    """Concatenate the chunk stores into ``output`` and write failures and metrics; drop the scratch folder."""
    chunk_dirs = [scratch / f"chunk-{k:05d}" for k in range(n_chunks)]
    tmp = output.with_name(f".{output.name}.merge")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in STORE_FILES:
        pq.write_table(pa.concat_tables([pq.read_table(d / name) for d in chunk_dirs], promote_options="permissive"),
                       tmp / name, compression="zstd")
    failed = pd.concat([pd.read_csv(d / "failures.csv") for d in chunk_dirs], ignore_index=True)
    molecules = pq.read_table(tmp / "molecules.parquet")
    if output.exists():
        shutil.rmtree(output)
    tmp.rename(output)
    write_csv(failed, failures)
    origin = np.asarray(molecules.column("bond_origin").to_pylist())
    result = {
        "n_input": int(n_input),
        "n_featurized": int(molecules.num_rows),
        "n_failed": int(len(failed)),
        "success_rate": float(molecules.num_rows / n_input) if n_input else 0.0,
        "n_bond_orders_from_geometry": int(np.sum(origin == BOND_FROM_GEOMETRY)),
    }
    if result["n_featurized"] + result["n_failed"] != n_input:
        raise QmlrpError(f"featurize: {n_input} molecules in, {result['n_featurized']} + {result['n_failed']} out")
    write_json(result, metrics)
    shutil.rmtree(scratch, ignore_errors=True)
    return result
