"""Stage ``beta_data``: the β∥ model's own data set, from the published labels of one level.

The published labels (``labels/beta/<level>/``, :mod:`qmlrp.labels.records`) are a uniform sample
of all of QM9, so most of their molecules are not in the ingest stage's sample. This stage

1. reads the label folder and keeps the rows with a finite ``beta_parallel_au`` (β∥ is NaN when
   μ ≈ 0; those rows are counted and listed as excluded);
2. ingests exactly those molecules by QM9 id (:func:`qmlrp.data.ingest.ingest` with ``ids``) and
   joins the label columns ``beta_parallel_au`` and ``beta_vec_au`` (a.u.) into
   ``data/beta/qm9.parquet``;
3. featurizes them into ``data/beta/features`` (molecules that fail are listed in
   ``data/beta/featurize_failures.csv``, not fatal) and deals them into seeded folds,
   ``data/beta/folds.parquet`` (:func:`qmlrp.data.split.split`);
4. writes ``metrics/beta_data.json``: counts, the level, the label statistics of the molecules the
   model sees (mean, sd, MAD = mean absolute deviation from the mean: the β model's bar is
   MAE ≤ 0.3 × MAD) and the exclusions with their reasons; and the basis effect: for molecules
   labelled at this level and at a ``compare`` level (e.g. 6-31G vs 6-31G(2df,p)), β∥ at both
   (``plots/beta/basis_effect.csv``) and their count, Pearson r, mean ratio and mean absolute
   difference.

The label folders are only read, never written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from qmlrp.errors import QmlrpError
from qmlrp.io import read_parquet, write_csv, write_json, write_parquet
from qmlrp.labels.records import LEVEL_FILE, read_labels
from qmlrp.paths import BETA_DATA, METRICS

LABEL_COLUMNS: tuple[str, ...] = ("beta_parallel_au", "beta_vec_au")
"""Label columns joined into the data set's table (a.u.)."""
BETA_METRICS = METRICS / "beta_data.json"
BASIS_EFFECT = Path("plots/beta/basis_effect.csv")
MAD_BAR = 0.3
"""The β model's bar: test MAE ≤ ``MAD_BAR`` × MAD of the labels."""


@dataclass(frozen=True)
class BetaDataParams:
    """``params.yaml`` section ``beta_data`` (parsed by :func:`qmlrp.params.parse_section`).

    Attributes:
        labels: label folder of one level (``labels/beta/<level>``) whose β∥ the model learns.
        compare: label folder of another level for the basis effect (null: none).
        source: QM9 as in the ingest stage: ``qm9pack``, or ``dsgdb9nsd.xyz.tar.bz2`` / a folder of its XYZ files.
        on_error: a malformed QM9 record of a labelled molecule: ``fail`` or ``skip`` (listed either way).
        workers, chunk_size: featurization processes and molecules per resumable chunk.
        n_folds, seed: the cross-validation split.
    """

    labels: str = "labels/beta/rks-b3lyp5-6-31g"
    compare: str | None = "labels/beta/rks-b3lyp5-6-31g_2df_p_"
    source: str = "qm9pack"
    on_error: Literal["fail", "skip"] = "fail"
    workers: int = 1
    chunk_size: int = 2000
    n_folds: int = 10
    seed: int = 20171010

    def __post_init__(self) -> None:
        if self.workers <= 0 or self.chunk_size <= 0:
            raise ValueError("workers and chunk_size must be positive")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")


