"""CPU-milliseconds of the training engine's step and forward pass, with a per-part breakdown.

    python benchmarks/bench_train_step.py [--features data/features --table data/qm9.parquet]
        [--models 1] [--head 2000] [--batch 64] [--steps 40] [--no-parts] [--profile DIR [--top 15]]

Each variant (K models; the step is vmapped over them when K > 1): random batches of the store's
molecules padded to bucketed shapes exactly as ``engine.fit`` makes them (``HostBatches``, labels
masked), warm-up steps until no new shape is compiled, then ``--steps`` timed calls of

* ``step``: the compiled training step of ``engine._compile_steps`` (forward + backward + Adam),
  called as ``fit()`` calls it, including the host's batch assembly (``host`` below);
* ``forward``: the compiled prediction step (inference-mode forward pass);
* ``host``: the host work per step alone (ragged batch from the store, padding, label mask).

The breakdown (K = 1 only) jits each part of the model on its own, forward + backward (the
gradient of a fixed random projection of its output, with respect to its weights and input), on
the inputs the model itself gives that part for the same batches: ``weave`` (both weave modules),
``embedding`` (per-atom dense 50 -> 128 + BatchNorm, training mode), ``readout`` (Gaussian
memberships summed per molecule), ``head`` (dense 2000 + output unit) and ``adam`` (the engine's
update of all weights from given gradients). ``other`` is the step minus host minus these parts:
the loss, the copies between fusions, dispatch. Parts compiled apart fuse less than the whole
step, so the breakdown is a guide to where the time goes, not an exact sum.

``--profile DIR`` instead times the compiled step (K = 1) on one fixed batch, the largest of 20
random ones (no host work), then records ``--steps`` calls with JAX's profiler into ``DIR`` and
prints the time of XLA's compiled operations, grouped by model part and pass (forward, backward;
the weight update is the part ``update``), and the most expensive operations with the source
operation they come from. It is the step as the engine compiles it, fused as it is fused there
(unlike the breakdown above), at one shape. The figures are each operation's wall duration: when
XLA runs independent operations on more threads than there are free cores they overlap, and the
sum can exceed the step's CPU time; on a shared machine the durations move with the load (read
the shares, and compare runs made the same way, e.g. ``PJRT_NPROC=1 taskset -c 0``).

CPU time is the process's (``time.process_time``: all threads, user + system), so it can be read on
a shared machine; compare variants in interleaved runs of this script (A B A B) for claims.
"""

from __future__ import annotations

import argparse
import os
import time

from qmlrp.training.backend import use_jax_backend

use_jax_backend()  # as the package's entry points: Keras on JAX, malloc keeps the step's buffers

import numpy as np  # noqa: E402

EPOCH_MOLECULES = 118_000


def cpu_ms(fn, n: int) -> float:  # noqa: ANN001
    """CPU-ms per call of ``fn`` (which returns something to block on), over ``n`` calls."""
    import jax

    start = time.process_time()
    out = None
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return 1000.0 * (time.process_time() - start) / n


