"""Is a molecule inside the training domain? Counts and bond lengths against QM9's own ranges.

The ranges (:data:`RANGES_FILE`) are derived from the featurized QM9 by :func:`derive_ranges`
(``python -m qmlrp.features.domain data/features``, on all 130,831 molecules): the largest
heavy-atom count and the largest count of each element in one molecule, and per bond kind
(element pair and bond order, e.g. ``C-C single``) the range holding all but the shortest and
longest 0.01 % of QM9's bonds of that kind (:data:`BOND_QUANTILES`; the extreme tails are strained
cages, e.g. C-C single bonds up to 1.77 Å, which would hide a 10 % stretched bond). A molecule
outside any range gets one warning each from :func:`domain_warnings`; it is still predicted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.features.graph import MolecularGraph
from qmlrp.features.layout import ELEMENTS

RANGES_FILE = Path(__file__).with_name("qm9_ranges.json")
BOND_ORDERS: tuple[str, ...] = ("single", "double", "triple", "aromatic")
BOND_QUANTILES: tuple[float, float] = (1e-4, 1 - 1e-4)
"""Bond-length range per kind: these quantiles of QM9's bonds of that kind."""


def _elements(atom_features: np.ndarray) -> np.ndarray:
    return np.argmax(atom_features[:, : len(ELEMENTS)], axis=1)


def _bond_kinds(elements: np.ndarray, bonds: np.ndarray, bond_types: np.ndarray) -> list[str]:
    """``"C-O double"`` for each bond (element symbols in the order H, C, N, O, F)."""
    kinds = []
    for (i, j), t in zip(bonds, bond_types):
        a, b = sorted((int(elements[i]), int(elements[j])))
        kinds.append(f"{ELEMENTS[a]}-{ELEMENTS[b]} {BOND_ORDERS[int(t)]}")
    return kinds


def _graph_facts(atom_features: np.ndarray, coordinates: np.ndarray, bonds: np.ndarray,
                 bond_types: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(element counts (5,), bond kinds, bond lengths) of one molecule."""
    elements = _elements(atom_features)
    counts = np.bincount(elements, minlength=len(ELEMENTS))
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    xyz = np.asarray(coordinates, dtype=np.float64)
    lengths = np.linalg.norm(xyz[bonds[:, 0]] - xyz[bonds[:, 1]], axis=1)
    return counts, _bond_kinds(elements, bonds, bond_types), lengths


def derive_ranges(molecules: Iterator[MolecularGraph]) -> dict[str, Any]:
    """The domain ranges of a set of featurized molecules (see the module docstring)."""
    max_counts = np.zeros(len(ELEMENTS), dtype=np.int64)
    max_heavy = 0
    bonds: dict[str, list[float]] = {}
    n = 0
    for g in molecules:
        counts, kinds, lengths = _graph_facts(g.atom_features, g.coordinates, g.bonds, g.bond_types)
        max_counts = np.maximum(max_counts, counts)
        max_heavy = max(max_heavy, int(counts[1:].sum()))
        for kind, length in zip(kinds, lengths):
            bonds.setdefault(kind, []).append(float(length))
        n += 1
    ranges = {}
    for kind, values in sorted(bonds.items()):
        low, high = np.quantile(np.asarray(values), BOND_QUANTILES)
        ranges[kind] = [round(float(low), 4), round(float(high), 4)]
    return {
        "n_molecules": n,
        "bond_quantiles": list(BOND_QUANTILES),
        "max_heavy_atoms": max_heavy,
        "max_element_counts": {e: int(c) for e, c in zip(ELEMENTS, max_counts)},
        "bond_length_range": ranges,
    }


@lru_cache(maxsize=1)
def qm9_ranges() -> dict[str, Any]:
    """The ranges of all of QM9 shipped with the package."""
    return json.loads(RANGES_FILE.read_text())


def domain_warnings(graph: MolecularGraph, ranges: dict[str, Any] | None = None) -> list[str]:
    """One line per way ``graph`` lies outside the training domain (empty list: inside)."""
    ranges = ranges or qm9_ranges()
    counts, kinds, lengths = _graph_facts(graph.atom_features, graph.coordinates, graph.bonds, graph.bond_types)
    out = []
    heavy = int(counts[1:].sum())
    if heavy > ranges["max_heavy_atoms"]:
        out.append(f"{heavy} heavy atoms, QM9 has at most {ranges['max_heavy_atoms']}")
    for element, count in zip(ELEMENTS, counts):
        limit = ranges["max_element_counts"][element]
        if count > limit:
            out.append(f"{count} {element} atoms, QM9 has at most {limit}")
    outside: dict[str, list[float]] = {}
    for kind, length in zip(kinds, lengths):
        span = ranges["bond_length_range"].get(kind)
        if span is None:
            out.append(f"a {kind} bond, which QM9 does not have")
        elif not span[0] <= length <= span[1]:
            outside.setdefault(kind, []).append(float(length))
    for kind, values in outside.items():
        span = ranges["bond_length_range"][kind]
        shown = ", ".join(f"{v:.3f}" for v in values[:3]) + (", ..." if len(values) > 3 else "")
        out.append(f"{kind} bond length {shown} Å outside QM9's {span[0]:.3f}-{span[1]:.3f} Å")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m qmlrp.features.domain FEATURES_DIR [OUT.json]``: derive and write the ranges."""
    from qmlrp.features.store import FeatureStore

    args = sys.argv[1:] if argv is None else argv
    store = FeatureStore.open(args[0])
    ranges = derive_ranges(store.graph(k) for k in range(len(store)))
    out = Path(args[1]) if len(args) > 1 else RANGES_FILE
    out.write_text(json.dumps(ranges, indent=1) + "\n")
    print(f"{out}: ranges of {ranges['n_molecules']} molecules")


if __name__ == "__main__":
    main()
