"""Stage ``split``: a seeded, unbiased shuffle of the QM9 ids into uniform folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from qmlrp.errors import QmlrpError
from qmlrp.io import read_parquet, write_json, write_parquet


@dataclass(frozen=True)
class SplitParams:
    """``params.yaml`` section ``split`` (parsed by :func:`qmlrp.params.parse_section`)."""

    n_folds: int = 10
    seed: int = 20171010

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")


def assign_folds(ids: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """(n,) fold of each id: a uniform random permutation dealt round-robin, so fold sizes differ by <= 1.

    The result depends only on the set of ids, the seed and ``n_folds`` (ids are sorted first).
    """
    if n_folds < 2:
        raise QmlrpError(f"split.n_folds must be at least 2, got {n_folds}")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < n_folds:
        raise QmlrpError(f"split: {len(ids)} molecules cannot fill {n_folds} folds")
    order = np.argsort(ids, kind="stable")
    permutation = np.random.default_rng(seed).permutation(len(ids))
    folds = np.empty(len(ids), dtype=np.int8)
    folds[order[permutation]] = np.arange(len(ids)) % n_folds
    return folds


def split(features: str | Path, output: str | Path, metrics: str | Path, n_folds: int = SplitParams.n_folds,
          seed: int = SplitParams.seed) -> dict[str, object]:
    """Write ``output`` (columns id, fold) for the featurized molecules and fold sizes to ``metrics``."""
    molecules = Path(features) / "molecules.parquet"
    ids = read_parquet(molecules, ["id"], hint="run `dvc repro featurize`").column("id").to_numpy()
    folds = assign_folds(ids, n_folds, seed)
    order = np.argsort(ids)
    write_parquet(pa.table({"id": ids[order], "fold": folds[order]}), output)
    sizes = np.bincount(folds, minlength=n_folds)
    result = {"n_molecules": int(len(ids)), "n_folds": int(n_folds), "min_fold_size": int(sizes.min()),
              "max_fold_size": int(sizes.max())}
    write_json(result, metrics)
    return result


def read_folds(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, folds) from the split stage's output."""
    table = read_parquet(path, ["id", "fold"], hint="run `dvc repro split`")
    return table.column("id").to_numpy(), table.column("fold").to_numpy()


class HasIds(Protocol):
    """Anything holding molecule ids in store order (a :class:`~qmlrp.features.store.FeatureStore`)."""

    @property
    def ids(self) -> np.ndarray: ...


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


def make_split(
    store: HasIds,
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


def split_indices(n: int, test_fraction: float, validation_fraction: float, seed: int,
                  max_train: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random train / validation / test indices into ``range(n)``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    n_val = max(1, int(round(validation_fraction * n)))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if max_train is not None:
        train = train[:max_train]
    return np.sort(train), np.sort(val), np.sort(test)
