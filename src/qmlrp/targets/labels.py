"""Labels of every target kind, aligned with a feature store's molecules (target units).

:func:`load_labels` hands the target to its label source (:data:`LABEL_SOURCES`, ``Target.source``): a table
column (scalar targets), the sorted padded harmonic frequencies or omega_1 (from ``frequencies_cm1``, checked
against 3N - 6), Crippen logP from the molecules, or the equivariant mu/beta_vec pair and the polarizability
tensor from the beta label folder (:mod:`qmlrp.targets.vectors`, :mod:`qmlrp.targets.tensors`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.io import read_parquet
from qmlrp.targets import Target
from qmlrp.targets.spectra import frequency_vector, is_linear, n_modes

if TYPE_CHECKING:
    from qmlrp.features.store import FeatureStore


def load_labels(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """Target values aligned with the store's molecules (target units), made by the target's label source
    (:data:`LABEL_SOURCES`, ``target.source``); ``table`` is the ingest table, or the beta label folder for the
    ``label_*`` sources.

    Scalar targets: (len(store),) float64 -- alpha, ZPVE, ... as before, and ``omega1`` (the highest
    harmonic frequency, cm^-1). Vector targets (``n_outputs`` > 1, the frequencies): (len(store),
    n_outputs) float64, each row the molecule's modes sorted in descending order (index 0 = omega_1)
    and NaN-padded (:func:`qmlrp.targets.spectra.frequency_vector`).

    Frequency lists are checked against the molecule: 3N - 6 modes, 3N - 5 if linear. A list of
    exactly twice that length is QM9's doubled record (two frequency sets in one record: 334 of
    130,831 molecules, 7 of the default 2,000 sample; the two sets differ, up to 484 cm^-1): such
    molecules get NaN labels (masked out of training and metrics) and one warning line on stderr.
    Any other count, or more modes than the head has outputs, is refused in one line. The
    ``beta_vector`` target: (len(store), 6) ``[mu, beta_vec]`` (a.u.) from the label folder ``table``.
    """
    if target.source not in LABEL_SOURCES:
        raise QmlrpError(f"target {target.name}: unknown label source {target.source!r}; "
                         f"choose one of {', '.join(LABEL_SOURCES)}")
    return LABEL_SOURCES[target.source](store, table, target)


def _column_labels(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """(len(store),) the table's ``target.column``, every featurized molecule present and finite."""
    frame = _table_rows(store, Path(table), target, [])
    values = frame[target.column].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise QmlrpError(f"{table}: non-finite {target.column} values")
    return values


def _mode_labels(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """The sorted, padded harmonic frequencies (or omega_1) of ``frequencies_cm1``, checked against 3N - 6."""
    return _frequency_targets(_table_rows(store, Path(table), target, ["atomic_numbers", "coordinates"]),
                              Path(table), target)


def _table_rows(store: FeatureStore, table: Path, target: Target, extra: list[str]) -> pd.DataFrame:
    """The table's rows of the store's molecules, in the store's order (``id``, the column, ``extra``)."""
    if not table.exists():
        raise QmlrpError(f"{table}: not found (run `dvc repro ingest` first)")
    frame = read_parquet(table, ["id", target.column, *extra], hint="run `dvc repro ingest`").to_pandas().set_index("id")
    missing = np.setdiff1d(store.ids, frame.index.to_numpy())
    if missing.size:
        raise QmlrpError(f"{table}: {missing.size} featurized molecules have no {target.column} (e.g. id {missing[0]})")
    return frame.reindex(store.ids)


def _crippen_labels(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """Crippen logP computed from the molecules (:mod:`qmlrp.targets.crippen`), NaN where RDKit cannot rebuild one."""
    from qmlrp.targets.crippen import crippen_data

    data = crippen_data(store, Path(table))
    values = np.full(len(store), np.nan)
    values[data.positions] = data.target
    return values


def _vector_labels(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """(len(store), 6) mu and beta_vec from the beta label folder ``table`` (:mod:`qmlrp.targets.vectors`)."""
    from qmlrp.targets.vectors import load_vector_targets

    return load_vector_targets(store, table)


def _tensor_labels(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """(len(store), 6) the polarizability tensor from the beta label folder ``table`` (:mod:`qmlrp.targets.tensors`)."""
    from qmlrp.targets.tensors import load_tensor_targets

    return load_tensor_targets(store, table)


LABEL_SOURCES: dict[str, Callable[[FeatureStore, str | Path, Target], np.ndarray]] = {
    "column": _column_labels,
    "modes": _mode_labels,
    "crippen": _crippen_labels,
    "label_vectors": _vector_labels,
    "label_tensor": _tensor_labels,
}
"""How each kind of label is made: ``Target.source`` -> ``(store, table, target) -> labels``. A new source is
one function here and its name on the target."""


def _frequency_targets(frame: pd.DataFrame, table: Path, target: Target) -> np.ndarray:
    """(n, n_outputs) sorted, padded frequencies, or (n,) omega_1 when ``n_outputs`` is 1 (cm^-1)."""
    width = max(int(target.n_outputs), 81)
    out = np.full((len(frame), width), np.nan)
    doubled: list[int] = []
    mismatched: list[str] = []
    for row, (mol_id, freqs, numbers, coords) in enumerate(zip(frame.index, frame[target.column],
                                                               frame["atomic_numbers"], frame["coordinates"])):
        freqs = np.asarray(freqs, np.float64)
        n_atoms = len(numbers)
        expected = n_modes(n_atoms, is_linear(np.asarray(coords, np.float64).reshape(-1, 3)))
        if freqs.size == 2 * expected:
            doubled.append(int(mol_id))
            continue
        if freqs.size > width:
            raise QmlrpError(f"{table}: id {mol_id} lists {freqs.size} harmonic frequencies, more than the "
                             f"{width} the frequencies head holds")
        if freqs.size != expected:  # e.g. QM9 lists 3N-6 values for five linear molecules (cyanogen, id 25)
            mismatched.append(f"{mol_id} ({freqs.size} listed, {expected} modes)")
            continue
        if not np.all(np.isfinite(freqs)):
            raise QmlrpError(f"{table}: id {mol_id}: non-finite harmonic frequency")
        out[row] = frequency_vector(freqs, width)
    if doubled:
        print(f"warning: {table}: {len(doubled)} molecule(s) list two sets of harmonic frequencies "
              f"(2 x (3N-6) values, e.g. id {doubled[0]}); they get no {target.name} label", file=sys.stderr)
    if mismatched:
        print(f"warning: {table}: {len(mismatched)} molecule(s) list another number of harmonic frequencies than "
              f"their atoms have modes (ids {', '.join(mismatched[:10])}); they get no {target.name} label",
              file=sys.stderr)
    if target.n_outputs == 1:
        return out[:, 0].copy()  # omega_1, the highest frequency (NaN for the doubled records)
    return out[:, : target.n_outputs].copy()
