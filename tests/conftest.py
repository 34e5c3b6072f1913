"""Shared fixtures: QM9 molecules by index (from qm9pack), paths to shared/ material.

qm9pack's CSV files (130,831 molecules) are parsed at most once per test session: every
``read_frame()`` -- the fixtures here and each ``ingest("qm9pack", ...)`` of small samples --
gets the same frame (:func:`qm9pack_parsed_once`).
"""

from __future__ import annotations

import os
import sys

# In-process tests run Keras on TensorFlow (the float64-exact LRP tests and the explicit matrix oracles are
# written for it); processes the tests start get qmlrp's own default (JAX) unless a test sets KERAS_BACKEND.
# tests/models/test_backends.py compares the two backends; the engine's tests run in JAX processes.
if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras  # noqa: F401  -- loads here, on TensorFlow

    del os.environ["KERAS_BACKEND"]

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


class ReadOnce:
    """``qm9pack_source.read_frame`` that parses the default CSV files once and counts the parses."""

    def __init__(self, read: Callable[..., pd.DataFrame]) -> None:
        self.read = read
        self.frame: pd.DataFrame | None = None
        self.parses = 0

    def __call__(self, data_dir: Path | None = None) -> pd.DataFrame:
        if data_dir is not None:
            return self.read(data_dir)
        if self.frame is None:
            self.parses += 1
            self.frame = self.read()
        return self.frame


@pytest.fixture(scope="session", autouse=True)
def qm9pack_parsed_once() -> Iterator[ReadOnce]:
    """Patch ``read_frame`` for the session (ingest only slices the frame, never modifies it)."""
    from qmlrp.data import qm9pack_source

    once = ReadOnce(qm9pack_source.read_frame)
    patch = pytest.MonkeyPatch()
    patch.setattr(qm9pack_source, "read_frame", once)
    yield once
    patch.undo()


@pytest.fixture(scope="session")
def qm9pack_frame(qm9pack_parsed_once) -> pd.DataFrame:
    from qmlrp.data import qm9pack_source

    return qm9pack_source.read_frame().set_index("Index", drop=False)


@pytest.fixture(scope="session")
def qm9_record(qm9pack_frame):
    """Function: QM9 index -> parsed :class:`Qm9Record` (from qm9pack)."""
    from qmlrp.data.qm9pack_source import record_from_row

    return lambda index: record_from_row(qm9pack_frame.loc[index])


@pytest.fixture(scope="session")
def qm9_graph(qm9_record):
    """Function: QM9 index -> (record, MolecularGraph, RDKit mol)."""
    from qmlrp.features.graph import graph_from_mol
    from qmlrp.features.molecule import build_molecule

    def make(index: int):
        rec = qm9_record(index)
        mol, _ = build_molecule(rec.atomic_numbers, rec.coordinates, rec.smiles, rec.name)
        return rec, graph_from_mol(mol, rec.coordinates, rec.name), mol

    return make


def heavy_neighbours(mol, index: int) -> list[int]:
    return [n.GetIdx() for n in mol.GetAtomWithIdx(index).GetNeighbors() if n.GetAtomicNum() > 1]


def positions_of(numbers: np.ndarray, z: int) -> list[int]:
    return [int(k) for k in np.nonzero(np.asarray(numbers) == z)[0]]


# -- CI: every test runs ---------------------------------------------------------------------------
# ``python -m pytest`` deselects the ``integration`` (process-starting) and ``slow`` tests: the quick
# loop while editing. CI runs ``python -m pytest -m ""``: every test. Under CI (``QMLRP_CI=1``, set by
# ``.ci/run``) a deselected test, or a skipped one whose node id is not listed here with the reason it
# may skip there, fails the run.
SKIPS_ALLOWED_IN_CI: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    import os

    if os.environ.get("QMLRP_CI") != "1":
        return
    deselected = terminalreporter.stats.get("deselected", [])
    if deselected and not config.option.keyword:
        terminalreporter.write_line(f"CI: {len(deselected)} test(s) deselected (-m {config.option.markexpr!r}); "
                                    'CI runs every test: python -m pytest -m ""', red=True)
        terminalreporter._session.exitstatus = 1  # noqa: SLF001 - pytest has no public setter
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.nodeid not in SKIPS_ALLOWED_IN_CI]
    if skipped:
        terminalreporter.write_line(f"CI: {len(skipped)} test(s) skipped that must run in CI:", red=True)
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.write_line(f"  {report.nodeid}: {reason}", red=True)
        terminalreporter._session.exitstatus = 1  # noqa: SLF001 - pytest has no public setter
