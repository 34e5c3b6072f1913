"""User molecule files (XYZ, SDF) -> Molecular Graphs, for ``qmlrp predict`` and ``qmlrp explain``.

Perception runs in a forked child (:func:`qmlrp.features.isolate.map_isolated`), so a crash inside
RDKit costs only the molecule it happened on; every bad file or molecule becomes one
:class:`~qmlrp.data.molecule_files.Failure`, reported in input order, and each good molecule
carries its training-domain warnings (:func:`qmlrp.features.domain.domain_warnings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qmlrp.data.molecule_files import Failure, MoleculeInput, read_molecules
from qmlrp.errors import InputError
from qmlrp.features.graph import MolecularGraph


@dataclass
class Featurized:
    """A molecule that passed perception: its graph and the ways it lies outside QM9's ranges."""

    molecule: MoleculeInput
    graph: MolecularGraph
    warnings: list[str]


def _featurize_one(molecule: MoleculeInput) -> tuple[MolecularGraph, list[str]]:
    from qmlrp.features.domain import domain_warnings
    from qmlrp.features.featurize import featurize_geometry

    graph = featurize_geometry(molecule.atomic_numbers, molecule.coordinates, molecule.smiles, molecule.name)
    return graph, domain_warnings(graph)


def featurize_files(paths: Sequence[str | Path], quiet: bool = True) -> tuple[list[Featurized], list[Failure]]:
    """Read and featurize every molecule of ``paths`` (in order) in a forked child, so that a crash
    inside RDKit costs only the molecule it happened on; failures are collected in input order
    (file, then record within the file), and a bad record costs only itself."""
    from qmlrp.features.isolate import Crashed, map_isolated

    molecules: list[MoleculeInput] = []
    failures: list[tuple[int, Failure]] = []  # (file position, failure): reported in input order
    position: list[int] = []
    for k, path in enumerate(paths):
        found, bad = read_molecules(path)
        failures.extend((k, f) for f in bad)
        molecules.extend(found)
        position.extend([k] * len(found))
    done: list[Featurized] = []
    results = map_isolated(_featurize_one, molecules, quiet=quiet)
    for k, molecule, result in zip(position, molecules, results):
        if isinstance(result, InputError):
            failures.append((k, Failure(molecule.file, molecule.name, result.reason, molecule.record)))
        elif isinstance(result, Crashed):
            reason = f"RDKit cannot perceive the structure ({result})"
            failures.append((k, Failure(molecule.file, molecule.name, reason, molecule.record)))
        elif isinstance(result, Exception):  # RDKit errors outside the featurizer's checks
            first = (str(result).splitlines() or [result.__class__.__name__])[0]
            failures.append((k, Failure(molecule.file, molecule.name, f"cannot featurize ({first})", molecule.record)))
        else:
            done.append(Featurized(molecule, result[0], result[1]))
    failures.sort(key=lambda item: (item[0], item[1].record))
    return done, [f for _, f in failures]
