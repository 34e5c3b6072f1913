"""Corrupt inputs give one line naming the file and the reason, never a traceback: truncated or
empty Parquet files (featurize, split, the feature store), odd element fields in XYZ files."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qmlrp.data.split import read_folds, split
from qmlrp.data.xyz import read_xyz
from qmlrp.errors import InputError, QmlrpError
from qmlrp.features.featurize import featurize_table
from qmlrp.features.store import FeatureStore, write_store
from qmlrp.io import read_parquet


def truncated(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def good_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": np.arange(100), "fold": np.arange(100) % 10}), path)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_read_parquet_names_file_and_reason(good_parquet, tmp_path):
    assert read_parquet(good_parquet).num_rows == 100
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(QmlrpError) as err:
        read_parquet(empty, hint="run `dvc repro split`")
    assert one_line(err) == f"{empty}: empty file, not Parquet (run `dvc repro split`)"
    truncated(good_parquet)
    with pytest.raises(QmlrpError) as err:
        read_parquet(good_parquet)
    assert one_line(err).startswith(f"{good_parquet}: unreadable Parquet (truncated or corrupt?")
    with pytest.raises(QmlrpError, match="not found"):
        read_parquet(tmp_path / "missing.parquet")


def test_read_parquet_missing_column(good_parquet):
    with pytest.raises(QmlrpError) as err:
        read_parquet(good_parquet, ["id", "nope"])
    assert one_line(err).startswith(f"{good_parquet}: unreadable Parquet")


def test_split_and_folds_on_truncated_files(tmp_path, good_parquet):
    features = tmp_path / "features"
    features.mkdir()
    shutil.copy(good_parquet, features / "molecules.parquet")
    truncated(features / "molecules.parquet")
    with pytest.raises(QmlrpError) as err:
        split(features, tmp_path / "folds.parquet", tmp_path / "m.json")
    assert "molecules.parquet: unreadable Parquet" in one_line(err) and "dvc repro featurize" in str(err.value)
    truncated(good_parquet, 0.9)
    with pytest.raises(QmlrpError, match="unreadable Parquet"):
        read_folds(good_parquet)


def test_featurize_on_empty_table(tmp_path):
    table = tmp_path / "qm9.parquet"
    table.write_bytes(b"")
    with pytest.raises(QmlrpError) as err:
        featurize_table(table, tmp_path / "f", tmp_path / "fail.csv", tmp_path / "m.json", workers=1,
                        scratch_root=tmp_path / "scratch")
    assert one_line(err) == f"{table}: empty file, not Parquet (run `dvc repro ingest`)"


@pytest.mark.parametrize("name", ["molecules.parquet", "atoms.parquet", "bonds.parquet"])
def test_feature_store_open_on_truncated_file(tmp_path, qm9_graph, name):
    graphs = [qm9_graph(k)[1] for k in (1, 3, 214)]
    write_store(tmp_path / "features", np.array([1, 3, 214]), graphs, ["template"] * 3)
    assert len(FeatureStore.open(tmp_path / "features")) == 3
    truncated(tmp_path / "features" / name, 0.7)
    with pytest.raises(QmlrpError) as err:
        FeatureStore.open(tmp_path / "features")
    assert f"{name}: unreadable Parquet" in one_line(err) and "dvc pull" in str(err.value)


def test_feature_store_with_rows_missing(tmp_path, qm9_graph):
    graphs = [qm9_graph(k)[1] for k in (1, 3)]
    write_store(tmp_path / "a", np.array([1, 3]), graphs, ["template"] * 2)
    write_store(tmp_path / "b", np.array([1]), graphs[:1], ["template"])
    shutil.copy(tmp_path / "b" / "atoms.parquet", tmp_path / "a" / "atoms.parquet")
    with pytest.raises(QmlrpError, match="inconsistent store \\(8 atoms and 6 bonds listed, 5 and 6 stored"):
        FeatureStore.open(tmp_path / "a")


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("\u00b2", "element field '\u00b2' is not an element symbol (non-ASCII characters)"),  # int('²') raised
        ("\u00c7", "element field '\u00c7' is not an element symbol (non-ASCII characters)"),
        ("9" * 30, "atomic number '999999999999...' outside 1..118"),  # overflowed the int64 array
        ("0", "atomic number '0' outside 1..118"),
        ("Xx", "unknown element symbol 'Xx'"),
    ],
)
def test_odd_element_fields_in_xyz(tmp_path, field, reason):
    path = tmp_path / "odd.xyz"
    path.write_text(f"2\n\nC 0 0 0\n{field} 1.1 0 0\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_xyz(path)
    assert one_line(err) == f"{path}: line 4: {reason}"


def test_numeric_element_fields_still_work(tmp_path):
    path = tmp_path / "num.xyz"
    path.write_text("2\n\n6 0 0 0\n8 1.13 0 0\n")
    assert read_xyz(path)[0].atomic_numbers.tolist() == [6, 8]
