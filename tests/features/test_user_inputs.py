"""featurize_files: every bad file or molecule is one failure, in input order; a crash costs one molecule."""

from __future__ import annotations

import os
import signal

import numpy as np

from qmlrp.features import user_inputs
from qmlrp.features.user_inputs import featurize_files


def block(numbers, coords) -> str:
    from qmlrp.data.xyz import PERIODIC_SYMBOLS

    rows = [f"{PERIODIC_SYMBOLS[z]} {x} {y} {w}" for z, (x, y, w) in zip(numbers, coords)]
    return "\n".join([str(len(numbers)), "", *rows]) + "\n"


def test_failures_in_input_order_and_crash_isolated(tmp_path, qm9_record, monkeypatch):
    methane, water = qm9_record(1), qm9_record(3)
    files = {name: tmp_path / f"{name}.xyz" for name in ("crash", "good", "broken", "overlap", "water")}
    files["crash"].write_text(block(methane.atomic_numbers, methane.coordinates))
    files["good"].write_text(block(methane.atomic_numbers, methane.coordinates))
    files["broken"].write_text("x\n")
    overlap = np.array(water.coordinates)
    overlap[1] = overlap[0]
    files["overlap"].write_text(block(water.atomic_numbers, overlap))
    files["water"].write_text(block(water.atomic_numbers, water.coordinates))
    real = user_inputs._featurize_one

    def crash_on_first(molecule):
        if molecule.name == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(molecule)

    monkeypatch.setattr(user_inputs, "_featurize_one", crash_on_first)
    done, failures = featurize_files(list(files.values()))
    assert [f.molecule.name for f in done] == ["good", "water"]
    assert all(f.warnings == [] and f.graph.n_atoms == f.molecule.atomic_numbers.size for f in done)
    assert [(f.name, f.reason) for f in failures] == [
        ("crash", "RDKit cannot perceive the structure (the perceiving process crashed (SIGSEGV))"),
        ("", "line 1: expected the number of atoms, got 'x'"),
        ("overlap", "atoms 1 and 2 are 0.000 Å apart (less than 0.5 Å: overlapping atoms)"),
    ]
