"""The compiled training step against variants of itself, in one process, interleaved; bit-identity checked.

    python benchmarks/bench_step_variants.py [--rounds 6] [--steps 24] [--check-steps 12]
        [--models 1] REFERENCE VARIANT [VARIANT ...]

Each argument is a configuration, parts joined with ``+``:

* ``current`` -- the engine's step as it is;
* ``xla-default-schedule`` -- without the engine's CPU compiler options (``CPU_STEP_OPTIONS``);
* ``readout-2d-sum`` -- the Gaussian histogram summed per molecule as an (atoms, 11 * 128) reshape
  (the form before 2026-12-03, which makes XLA copy the memberships once more);
* ``remat-weave`` -- every weave module under ``jax.checkpoint`` (recomputed in the backward pass);
* ``joined-pair-dots`` -- the first module's pair_to_atom and pair_to_pair as one dot of the joined
  (13, 100) kernel;
* ``a2p-grad`` -- the A->P layer's pair output with a hand-written gradient that keeps only the
  two ReLU masks (instead of autodiff keeping both gathered [U | V] rows of every pair);
* ``a2p-names`` -- the A->P layer under ``jax.checkpoint`` saving only its two pre-activations
  ``z_ij``, ``z_ji`` (the gathers recomputed, not kept, for the backward pass);
* ``donate`` -- the step's weights, BatchNorm statistics, Adam moments and step count donated to
  its outputs (``donate_argnums``: XLA updates them in place instead of writing new buffers);
* ``opt:KEY=VALUE`` -- an XLA compiler option on the step's ``jax.jit`` (``true``/``false`` for booleans).

All configurations are built in the same process from the same seeds (``--models`` K models of alpha,
vmapped in one step when K > 1; head 2000, batch 64) and get the same ``--check-steps`` real batches
of the demo store (``data/features``). First each takes ``--check-steps`` steps, and its weights,
Adam state, BatchNorm statistics and per-step losses are compared with the first configuration's,
bit for bit. Then ``--rounds`` rounds, each timing
``--steps`` calls of every configuration in turn (CPU time of the process, all threads): the
configurations share the machine's state round by round, so their ratio is steadier than that of
separate processes on a shared machine. Pin it (``taskset -c 0``, and ``PJRT_NPROC=1`` for one XLA
thread) to compare on one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_train_step import Bench  # noqa: E402 - also sets Keras on JAX, as the entry points do

import numpy as np  # noqa: E402


def _readout_2d_sum(h, atom_molecule, n_molecules, means, stds):  # noqa: ANN001, ANN202
    """The histogram as it was before the (atoms, G, F) sum (same numbers)."""
    from keras import ops

    g = int(means.shape[0])
    f = ops.shape(h)[-1]
    mu = ops.cast(np.reshape(means, (1, g, 1)), h.dtype)
    inv_var = ops.cast(np.reshape(1.0 / np.square(stds.astype(np.float64)), (1, g, 1)), h.dtype)

    @ops.custom_gradient
    def forward(h):  # noqa: ANN001, ANN202
        diff = ops.expand_dims(h, 1) - mu
        m = ops.softmax(-0.5 * ops.square(diff) * inv_var, axis=1)
        x = ops.segment_sum(ops.reshape(m, (-1, g * f)), atom_molecule, num_segments=n_molecules)
        out = ops.reshape(ops.transpose(ops.reshape(x, (-1, g, f)), (0, 2, 1)), (-1, f * g))

        def grad(*args, upstream=None):  # noqa: ANN001, ANN002, ANN202
            if upstream is None:
                (upstream,) = args
            up = ops.transpose(ops.reshape(upstream, (-1, f, g)), (0, 2, 1))
            up = ops.take(up, atom_molecule, axis=0)
            d_logits = m * (up - ops.sum(m * up, axis=1, keepdims=True))
            return ops.sum(d_logits * (-diff * inv_var), axis=1)

        return out, grad

    return forward(h)


def _patches() -> dict[str, Callable[[], Callable[[], None]]]:
    """name -> install function returning its undo."""
    import jax
    from keras import ops

    import qmlrp.models.readout as readout
    import qmlrp.models.weave as weave
    import qmlrp.training.engine as engine

    def patch(module: object, name: str, value: object) -> Callable[[], None]:
        old = getattr(module, name)
        setattr(module, name, value)
        return lambda: setattr(module, name, old)

    plain_forward = weave.WeaveModule.forward

    def remat_forward(self, atoms, pairs, pair_atoms, tape=None):  # noqa: ANN001, ANN202
        if tape is not None:
            return plain_forward(self, atoms, pairs, pair_atoms, tape)
        return jax.checkpoint(lambda a, p, pa: plain_forward(self, a, p, pa))(atoms, pairs, pair_atoms)

    def joined_forward(self, atoms, pairs, pair_atoms, tape=None):  # noqa: ANN001, ANN202
        if tape is not None or not self.update_pairs:
            return plain_forward(self, atoms, pairs, pair_atoms, tape)
        to_atom, to_pair = self.pair_to_atom, self.pair_to_pair
        z = ops.matmul(pairs, ops.concatenate([to_atom.kernels[0], to_pair.kernels[0]], axis=1))
        pairwise = to_atom.activation(z[:, : to_atom.units] + to_atom.bias)
        pair_to_pair = to_pair.activation(z[:, to_atom.units :] + to_pair.bias)
        new_atoms = self.atom_update([self.atom_to_atom(atoms),
                                      weave.pair_to_atom_sum(pairwise, pair_atoms, ops.shape(atoms)[0])])
        return new_atoms, self.pair_update([self.atom_to_pair(atoms, pair_atoms), pair_to_pair])

    import qmlrp.models.layers as layers

    plain_pair_forward = layers.PairFromAtoms.forward

    def a2p_grad_forward(self, atoms, pair_atoms, tape=None):  # noqa: ANN001, ANN202
        if tape is not None:
            return plain_pair_forward(self, atoms, pair_atoms, tape)
        projected = ops.matmul(atoms, ops.concatenate([self.kernel_first, self.kernel_second], axis=1))
        units, n_atoms = self.units, ops.shape(atoms)[0]
        first, second = pair_atoms[:, 0], pair_atoms[:, 1]

        @ops.custom_gradient
        def pairs_of(projected, bias):  # noqa: ANN001, ANN202
            at_i = ops.take(projected, first, axis=0)
            at_j = ops.take(projected, second, axis=0)
            z_ij = at_i[:, :units] + at_j[:, units:] + bias
            z_ji = at_j[:, :units] + at_i[:, units:] + bias
            on_ij, on_ji = z_ij > 0, z_ji > 0

            def grad(*args, upstream=None):  # noqa: ANN001, ANN002, ANN202
                if upstream is None:
                    (upstream,) = args
                g_ij = ops.where(on_ij, upstream, 0.0)
                g_ji = ops.where(on_ji, upstream, 0.0)
                d_at_i = ops.concatenate([g_ij, g_ji], axis=1)
                d_at_j = ops.concatenate([g_ji, g_ij], axis=1)
                d_projected = (ops.segment_sum(d_at_i, first, num_segments=n_atoms)
                               + ops.segment_sum(d_at_j, second, num_segments=n_atoms))
                return d_projected, ops.sum(g_ij, axis=0) + ops.sum(g_ji, axis=0)

            return ops.relu(z_ij) + ops.relu(z_ji), grad

        return pairs_of(projected, self.bias)

    def a2p_names_forward(self, atoms, pair_atoms, tape=None):  # noqa: ANN001, ANN202
        if tape is not None:
            return plain_pair_forward(self, atoms, pair_atoms, tape)
        from jax.ad_checkpoint import checkpoint_name

        def body(atoms):  # noqa: ANN001, ANN202
            z_ij, z_ji = self.pre_activations(atoms, pair_atoms)
            return self.activation(checkpoint_name(z_ij, "z_ij")) + self.activation(checkpoint_name(z_ji, "z_ji"))

        policy = jax.checkpoint_policies.save_only_these_names("z_ij", "z_ji")
        return jax.checkpoint(body, policy=policy)(atoms)

    return {
        "current": lambda: (lambda: None),
        "a2p-grad": lambda: patch(layers.PairFromAtoms, "forward", a2p_grad_forward),
        "a2p-names": lambda: patch(layers.PairFromAtoms, "forward", a2p_names_forward),
        "xla-default-schedule": lambda: patch(engine, "step_compiler_options", lambda: None),
        "readout-2d-sum": lambda: patch(readout, "_histogram", _readout_2d_sum),
        "remat-weave": lambda: patch(weave.WeaveModule, "forward", remat_forward),
        "joined-pair-dots": lambda: patch(weave.WeaveModule, "forward", joined_forward),
    }


class Configuration:
    """One configuration's model, compiled step and batches."""

    def __init__(self, name: str, store, y, n_batches: int, n_models: int = 1) -> None:  # noqa: ANN001
        import jax
        import jax.numpy as jnp

        self.name = name
        patches, options, undo, donate = _patches(), {}, [], False
        for part in name.split("+"):
            if part == "donate":
                donate = True
            elif part.startswith("opt:"):
                key, _, value = part[4:].partition("=")
                options[key] = {"true": True, "false": False}.get(value, value)
            elif part in patches:
                undo.append(patches[part]())
            else:
                raise SystemExit(f"{part}: unknown variant part (known: {', '.join(patches)}, donate, opt:KEY=VALUE)")
        self.bench = Bench(store, y, n_models, 2000, 64)  # the step is traced on its first call: keep the patches
        self.undo = undo
        if options or donate:
            from qmlrp.training.engine import step_compiler_options

            merged = {**(step_compiler_options() or {}), **options}
            self.bench.step = jax.jit(self.bench.step.__wrapped__, compiler_options=merged,
                                      donate_argnums=(0, 1, 2, 3, 4) if donate else ())
        self.bench.rng = np.random.default_rng(5)
        self.batches = []
        for _ in range(n_batches):
            inputs, y_, w, mask = self.bench.host()
            self.batches.append((inputs, jnp.asarray(y_), jnp.asarray(w), jnp.asarray(mask)))
        self.losses = [self.step(i) for i in range(n_batches)]  # compile every shape, patches in place
        jax.block_until_ready(self.losses)
        for u in reversed(undo):
            u()

    def step(self, i: int) -> tuple:
        """``(loss, abs_err)`` of one step on batch ``i`` (cycling)."""
        return self.bench.apply(*self.batches[i % len(self.batches)])

    def state(self) -> list:
        b = self.bench
        return list(b.tv) + list(b.m) + list(b.v) + list(b.ntv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configurations", nargs="+")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--table", default="data/qm9.parquet")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--check-steps", type=int, default=12)
    parser.add_argument("--models", type=int, default=1, help="K models in one program (vmapped when K > 1)")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from qmlrp.features.store import FeatureStore
    from qmlrp.targets import get_target
    from qmlrp.targets.labels import load_labels

    store = FeatureStore.open(args.features)
    y = load_labels(store, args.table, get_target("alpha"))
    configs = [Configuration(name, store, y, args.check_steps, args.models) for name in args.configurations]
    reference = configs[0]
    print(f"Bit-identity after {args.check_steps} steps on the same batches, against {reference.name}:")
    for c in configs[1:]:
        same = [bool(jnp.array_equal(a, b)) for a, b in zip(reference.state(), c.state())]
        losses = all(bool(jnp.array_equal(a[0], b[0])) and bool(jnp.array_equal(a[1], b[1]))
                     for a, b in zip(reference.losses, c.losses))
        print(f"  {c.name}: state {'identical' if all(same) else 'DIFFERS'} ({sum(same)}/{len(same)} arrays), "
              f"losses {'identical' if losses else 'DIFFER'}")
    times: dict[str, list[float]] = {c.name: [] for c in configs}
    for _ in range(args.rounds):
        for c in configs:
            start = time.process_time()
            out = None
            for i in range(args.steps):
                out = c.step(i)
            jax.block_until_ready(out)
            times[c.name].append(1000.0 * (time.process_time() - start) / args.steps)
    base = np.array(times[reference.name])
    print(f"CPU-ms per step ({args.steps} steps a round, {args.rounds} rounds interleaved; ratio to "
          f"{reference.name}, median of the rounds' ratios):")
    for name, values in times.items():
        ratio = float(np.median(np.array(values) / base))
        print(f"  {name:<40} {' '.join(f'{v:6.1f}' for v in values)}   median {np.median(values):6.1f}   "
              f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
