"""Which molecules get labelled: a seeded uniform sample, size cap optional."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.errors import InputError
from qmlrp.labels.selection import load_molecules, molecule_tasks, select_molecules
from tests.labels.molecules import molecule_table


def sized_table(n: int = 3000, seed: int = 7) -> pd.DataFrame:
    """``n`` rows with QM9-like sizes 3..29 atoms (geometry irrelevant here)."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(np.round(rng.normal(18, 3, size=n)), 3, 29).astype(int)
    return pd.DataFrame({"id": np.arange(1, n + 1) * 3, "smiles": "C", "n_atoms": sizes,
                         "atomic_numbers": [[6] * k for k in sizes],
                         "coordinates": [[0.0] * (3 * k) for k in sizes]})


def test_known_order_for_seed_zero() -> None:
    # the order is numpy's default_rng(0) permutation of the id-sorted rows: a fixed answer
    table = molecule_table(10).sample(frac=1.0, random_state=3)
    ids = list(select_molecules(table, 5, seed=0)["id"])
    expected = [int(i) + 1 for i in np.random.default_rng(0).permutation(10)[:5]]
    assert ids == expected == [5, 7, 3, 8, 4]


def test_deterministic_extends_and_ignores_row_order() -> None:
    table = molecule_table(30)
    shuffled = table.sample(frac=1.0, random_state=3)
    a = select_molecules(shuffled, 10, seed=5)
    assert list(a["id"]) == list(select_molecules(table, 10, seed=5)["id"])
    more = select_molecules(shuffled, 15, seed=5)
    assert list(more["id"][:10]) == list(a["id"]), "raising count extends the selection"
    assert len(select_molecules(table, None, seed=5)) == 30
    assert list(select_molecules(table, 10, seed=6)["id"]) != list(a["id"])


def test_uniform_over_sizes_unless_capped() -> None:
    table = sized_table()
    sample = select_molecules(table, 600, seed=0)
    # all sizes, not only small molecules: the sample's size distribution follows the table's
    assert sample["n_atoms"].max() >= 26 and sample["n_atoms"].min() <= 11
    assert abs(sample["n_atoms"].mean() - table["n_atoms"].mean()) < 0.4
    big = (table["n_atoms"] > 20).mean()
    assert abs((sample["n_atoms"] > 20).mean() - big) < 0.06
    capped = select_molecules(table, 50, seed=0, max_atoms=12)
    assert (table["n_atoms"] <= 12).sum() > 50
    assert len(capped) == 50 and capped["n_atoms"].max() <= 12


def test_tasks_are_plain_python() -> None:
    (task,) = list(molecule_tasks(molecule_table(1)))
    assert task["id"] == 1 and task["atomic_numbers"] == [8, 1, 1]
    assert all(type(c) is float for c in task["coordinates"]) and len(task["coordinates"]) == 9


def test_bad_tables_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "qm9.parquet"
    with pytest.raises(InputError, match="input table not found"):
        load_molecules(path)
    path.write_bytes(b"PAR1 truncated")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_molecules(path)
    pd.DataFrame({"id": [1], "smiles": ["C"]}).to_parquet(path)
    with pytest.raises(InputError, match="missing columns"):
        load_molecules(path)
    bad = molecule_table(3)
    bad.at[1, "coordinates"] = np.zeros(4)
    bad.to_parquet(path)
    with pytest.raises(InputError, match=r"coordinates length != 3\*n_atoms for ids \[2\]"):
        load_molecules(path)
    pd.concat([molecule_table(2), molecule_table(1)]).to_parquet(path)
    with pytest.raises(InputError, match=r"duplicate ids \[1\]"):
        load_molecules(path)
