"""Benchmark: Weave model training and inference, ragged (ours) vs naive dense (29 x 29 padded).

    python benchmarks/bench_model.py [--features data/features] [--molecules 4096] [--batch-size 64]
                                     [--variants ragged,dense,xla]

Each variant runs in its own child process (so its peak RSS is its own) through the full input
pipeline (FeatureStore.batch -> [to_dense] -> model), with the architecture of params.yaml
``train.model`` when present. Prints molecules/s for a training step (forward, backward, Adam) and
for inference, and the epoch time extrapolated to 118k molecules (90% of QM9's 130,831 minus
validation is ~106k; 118k is the nine training folds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EPOCH_MOLECULES = 118_000


def _config(params: Path):
    from qmlrp.models.config import ModelConfig

    if params.exists():
        import yaml

        section = (yaml.safe_load(params.read_text()) or {}).get("train", {}).get("model")
        if section:
            return ModelConfig.from_params(section)
    return ModelConfig()


def _batches(features: Path | None, n: int, batch_size: int, seed: int):
    """List of GraphBatch: real molecules from the store, or synthetic QM9-sized ones."""
    from qmlrp.models.inputs import random_batch

    rng = np.random.default_rng(seed)
    if features is not None and (features / "molecules.parquet").exists():
        from qmlrp.features.store import FeatureStore

        store = FeatureStore.open(features)
        positions = rng.choice(len(store), size=min(n, len(store)), replace=len(store) < n)
        return [lambda p=positions[s : s + batch_size]: store.batch(p) for s in range(0, positions.size, batch_size)], "QM9 store"
    counts = np.clip(np.round(rng.normal(18.0, 3.0, n)), 3, 29).astype(int)
    return [lambda c=counts[s : s + batch_size], k=s: random_batch(c, seed=k) for s in range(0, n, batch_size)], "synthetic"


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    import keras
    import tensorflow as tf

    from qmlrp.models.dense import DenseGraphConvModel, dense_inputs
    from qmlrp.models.gc import build_model
    from qmlrp.models.inputs import (
        INPUT_DTYPES,
        INPUT_SHAPES,
        PADDED_INPUT_DTYPES,
        PADDED_INPUT_SHAPES,
        batch_to_inputs,
        pad_inputs,
    )

    keras.utils.set_random_seed(0)
    ragged = build_model(_config(Path(args.params)))
    n = args.dense_molecules if variant == "dense" else args.molecules
    makers, source = _batches(Path(args.features) if args.features else None, n, args.batch_size, seed=1)
    slots = args.batch_size + 1
    if variant == "ragged":
        model = ragged
        spec = {k: tf.TensorSpec((None, *INPUT_SHAPES[k]), INPUT_DTYPES[k]) for k in INPUT_SHAPES}
        signature = (spec, tf.TensorSpec((None, 1), tf.float32))
        item = lambda b: (batch_to_inputs(b), np.zeros((b.n_molecules, 1), np.float32))  # noqa: E731
    elif variant == "xla":  # bucket-padded static shapes, XLA-compiled step
        model = ragged
        spec = {k: tf.TensorSpec((None, *PADDED_INPUT_SHAPES[k]), PADDED_INPUT_DTYPES[k]) for k in PADDED_INPUT_SHAPES}
        signature = (spec, tf.TensorSpec((slots, 1), tf.float32), tf.TensorSpec((slots,), tf.float32))
        item = lambda b: pad_inputs(batch_to_inputs(b), np.zeros((b.n_molecules, 1), np.float32), slots,  # noqa: E731
                                    args.atom_bucket, args.pair_bucket)
    elif variant == "dense":
        model = DenseGraphConvModel(ragged)
        spec = {
            "atoms": tf.TensorSpec((None, 29, 21), tf.float32),
            "pairs": tf.TensorSpec((None, 29, 29, 13), tf.float32),
            "atom_mask": tf.TensorSpec((None, 29), tf.float32),
        }
        signature = (spec, tf.TensorSpec((None, 1), tf.float32))
        item = lambda b: (dense_inputs(b), np.zeros((b.n_molecules, 1), np.float32))  # noqa: E731
    else:
        raise SystemExit(f"unknown variant {variant!r}")

    def generator():
        for make in makers:
            yield item(make())

    def dataset():
        ds = tf.data.Dataset.from_generator(generator, output_signature=signature)
        return ds.apply(tf.data.experimental.assert_cardinality(len(makers))).prefetch(2)

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae", jit_compile=variant == "xla")
    # trace (XLA: compile every bucket shape of the timed batches) outside the timing
    warm = dataset() if variant == "xla" else dataset().take(2)
    model.fit(warm, epochs=1, verbose=0)
    model.predict(warm, verbose=0)

    t, c = time.perf_counter(), time.process_time()
    model.fit(dataset(), epochs=1, verbose=0)
    train_s, train_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    model.predict(dataset(), verbose=0)
    infer_s, infer_cpu = time.perf_counter() - t, time.process_time() - c
    n_mol = sum(len(m().ids) for m in makers)
    return {
        "variant": variant,
        "source": source,
        "molecules": n_mol,
        "train_mol_s": n_mol / train_s,
        "infer_mol_s": n_mol / infer_s,
        "epoch_train_s": EPOCH_MOLECULES / (n_mol / train_s),
        "epoch_infer_s": EPOCH_MOLECULES / (n_mol / infer_s),
        "epoch_train_cpu_s": train_cpu * EPOCH_MOLECULES / n_mol,
        "epoch_infer_cpu_s": infer_cpu * EPOCH_MOLECULES / n_mol,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="data/features", help="FeatureStore directory ('' = synthetic)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--molecules", type=int, default=4096, help="molecules timed, ragged variant")
    parser.add_argument("--dense-molecules", type=int, default=1024, help="molecules timed, dense variant")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--variants", default="ragged,dense", help="comma-separated: ragged, dense, xla")
    parser.add_argument("--atom-bucket", type=int, default=64, help="xla variant: atom count multiple")
    parser.add_argument("--pair-bucket", type=int, default=1024, help="xla variant: pair count multiple")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args)))
        return
    rows = []
    load_before = os.getloadavg()[0]
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--child", variant, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if out.returncode != 0:
            sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"Weave GC, batch {args.batch_size}, {rows[0]['source']} molecules, {os.cpu_count()} CPU cores, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after; epoch = {EPOCH_MOLECULES:,} molecules")
    header = (f"{'variant':8s} {'timed mol':>9s} {'train mol/s':>11s} {'epoch train':>11s} {'(CPU-s)':>9s} "
              f"{'infer mol/s':>11s} {'epoch infer':>11s} {'(CPU-s)':>9s} {'peak RSS':>9s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['variant']:8s} {r['molecules']:9d} {r['train_mol_s']:11.0f} {r['epoch_train_s']:10.0f}s "
              f"{r['epoch_train_cpu_s']:8.0f}s {r['infer_mol_s']:11.0f} {r['epoch_infer_s']:10.0f}s "
              f"{r['epoch_infer_cpu_s']:8.0f}s {r['peak_rss_mib']:7.0f}MiB")
    print("epoch = wall time extrapolated from the timed molecules; CPU-s = process CPU time for the same "
          "(on a loaded machine wall time >> CPU-s / cores)")
    by = {r["variant"]: r for r in rows}
    if "ragged" in by and "dense" in by:
        print(f"ragged vs dense: training x{by['ragged']['train_mol_s'] / by['dense']['train_mol_s']:.1f} "
              f"(CPU x{by['dense']['epoch_train_cpu_s'] / by['ragged']['epoch_train_cpu_s']:.1f}), "
              f"inference x{by['ragged']['infer_mol_s'] / by['dense']['infer_mol_s']:.1f}")


if __name__ == "__main__":
    main()
