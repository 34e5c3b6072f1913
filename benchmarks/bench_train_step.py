"""CPU-seconds of the training engine's step, as CPU-s per 118k-molecule epoch and model.

    python benchmarks/bench_train_step.py [--features data/features --table data/qm9.parquet]
        [--models 1,2] [--head 2000] [--readout custom,autodiff] [--batch 64] [--steps 40]

Each variant: K models (the step vmapped over them when K > 1), random batches of the store's
molecules padded to bucketed shapes (the ``host`` batches of full training), warm-up steps until no
new shape is compiled, then ``--steps`` timed steps. ``readout autodiff`` swaps the hand-written
gradient of the Gaussian memberships for the plain autodiff formulation (the code before it).
CPU time is the process's (``time.process_time``: all threads), so it can be read on a shared
machine; compare variants in interleaved runs of this script (A B A B) for claims.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

EPOCH_MOLECULES = 118_000


def autodiff_memberships(self, h):  # noqa: ANN001, ANN201 - the formulation before the custom gradient
    from keras import ops

    diff = ops.expand_dims(h, -1) - self.means
    return ops.softmax(-0.5 * ops.square(diff / self.stds), axis=-1)


def measure(store, y, positions, k_models: int, head: int, readout: str, batch: int, steps: int) -> dict:  # noqa: ANN001
    import jax.numpy as jnp

    from qmlrp.models import readout as readout_module
    from qmlrp.training.batches import HostBatches
    from qmlrp.training.config import TrainConfig, get_target
    from qmlrp.training.engine import ModelRun, _build, _compile_steps, _stack

    original = readout_module.GaussianHistogram.memberships
    if readout == "autodiff":
        readout_module.GaussianHistogram.memberships = autodiff_memberships
    try:
        config = TrainConfig.from_params({"batch_size": batch, "model": {"head_units": [head]}})
        target = get_target("alpha")
        runs = [ModelRun(f"m{k}", target, y, positions, positions[:100], config.seed + k) for k in range(k_models)]
        source = HostBatches(store, np.stack([r.y for r in runs]), batch)
        models = [_build(r, store, config)[0] for r in runs]
        tv = _stack([[v.value for v in m.trainable_variables] for m in models])
        ntv = _stack([[v.value for v in m.non_trainable_variables] for m in models])
        m = [jnp.zeros_like(a) for a in tv]
        v = [jnp.zeros_like(a) for a in tv]
        t = jnp.zeros(k_models, jnp.int32)
        step, _ = _compile_steps(models[0], config, source, k_models)
        std, lr = jnp.ones(k_models), jnp.full(k_models, 1e-3)
        rng = np.random.default_rng(0)
        shapes: set = set()

        def run(n: int) -> int:
            nonlocal tv, ntv, m, v, t
            new = 0
            for _ in range(n):
                chunks = [np.sort(rng.choice(positions, batch, replace=False)) for _ in range(k_models)]
                inputs, yy, w = source.inputs(chunks)
                shape = inputs["pair_features"].shape
                new += shape not in shapes
                shapes.add(shape)
                tv, ntv, m, v, t, _, loss, _ = step(tv, ntv, m, v, t, [], inputs, jnp.asarray(yy), jnp.asarray(w),
                                                    std, lr, None)
            loss.block_until_ready()
            return new

        while run(20):  # warm up until a round of 20 steps compiles nothing new
            pass
        cpu, wall = time.process_time(), time.perf_counter()
        run(steps)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        readout_module.GaussianHistogram.memberships = original
    per_epoch = EPOCH_MOLECULES / batch / steps
    return {"models": k_models, "head": head, "readout": readout, "batch": batch,
            "cpu_ms_per_step": 1000 * cpu / steps, "cpu_s_per_model_epoch": cpu * per_epoch / k_models,
            "wall_s_per_model_epoch": wall * per_epoch / k_models, "compiled_shapes": len(shapes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--table", default="data/qm9.parquet")
    parser.add_argument("--models", default="1,2", help="comma-separated K values")
    parser.add_argument("--head", default="2000", help="comma-separated head widths")
    parser.add_argument("--readout", default="custom,autodiff", help="custom, autodiff")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    from qmlrp.features.store import FeatureStore
    from qmlrp.training.config import get_target
    from qmlrp.training.data import load_targets

    store = FeatureStore.open(args.features)
    y = load_targets(store, args.table, get_target("alpha"))
    positions = np.arange(len(store))
    rows = [measure(store, y, positions, int(k), int(h), r, args.batch, args.steps)
            for k in args.models.split(",") for h in args.head.split(",") for r in args.readout.split(",")]
    print(f"{'K':>2} {'head':>5} {'readout':>9} {'batch':>5} {'CPU ms/step':>12} {'CPU-s/epoch/model':>18} "
          f"{'wall s/epoch/model':>19} {'shapes':>6}")
    for r in rows:
        print(f"{r['models']:>2} {r['head']:>5} {r['readout']:>9} {r['batch']:>5} {r['cpu_ms_per_step']:>12.1f} "
              f"{r['cpu_s_per_model_epoch']:>18.1f} {r['wall_s_per_model_epoch']:>19.1f} {r['compiled_shapes']:>6}")


if __name__ == "__main__":
    main()