class Bench:
    """One configuration: K models, their stacked state and the engine's compiled steps."""

    def __init__(self, store, y, k_models: int, head: int, batch: int) -> None:  # noqa: ANN001
        import jax.numpy as jnp

        from qmlrp.training.batches import HostBatches
        from qmlrp.training.config import TrainConfig
        from qmlrp.targets import get_target
        from qmlrp.training.engine import ModelRun, _build, _compile_steps, _stack
        from qmlrp.training.kind_training import training_of

        self.config = TrainConfig.from_params({"batch_size": batch, "model": {"head_units": [head]}})
        self.k, self.batch = k_models, batch
        positions = np.arange(len(store))
        self.positions = positions
        target = get_target("alpha")
        runs = [ModelRun(f"m{k}", target, y, positions, positions[:100], self.config.seed + k) for k in range(k_models)]
        self.source = HostBatches(store, [r.y for r in runs], batch, self.config.xla_atom_bucket,
                                  self.config.xla_pair_bucket)
        built = [_build(r, store, self.config) for r in runs]
        self.models = [b[0] for b in built]
        self.std = jnp.asarray(np.stack([b[2] for b in built]), jnp.float32)
        self.tv = _stack([[v.value for v in m.trainable_variables] for m in self.models])
        self.ntv = _stack([[v.value for v in m.non_trainable_variables] for m in self.models])
        self.m = [jnp.zeros_like(a) for a in self.tv]
        self.v = [jnp.zeros_like(a) for a in self.tv]
        self.t = jnp.zeros(k_models, jnp.int32)
        self.lr = jnp.full(k_models, 1e-3, jnp.float32)
        self.step, self.predict = _compile_steps(self.models[0], self.config, self.source, k_models,
                                                 training_of(target).loss)
        self.rng = np.random.default_rng(0)
        self.shapes: set = set()

    def host(self):  # noqa: ANN201
        from qmlrp.training.engine import masked_labels

        chunks = [np.sort(self.rng.choice(self.positions, self.batch, replace=False)) for _ in range(self.k)]
        inputs, y, w = self.source.inputs(chunks)
        y, mask = masked_labels(y, w)
        self.shapes.add(inputs["pair_features"].shape)
        return inputs, y, w, mask

    def step_args(self, inputs, y, w, mask) -> tuple:  # noqa: ANN001
        """The compiled step's arguments for one batch (from :meth:`host`) and the current state
        (host arrays passed as they are, as ``fit()`` passes them)."""
        return (self.tv, self.ntv, self.m, self.v, self.t, [], inputs, y, w, mask, self.std, self.lr, None)

    def apply(self, inputs, y, w, mask) -> tuple:  # noqa: ANN001
        """One step on the given batch, the state advanced; returns ``(loss, abs_err)``."""
        (self.tv, self.ntv, self.m, self.v, self.t, _, loss, abs_err) = self.step(*self.step_args(inputs, y, w, mask))
        return loss, abs_err

    def train(self):  # noqa: ANN201
        """One step as ``fit()`` takes it (host batch included)."""
        return self.apply(*self.host())[0]

    def forward(self):  # noqa: ANN201
        import jax.numpy as jnp

        inputs, _, w, _ = self.host()
        return self.predict(self.tv, self.ntv, inputs, jnp.asarray(w), None)

    def warm_up(self) -> None:
        """Steps and forward passes until a round of 20 compiles no new shape."""
        while True:
            before = len(self.shapes)
            for _ in range(20):
                self.train()
                self.forward()
            if len(self.shapes) == before:
                return


def part_functions(bench: Bench, n_batches: int = 8) -> dict:
    """name -> (jitted fwd+bwd function, list of argument tuples, one per batch) for each part."""
    import jax
    import jax.numpy as jnp

    from qmlrp.models.inputs import ATOM_MASK_KEY, ATOM_MOLECULE_KEY, MOLECULE_ATOMS_KEY, PAIR_ATOMS_KEY

    model = bench.models[0]
    tv = [a[0] for a in bench.tv]
    ntv = [a[0] for a in bench.ntv]
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    nindex = {id(v): i for i, v in enumerate(model.non_trainable_variables)}

    def weights(layer):  # noqa: ANN001, ANN202
        return ([tv[index[id(v)]] for v in layer.trainable_variables],
                [ntv[nindex[id(v)]] for v in layer.non_trainable_variables])

    def projected(fn):  # noqa: ANN001, ANN202 - fwd + bwd: gradient of <fn(w, x), c> w.r.t. w and x
        def loss(w, x, c, *rest):  # noqa: ANN001, ANN202
            return jnp.sum(fn(w, x, *rest) * c)
        return jax.jit(jax.grad(loss, argnums=(0, 1)))

    weave_w = [weights(mod) for mod in model.weave_modules]
    emb_w, head_w = weights(model.atom_embedding), weights(model.head)

    def weave(w, x, pair_atoms):  # noqa: ANN001, ANN202
        atoms, pairs = x
        for mod, (t, n) in zip(model.weave_modules, w):
            (atoms, pairs), _ = mod.stateless_call(t, n, atoms, pairs, pair_atoms)
        return atoms

    def embedding(w, x, mask):  # noqa: ANN001, ANN202
        out, _ = model.atom_embedding.stateless_call(w, emb_w[1], x, training=True, mask=mask)
        return out

    def readout(w, x, atom_molecule, n_molecules):  # noqa: ANN001, ANN202
        return model.readout(x, atom_molecule, n_molecules=n_molecules.shape[0])

    def head(w, x):  # noqa: ANN001, ANN202
        out, _ = model.head.stateless_call(w, head_w[1], x, training=True, scaled=False)
        return out

    adam_step = jax.jit(_adam_only)
    parts: dict = {"weave": (projected(weave), []), "embedding": (projected(embedding), []),
                   "readout": (projected(readout), []), "head": (projected(head), []), "adam": (adam_step, [])}
    key = jax.random.PRNGKey(0)
    for _ in range(n_batches):
        inputs, _, _, _ = bench.host()
        inputs = {k: v[0] for k, v in inputs.items()}
        trace = model.trace(inputs)  # inference-mode intermediates: shapes and scales of each part's input
        atoms, pairs = model.input_layer(inputs)
        a50 = jnp.asarray(trace[f"weave{len(model.weave_modules) - 1}"][0])
        h = jnp.asarray(trace["embedding"])
        x = jnp.asarray(trace["readout"])
        key, *ks = jax.random.split(key, 5)
        parts["weave"][1].append((weave_w, (atoms, pairs), jax.random.normal(ks[0], a50.shape),
                                  jnp.asarray(inputs[PAIR_ATOMS_KEY])))
        parts["embedding"][1].append((emb_w[0], a50, jax.random.normal(ks[1], h.shape),
                                      jnp.asarray(inputs[ATOM_MASK_KEY])))
        parts["readout"][1].append(([], h, jax.random.normal(ks[2], x.shape),
                                    jnp.asarray(inputs[ATOM_MOLECULE_KEY]), jnp.asarray(inputs[MOLECULE_ATOMS_KEY])))
        parts["head"][1].append((head_w[0], x, jax.random.normal(ks[3], (x.shape[0], 1))))
        parts["adam"][1].append((tv, [jnp.full_like(a, 1e-3) for a in tv], [jnp.zeros_like(a) for a in tv],
                                 [jnp.zeros_like(a) for a in tv], jnp.int32(3)))
    return parts


