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


def test_one_unreadable_record_in_a_thousand_costs_only_itself(tmp_path):
    path = tmp_path / "many.xyz"
    blocks = [f"1\nmolecule {k}\n{'Xx' if k == 500 else 'C'} 0 0 {k}\n" for k in range(1, 1001)]
    path.write_text("".join(blocks))
    molecules, failures = read_molecules(path)
    assert len(molecules) == 999 and molecules[499].name == "many#501" and molecules[499].record == 501
    assert [f.line() for f in failures] == [f"error: {path} [many#500]: line 1500: unknown element symbol 'Xx'"]
    assert failures[0].record == 500


def test_a_broken_count_line_keeps_the_records_before_it(tmp_path):
    path = tmp_path / "cut.xyz"
    path.write_text("1\na\nC 0 0 0\n2\nb\nO 0 0 0\nC 0 0 x\nseven\nc\nN 0 0 0\n1\nd\nC 0 0 0\n")
    molecules, failures = read_molecules(path)
    assert [m.name for m in molecules] == ["cut#1"]
    assert [f.line() for f in failures] == [
        f"error: {path} [cut#2]: line 7: bad coordinate",
        f"error: {path} [cut#3]: line 8: expected the number of atoms, got 'seven' (the rest of the file is not read)",
    ]
