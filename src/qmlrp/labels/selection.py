"""Which molecules to label: a seeded uniform sample of the QM9 table, size cap optional.

The table's rows are ordered by id and permuted with ``numpy.random.default_rng(seed)``; the
first ``count`` of that permutation are the selection. The sample is uniform over the whole table
(all sizes, 3 to 29 atoms in QM9) unless ``max_atoms`` restricts it, and raising ``count`` extends
an earlier selection instead of replacing it, so a growing label set stays one uniform sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from qmlrp.errors import InputError

__all__ = ["INPUT_COLUMNS", "load_molecules", "select_molecules", "molecule_tasks"]

INPUT_COLUMNS = ("id", "smiles", "n_atoms", "atomic_numbers", "coordinates")


def load_molecules(path: str | Path) -> pd.DataFrame:
    """Read the columns of a QM9 table that β labelling needs (see :data:`INPUT_COLUMNS`).

    Raises:
        InputError: the file is missing, unreadable, lacks a column, or a row's coordinates
            (Å, flattened) do not have ``3 * n_atoms`` entries.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "input table not found (run the ingest stage first)")
    try:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except Exception as err:
        raise InputError(str(path), f"not a readable Parquet file: {err}") from None
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        raise InputError(str(path), f"missing columns {missing}")
    try:
        table = pd.read_parquet(path, columns=list(INPUT_COLUMNS))
    except Exception as err:
        raise InputError(str(path), f"not a readable Parquet file: {err}") from None
    bad = table["coordinates"].map(len) != 3 * table["n_atoms"]
    if bad.any():
        raise InputError(str(path), "coordinates length != 3*n_atoms for ids "
                                    f"{table.loc[bad, 'id'].head(5).tolist()}")
    if table["id"].duplicated().any():
        raise InputError(str(path), "duplicate ids "
                                    f"{table.loc[table['id'].duplicated(), 'id'].head(5).tolist()}")
    return table


def select_molecules(table: pd.DataFrame, count: int | None, seed: int,
                     max_atoms: int | None = None) -> pd.DataFrame:
    """The first ``count`` molecules (all when None) of a seeded random order of ``table``.

    Rows with ``n_atoms > max_atoms`` are left out first when a cap is given. The result does
    not depend on the row order of ``table``.
    """
    eligible = table
    if max_atoms is not None:
        eligible = eligible[eligible["n_atoms"] <= max_atoms]
    eligible = eligible.sort_values("id", kind="stable").reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(eligible))
    if count is not None:
        order = order[:count]
    return eligible.iloc[order].reset_index(drop=True)


def molecule_tasks(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """One plain, picklable task dict per row: id, smiles, n_atoms, Z list, coordinates (Å)."""
    for row in frame.itertuples(index=False):
        yield {
            "id": int(row.id),
            "smiles": str(row.smiles),
            "n_atoms": int(row.n_atoms),
            "atomic_numbers": [int(z) for z in row.atomic_numbers],
            "coordinates": [float(c) for c in row.coordinates],
        }
