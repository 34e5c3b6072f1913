"""XYZ files: the original QM9 format (``dsgdb9nsd_*.xyz``) and plain (multi-molecule) XYZ.

The QM9 format (Ramakrishnan et al., Sci. Data 1, 140022 (2014)) is::

    n
    gdb <index> A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv
    <element> x y z mulliken          (n lines, Angstrom, e)
    <harmonic frequencies, cm^-1>
    <GDB-17 SMILES> <B3LYP relaxed SMILES>
    <GDB-17 InChI>  <B3LYP relaxed InChI>

Numbers may use Mathematica's ``*^`` exponent notation (``1.2*^-6``).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qmlrp.data.record import ELEMENT_NUMBERS, Qm9Record
from qmlrp.data.schema import SCALAR_COLUMNS
from qmlrp.errors import InputError

PERIODIC_SYMBOLS: tuple[str, ...] = (
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
    "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe",
)
SYMBOL_TO_NUMBER: dict[str, int] = {s.upper(): z for z, s in enumerate(PERIODIC_SYMBOLS) if z > 0}


@dataclass
class XyzRecord:
    """A molecule from a plain XYZ block.

    Attributes:
        atomic_numbers: (n,) int.
        coordinates: (n, 3) float, Angstrom.
        smiles: a SMILES if the file carried one (QM9 format), else None.
        record: position of the block in its file (1-based).
    """

    name: str
    atomic_numbers: np.ndarray
    coordinates: np.ndarray
    smiles: str | None = None
    record: int = 1


def qm9_float(token: str) -> float:
    """Parse a QM9 number, accepting Mathematica's ``*^`` exponent notation."""
    return float(token.replace("*^", "e"))


MAX_ATOMIC_NUMBER = 118


def _atom_number(symbol: str, where: str) -> int:
    """Atomic number of an element field: a symbol (any case) or an ASCII atomic number 1..118."""
    field = symbol.strip()
    shown = repr(field[:12] + ("..." if len(field) > 12 else ""))
    if not field.isascii():
        raise InputError(where, f"element field {shown} is not an element symbol (non-ASCII characters)")
    number = SYMBOL_TO_NUMBER.get(field.upper())
    if number is not None:
        return number
    if field.isdigit():
        if len(field) > 3 or not 1 <= int(field) <= MAX_ATOMIC_NUMBER:
            raise InputError(where, f"atomic number {shown} outside 1..{MAX_ATOMIC_NUMBER}")
        return int(field)
    raise InputError(where, f"unknown element symbol {shown}")


def parse_qm9_xyz(text: str, name: str) -> Qm9Record:
    """Parse one file in the original QM9 format; raise InputError naming ``name`` and the line."""
    lines = text.splitlines()
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise InputError(name, "line 1: expected the number of atoms") from None
    if len(lines) < n + 5:
        raise InputError(name, f"{len(lines)} lines, expected {n + 5} for {n} atoms in QM9 format")
    header = lines[1].split()
    if len(header) != 2 + len(SCALAR_COLUMNS) or header[0] != "gdb":
        raise InputError(name, f"line 2: expected 'gdb <index>' and {len(SCALAR_COLUMNS)} properties")
    try:
        index = int(header[1])
        scalars = {col: qm9_float(tok) for col, tok in zip(SCALAR_COLUMNS, header[2:])}
    except ValueError as err:
        raise InputError(name, f"line 2: bad number ({err})") from None
    numbers = np.zeros(n, dtype=np.int8)
    coords = np.zeros((n, 3))
    charges = np.zeros(n)
    for k in range(n):
        fields = lines[2 + k].split()
        if len(fields) != 5:
            raise InputError(name, f"line {3 + k}: expected 'element x y z charge', got {len(fields)} fields")
        symbol = fields[0]
        if symbol not in ELEMENT_NUMBERS:
            raise InputError(name, f"line {3 + k}: element {symbol!r} is not one of H, C, N, O, F")
        numbers[k] = ELEMENT_NUMBERS[symbol]
        try:
            coords[k] = [qm9_float(t) for t in fields[1:4]]
            charges[k] = qm9_float(fields[4])
        except ValueError as err:
            raise InputError(name, f"line {3 + k}: bad number ({err})") from None
    try:
        freqs = np.array([qm9_float(t) for t in lines[2 + n].split()])
    except ValueError as err:
        raise InputError(name, f"line {3 + n}: bad frequency ({err})") from None
    smiles = lines[3 + n].split()
    inchi = lines[4 + n].split()
    if len(smiles) != 2 or len(inchi) != 2:
        raise InputError(name, f"lines {4 + n}-{5 + n}: expected two SMILES and two InChI")
    record = Qm9Record(
        id=index, name=name, smiles=smiles[0], inchi=inchi[0], smiles_relaxed=smiles[1],
        inchi_relaxed=inchi[1], atomic_numbers=numbers, coordinates=coords, mulliken_charges=charges,
        frequencies_cm1=freqs, scalars=scalars,
    )
    record.validate()
    return record


