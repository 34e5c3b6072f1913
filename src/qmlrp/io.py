"""Small file helpers shared by the stages: atomic writes of Parquet, JSON and CSV, a Parquet
reader that fails in one line, and checks of user-given output paths."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qmlrp.errors import QmlrpError


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` as CSV without index, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def read_parquet(path: str | Path, columns: list[str] | None = None, hint: str = "") -> pa.Table:
    """Read a Parquet file; a missing, empty, truncated or otherwise unreadable file (or missing
    ``columns``) raises one-line QmlrpError naming the file, the reason and ``hint`` (e.g. how to rebuild)."""
    path = Path(path)
    suffix = f" ({hint})" if hint else ""
    if not path.is_file():
        raise QmlrpError(f"{path}: not found{suffix}")
    if path.stat().st_size == 0:
        raise QmlrpError(f"{path}: empty file, not Parquet{suffix}")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError, KeyError) as err:
        reason = (str(err).splitlines() or [err.__class__.__name__])[0]
        raise QmlrpError(f"{path}: unreadable Parquet (truncated or corrupt? {reason}){suffix}") from None


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """``path`` if a file can be written there; one-line QmlrpError if it is a folder or its folder is a file."""
    path = Path(path)
    if path.is_dir():
        raise QmlrpError(f"{option} {path}: is a folder, expected a file name")
    parent = next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise QmlrpError(f"{option} {path}: {parent} is a file, not a folder")
    return path


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` created as a folder; one-line QmlrpError if it (or a parent) is a file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise QmlrpError(f"{option} {path}: is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise QmlrpError(f"{option} {path}: cannot create the folder ({err.strerror or err})") from None
    return path
