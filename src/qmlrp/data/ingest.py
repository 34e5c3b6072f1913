"""Stage ``ingest``: QM9 from qm9pack or the original XYZ files -> ``data/qm9.parquet``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from qmlrp.data import qm9pack_source
from qmlrp.data.record import Qm9Record
from qmlrp.data.schema import SCHEMA
from qmlrp.data.xyz import iter_qm9_source, parse_qm9_xyz
from qmlrp.errors import InputError, QmlrpError
from qmlrp.io import read_parquet, write_csv, write_json, write_parquet

QM9_SIZE = 130_831


@dataclass(frozen=True)
class IngestParams:
    """``params.yaml`` section ``ingest`` (parsed by :func:`qmlrp.params.parse_section`)."""

    source: str = "qm9pack"
    limit: int | None = 2000
    seed: int = 20171010
    on_error: Literal["fail", "skip"] = "fail"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive or null, got {self.limit}")


@dataclass(frozen=True)
class IngestResult:
    n_molecules: int
    n_rejected: int
    source: str


def sample_positions(n_total: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted positions of a seeded uniform sample of ``limit`` out of ``n_total`` (None: all)."""
    if limit is None or limit >= n_total:
        return None
    if limit <= 0:
        raise QmlrpError(f"ingest.limit must be positive or null, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n_total, size=limit, replace=False))


def records_to_table(records: Iterable[Qm9Record]) -> pa.Table:
    """Build the Parquet table (sorted by QM9 id) from parsed records."""
    rows = [r.to_row() for r in records]
    if not rows:
        return SCHEMA.empty_table()
    columns = {name: [row[name] for row in rows] for name in SCHEMA.names}
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    return table.sort_by("id")


def _collect(items: Iterable[Qm9Record | InputError], total: int | None) -> tuple[list[Qm9Record], list[InputError]]:
    good: list[Qm9Record] = []
    bad: list[InputError] = []
    for item in tqdm(items, total=total, desc="ingest", unit="mol", file=sys.stderr, mininterval=2.0,
                    disable=None):
        (bad if isinstance(item, InputError) else good).append(item)
    return good, bad


def _xyz_items(path: Path) -> Iterable[Qm9Record | InputError]:
    for name, text in iter_qm9_source(path):
        try:
            yield parse_qm9_xyz(text, name)
        except InputError as err:
            yield err


def _id_of_name(name: str) -> int | None:
    """QM9 index of a file name such as ``dsgdb9nsd_000042`` (None if the name has no index)."""
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _xyz_items_of(path: Path, wanted: set[int]) -> Iterable[Qm9Record | InputError]:
    """:func:`_xyz_items` restricted to the QM9 ids ``wanted``: a file whose name carries another
    index is skipped unparsed; one without an index in its name is parsed and kept if its id is wanted."""
    for name, text in iter_qm9_source(path):
        index = _id_of_name(name)
        if index is not None and index not in wanted:
            continue
        try:
            record = parse_qm9_xyz(text, name)
        except InputError as err:
            yield err
            continue
        if record.id in wanted:
            yield record


def ingest(source: str, output: str | Path, rejects: str | Path, metrics: str | Path,
           limit: int | None = None, seed: int = IngestParams.seed,
           on_error: Literal["fail", "skip"] = IngestParams.on_error,
           ids: Iterable[int] | None = None) -> IngestResult:
    """Read QM9 and write the table.

    Args:
        source: ``"qm9pack"``, or a path to ``dsgdb9nsd.xyz.tar.bz2``, a folder of its XYZ files, or one file.
        limit: keep a seeded uniform sample of this many molecules (None: all). The stage's
            values come from :class:`IngestParams`, whose defaults are the only ones stated.
        on_error: ``"fail"`` stops with a one-line error naming the first malformed record;
            ``"skip"`` leaves malformed records out. Either way all are listed in ``rejects``.
        ids: read and parse only the molecules with these QM9 ids (before ``limit``); an id the
            source does not hold is a QmlrpError naming it.
    """
    if on_error not in ("fail", "skip"):
        raise QmlrpError(f"ingest.on_error must be 'fail' or 'skip', got {on_error!r}")
    wanted = None if ids is None else {int(i) for i in ids}
    if source == "qm9pack":
        frame = qm9pack_source.read_frame()
        if wanted is not None:
            frame = frame[frame["Index"].isin(wanted)]
        positions = sample_positions(len(frame), limit, seed)
        if positions is not None:
            frame = frame.iloc[positions]
        good, bad = _collect(qm9pack_source.iter_records(frame), len(frame))
    else:
        if not Path(source).exists():
            raise InputError(str(source), "no such file or folder")
        items = _xyz_items(Path(source)) if wanted is None else _xyz_items_of(Path(source), wanted)
        good, bad = _collect(items, None)
        positions = sample_positions(len(good), limit, seed)
        if positions is not None:
            good = [good[p] for p in positions]
    write_csv(pd.DataFrame({"record": [e.where for e in bad], "reason": [e.reason for e in bad]}), rejects)
    if bad and on_error == "fail":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise QmlrpError(f"{bad[0]}{more}; all malformed records are listed in {rejects}")
    ids = [r.id for r in good]
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids).value_counts().index[0]
        raise QmlrpError(f"{source}: QM9 index {dup} appears more than once")
    if wanted is not None and limit is None:
        rejected = {_id_of_name(e.where) for e in bad}
        missing = sorted(wanted - {r.id for r in good} - rejected)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise QmlrpError(f"{source}: no molecule with QM9 id {missing[0]}{more}")
    write_parquet(records_to_table(good), output)
    result = IngestResult(n_molecules=len(good), n_rejected=len(bad), source=source)
    write_json({"n_molecules": result.n_molecules, "n_rejected": result.n_rejected}, metrics)
    return result


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read the ingested table (or some columns of it) as a DataFrame sorted by id."""
    return read_parquet(path, columns, hint="run `dvc repro ingest`").to_pandas()