def iter_qm9_source(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (name, text) for each QM9 XYZ file in a folder, a ``.tar.bz2``/``.tar`` archive, or one file.

    Bytes that are not UTF-8 become U+FFFD, so such a file is one malformed record (named by the parser),
    not the end of the stage."""
    path = Path(path)
    if path.is_dir():
        for file in sorted(path.glob("*.xyz")):
            yield file.stem, file.read_bytes().decode("utf-8", errors="replace")
    elif path.name.endswith((".tar.bz2", ".tbz2", ".tar", ".tar.gz")):
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    if member.isfile() and member.name.endswith(".xyz"):
                        handle = archive.extractfile(member)
                        assert handle is not None
                        yield Path(member.name).stem, handle.read().decode("utf-8", errors="replace")
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            raise InputError(str(path), f"unreadable archive ({err})") from None
    elif path.is_file():
        yield path.stem, path.read_bytes().decode("utf-8", errors="replace")
    else:
        raise InputError(str(path), "no such file or folder")


@dataclass
class BadRecord:
    """A block of an XYZ file that cannot be read: ``record`` its number in the file (1-based),
    ``name`` the name it would have had (``""`` when the file holds this block only: the file is
    named instead), ``reason`` with the line."""

    record: int
    name: str
    reason: str


def read_xyz_records(path: str | Path) -> tuple[list[XyzRecord], list[BadRecord]]:
    """Every molecule of a plain or QM9-format XYZ file (several blocks may follow each other) and
    the blocks that cannot be read, each costing only itself.

    Records are named ``<stem>#<k>`` by their position ``k`` in the file, bad ones included (just
    ``<stem>`` when the file holds one block). A bad atom line (unknown element, missing field, bad
    number) costs its block; a bad atom-count line or a block cut short leaves the reader no way to
    find the next block, so it reports the rest of the file as not read. Records are also numbered
    (:attr:`XyzRecord.record`).

    Raises:
        InputError: the file cannot be read or holds no molecule at all.
    """
    path = Path(path)
    where = str(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(where, f"cannot read ({err.__class__.__name__})") from None
    records: list[XyzRecord] = []
    bad: list[BadRecord] = []
    pos = 0
    block = 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1
            continue
        block += 1
        rest = " (the rest of the file is not read)" if block > 1 else ""
        try:
            n = int(lines[pos].split()[0])
        except ValueError:
            bad.append(BadRecord(block, "", f"line {pos + 1}: expected the number of atoms, got "
                                            f"{lines[pos].strip()[:30]!r}{rest}"))
            break
        if n <= 0:
            bad.append(BadRecord(block, "", f"line {pos + 1}: number of atoms must be positive{rest}"))
            break
        if pos + 2 + n > len(lines):
            bad.append(BadRecord(block, "", f"line {pos + 1}: {n} atoms announced but the file ends early"))
            break
        comment = lines[pos + 1]
        is_qm9 = comment.startswith("gdb ") and pos + n + 5 <= len(lines)
        end = pos + 2 + n + (3 if is_qm9 else 0)
        try:
            numbers, coords = _atom_block(lines[pos + 2: pos + 2 + n], pos + 3)
        except InputError as err:
            bad.append(BadRecord(block, "", f"{err.where}: {err.reason}"))
            pos = end
            continue
        smiles = None
        if is_qm9:
            tokens = lines[pos + 2 + n + 1].split()
            smiles = tokens[0] if tokens else None
        records.append(XyzRecord(name="", atomic_numbers=numbers, coordinates=coords, smiles=smiles, record=block))
        pos = end
    if not records and not bad:
        raise InputError(where, "no molecules found")
    single = block == 1
    for record in records:
        record.name = path.stem if single else f"{path.stem}#{record.record}"
    for reject in bad:
        reject.name = "" if single else f"{path.stem}#{reject.record}"
    return records, bad


def _atom_block(block: list[str], first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """(atomic numbers (n,), coordinates (n, 3)) of a block's atom lines, the first being line
    ``first_line`` of the file; InputError(``line N``, reason) for a bad line."""
    numbers = np.zeros(len(block), dtype=np.int64)
    coords = np.zeros((len(block), 3))
    for k, line in enumerate(block):
        fields = line.split()
        at = f"line {first_line + k}"
        if len(fields) < 4:
            raise InputError(at, "expected 'element x y z'")
        numbers[k] = _atom_number(fields[0], at)
        try:
            coords[k] = [qm9_float(t) for t in fields[1:4]]
        except ValueError:
            raise InputError(at, "bad coordinate") from None
    return numbers, coords


def read_xyz(path: str | Path) -> list[XyzRecord]:
    """Every molecule of a plain or QM9-format XYZ file, all or nothing (:func:`read_xyz_records`
    reads the good blocks of a file with bad ones).

    Raises InputError naming the file and line of the first malformed block.
    """
    records, bad = read_xyz_records(path)
    if bad:
        raise InputError(str(path), bad[0].reason)
    return records
