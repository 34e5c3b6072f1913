"""The β label table: schema, Parquet shards, level manifest, journal and failures file.

A label directory holds one level of theory::

    <dir>/_level.json          level identity (refuse to mix levels)
    <dir>/part-*.parquet       label shards, one row per molecule (schema :data:`LABEL_SCHEMA`)
    <dir>/_journal.jsonl       finished rows not yet compacted into a shard (crash safety)
    <dir>/_failures.jsonl      one JSON object per failure: id, reason, time

Files starting with ``_`` are skipped by Parquet dataset readers, so ``pandas.read_parquet(dir)``
reads exactly the shards. All tensors are in atomic units, flattened row-major:
``dipole_au[a]``, ``alpha_au[3a+b]``, ``beta_au[9a+3b+c] = β(A;B,C)``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from qmlrp.errors import QmlrpError

__all__ = [
    "LABEL_SCHEMA",
    "VERSION_COLUMNS",
    "LEVEL_FILE",
    "JOURNAL_FILE",
    "FAILURES_FILE",
    "make_row",
    "rows_to_table",
    "write_table_atomic",
    "write_shard",
    "read_labels",
    "done_ids",
    "ensure_level",
    "check_rows_level",
    "append_jsonl",
    "read_jsonl",
    "record_failures",
    "read_failures",
    "recover_journal",
    "beta_tensor",
]

LEVEL_FILE = "_level.json"
JOURNAL_FILE = "_journal.jsonl"
FAILURES_FILE = "_failures.jsonl"

_F64 = pa.float64()
LABEL_SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("smiles", pa.string()),
    pa.field("n_atoms", pa.int32()),
    pa.field("method", pa.string()),
    pa.field("xc", pa.string()),
    pa.field("basis", pa.string()),
    pa.field("grid_level", pa.int32()),
    pa.field("density_fit", pa.bool_()),
    pa.field("energy_hartree", _F64),
    pa.field("dipole_au", pa.list_(_F64)),
    pa.field("dipole_norm_au", _F64),
    pa.field("alpha_au", pa.list_(_F64)),
    pa.field("alpha_iso_au", _F64),
    pa.field("beta_au", pa.list_(_F64)),
    pa.field("beta_parallel_au", _F64),
    pa.field("beta_vec_au", _F64),
    pa.field("n_basis", pa.int32()),
    pa.field("cphf_residual", _F64),
    pa.field("wall_s", _F64),
    pa.field("cpu_s", _F64),
    pa.field("source", pa.string()),
    pa.field("program", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("pyscf_version", pa.string()),
    pa.field("pyscf_properties_version", pa.string()),
    pa.field("libxc_version", pa.string()),
    pa.field("qmlrp_version", pa.string()),
    pa.field("computed_utc", pa.string()),
])

#: program_versions() key -> label-table column
VERSION_COLUMNS = {"pyscf": "pyscf_version", "pyscf-properties": "pyscf_properties_version",
                   "libxc": "libxc_version", "qmlrp": "qmlrp_version"}


def _clean(x: float | None) -> float | None:
    return None if x is None else float(x)


def make_row(*, mol_id: int, smiles: str, n_atoms: int, method: str, xc: str, basis: str,
             grid_level: int | None, density_fit: bool, energy: float,
             dipole: NDArray[np.float64] | None, alpha: NDArray[np.float64] | None,
             beta: NDArray[np.float64], beta_parallel: float, beta_vec: float,
             n_basis: int | None, cphf_residual: float | None, wall_s: float | None,
             cpu_s: float | None, source: str, program: str,
             source_file: str | None = None, versions: Mapping[str, str] | None = None,
             computed_utc: str | None = None) -> dict[str, Any]:
    """One label-table row as a plain dict (JSON- and Arrow-serialisable).

    ``dipole`` shape ``(3,)``, ``alpha`` ``(3, 3)``, ``beta`` ``(3, 3, 3)``, all a.u.; ``None`` or
    NaN entries mark values a source did not provide. ``wall_s``/``cpu_s``: seconds this molecule
    took (SCF + response; CPU time of all threads). ``versions``: ``program_versions()`` of the
    computing process (keys of :data:`VERSION_COLUMNS`); ``computed_utc``: ISO time it finished.
    """
    versions = dict(versions or {})
    nan3 = np.full(3, np.nan)
    mu = nan3 if dipole is None else np.asarray(dipole, dtype=float).reshape(3)
    al = np.full((3, 3), np.nan) if alpha is None else np.asarray(alpha, dtype=float).reshape(3, 3)
    be = np.asarray(beta, dtype=float).reshape(27)
    return {
        "id": int(mol_id),
        "smiles": str(smiles),
        "n_atoms": int(n_atoms),
        "method": method,
        "xc": xc,
        "basis": basis,
        "grid_level": None if grid_level is None else int(grid_level),
        "density_fit": bool(density_fit),
        "energy_hartree": float(energy),
        "dipole_au": [float(v) for v in mu],
        "dipole_norm_au": float(np.linalg.norm(mu)),
        "alpha_au": [float(v) for v in al.reshape(9)],
        "alpha_iso_au": float(np.trace(al) / 3.0),
        "beta_au": [float(v) for v in be],
        "beta_parallel_au": float(beta_parallel),
        "beta_vec_au": float(beta_vec),
        "n_basis": None if n_basis is None else int(n_basis),
        "cphf_residual": _clean(cphf_residual),
        "wall_s": _clean(wall_s),
        "cpu_s": _clean(cpu_s),
        "source": source,
        "program": program,
        "source_file": source_file,
        **{col: versions.get(key) for key, col in VERSION_COLUMNS.items()},
        "computed_utc": computed_utc,
    }


def rows_to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Arrow table with :data:`LABEL_SCHEMA` from row dicts (see :func:`make_row`)."""
    rows = list(rows)
    return pa.Table.from_pylist(rows, schema=LABEL_SCHEMA)


