"""Benchmark of the β labels: seconds per molecule by size and level, Dask 1 vs 2 workers.

Run on demand from the repository root (not a test)::

    .venv/bin/python benchmarks/bench_beta.py                 # HF/6-31G, B3LYP/6-31G; Dask scaling
    .venv/bin/python benchmarks/bench_beta.py --large         # + B3LYP/6-31G(2df,p) (± DF), 19 atoms
    .venv/bin/python benchmarks/bench_beta.py --table data/qm9.parquet --sizes 9 14 19

Each single-molecule timing runs in a fresh single-threaded subprocess (``OMP_NUM_THREADS=1``,
``OPENBLAS_CORETYPE`` as with ``--coretype``), so it measures what one Dask worker does.
Molecules come from ``--table`` (the ingest stage's ``data/qm9.parquet``) or, if that file is
absent, straight from the qm9pack CSV (first rows only).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

LEVELS = {
    "HF/6-31G": {"method": "rhf", "basis": "6-31g"},
    "B3LYP/6-31G": {"method": "rks", "xc": "b3lyp5", "basis": "6-31g"},
    "B3LYP/6-31G(2df,p)": {"method": "rks", "xc": "b3lyp5", "basis": "6-31g(2df,p)"},
    "B3LYP/6-31G(2df,p)+DF": {"method": "rks", "xc": "b3lyp5", "basis": "6-31g(2df,p)",
                              "density_fit": True},
}


def load_table(path: Path, nrows: int = 20000) -> pd.DataFrame:
    """The molecule table, or the first ``nrows`` of qm9pack's first CSV part."""
    if path.exists():
        return pd.read_parquet(path, columns=["id", "smiles", "n_atoms", "atomic_numbers",
                                              "coordinates"])
    import qm9pack

    csv = Path(qm9pack.__file__).parent / "data" / "qm9_part1.csv"
    df = pd.read_csv(csv, nrows=nrows, usecols=["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"])
    return pd.DataFrame({
        "id": df["Index"].astype("int64"),
        "smiles": df["SMILES"],
        "n_atoms": df["N_atoms"].astype(int),
        "atomic_numbers": [[_Z[e] for e in ast.literal_eval(s)] for s in df["Elements"]],
        "coordinates": [list(np.ravel(ast.literal_eval(s))) for s in df["XYZ_Ang"]],
    })


_CHILD = r"""
import json, sys
from pyscf import lib
from qmlrp.labels.beta import Level, compute_beta_for_molecule
task = json.loads(sys.argv[1])
lib.num_threads(1)
r = compute_beta_for_molecule(task["z"], task["xyz"], Level(**task["level"]))
print(json.dumps({"wall_s": r.wall_s, "cpu_s": r.cpu_s, "n_basis": r.n_basis,
                  "beta_parallel": r.beta_parallel, "beta_vec": r.beta_vec}))
"""


