"""The record's tables, written by ``evaluate``: one row per fold (test MAE of each target, the commit that
trained it, CPU-hours) and the error by molecule size.

* ``plots/evaluate/folds.csv`` and ``folds.md`` -- fold, per target the test MAE (target units), the
  trained-at commit, process CPU-hours per model (``run.json``; a model trained inside a multi-model program
  has none), then the mean +- sd over the folds that are in and the bar's verdict. ``folds.md`` is the table
  that ``RECORD.md`` shows (``tests/studies`` checks that they agree).
* ``plots/evaluate/by_size/<target>.csv`` -- test predictions of all folds pooled, by heavy-atom count
  (C, N, O, F): molecules, MAE, largest absolute error and its QM9 id. A fold MAE hides a few
  molecules far off (the smallest ones are rare in QM9); this table shows them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qmlrp.io import write_csv


def fold_frame(results_dir: Path, names: tuple[str, ...], folds: tuple[int, ...]) -> pd.DataFrame:
    """(rows: fold x target with a run.json) fold, target, test_mae, units, commit (7 hex or ""), cpu_hours
    (NaN when not recorded), epochs_run."""
    rows = []
    for name in names:
        for fold in folds:
            path = results_dir / name / f"fold{fold}" / "run.json"
            if not path.exists():
                continue
            run = json.loads(path.read_text())
            cpu = run.get("process_cpu_seconds")
            rows.append({"fold": fold, "target": name, "test_mae": float(run.get("test_mae", np.nan)),
                         "units": run.get("units", ""),
                         "commit": (run.get("commit") or "")[:7],
                         "cpu_hours": float(cpu) / 3600.0 if cpu is not None and run.get("models_in_program", 1) == 1
                         else float("nan"),
                         "epochs_run": int(run.get("epochs_run", 0))})
    return pd.DataFrame(rows, columns=["fold", "target", "test_mae", "units", "commit", "cpu_hours", "epochs_run"])


def _digits(values: pd.Series) -> int:
    """Decimals that show three significant figures of the smallest value."""
    finite = np.abs(values.to_numpy(np.float64))
    finite = finite[np.isfinite(finite)]
    smallest = float(finite.min()) if finite.size else 1.0
    return max(2, 3 - int(np.floor(np.log10(smallest)))) if smallest > 0 else 4


def markdown_table(frame: pd.DataFrame, names: tuple[str, ...], metrics: dict[str, Any], n_folds: int) -> str:
    """The per-fold table with the mean +- sd row and the bar row (Markdown, one line per fold)."""
    present = [n for n in names if (frame["target"] == n).any()]
    units = {n: frame.loc[frame["target"] == n, "units"].iloc[0] for n in present}
    digits = {n: _digits(frame.loc[frame["target"] == n, "test_mae"]) for n in present}
    head = "| fold | " + " | ".join(f"{n} test MAE ({units[n]})" for n in present) + " | trained at | CPU-h per model |"
    lines = [head, "|" + "---|" * (len(present) + 3)]
    for fold, rows in frame.groupby("fold", sort=True):
        by_target = rows.set_index("target")
        cells = [f"{by_target.loc[n, 'test_mae']:.{digits[n]}f}"
                 if n in by_target.index and np.isfinite(by_target.loc[n, "test_mae"]) else "—" for n in present]
        commits = ", ".join(sorted({c for c in rows["commit"] if c})) or "not recorded"
        cpu = ", ".join(f"{h:.2f}" for h in rows["cpu_hours"] if np.isfinite(h)) or "in a multi-model program"
        lines.append(f"| {fold} | " + " | ".join(cells) + f" | {commits} | {cpu} |")
    means, bars = [], []
    for n in present:
        m = metrics.get(n, {})
        means.append(f"**{m.get('mae_mean', float('nan')):.{digits[n]}f} ± {m.get('mae_sd', float('nan')):.{digits[n]}f}"
                     f" ({m.get('n_folds', 0)} of {n_folds} folds)**")
        if "threshold" in m:
            so_far = "" if m.get("n_folds") == n_folds else " so far"
            verdict = f"met{so_far}" if m["pass"] else f"not met{so_far} (by {m['mae_mean'] - m['threshold']:.3g})"
            bars.append(f"{m['threshold']:g} — {verdict}")
        else:
            bars.append("—")
    lines.append("| **mean ± sd** | " + " | ".join(means) + " | | |")
    lines.append(f"| bar ({n_folds}-fold mean) | " + " | ".join(bars) + " | | |")
    return "\n".join(lines) + "\n"


def write_fold_tables(results_dir: Path, names: tuple[str, ...], folds: tuple[int, ...], metrics: dict[str, Any],
                      n_folds: int, plots_dir: Path) -> pd.DataFrame:
    """Write ``folds.csv`` and ``folds.md`` under ``plots_dir``; returns the frame."""
    frame = fold_frame(results_dir, names, folds)
    write_csv(frame, plots_dir / "folds.csv")
    (plots_dir / "folds.md").write_text(markdown_table(frame, names, metrics, n_folds))
    return frame


def heavy_atoms(table: Path) -> pd.Series:
    """Heavy-atom count (atomic number > 1) of every molecule of the ingest table, indexed by QM9 id."""
    from qmlrp.io import read_parquet

    frame = read_parquet(table, ["id", "atomic_numbers"], hint="run `dvc repro ingest`").to_pandas().set_index("id")
    return frame["atomic_numbers"].map(lambda z: int(np.sum(np.asarray(z) > 1)))


def size_table(parity: pd.DataFrame, heavy: pd.Series) -> pd.DataFrame:
    """Pooled test errors by heavy-atom count: heavy_atoms, molecules, mae, max_abs_error, worst_id.

    ``parity``: columns id, y_true, y_pred (target units); molecules missing from ``heavy`` are left out."""
    frame = parity.assign(heavy_atoms=parity["id"].map(heavy)).dropna(subset=["heavy_atoms", "y_true"])
    frame = frame.assign(abs_error=(frame["y_pred"] - frame["y_true"]).abs())
    rows = []
    for n, group in frame.groupby("heavy_atoms", sort=True):
        worst = group.loc[group["abs_error"].idxmax()]
        rows.append({"heavy_atoms": int(n), "molecules": int(len(group)), "mae": float(group["abs_error"].mean()),
                     "max_abs_error": float(worst["abs_error"]), "worst_id": int(worst["id"])})
    return pd.DataFrame(rows, columns=["heavy_atoms", "molecules", "mae", "max_abs_error", "worst_id"])


TABLE_START = "<!-- the fold table: plots/evaluate/folds.md, written by evaluate; do not edit by hand -->"
TABLE_END = "<!-- end of the fold table -->"


def record_table(record: str) -> str:
    """The fold table held between the markers of a ``RECORD.md`` text ("" if it has none)."""
    if TABLE_START not in record or TABLE_END not in record:
        return ""
    return record.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip("\n") + "\n"


def with_table(record: str, table: str) -> str:
    """``record`` with the text between its markers replaced by ``table``; unchanged without markers."""
    if TABLE_START not in record or TABLE_END not in record:
        return record
    head, rest = record.split(TABLE_START, 1)
    return f"{head}{TABLE_START}\n{table.strip(chr(10))}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}"
