"""Benchmark: ingest + featurize QM9 (all 130,831 molecules by default) and print a table.

    python benchmarks/bench_featurize.py [--limit N] [--workers 2] [--workdir /tmp/qmlrp-bench]

Prints molecules/s, wall time, the store's size on disk and peak RSS (this process and its workers).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

from qmlrp.data.ingest import ingest
from qmlrp.features.featurize import featurize_table


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="molecules (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/qmlrp-bench"))
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    t0 = time.perf_counter()
    result = ingest("qm9pack", work / "qm9.parquet", work / "rejects.csv", work / "ingest.json", limit=args.limit, seed=0)
    t_ingest = time.perf_counter() - t0
    t0 = time.perf_counter()
    feat = featurize_table(work / "qm9.parquet", work / "features", work / "failures.csv", work / "featurize.json",
                           workers=args.workers, chunk_size=args.chunk_size, scratch_root=work / "scratch")
    t_feat = time.perf_counter() - t0
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n = result.n_molecules
    rows = [
        ("molecules", f"{n}"),
        ("ingest wall (s)", f"{t_ingest:.1f}"),
        ("ingest molecules/s", f"{n / t_ingest:.0f}"),
        ("qm9.parquet (MB)", f"{_size_mb(work / 'qm9.parquet'):.1f}"),
        (f"featurize wall (s), {args.workers} workers", f"{t_feat:.1f}"),
        ("featurize molecules/s", f"{n / t_feat:.0f}"),
        ("featurize ms/molecule/core", f"{t_feat * args.workers / n * 1e3:.2f}"),
        ("featurized", f"{feat['n_featurized']} ({100 * feat['success_rate']:.3f}%)"),
        ("failed", f"{feat['n_failed']}"),
        ("bond orders from geometry", f"{feat['n_bond_orders_from_geometry']}"),
        ("features on disk (MB)", f"{_size_mb(work / 'features'):.1f}"),
        ("peak RSS main (MB)", f"{rss_self:.0f}"),
        ("peak RSS largest worker (MB)", f"{rss_children:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'quantity':<{width}} | value")
    print(f"{'-' * width}-|------")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")
    print(f"(failures listed in {work / 'failures.csv'})")


if __name__ == "__main__":
    main()
