"""Benchmark: prediction and LRP under Keras' TensorFlow and JAX backends, in CPU-seconds.

    python benchmarks/bench_backends.py [--model studies/qm9-full/models/alpha/fold1.npz]
                                        [--features data/features] [--limit 2000] [--batch-size 512]
                                        [--rule eps] [--rounds 3]

Each measurement runs in a subprocess of its own with ``KERAS_BACKEND`` set (Keras picks its
backend when it is first imported), rounds interleaved TF, JAX, TF, JAX, ... so that a drift in the
machine's speed hits both alike. In the subprocess the CPU time of the process
(``time.process_time``, all threads) is read around:

* set-up: imports, model load, batching and the first pass over all batches (compilation: one
  ``tf.function`` trace on TensorFlow, one XLA program per bucketed shape on JAX) -- reported apart;
* predict: one more pass of ``models.io.inference_function`` over the molecules (what ``qmlrp
  predict`` runs);
* LRP: one more pass of :class:`qmlrp.relevance.model_lrp.ModelLRP` over the same batches with the
  stage's default composite for ``--rule`` (the rule with LRP-eps at the embedding and output unit,
  :func:`qmlrp.relevance.rules.stable_composites`).

Without the feature store, random molecules (:func:`qmlrp.models.inputs.random_batch`) are used and
the output says so. Prints a markdown table of the median over rounds (min..max in brackets).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax")


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Run in the child: set-up, predict and LRP CPU-seconds under this process' backend."""
    t0 = time.process_time()
    import keras

    from qmlrp.models.inputs import batch_to_inputs, random_batch
    from qmlrp.models.io import inference_function, load_model
    from qmlrp.relevance.model_lrp import ModelLRP
    from qmlrp.relevance.rules import stable_composites

    model = load_model(args.model)
    if args.features.exists():
        from qmlrp.features.store import FeatureStore

        store = FeatureStore.open(args.features)
        n = min(args.limit, len(store))
        batches = [store.batch(np.arange(k, min(k + args.batch_size, n))) for k in range(0, n, args.batch_size)]
        source = f"{n} molecules of {args.features}"
    else:
        rng = np.random.default_rng(0)
        n = args.limit
        sizes = rng.integers(3, 30, n)
        batches = [random_batch(list(sizes[k:k + args.batch_size]), seed=k) for k in range(0, n, args.batch_size)]
        source = f"{n} RANDOM molecules (random_batch: no feature store at {args.features})"
    inputs = [batch_to_inputs(b) for b in batches]
    forward = inference_function(model)
    lrp = ModelLRP(model)
    rules = stable_composites([args.rule])

    def predict() -> np.ndarray:
        return np.concatenate([forward(x) for x in inputs])

    def explain() -> list[dict]:
        return [lrp.explain_inputs(x, rules) for x in inputs]

    y = predict()
    e = explain()  # first passes: traces / compiles every shape
    setup = time.process_time() - t0
    t1 = time.process_time()
    predict()
    t_predict = time.process_time() - t1
    t2 = time.process_time()
    explain()
    t_lrp = time.process_time() - t2
    name = args.rule
    rel = np.concatenate([p[name].conservation_error() / np.maximum(np.abs(p[name].output), 1e-12) for p in e])
    return {"backend": keras.backend.backend(), "n": n, "source": source, "setup": setup,
            "predict": t_predict, "lrp": t_lrp, "y_sum": float(np.sum(y)), "conservation_max": float(rel.max()),
            "atoms_sum": float(sum(p[name].atoms.sum() for p in e))}


def run_child(backend: str, argv: list[str]) -> dict[str, object]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, __file__, "--child", *argv], check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cell(values: list[float]) -> str:
    return f"{np.median(values):.2f} ({min(values):.2f}..{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "studies/qm9-full/models/alpha/fold1.npz")
    parser.add_argument("--features", type=Path, default=ROOT / "data/features")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rule", default="eps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    argv = ["--model", str(args.model), "--features", str(args.features), "--limit", str(args.limit),
            "--batch-size", str(args.batch_size), "--rule", args.rule]
    runs: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for r in range(args.rounds):
        for backend in BACKENDS:
            runs[backend].append(run_child(backend, argv))
            print(f"round {r + 1} {backend}: {json.dumps(runs[backend][-1])}", file=sys.stderr, flush=True)
    first = runs[BACKENDS[0]][0]
    n = int(first["n"])
    print(f"# Backends: {first['source']}, model {args.model.name} ({args.model.parent.name}), batch "
          f"{args.batch_size}, LRP rule {args.rule} (stage default composite), {args.rounds} interleaved rounds; "
          f"process CPU-seconds, median (min..max)\n")
    print("| backend | set-up + first pass CPU-s | predict CPU-s | predict molecules/CPU-s | LRP CPU-s | "
          "LRP molecules/CPU-s | max rel. conservation error |")
    print("|---|---|---|---|---|---|---|")
    for backend in BACKENDS:
        rs = runs[backend]
        print(f"| {backend} | {_cell([r['setup'] for r in rs])} | {_cell([r['predict'] for r in rs])} | "
              f"{_cell([n / r['predict'] for r in rs])} | {_cell([r['lrp'] for r in rs])} | "
              f"{_cell([n / r['lrp'] for r in rs])} | {max(r['conservation_max'] for r in rs):.1e} |")
    tf, jx = runs["tensorflow"], runs["jax"]
    ratio_p = [a["predict"] / b["predict"] for a, b in zip(tf, jx)]
    ratio_l = [a["lrp"] / b["lrp"] for a, b in zip(tf, jx)]
    print(f"\nTF / JAX CPU-time, pair by pair: predict {_cell(ratio_p)}, LRP {_cell(ratio_l)}")
    print(f"same numbers: sum of predictions TF {tf[0]['y_sum']:.6g} vs JAX {jx[0]['y_sum']:.6g}; "
          f"sum of atom relevance TF {tf[0]['atoms_sum']:.6g} vs JAX {jx[0]['atoms_sum']:.6g}")


if __name__ == "__main__":
    main()
