"""Stage ``split``: a seeded, unbiased shuffle of the QM9 ids into uniform folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