def time_one(row: pd.Series, level: dict, coretype: str | None) -> dict:
    """Compute one molecule in a fresh single-threaded process; return its timings."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(REPO / "src"))
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    task = {"z": [int(z) for z in row["atomic_numbers"]],
            "xyz": [float(c) for c in row["coordinates"]], "level": level}
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(task)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dask_scaling(table: pd.DataFrame, level: dict, n: int, configs: list[tuple[int, int]],
                 coretype: str | None) -> list[dict]:
    """Wall time of the label_beta stage on ``n`` molecules per (workers, threads) config."""
    from qmlrp.labels.config import LabelBetaParams
    from qmlrp.labels.run import run_stage

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.parquet"
        table.to_parquet(src)
        for workers, threads in configs:
            out = Path(tmp) / f"w{workers}t{threads}"
            cfg = LabelBetaParams.from_mapping({
                **level, "input": str(src), "output": str(out / "{level}"),
                "metrics": str(out / "metrics.json"), "count": n, "seed": 0, "max_atoms": None,
                "workers": workers, "threads_per_worker": threads, "shard_size": n,
                "openblas_coretype": coretype, "progress": False})
            t0 = time.perf_counter()
            m = run_stage(cfg)
            wall = time.perf_counter() - t0
            rows.append({"workers": workers, "threads/worker": threads, "molecules": m["n_done"],
                         "wall_s": wall, "s_per_molecule": wall / max(1, m["n_done"]),
                         "mean_molecule_wall_s": m["molecule_wall_s_mean"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=REPO / "data" / "qm9.parquet")
    ap.add_argument("--sizes", type=int, nargs="+", default=[9, 14, 19], help="n_atoms to time")
    ap.add_argument("--levels", nargs="+", default=["HF/6-31G", "B3LYP/6-31G"],
                    choices=list(LEVELS))
    ap.add_argument("--large", action="store_true",
                    help="also B3LYP/6-31G(2df,p) with and without DF for the largest size")
    ap.add_argument("--coretype", default="auto",
                    help="OPENBLAS_CORETYPE for the workers ('auto', 'none' or a name)")
    ap.add_argument("--compare-coretype", action="store_true",
                    help="time B3LYP/6-31G at the largest size with and without the core type")
    ap.add_argument("--dask-n", type=int, default=8, help="molecules for the Dask scaling run")
    ap.add_argument("--dask-level", default="B3LYP/6-31G", choices=list(LEVELS))
    ap.add_argument("--dask-max-atoms", type=int, default=12)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()

    from qmlrp.labels.cluster import resolve_openblas_coretype

    coretype = None if args.coretype.lower() == "none" else resolve_openblas_coretype(args.coretype)
    table = load_table(args.table)
    print(f"# {os.cpu_count()} CPUs; OPENBLAS_CORETYPE={coretype}; molecules from "
          f"{args.table if args.table.exists() else 'qm9pack CSV (first rows)'}", flush=True)

    picks = {}
    for n in args.sizes:
        cand = table[table["n_atoms"] == n].sort_values("id")
        if len(cand):
            picks[n] = cand.iloc[0]
    print("\n## Seconds per molecule (one single-threaded process)")
    print(f"{'level':24s} {'atoms':>5s} {'id':>7s} {'smiles':18s} {'nbasis':>6s} "
          f"{'wall_s':>8s} {'cpu_s':>8s} {'beta_par':>9s} {'|beta_vec|':>10s}", flush=True)
    jobs = [(lv, n) for lv in args.levels for n in picks]
    if args.large and picks:
        big = max(picks)
        jobs += [("B3LYP/6-31G(2df,p)", big), ("B3LYP/6-31G(2df,p)+DF", big)]
    for lv, n in jobs:
        row = picks[n]
        r = time_one(row, LEVELS[lv], coretype)
        print(f"{lv:24s} {n:5d} {int(row['id']):7d} {str(row['smiles'])[:18]:18s} "
              f"{r['n_basis']:6d} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
              f"{r['beta_parallel']:9.3f} {r['beta_vec']:10.3f}", flush=True)

    if args.compare_coretype and picks:
        n = max(picks)
        print(f"\n## OPENBLAS_CORETYPE effect (B3LYP/6-31G, {n} atoms)")
        for ct in (None, coretype or "Haswell"):
            r = time_one(picks[n], LEVELS["B3LYP/6-31G"], ct)
            print(f"OPENBLAS_CORETYPE={ct!s:10s} wall {r['wall_s']:.1f} s  cpu {r['cpu_s']:.1f} s",
                  flush=True)

    if not args.no_dask:
        small = table[table["n_atoms"] <= args.dask_max_atoms]
        print(f"\n## Dask: label_beta stage, {args.dask_n} molecules (n_atoms <= "
              f"{args.dask_max_atoms}), {args.dask_level}, incl. cluster start-up")
        print(f"{'workers':>7s} {'threads':>7s} {'mols':>5s} {'wall_s':>8s} {'s/mol':>7s} "
              f"{'mol_wall_s':>10s}", flush=True)
        for r in dask_scaling(small, LEVELS[args.dask_level], args.dask_n, [(1, 1), (2, 1), (1, 2)],
                              args.coretype):
            print(f"{r['workers']:7d} {r['threads/worker']:7d} {r['molecules']:5d} "
                  f"{r['wall_s']:8.1f} {r['s_per_molecule']:7.2f} {r['mean_molecule_wall_s']:10.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