PARTS = ("weave0", "weave1", "weave2", "embedding", "readout", "head", "graph_input")
"""Model parts named in the compiled operations' ``op_name`` (Keras layer scopes)."""


def part_of(op_name: str) -> tuple[str, str]:
    """``(part, pass)`` of a compiled operation from its ``op_name`` metadata, e.g.
    ``jit(call)/transpose(jvp(weave0))/pair_update/dot_general`` -> ``("weave0", "backward")``.
    Operations outside every model part are the weight update (Adam, with the select that skips
    empty batches) or the loss."""
    import re

    found = re.search("|".join(PARTS), op_name)
    if found:
        return found.group(0), "backward" if "transpose(" in op_name else "forward"
    return ("update", "-") if "_where" in op_name else ("loss and rest", "-")


def profile_step(bench: Bench, steps: int, out_dir: str, top: int = 15) -> None:
    """Profile ``steps`` calls of the compiled step on the largest of 20 random batches; print the
    operations' time by part and pass, and the ``top`` operations (see the module docstring)."""
    import collections
    import glob
    import gzip
    import json
    import re

    import jax
    import jax.numpy as jnp

    from qmlrp.models.inputs import ATOM_FEATURES_KEY, MOLECULE_ATOMS_KEY, PAIR_FEATURES_KEY

    batch = max((bench.host() for _ in range(20)), key=lambda b: int(b[0][MOLECULE_ATOMS_KEY][0, :-1].sum()))
    inputs = batch[0]
    batch = (inputs, *(jnp.asarray(a) for a in batch[1:]))

    def call() -> object:
        return bench.apply(*batch)[0]

    compiled = bench.step.lower(*bench.step_args(*batch)).compile()
    op_names = {}
    for line in compiled.as_text().splitlines():
        found = re.match(r'\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"', line)
        if found:
            op_names[found.group(1)] = found.group(2).removeprefix("jit(call)/")
    for _ in range(5):
        call()
    jax.block_until_ready(call())
    step_ms = cpu_ms(call, steps)
    jax.profiler.start_trace(out_dir, create_perfetto_trace=True)
    start = time.process_time()
    for _ in range(steps):
        loss = call()
    jax.block_until_ready(loss)
    profiled_ms = 1000.0 * (time.process_time() - start) / steps
    jax.profiler.stop_trace()
    traces = sorted(glob.glob(f"{out_dir}/**/*.trace.json.gz", recursive=True), key=os.path.getmtime)
    if not traces:
        raise SystemExit(f"{out_dir}: the profiler wrote no trace (*.trace.json.gz)")
    with gzip.open(traces[-1]) as handle:
        events = json.load(handle)["traceEvents"]
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in op_names:
            per_op[event["name"]] += event["dur"] / 1000.0 / steps  # us -> ms per step
    by_part: dict = collections.defaultdict(lambda: collections.Counter())
    for name, ms in per_op.items():
        part, direction = part_of(op_names[name])
        by_part[part][direction] += ms
    total = sum(per_op.values())
    n_atoms, n_pairs = inputs[ATOM_FEATURES_KEY].shape[1], inputs[PAIR_FEATURES_KEY].shape[1]
    print(f"Compiled step on one batch of {bench.batch} molecules ({n_atoms} atom rows, {n_pairs} pair rows, "
          f"padded): {step_ms:.1f} CPU-ms per call; {steps} calls profiled into {out_dir} "
          f"({profiled_ms:.1f} CPU-ms per call under the profiler)")
    print(f"{'part':<14} {'forward':>8} {'backward':>9} {'other':>7} {'total':>7} {'share':>6}   (ms per step)")
    for part, ms in sorted(by_part.items(), key=lambda kv: -sum(kv[1].values())):
        part_total = sum(ms.values())
        print(f"{part:<14} {ms['forward']:>8.2f} {ms['backward']:>9.2f} {ms['-']:>7.2f} {part_total:>7.2f} "
              f"{part_total / total:>6.1%}")
    print(f"{'all':<14} {'':>8} {'':>9} {'':>7} {total:>7.2f}")
    print(f"Top {top} operations (ms per step, operation, source):")
    for name, ms in per_op.most_common(top):
        print(f"  {ms:6.2f}  {name:<28} {op_names[name][:100]}")


