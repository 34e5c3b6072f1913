"""CPU-seconds of ``engine.fit`` epochs: the whole process against its Python (main) thread.

    python benchmarks/bench_fit_threads.py [--molecules 2000] [--epochs 6] [--rounds 3]
        [--baseline-src <other checkout>/src]

XLA runs the compiled step on its own threads; the main thread assembles the host batches, calls
the step (dispatch: the arguments' transfer, the outputs' Python objects) and does the loop's
bookkeeping. Each process trains alpha on the first ``--molecules`` molecules of ``data/features``
(batch 64, ``params.yaml``'s ``train``, epochs overridden) and reports, for every epoch after the
first two (the first compiles, the second may compile the last batch's shape), the process's CPU
time (all threads, ``time.process_time``) and the main thread's (``time.thread_time``). With
``--baseline-src`` the same runs from another checkout's ``src/`` alternate with this one's
(A B, B A, ...), each its own process. Labels are random (the CPU time does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(molecules: int, epochs: int) -> dict[str, list[float]]:
    from qmlrp.training.allocator import keep_freed_memory

    keep_freed_memory()
    from qmlrp.training.backend import use_jax_backend

    use_jax_backend()
    from dataclasses import replace

    import numpy as np

    from qmlrp.features.store import FeatureStore
    from qmlrp.targets import get_target
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.engine import ModelRun, fit

    store = FeatureStore.open(str(ROOT / "data" / "features"))
    n = min(molecules, len(store))
    y = np.full(len(store), np.nan)
    y[:n] = np.random.default_rng(0).normal(size=n)
    config = replace(TrainConfig.load(ROOT / "params.yaml"), epochs=epochs, batch_size=64,
                     early_stopping_patience=epochs + 1, time_limit_minutes=None)
    positions = np.arange(n)
    marks: list[tuple[float, float]] = []
    fit(store, [ModelRun("alpha", get_target("alpha"), y, positions, positions[:64], config.seed)], config,
        log=False, on_epoch=lambda k, row: marks.append((time.process_time(), time.thread_time())))
    process = [b[0] - a[0] for a, b in zip(marks, marks[1:])][1:]
    main = [b[1] - a[1] for a, b in zip(marks, marks[1:])][1:]
    return {"process": process, "main": main}


def run(src: Path, molecules: int, epochs: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, "--worker", "--molecules", str(molecules), "--epochs", str(epochs)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"worker from {src} failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", help="also run fit() from this other checkout's src/ (alternating)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.molecules, args.epochs)), flush=True)
        return
    if args.epochs < 3:
        raise SystemExit("--epochs must be at least 3 (the first two are not counted)")
    kinds = {"this": ROOT / "src"}
    if args.baseline_src:
        kinds["baseline"] = Path(args.baseline_src)
    results: dict[str, list[dict[str, list[float]]]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in (list(kinds) if r % 2 == 0 else list(reversed(kinds))):
            res = run(kinds[kind], args.molecules, args.epochs)
            results[kind].append(res)
            print(f"round {r + 1} {kind:>8}: process {' '.join(f'{x:.2f}' for x in res['process'])}; main thread "
                  f"{' '.join(f'{x:.3f}' for x in res['main'])} CPU-s per epoch", file=sys.stderr, flush=True)
    print(f"{args.molecules} molecules, batch 64, epochs 3-{args.epochs} of each process, {args.rounds} rounds")
    print(f"{'src':>9} {'process CPU-s/epoch':>20} {'main thread':>12} {'main share':>11}")
    for kind, res in results.items():
        process = statistics.median(x for r in res for x in r["process"])
        main_thread = statistics.median(x for r in res for x in r["main"])
        print(f"{kind:>9} {process:>20.3f} {main_thread:>12.3f} {main_thread / process:>11.1%}")


if __name__ == "__main__":
    main()