def write_table_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_shard(rows: Iterable[Mapping[str, Any]], directory: str | Path) -> Path | None:
    """Write rows as a new uniquely named shard ``part-<time>-<uid>.parquet``; None if empty."""
    rows = list(rows)
    if not rows:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    return write_table_atomic(rows_to_table(rows), Path(directory) / name)


def _shards(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("part-*.parquet") if p.is_file())


def _read_shard(path: Path) -> pa.Table:
    """One shard in :data:`LABEL_SCHEMA` (columns added since it was written are null)."""
    table = pq.read_table(path)
    for f in LABEL_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), type=f.type))
    return table.select(LABEL_SCHEMA.names).cast(LABEL_SCHEMA)


def read_labels(directory: str | Path) -> pd.DataFrame:
    """All shards of a label directory as one DataFrame (first row per id kept)."""
    directory = Path(directory)
    shards = _shards(directory) if directory.is_dir() else []
    if not shards:
        return rows_to_table([]).to_pandas()
    table = pa.concat_tables([_read_shard(p) for p in shards])
    df = table.to_pandas()
    return df.drop_duplicates("id", keep="first").reset_index(drop=True)


def done_ids(directory: str | Path) -> set[int]:
    """Ids present in the shards of ``directory`` (reads only the ``id`` column)."""
    directory = Path(directory)
    if not directory.is_dir():
        return set()
    out: set[int] = set()
    for p in _shards(directory):
        out.update(int(i) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist())
    return out


def ensure_level(directory: str | Path, identity: Mapping[str, Any]) -> None:
    """Create ``_level.json`` or check that it matches ``identity``.

    Raises:
        QmlrpError: the directory already holds labels of another level.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LEVEL_FILE
    wanted = json.loads(json.dumps(dict(identity)))
    if path.exists():
        found = json.loads(path.read_text())
        if found != wanted:
            diff = {k: (found.get(k), wanted.get(k)) for k in set(found) | set(wanted)
                    if found.get(k) != wanted.get(k)}
            raise QmlrpError(
                f"{directory}: holds labels of another level ({diff}, existing vs requested); "
                "labels of different levels never mix - choose another output or remove it")
        return
    has_data = bool(_shards(directory)) or (directory / JOURNAL_FILE).exists()
    if has_data:
        raise QmlrpError(f"{directory}: has label shards but no {LEVEL_FILE}; refusing to append")
    tmp = directory / f".{LEVEL_FILE}.tmp"
    tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_rows_level(directory: str | Path, identity: Mapping[str, Any]) -> None:
    """Check that every shard row has the folder's method, xc and basis (a shard copied in from
    another level's folder is caught here).

    Raises:
        QmlrpError: naming the first shard whose rows belong to another level.
    """
    directory = Path(directory)
    want = (identity.get("method"), identity.get("xc"), identity.get("basis"))
    for p in _shards(directory) if directory.is_dir() else []:
        t = pq.read_table(p, columns=["method", "xc", "basis"]).to_pylist()
        other = {(r["method"], r["xc"], r["basis"]) for r in t} - {want}
        if other:
            raise QmlrpError(f"{p}: rows of level {sorted(other)[0]} in the folder of {want}; "
                             "labels of different levels never mix - move that shard out")


def append_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records as JSON lines and fsync, so a crash loses at most a partial last line."""
    lines = "".join(json.dumps(dict(r), allow_nan=True, ensure_ascii=False) + "\n"
                    for r in records)
    if not lines:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(lines)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a truncated (unparseable) line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def record_failures(directory: str | Path, failures: Iterable[tuple[int, str]]) -> None:
    """Append ``(id, reason)`` pairs to the directory's failures file."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_jsonl(Path(directory) / FAILURES_FILE,
                 ({"id": int(i), "reason": str(r), "time": now} for i, r in failures))


def read_failures(directory: str | Path) -> pd.DataFrame:
    """Latest failure per id, excluding ids that have since been labelled (columns id, reason, time)."""
    directory = Path(directory)
    recs = read_jsonl(directory / FAILURES_FILE)
    df = pd.DataFrame(recs, columns=["id", "reason", "time"])
    if df.empty:
        return df.astype({"id": "int64"})
    df = df.drop_duplicates("id", keep="last")
    df = df[~df["id"].isin(done_ids(directory))]
    return df.reset_index(drop=True).astype({"id": "int64"})


def recover_journal(directory: str | Path) -> int:
    """Move rows of an interrupted run from the journal into a shard; return how many.

    Rows whose id is already in a shard (crash between shard write and journal removal) are
    dropped, so no molecule is duplicated.
    """
    directory = Path(directory)
    path = directory / JOURNAL_FILE
    if not path.exists():
        return 0
    have = done_ids(directory)
    rows, seen = [], set()
    for r in read_jsonl(path):
        i = int(r.get("id", -1))
        if i in have or i in seen:
            continue
        seen.add(i)
        rows.append(r)
    write_shard(rows, directory)
    path.unlink()
    return len(rows)


def beta_tensor(row: Mapping[str, Any]) -> NDArray[np.float64]:
    """The ``(3, 3, 3)`` β tensor (a.u.) of a label-table row."""
    return np.asarray(row["beta_au"], dtype=float).reshape(3, 3, 3)
