"""Run-to-run noise of the demo's test MAE under each learning-rate schedule: a table.

    python benchmarks/seed_noise.py [--target alpha] [--folds 0,1] [--seeds 20171010,1,2] [--schedules plateau,cosine]

For every schedule, the same (target, fold) models of the root params.yaml (the demo: 2,000 molecules, 10 epochs)
are retrained with each seed (initial weights, batch order, validation split), one model after the other, in
this process; it prints each model's test MAE, the sd across seeds per fold and its median over folds. Needs
the root pipeline's data (`dvc repro split`). Each model costs ~45 CPU-s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from qmlrp.training.backend import use_jax_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="alpha")
    parser.add_argument("--folds", default="0,1")
    parser.add_argument("--seeds", default="20171010,1,2")
    parser.add_argument("--schedules", default="plateau,cosine")
    args = parser.parse_args()
    use_jax_backend()
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.train import train_program

    base = TrainConfig.load("params.yaml")
    folds = [int(f) for f in args.folds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    table: dict[tuple[str, int, int], float] = {}
    for schedule in args.schedules.split(","):
        for seed in seeds:
            config = replace(base, seed=seed, schedule=schedule)
            for fold in folds:
                with tempfile.TemporaryDirectory() as out:
                    summary = train_program([(args.target, fold)], config, models_dir=Path(out) / "m",
                                            results_dir=Path(out) / "r", live_dir=None, log=False)[0]
                table[(schedule, seed, fold)] = float(summary["test_mae"])
                print(f"{schedule:8s} seed {seed:>9d} fold {fold}: test MAE {table[(schedule, seed, fold)]:.4f}",
                      file=sys.stderr, flush=True)
    print(f"\n{args.target}: test MAE per seed (columns: folds {folds}); sd across seeds per fold")
    print(f"{'schedule':9s} {'seed':>9s} " + " ".join(f"fold {f:<4d}" for f in folds))
    for schedule in args.schedules.split(","):
        for seed in seeds:
            print(f"{schedule:9s} {seed:>9d} " + " ".join(f"{table[(schedule, seed, f)]:9.4f}" for f in folds))
        sds = [statistics.stdev([table[(schedule, s, f)] for s in seeds]) for f in folds]
        print(f"{schedule:9s} {'sd':>9s} " + " ".join(f"{sd:9.4f}" for sd in sds)
              + f"   median per-fold sd {statistics.median(sds):.4f}")


if __name__ == "__main__":
    main()
