"""Targets, fold splits and input-scaling samples read from the FeatureStore.

Training batches are drawn by :mod:`qmlrp.training.batches` (the multi-model engine's
:class:`~qmlrp.training.batches.HostBatches` and :class:`~qmlrp.training.batches.DeviceBatches`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qmlrp.errors import QmlrpError
from qmlrp.io import read_parquet
from qmlrp.features.store import FeatureStore
from qmlrp.training.config import Target
from qmlrp.training.spectra import frequency_vector, is_linear, n_modes


@dataclass(frozen=True)
class Split:
    """Store positions of one cross-validation fold.

    ``train`` and ``validation`` come from the nine other folds (the validation part is a seeded
    random ``validation_fraction`` of them, used for early stopping and the LR schedule);
    ``test`` is the held-out fold.
    """

    fold: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def load_targets(store: FeatureStore, table: str | Path, target: Target) -> np.ndarray:
    """Target values aligned with the store's molecules (target units).

    Scalar targets: (len(store),) float64 -- alpha, ZPVE, ... as before, and ``omega1`` (the highest
    harmonic frequency, cm^-1). Vector targets (``n_outputs`` > 1, the frequencies): (len(store),
    n_outputs) float64, each row the molecule's modes sorted in descending order (index 0 = omega_1)
    and NaN-padded (:func:`qmlrp.training.spectra.frequency_vector`).

    Frequency lists are checked against the molecule: 3N - 6 modes, 3N - 5 if linear. A list of
    exactly twice that length is QM9's doubled record (two frequency sets in one record: 334 of
    130,831 molecules, 7 of the default 2,000 sample; the two sets differ, up to 484 cm^-1): such
    molecules get NaN labels (masked out of training and metrics) and one warning line on stderr.
    Any other count, or more modes than the head has outputs, is refused in one line.
    """
    table = Path(table)
    if not table.exists():
        raise QmlrpError(f"{table}: not found (run `dvc repro ingest` first)")
    frequencies = target.column == "frequencies_cm1"
    columns = ["id", target.column] + (["atomic_numbers", "coordinates"] if frequencies else [])
    frame = read_parquet(table, columns, hint="run `dvc repro ingest`").to_pandas().set_index("id")
    missing = np.setdiff1d(store.ids, frame.index.to_numpy())
    if missing.size:
        raise QmlrpError(f"{table}: {missing.size} featurized molecules have no {target.column} (e.g. id {missing[0]})")
    if frequencies:
        return _frequency_targets(frame.reindex(store.ids), table, target)
    values = frame[target.column].reindex(store.ids).to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise QmlrpError(f"{table}: non-finite {target.column} values")
    return values


def _frequency_targets(frame: pd.DataFrame, table: Path, target: Target) -> np.ndarray:
    """(n, n_outputs) sorted, padded frequencies, or (n,) omega_1 when ``n_outputs`` is 1 (cm^-1)."""
    width = max(int(target.n_outputs), 81)
    out = np.full((len(frame), width), np.nan)
    doubled: list[int] = []
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
        if freqs.size != expected:
            raise QmlrpError(f"{table}: id {mol_id} lists {freqs.size} harmonic frequencies; {n_atoms} atoms "
                             f"have {expected} modes")
        if not np.all(np.isfinite(freqs)):
            raise QmlrpError(f"{table}: id {mol_id}: non-finite harmonic frequency")
        out[row] = frequency_vector(freqs, width)
    if doubled:
        print(f"warning: {table}: {len(doubled)} molecule(s) list two sets of harmonic frequencies "
              f"(2 x (3N-6) values, e.g. id {doubled[0]}); they get no {target.name} label", file=sys.stderr)
    if target.n_outputs == 1:
        return out[:, 0].copy()  # omega_1, the highest frequency (NaN for the doubled records)
    return out[:, : target.n_outputs].copy()


def make_split(
    store: FeatureStore,
    folds_path: str | Path,
    fold: int,
    validation_fraction: float,
    seed: int,
    max_train_molecules: int | None = None,
) -> Split:
    """Train/validation/test positions for ``fold`` from ``data/folds.parquet`` (columns id, fold);
    a missing, truncated or inconsistent file (an id listed twice) raises one-line QmlrpError."""
    folds_path = Path(folds_path)
    if not 0.0 < validation_fraction < 1.0:
        raise QmlrpError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    table = read_parquet(folds_path, ["id", "fold"], hint="run `dvc repro split`")
    ids, fold_values = table.column("id").to_numpy(), table.column("fold").to_numpy()
    if not np.issubdtype(fold_values.dtype, np.integer):
        raise QmlrpError(f"{folds_path}: column 'fold' holds {fold_values.dtype} values (nulls?), expected integers")
    folds = pd.Series(fold_values, index=ids)
    if folds.index.has_duplicates:
        twice = folds.index[folds.index.duplicated()][0]
        raise QmlrpError(f"{folds_path}: id {twice} is listed {int(np.sum(ids == twice))} times")
    fold_of = folds.reindex(store.ids)
    if fold_of.isna().any():
        raise QmlrpError(f"{folds_path}: {int(fold_of.isna().sum())} featurized molecules have no fold")
    fold_of = fold_of.to_numpy(dtype=np.int64)
    if fold not in set(fold_of.tolist()):
        raise QmlrpError(f"{folds_path}: no molecules in fold {fold}")
    test = np.nonzero(fold_of == fold)[0]
    rest = np.nonzero(fold_of != fold)[0]
    rng = np.random.default_rng([seed, fold])
    rest = rng.permutation(rest)
    n_val = max(1, int(round(validation_fraction * rest.size)))
    validation, train = np.sort(rest[:n_val]), np.sort(rest[n_val:])
    if max_train_molecules is not None and train.size > max_train_molecules:
        train = np.sort(rng.choice(train, size=int(max_train_molecules), replace=False))
    if train.size == 0:
        raise QmlrpError(f"fold {fold}: no training molecules left")
    return Split(fold=fold, train=train, validation=validation, test=test)


def feature_sample(store: FeatureStore, positions: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Atom and pair features of up to ``n`` molecules among ``positions`` (for input scaling)."""
    rng = np.random.default_rng(seed)
    chosen = positions if positions.size <= n else rng.choice(positions, size=n, replace=False)
    batch = store.batch(np.sort(chosen))
    return batch.atom_features, batch.pair_features
