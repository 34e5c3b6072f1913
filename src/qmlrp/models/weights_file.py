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


def read_weights_file(path: str | Path, fmt: str, kind: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """``(header, arrays)`` of a file written by :func:`write_weights_file` with ``header["format"] == fmt``.

    Raises:
        QmlrpError: one line naming ``path`` and saying it is a corrupt or foreign ``kind`` file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            arrays = [data[f"w{k:03d}"] for k in range(len(header["names"]))]
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, json.JSONDecodeError,
            UnicodeDecodeError) as err:
        raise QmlrpError(f"{path}: corrupt {kind} file ({err.__class__.__name__}: {str(err)[:200]})") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        found = header.get("format") if isinstance(header, dict) else None
        raise QmlrpError(f"{path}: not a qmlrp {kind} file (format {found!r})")
    return header, arrays


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