def _adam_only(p, g, m, v, t):  # noqa: ANN001, ANN202 - the engine's update (one model, active)
    from qmlrp.training.engine import ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON
    import jax.numpy as jnp

    tf = (t + 1).astype(jnp.float32)
    alpha = 1e-3 * jnp.sqrt(1.0 - ADAM_BETA_2 ** tf) / (1.0 - ADAM_BETA_1 ** tf)
    out = []
    for pi, gi, mi, vi in zip(p, g, m, v):
        mi1 = mi + (gi - mi) * (1.0 - ADAM_BETA_1)
        vi1 = vi + (gi * gi - vi) * (1.0 - ADAM_BETA_2)
        out.append((pi - mi1 * alpha / (jnp.sqrt(vi1) + ADAM_EPSILON), mi1, vi1))
    return out


def measure(store, y, k_models: int, head: int, batch: int, steps: int, parts: bool) -> dict:  # noqa: ANN001
    bench = Bench(store, y, k_models, head, batch)
    bench.warm_up()
    row = {"models": k_models, "head_units": head, "batch": batch, "shapes": len(bench.shapes)}
    row["host"] = cpu_ms(bench.host, steps)
    row["step"] = cpu_ms(bench.train, steps)
    row["forward"] = cpu_ms(bench.forward, steps)
    if parts and k_models == 1:
        fns = part_functions(bench)
        for name, (fn, args) in fns.items():
            for a in args:  # compile every shape first
                fn(*a)
            counter = iter(range(10**9))
            row[name] = cpu_ms(lambda fn=fn, args=args: fn(*args[next(counter) % len(args)]), steps)
        row["other"] = row["step"] - row["host"] - sum(row[n] for n in fns)
    row["cpu_s_per_model_epoch"] = row["step"] / 1000.0 * EPOCH_MOLECULES / batch / k_models
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--table", default="data/qm9.parquet")
    parser.add_argument("--models", default="1", help="comma-separated K values")
    parser.add_argument("--head", default="2000", help="comma-separated head widths")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--no-parts", action="store_true", help="skip the per-part breakdown")
    parser.add_argument("--profile", metavar="DIR", help="profile the compiled step (K = 1) on one batch into DIR")
    parser.add_argument("--top", type=int, default=15, help="with --profile: how many operations to list")
    args = parser.parse_args()

    from qmlrp.features.store import FeatureStore
    from qmlrp.targets import get_target
    from qmlrp.targets.labels import load_labels

    store = FeatureStore.open(args.features)
    y = load_labels(store, args.table, get_target("alpha"))
    if args.profile:
        bench = Bench(store, y, 1, int(args.head.split(",")[0]), args.batch)
        bench.warm_up()
        profile_step(bench, args.steps, args.profile, args.top)
        return
    rows = [measure(store, y, int(k), int(h), args.batch, args.steps, not args.no_parts)
            for k in args.models.split(",") for h in args.head.split(",")]
    cols = ["step", "forward", "host", "weave", "embedding", "readout", "head", "adam", "other"]
    print("CPU-ms per call (batch of %d molecules per model; step = forward + backward + Adam + host)" % args.batch)
    print(f"{'K':>2} {'head':>5} " + " ".join(f"{c:>9}" for c in cols) + f" {'CPU-s/epoch':>12} {'shapes':>6}")
    for r in rows:
        cells = " ".join(f"{r[c]:>9.1f}" if c in r else f"{'-':>9}" for c in cols)
        print(f"{r['models']:>2} {r['head_units']:>5} {cells} {r['cpu_s_per_model_epoch']:>12.1f} {r['shapes']:>6}")
    print(f"(CPU-s/epoch: step CPU-ms x {EPOCH_MOLECULES} molecules / batch, per model)")


if __name__ == "__main__":
    main()
