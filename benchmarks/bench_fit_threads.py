"""CPU-seconds of ``engine.fit`` epochs: the whole process against its Python (main) thread.

    python benchmarks/bench_fit_threads.py [--molecules 2000] [--epochs 6] [--rounds 3]
        [--baseline-src <other checkout>/src] [--cpus 0]

XLA runs the compiled step on its own threads; the main thread assembles the host batches, calls
the step (dispatch: the arguments' transfer, the outputs' Python objects) and does the loop's
bookkeeping. Each process is ``bench_deepchem.py``'s qmlrp worker (alpha on the first
``--molecules`` molecules of ``data/features``, batch 64, ``params.yaml``'s ``train`` with the
epochs overridden, 64 molecules predicted after each epoch), without DeepChem. Reported for every
epoch after the first two (the first compiles, the second may compile the last batch's shape): the
process's CPU time (all threads, ``time.process_time``) and the main thread's
(``time.thread_time``). With ``--baseline-src`` the same runs from another checkout's ``src/``
alternate with this one's (A B, B A, ...), each its own process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_deepchem import ROOT, export, parse_cpus, run_worker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--table", default="data/qm9.parquet")
    parser.add_argument("--molecules", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", help="also run fit() from this other checkout's src/ (alternating)")
    parser.add_argument("--cpus", help="run every worker on these CPUs only (e.g. 0)")
    args = parser.parse_args()
    if args.epochs < 3:
        raise SystemExit("--epochs must be at least 3 (the first two are not counted)")
    kinds = {"this": ROOT / "src"}
    if args.baseline_src:
        kinds["baseline"] = args.baseline_src
    cpus = parse_cpus(args.cpus)
    results: dict[str, list[tuple[list[float], list[float]]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "molecules.npz")
        export(args.features, args.table, args.molecules, data)
        for r in range(args.rounds):
            for kind in (list(kinds) if r % 2 == 0 else list(reversed(kinds))):
                res = run_worker(sys.executable, "qmlrp", data, args.epochs, 64, kinds[kind], cpus)
                process, main_thread = res["epoch_cpu"][1:], res["epoch_main_cpu"][1:]  # the worker drops epoch 1
                results[kind].append((process, main_thread))
                print(f"round {r + 1} {kind:>8}: process {' '.join(f'{x:.2f}' for x in process)}; main thread "
                      f"{' '.join(f'{x:.3f}' for x in main_thread)} CPU-s per epoch", file=sys.stderr, flush=True)
    print(f"{args.molecules} molecules, batch 64, epochs 3-{args.epochs} of each process, {args.rounds} rounds"
          + (f", every worker on CPUs {args.cpus}" if args.cpus else ""))
    print(f"{'src':>9} {'process CPU-s/epoch':>20} {'main thread':>12} {'main share':>11}")
    for kind, res in results.items():
        process = statistics.median(x for p, _ in res for x in p)
        main_thread = statistics.median(x for _, m in res for x in m)
        print(f"{kind:>9} {process:>20.3f} {main_thread:>12.3f} {main_thread / process:>11.1%}")


if __name__ == "__main__":
    main()
