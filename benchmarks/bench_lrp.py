"""Benchmark: LRP time vs forward time over the feature store, conservation error, absorbed share.

    python benchmarks/bench_lrp.py [--model models/alpha/fold0.npz] [--features data/features]
                                   [--limit N] [--batch-size 512] [--rules lrp0 eps ab10 ab21] [--repeats 3]

Without ``--model`` a freshly initialised default-size model is used (random output kernel, so
that relevance is not trivially zero). Forward = the compiled inference function; LRP = one
compiled trace + backward walk for one rule (what a single-rule explanation of the whole store
costs). Both over the same ragged batches; the best of ``--repeats`` runs is reported (the
machine may be shared: timings are noisy). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--features", type=Path, default=Path("data/features"))
    parser.add_argument("--limit", type=int, default=None, help="molecules (default: the whole store)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rules", nargs="+", default=["lrp0", "eps", "ab10", "ab21"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from qmlrp.features.store import FeatureStore
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import inference_function, load_model
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.relevance.rules import get_rule

    store = FeatureStore.open(args.features)
    n = len(store) if args.limit is None else min(args.limit, len(store))
    if args.model is None:
        from qmlrp.models.config import ModelConfig
        from qmlrp.models.gc import build_model

        model = build_model(ModelConfig())
        kernel = model.head.output_layer.kernels[0]
        kernel.assign(np.random.default_rng(0).normal(0, 0.05, kernel.shape).astype("float32"))
        label = "random default-size model"
    else:
        model = load_model(args.model)
        label = str(args.model)
    inputs = [batch_to_inputs(store.batch(np.arange(k, min(k + args.batch_size, n))))
              for k in range(0, n, args.batch_size)]
    forward = inference_function(model)
    lrp = ModelLRP(model)
    rules = {name: get_rule(name) for name in args.rules}
    for name, rule in rules.items():  # compile once, outside the timings
        lrp.explain_inputs(inputs[0], {name: rule})
    forward(inputs[0])

    def best(fn) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_fwd = best(lambda: [forward(x) for x in inputs])
    print(f"# LRP benchmark: {n} molecules, {label}, batch {args.batch_size}, best of {args.repeats}\n")
    print(f"forward: {t_fwd:.3f} s ({1e6 * t_fwd / n:.1f} us/molecule)\n")
    print("| rule | LRP s | us/molecule | LRP / forward | max rel. conservation error | median rel. error "
          "| absorbed share of y (median) | target-mean share (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rule in rules.items():
        t_lrp = best(lambda: [lrp.explain_inputs(x, {name: rule}) for x in inputs])
        errs, shares, means = [], [], []
        for x in inputs:
            e = lrp.explain_inputs(x, {name: rule})[name]
            errs.append(e.conservation_error() / np.maximum(np.abs(e.output), 1e-12))
            shares.append(e.absorbed_share())
            means.append(e.mean_share())
        err, share, mean = np.concatenate(errs), np.concatenate(shares), np.concatenate(means)
        print(f"| {name} | {t_lrp:.3f} | {1e6 * t_lrp / n:.1f} | {t_lrp / t_fwd:.2f} | {err.max():.2e} | "
              f"{np.median(err):.1e} | {np.nanmedian(share):.3f} | {np.nanmedian(mean):.3f} |")
    t_all = best(lambda: [lrp.explain_inputs(x, rules) for x in inputs])
    print(f"\nall {len(rules)} rules sharing one trace: {t_all:.3f} s = {t_all / t_fwd:.2f} forward passes "
          f"({t_all / t_fwd / len(rules):.2f} per rule)")


if __name__ == "__main__":
    main()