def label_statistics(values: np.ndarray) -> dict[str, float]:
    """Mean, sd (ddof=1), MAD (mean absolute deviation from the mean), min, max of (n,) labels, and
    the bar ``MAD_BAR`` × MAD; NaN-free input expected."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise QmlrpError("beta_data: no labelled molecule left to describe")
    mean = float(np.mean(values))
    mad = float(np.mean(np.abs(values - mean)))
    return {"n": int(values.size), "mean": mean, "sd": float(np.std(values, ddof=1)) if values.size > 1 else 0.0,
            "mad": mad, "min": float(np.min(values)), "max": float(np.max(values)), "mae_bar": MAD_BAR * mad}


def read_level(folder: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labels of one level folder and its ``_level.json``; QmlrpError naming the folder if it
    has no label shards."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QmlrpError(f"{folder}: no such label folder (params.yaml beta_data)")
    labels = read_labels(folder)
    if labels.empty:
        raise QmlrpError(f"{folder}: no label shards (part-*.parquet)")
    level_file = folder / LEVEL_FILE
    level = json.loads(level_file.read_text()) if level_file.exists() else {}
    return labels, level


def basis_effect(labels: pd.DataFrame, other: pd.DataFrame, name: str, other_name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """β∥ of the molecules labelled at both levels, and its summary.

    Args:
        labels, other: label tables (:func:`qmlrp.labels.records.read_labels`) of two levels.
        name, other_name: the levels' names (folder names), used in the table's column names.

    Returns:
        The table (id, smiles, n_atoms, ``beta_parallel_au_<name>``, ``beta_parallel_au_<other_name>``,
        ``difference_au`` = other − this, ``ratio`` = other / this), one row per molecule with a finite β∥
        at both, sorted by id; and {n, pearson_r, mean_ratio, mean_abs_difference_au} (None where
        fewer than 2 molecules make r undefined).
    """
    a, b = f"beta_parallel_au_{name}", f"beta_parallel_au_{other_name}"
    left = labels[["id", "smiles", "n_atoms", "beta_parallel_au"]].rename(columns={"beta_parallel_au": a})
    right = other[["id", "beta_parallel_au"]].rename(columns={"beta_parallel_au": b})
    both = left.merge(right, on="id", how="inner").sort_values("id").reset_index(drop=True)
    both = both[np.isfinite(both[a]) & np.isfinite(both[b])].reset_index(drop=True)
    both["difference_au"] = both[b] - both[a]
    both["ratio"] = both[b] / both[a]
    n = int(len(both))
    summary: dict[str, Any] = {"levels": [name, other_name], "n": n, "pearson_r": None, "mean_ratio": None,
                               "mean_abs_difference_au": None}
    if n:
        summary["mean_ratio"] = float(np.mean(both["ratio"]))
        summary["mean_abs_difference_au"] = float(np.mean(np.abs(both["difference_au"])))
    if n >= 2:
        summary["pearson_r"] = float(np.corrcoef(both[a], both[b])[0, 1])
    return both, summary


def _finite_labels(labels: pd.DataFrame, params: BetaDataParams) -> tuple[np.ndarray, pd.DataFrame, list[pd.DataFrame]]:
    """(n_labelled,) mask of finite β∥, the kept rows sorted by id, and the exclusion list started with the NaN rows."""
    finite = np.isfinite(labels["beta_parallel_au"].to_numpy(dtype=np.float64))
    excluded = [pd.DataFrame({"id": labels.loc[~finite, "id"].astype(np.int64), "stage": "labels",
                              "reason": "beta_parallel_au is NaN (dipole ~ 0)"})]
    kept = labels[finite].sort_values("id").reset_index(drop=True)
    if kept.empty:
        raise QmlrpError(f"{params.labels}: no label with a finite beta_parallel_au")
    return finite, kept, excluded


def _ingest_labelled(params: BetaDataParams, output: Path, kept: pd.DataFrame,
                     excluded: list[pd.DataFrame]) -> tuple[pa.Table, pd.DataFrame]:
    """Ingest the kept ids into a fresh ``output``, join the label columns (a.u.) into ``qm9.parquet``; returns the
    table and the id-ordered joined labels; ingest rejects are appended to ``excluded``."""
    from qmlrp.data.ingest import _id_of_name, ingest

    if output.exists():
        shutil.rmtree(output)
    table_path = output / "qm9.parquet"
    ingest(source=params.source, output=table_path, rejects=output / "ingest_rejects.csv",
           metrics=output / "ingest.json", limit=None, on_error=params.on_error, ids=kept["id"].tolist())
    rejects = pd.read_csv(output / "ingest_rejects.csv")
    if len(rejects):
        excluded.append(pd.DataFrame({"id": [_id_of_name(str(w)) or -1 for w in rejects["record"]],
                                      "stage": "ingest", "reason": rejects["reason"].astype(str)}))
    table = read_parquet(table_path, hint="beta_data ingest")
    joined = (pd.DataFrame({"id": table.column("id").to_numpy()})
              .merge(kept[["id", *LABEL_COLUMNS]], on="id", how="left", validate="one_to_one"))
    for column in LABEL_COLUMNS:
        table = table.append_column(pa.field(column, pa.float64()), pa.array(joined[column].to_numpy(np.float64)))
    write_parquet(table, table_path)
    return table, joined


def _featurize_and_split(params: BetaDataParams, output: Path, scratch_root: str | Path,
                         excluded: list[pd.DataFrame]) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """Featurize ``output/qm9.parquet`` and split it into folds; returns the featurize and split results and the
    exclusions (sorted by stage, id), written to ``output/excluded.csv``."""
    from qmlrp.data.split import split
    from qmlrp.features.featurize import featurize_table

    featurized = featurize_table(output / "qm9.parquet", output / "features", output / "featurize_failures.csv",
                                 output / "featurize.json", workers=params.workers, chunk_size=params.chunk_size,
                                 scratch_root=scratch_root)
    failures = pd.read_csv(output / "featurize_failures.csv")
    if len(failures):
        excluded.append(pd.DataFrame({"id": failures["id"].astype(np.int64), "stage": "featurize",
                                      "reason": failures["reason"].astype(str)}))
    split_result = split(output / "features", output / "folds.parquet", output / "split.json",
                         n_folds=params.n_folds, seed=params.seed)
    excluded_frame = pd.concat(excluded, ignore_index=True).sort_values(["stage", "id"]).reset_index(drop=True)
    write_csv(excluded_frame, output / "excluded.csv")
    return featurized, split_result, excluded_frame


def _write_basis_effect(params: BetaDataParams, labels: pd.DataFrame, compared: tuple[pd.DataFrame, dict[str, Any]] | None,
                        name: str, basis_table: str | Path) -> dict[str, Any] | None:
    """Write the basis-effect table (an empty one without ``compare``); returns its metrics entry or None."""
    if compared is None:  # the stage's output exists either way
        write_csv(pd.DataFrame(columns=["id", "smiles", "n_atoms", "difference_au", "ratio"]), basis_table)
        return None
    other_name = Path(str(params.compare)).name
    both, summary = basis_effect(labels, compared[0], name, other_name)
    write_csv(both, basis_table)
    return {**summary, "compare": str(params.compare), "compare_identity": compared[1]}


def build_beta_data(params: BetaDataParams, output: str | Path = BETA_DATA, metrics: str | Path = BETA_METRICS,
                    basis_table: str | Path = BASIS_EFFECT, scratch_root: str | Path = Path("data/tmp/beta_featurize"),
                    ) -> dict[str, Any]:
    """Run the stage (see the module docstring); returns the metrics written to ``metrics``.

    ``output`` receives ``qm9.parquet``, ``features/``, ``folds.parquet`` (the paths of
    :func:`qmlrp.paths.dataset_paths` when it is ``data/beta``) and the sub-stages' own records
    (``ingest_rejects.csv``, ``featurize_failures.csv``, ``ingest.json``, ``featurize.json``,
    ``split.json``, ``excluded.csv``)."""
    output = Path(output)
    labels, level = read_level(params.labels)
    compared = read_level(params.compare) if params.compare is not None else None
    name = Path(params.labels).name

    finite, kept, excluded = _finite_labels(labels, params)
    table, joined = _ingest_labelled(params, output, kept, excluded)
    featurized, split_result, excluded_frame = _featurize_and_split(params, output, scratch_root, excluded)

    ids = read_parquet(output / "features" / "molecules.parquet", ["id"]).column("id").to_numpy()
    values = joined.set_index("id").loc[ids, "beta_parallel_au"].to_numpy(np.float64)
    result: dict[str, Any] = {
        "level": name,
        "level_identity": level,
        "labels": str(params.labels),
        "units": "a.u.",
        "n_labelled": int(len(labels)),
        "n_finite_beta_parallel": int(finite.sum()),
        "n_ingested": int(table.num_rows),
        "n_featurized": int(featurized["n_featurized"]),
        "n_molecules": int(split_result["n_molecules"]),
        "n_excluded": int(len(excluded_frame)),
        "excluded_by_reason": {f"{stage}: {reason}": int(count) for (stage, reason), count
                               in excluded_frame.groupby(["stage", "reason"]).size().items()},
        "excluded_ids": [int(i) for i in excluded_frame["id"]],
        "beta_parallel_au": label_statistics(values),
        "split": {"n_folds": split_result["n_folds"], "seed": params.seed,
                  "min_fold_size": split_result["min_fold_size"], "max_fold_size": split_result["max_fold_size"]},
        "basis_effect": None,
        "params": asdict(params),
    }
    result["basis_effect"] = _write_basis_effect(params, labels, compared, name, basis_table)
    write_json(result, metrics)
    return result
