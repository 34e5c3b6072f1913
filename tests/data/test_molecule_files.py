"""Reading user files for predict: each bad file or record is one Failure; good ones are read."""

from __future__ import annotations

from qmlrp.data.molecule_files import read_molecules


def test_folder_missing_and_odd_files(tmp_path):
    assert read_molecules(tmp_path)[1][0].line() == f"error: {tmp_path}: is a folder, expected an XYZ or SDF file"
    assert read_molecules(tmp_path / "nope.xyz")[1][0].reason == "no such file"
    odd = tmp_path / "odd.xyz"
    odd.write_text("1\n\n\u00b2 0 0 0\n", encoding="utf-8")
    molecules, failures = read_molecules(odd)
    assert molecules == [] and failures[0].line() == (
        f"error: {odd}: line 3: element field '\u00b2' is not an element symbol (non-ASCII characters)")
    binary = tmp_path / "bin.xyz"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert read_molecules(binary)[1][0].reason == "cannot read (UnicodeDecodeError)"


def test_two_blocks_are_two_molecules(tmp_path):
    path = tmp_path / "two.xyz"
    path.write_text("1\na\nC 0 0 0\n1\nb\nO 0 0 0\n")
    molecules, failures = read_molecules(path)
    assert failures == [] and [m.name for m in molecules] == ["two#1", "two#2"]
    assert [m.atomic_numbers.tolist() for m in molecules] == [[6], [8]]


def test_qm9_comment_with_blank_smiles_line(tmp_path):
    """A 'gdb' comment line makes the reader look for QM9's SMILES line; a blank one used to raise IndexError."""
    path = tmp_path / "gdb.xyz"
    path.write_text("1\ngdb 7 0 0 0\nC 0 0 0\n\n\n\n")
    molecules, failures = read_molecules(path)
    assert failures == [] and molecules[0].smiles is None and molecules[0].atomic_numbers.tolist() == [6]
