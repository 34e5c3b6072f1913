"""The ``.npz`` weights file shared by every qmlrp model: a JSON header and arrays ``w000``, ``w001``, ...

No pickle and no code: a file from someone else can only fail to load, never run anything. The
bytes depend only on the header and the arrays (``np.savez`` to a handle writes fixed zip dates), so
saving the same weights twice gives the same file, which keeps DVC from seeing a change.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.errors import QmlrpError


def remove_stale_temporaries(folder: Path) -> None:
    """Delete ``.<name>.tmp-<pid>.*`` files left by a save that was killed (their process is gone)."""
    for tmp in folder.glob(".*.tmp-*"):
        match = re.search(r"\.tmp-(\d+)", tmp.name)
        if match and int(match.group(1)) != os.getpid() and not Path(f"/proc/{match.group(1)}").exists():
            tmp.unlink(missing_ok=True)


def temporary_path(path: Path) -> Path:
    """``.<stem>.tmp-<pid><suffix>`` beside ``path``: written first, then renamed over it."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_weights_file(path: str | Path, header: dict[str, Any], arrays: Sequence[np.ndarray]) -> None:
    """Write ``header`` (JSON, sorted keys) and ``arrays`` (as given, in order) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    entries = {"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
    entries.update({f"w{k:03d}": a for k, a in enumerate(arrays)})
    tmp = temporary_path(path)
    with open(tmp, "wb") as fh:
        np.savez(fh, **entries)
    os.replace(tmp, path)


MAX_HEADER_BYTES = 16 * 2**20
"""Largest JSON header a weights file may have (a model's is a few kB)."""
MAX_ARRAY_BYTES = 2**30
"""Most bytes of weight arrays a file may declare (a 1e8-weight model in float32 is 400 MB)."""


def read_weights_file(path: str | Path, fmt: str, kind: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """``(header, arrays)`` of a file written by :func:`write_weights_file` with ``header["format"] == fmt``.

    Nothing is allocated on the file's word: each array's declared shape and dtype (its ``.npy``
    header) must account for exactly the bytes the file holds for it, and all of them together for
    at most :data:`MAX_ARRAY_BYTES`, before any array is read. Non-finite weights (NaN, inf) are refused.

    Raises:
        QmlrpError: one line naming ``path`` and saying it is a corrupt or foreign ``kind`` file, or
            which array is wrong and how.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            header = json.loads(_member_bytes(archive, "header.npy", MAX_HEADER_BYTES, path, kind).decode())
            if not isinstance(header, dict) or header.get("format") != fmt:
                found = header.get("format") if isinstance(header, dict) else None
                raise QmlrpError(f"{path}: not a qmlrp {kind} file (format {found!r})")
            names = header.get("names")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise QmlrpError(f"{path}: corrupt {kind} file (its header lists no weight names)")
            members = [f"w{k:03d}.npy" for k in range(len(names))]
            declared = [_declared_array(archive, m, names[k], path, kind) for k, m in enumerate(members)]
            total = sum(nbytes for _, _, nbytes in declared)
            if total > MAX_ARRAY_BYTES:
                raise QmlrpError(f"{path}: its arrays declare {total:,} bytes, more than the {MAX_ARRAY_BYTES:,} "
                                 f"a {kind} file may hold")
            arrays = []
            for member, name in zip(members, names):
                with archive.open(member) as fh:
                    value = np.lib.format.read_array(fh, allow_pickle=False)
                _check_finite(value, name, path)
                arrays.append(value)
    except QmlrpError:
        raise
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, json.JSONDecodeError,
            UnicodeDecodeError) as err:
        raise QmlrpError(f"{path}: corrupt {kind} file ({err.__class__.__name__}: {str(err)[:200]})") from None
    return header, arrays


def _member_bytes(archive: zipfile.ZipFile, member: str, limit: int, path: Path, kind: str) -> bytes:
    """The data of the uint8 ``.npy`` array ``member`` (the JSON header), at most ``limit`` bytes."""
    info = archive.getinfo(member)
    if info.file_size > limit:
        raise QmlrpError(f"{path}: corrupt {kind} file ({member} declares {info.file_size:,} bytes)")
    with archive.open(info) as fh:
        value = np.lib.format.read_array(fh, allow_pickle=False)
    if value.dtype != np.uint8 or value.ndim != 1:
        raise QmlrpError(f"{path}: corrupt {kind} file ({member} is not text)")
    return value.tobytes()


def _declared_array(archive: zipfile.ZipFile, member: str, name: str, path: Path,
                    kind: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, bytes)`` of ``member`` from its ``.npy`` header alone; QmlrpError unless the
    member holds exactly that many bytes of numbers."""
    info = archive.getinfo(member)
    if info.compress_type == zipfile.ZIP_STORED and info.file_size > path.stat().st_size:
        raise QmlrpError(f"{path}: corrupt {kind} file ({member} declares {info.file_size:,} bytes, "
                         f"more than the file's {path.stat().st_size:,})")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(fh)
        data_bytes = info.file_size - fh.tell()
    if dtype.hasobject or dtype.kind not in "fiub":
        raise QmlrpError(f"{path}: weight {name} ({member}) has dtype {dtype}, not numbers")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes != data_bytes:
        raise QmlrpError(f"{path}: weight {name} ({member}) declares shape {tuple(shape)} ({nbytes:,} bytes) "
                         f"but the file holds {data_bytes:,} bytes for it")
    return tuple(shape), dtype, nbytes


def _check_finite(value: np.ndarray, name: str, path: Path) -> None:
    """QmlrpError naming the weight when ``value`` holds NaN or infinite values."""
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        n_nan, n_inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
        raise QmlrpError(f"{path}: weight {name} has {n_nan} NaN and {n_inf} infinite values "
                         f"(of {value.size}): a diverged or damaged model")


def assign_weights(weights: Sequence[Any], names: Sequence[str], expected: Sequence[str],
                   arrays: Sequence[np.ndarray], path: str | Path) -> None:
    """Assign ``arrays`` (as float32) to the Keras ``weights`` of a freshly built model.

    ``names`` are the model's weight names and ``expected`` those in the file's header: they must
    agree one to one, and every array must have its weight's shape.

    Raises:
        QmlrpError: naming ``path`` and the first mismatch.
    """
    if list(names) != list(expected):
        raise QmlrpError(f"{path}: weights do not match the architecture in its header")
    for w, value in zip(weights, arrays):
        if tuple(w.shape) != value.shape:
            raise QmlrpError(f"{path}: weight {w.path} has shape {value.shape}, expected {tuple(w.shape)}")
        w.assign(value.astype(np.float32))
