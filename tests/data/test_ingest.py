"""Ingest: qm9pack and the original XYZ format give identical rows; malformed input is named."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.data.ingest import ingest, sample_positions
from qmlrp.data.schema import COLUMNS, HARTREE_TO_EV, SOURCE_ONLY_COLUMNS
from qmlrp.data.xyz import parse_qm9_xyz, read_xyz
from qmlrp.errors import InputError, QmlrpError

FIXTURES = Path(__file__).parent / "fixtures"
INDICES = [1, 3, 67, 214, 271, 2720]


def qm9_text(rec, mathematica_exponents: bool = False) -> str:
    """The record in the original dsgdb9nsd XYZ layout (tabs; optionally '*^' exponents)."""
    def num(x: float) -> str:
        text = repr(float(x))
        if mathematica_exponents and abs(x) > 0:
            mantissa, exponent = f"{x:.10e}".split("e")
            text = f"{mantissa}*^{int(exponent)}"
        return text

    header = "\t".join(["gdb", str(rec.id), *(num(v) for v in rec.scalars.values())])
    lines = [str(len(rec.atomic_numbers)), header]
    symbols = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    for z, xyz, q in zip(rec.atomic_numbers, rec.coordinates, rec.mulliken_charges):
        lines.append("\t".join([symbols[int(z)], *(num(v) for v in xyz), num(q)]))
    lines.append("\t".join(num(v) for v in rec.frequencies_cm1))
    lines.append(f"{rec.smiles}\t{rec.smiles}")
    lines.append(f"{rec.inchi}\t{rec.inchi}")
    return "\n".join(lines) + "\n"


def common_columns() -> list[str]:
    skip = set(SOURCE_ONLY_COLUMNS["qm9pack"]) | set(SOURCE_ONLY_COLUMNS["xyz"])
    return [c for c in COLUMNS if c not in skip]


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.id.tolist() == b.id.tolist()
    for column in common_columns():
        for x, y in zip(a[column], b[column]):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=column)
            else:
                assert x == y or (pd.isna(x) and pd.isna(y)), column


def test_verbatim_methane_file_matches_qm9pack(tmp_path, qm9_record):
    from qmlrp.data.ingest import records_to_table

    parsed = parse_qm9_xyz((FIXTURES / "dsgdb9nsd_000001.xyz").read_text(), "dsgdb9nsd_000001")
    from_xyz = records_to_table([parsed]).to_pandas()
    from_pack = records_to_table([qm9_record(1)]).to_pandas()
    assert_same_rows(from_xyz, from_pack)
    assert from_xyz.smiles_relaxed[0] == "C" and pd.isna(from_xyz.alpha_xx[0]) and from_pack.alpha_xx[0] == 13.211
    assert from_pack.zpve_ev[0] == pytest.approx(0.044749 * HARTREE_TO_EV)
    assert from_pack.alpha_bohr3[0] == 13.21


@pytest.mark.parametrize("container", ["folder", "tar.bz2"])
def test_folder_and_archive_give_qm9pack_rows(tmp_path, qm9_record, container):
    folder = tmp_path / "xyz"
    folder.mkdir()
    for k, index in enumerate(INDICES):
        rec = qm9_record(index)
        (folder / f"{rec.name}.xyz").write_text(qm9_text(rec, mathematica_exponents=bool(k % 2)))
    source = folder
    if container == "tar.bz2":
        source = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
        with tarfile.open(source, "w:bz2") as tar:
            for file in sorted(folder.iterdir()):
                tar.add(file, arcname=file.name)
    ingest(str(source), tmp_path / "xyz.parquet", tmp_path / "r1.csv", tmp_path / "m1.json")
    xyz = pd.read_parquet(tmp_path / "xyz.parquet")
    from qmlrp.data.ingest import records_to_table

    pack = records_to_table([qm9_record(i) for i in INDICES]).to_pandas()
    assert_same_rows(xyz, pack)


def test_qm9pack_subset_is_seeded_and_sorted(tmp_path):
    ingest("qm9pack", tmp_path / "a.parquet", tmp_path / "r.csv", tmp_path / "m.json", limit=50, seed=7)
    a = pd.read_parquet(tmp_path / "a.parquet")
    ingest("qm9pack", tmp_path / "b.parquet", tmp_path / "r.csv", tmp_path / "m.json", limit=50, seed=7)
    b = pd.read_parquet(tmp_path / "b.parquet")
    assert a.id.tolist() == b.id.tolist() and len(a) == 50 and a.id.is_monotonic_increasing
    assert list(a.columns) == list(COLUMNS)
    assert sample_positions(10, None, 0) is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: "\n".join(t.splitlines()[:4]), "lines, expected"),
        (lambda t: t.replace("\t 1.0858041578", "\t1.08x58", 1), "line 3: bad number"),
        (lambda t: t.replace("H\t 0.002150416", "Cl\t 0.002150416", 1), "line 4: element 'Cl'"),
        (lambda t: t.replace("gdb 1\t", "gdb 1\t1.0\t", 1), "line 2: expected"),
    ],
)
def test_malformed_xyz_names_file_and_reason(tmp_path, mutate, message):
    text = mutate((FIXTURES / "dsgdb9nsd_000001.xyz").read_text())
    with pytest.raises(InputError) as err:
        parse_qm9_xyz(text, "dsgdb9nsd_000001")
    assert str(err.value).startswith("dsgdb9nsd_000001: ") and message in str(err.value)
    # in a folder: the stage stops with one line naming the file, and lists it in the rejects file
    folder = tmp_path / "xyz"
    folder.mkdir()
    (folder / "dsgdb9nsd_000001.xyz").write_text(text)
    (folder / "dsgdb9nsd_000002.xyz").write_text((FIXTURES / "dsgdb9nsd_000001.xyz").read_text().replace("gdb 1", "gdb 2"))
    with pytest.raises(QmlrpError, match="^dsgdb9nsd_000001: .*listed in"):
        ingest(str(folder), tmp_path / "t.parquet", tmp_path / "rejects.csv", tmp_path / "m.json")
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert rejects.record.tolist() == ["dsgdb9nsd_000001"]
    result = ingest(str(folder), tmp_path / "t.parquet", tmp_path / "rejects.csv", tmp_path / "m.json", on_error="skip")
    assert (result.n_molecules, result.n_rejected) == (1, 1)


def test_read_plain_multi_xyz(tmp_path):
    path = tmp_path / "two.xyz"
    path.write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n1\nlone\nC 0 0 0\n")
    records = read_xyz(path)
    assert [r.name for r in records] == ["two#1", "two#2"]
    assert records[0].atomic_numbers.tolist() == [8, 1, 1] and records[0].smiles is None
    path.write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\n")
    with pytest.raises(InputError, match="two.xyz: line 1: 3 atoms announced but the file ends early"):
        read_xyz(path)


def test_qm9pack_is_parsed_once_per_session(tmp_path, qm9pack_parsed_once, qm9_record):
    """Small samples slice the session's frame instead of re-reading 130,831 molecules each time."""
    qm9_record(1)
    ingest("qm9pack", tmp_path / "a.parquet", tmp_path / "r.csv", tmp_path / "m.json", limit=5, seed=1)
    ingest("qm9pack", tmp_path / "b.parquet", tmp_path / "r.csv", tmp_path / "m.json", limit=7, seed=2)
    assert qm9pack_parsed_once.parses == 1
    assert len(qm9pack_parsed_once.frame) == 130_831


def test_non_utf8_file_is_one_rejected_record(tmp_path):
    """A byte that is not UTF-8 in one file used to stop the stage with a UnicodeDecodeError traceback."""
    folder = tmp_path / "xyz"
    folder.mkdir()
    text = (FIXTURES / "dsgdb9nsd_000001.xyz").read_text()
    (folder / "dsgdb9nsd_000001.xyz").write_bytes(text.replace("H\t 0.002150416", "\xc7\t 0.002150416", 1).encode("latin-1"))
    (folder / "dsgdb9nsd_000002.xyz").write_text(text.replace("gdb 1", "gdb 2"))
    with pytest.raises(QmlrpError) as err:
        ingest(str(folder), tmp_path / "t.parquet", tmp_path / "rejects.csv", tmp_path / "m.json")
    assert str(err.value).startswith("dsgdb9nsd_000001: line 4: element '\ufffd' is not one of H, C, N, O, F")
    result = ingest(str(folder), tmp_path / "t.parquet", tmp_path / "rejects.csv", tmp_path / "m.json", on_error="skip")
    assert (result.n_molecules, result.n_rejected) == (1, 1)
