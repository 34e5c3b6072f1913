"""LRP through the full Weave GC model: conservation per rule (random weights; synthetic and real
molecules), LRP-0 == gradient x input on the bias-free part, atom permutation equivariance."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from qmlrp.features.batch import GraphBatch
from qmlrp.features.pairs import make_batch
from qmlrp.models.config import ModelConfig
from qmlrp.models.gc import build_model
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import RULE_NAMES, get_rule

SMALL = ModelConfig(atom_width=12, pair_width=10, atom_hidden=9, pair_hidden=8, embedding_width=16, head_units=(24,))


def randomised_model(config: ModelConfig = SMALL, seed: int = 0, biases: bool = True, n_outputs: int = 1) -> keras.Model:
    """A built model whose biases, BatchNorm statistics and output kernel are random too (a fresh
    model has zero biases and a zero output kernel, which would hide mistakes). Seeded: the kernels
    do not depend on which tests ran before."""
    keras.utils.set_random_seed(seed)
    model = build_model(config, n_outputs=n_outputs)
    rng = np.random.default_rng(seed)
    for v in model.weights:
        path = v.path
        if "moving_variance" in path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
        elif any(k in path for k in ("bias", "beta", "moving_mean")):
            v.assign((rng.normal(0, 0.2, v.shape) if biases else np.zeros(v.shape)).astype("float32"))
        elif "gamma" in path:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif "kernel" in path and "output" in path:
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    model.input_layer.adapt(*_scaling_sample())
    model.head.target_scaling.set_statistics(np.full(n_outputs, 3.0 if biases else 0.0), np.full(n_outputs, 2.0))
    return model


def _scaling_sample() -> tuple[np.ndarray, np.ndarray]:
    b = random_batch([6, 9, 12], seed=42)
    return b.atom_features, b.pair_features


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return randomised_model()


@pytest.fixture(scope="module")
def real_batch(qm9_graph) -> GraphBatch:
    graphs = [qm9_graph(i)[1] for i in (1, 4, 21, 120, 1000, 5000)]
    return make_batch(graphs, np.array([1, 4, 21, 120, 1000, 5000]))


@pytest.mark.parametrize("name", RULE_NAMES)
def test_conservation_float64_exact(model, name: str) -> None:
    batch = random_batch([3, 7, 11, 2], seed=1)
    e = ModelLRP(model, dtype="float64", compile=False).explain(batch, get_rule(name))
    y = np.asarray(model(batch_to_inputs(batch), training=False))[:, 0]
    np.testing.assert_allclose(e.output, y, rtol=1e-5, atol=1e-5)
    assert e.conservation_error().max() <= 1e-9 * max(1.0, np.abs(e.output).max())
    np.testing.assert_allclose(e.absorbed_mean, 3.0, rtol=1e-6)  # LRP-0 on y = z*std + mean


@pytest.mark.parametrize("name", RULE_NAMES)
def test_conservation_real_molecules_float32(model, real_batch, name: str) -> None:
    e = ModelLRP(model).explain(real_batch, get_rule(name))
    assert e.atoms.shape == (real_batch.n_atoms, 21) and e.pairs.shape == (real_batch.n_pairs, 13)
    rel = e.conservation_error() / np.maximum(1.0, np.abs(e.output))
    assert rel.max() < 1e-3, rel
    assert np.isfinite(e.atoms).all() and np.isfinite(e.pairs).all()


def test_several_rules_share_one_trace(model, real_batch) -> None:
    lrp = ModelLRP(model)
    both = lrp.explain_inputs(batch_to_inputs(real_batch), {"lrp0": get_rule("lrp0"), "ab21": get_rule("ab21")})
    single = lrp.explain(real_batch, get_rule("ab21"))
    np.testing.assert_allclose(both["ab21"].atoms, single.atoms, rtol=1e-5, atol=1e-6)


def test_lrp0_bias_free_is_gradient_times_input_below_the_gates() -> None:
    """With every bias 0, LRP-0 from the embedding down is gradient x input of the linear
    functional sum_if c_if h_if(x) with c = R(h) / h held fixed (the gates' relevance)."""
    import tensorflow as tf

    model = randomised_model(seed=3, biases=False)
    batch = random_batch([4, 6, 9], seed=5)
    e = ModelLRP(model, dtype="float64", compile=False).explain(batch, get_rule("lrp0"))
    inputs = {k: tf.constant(v) for k, v in batch_to_inputs(batch).items()}
    h = np.asarray(model.trace(inputs)["embedding"], np.float64)
    coef = tf.constant(np.divide(e.embedding, h, out=np.zeros_like(h), where=h != 0), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs["atom_features"])
        tape.watch(inputs["pair_features"])
        functional = tf.reduce_sum(coef * model.trace(inputs)["embedding"])
    ga, gp = tape.gradient(functional, [inputs["atom_features"], inputs["pair_features"]])
    # the reference gradient is float32 (Keras model); the LRP side is float64
    scale = np.abs(e.atoms).max()
    np.testing.assert_allclose(e.atoms, batch.atom_features * ga.numpy(), rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_allclose(e.pairs, batch.pair_features * gp.numpy(), rtol=1e-3, atol=1e-4 * scale)
    assert np.abs(e.absorbed - e.absorbed_mean).max() < 1e-6 * np.abs(e.output).max()


def _permute(batch: GraphBatch, seed: int) -> tuple[GraphBatch, np.ndarray, np.ndarray]:
    """The same molecules with atoms shuffled within each molecule.

    Returns the new batch, ``atom_from`` (new atom k was old atom atom_from[k]) and ``pair_from``
    (new pair row p was old pair row pair_from[p]).
    """
    rng = np.random.default_rng(seed)
    counts = batch.atoms_per_molecule()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    atom_from = np.concatenate([s + rng.permutation(n) for s, n in zip(starts, counts)])
    new_of_old = np.empty_like(atom_from)
    new_of_old[atom_from] = np.arange(atom_from.size)
    old_pair = {(int(a), int(b)): r for r, (a, b) in enumerate(batch.pair_atoms)}
    pair_from = []
    for s, n in zip(starts, counts):
        for i, j in zip(*np.triu_indices(n, k=1)):
            a, b = sorted((int(atom_from[s + i]), int(atom_from[s + j])))
            pair_from.append(old_pair[(a, b)])
    pair_from = np.array(pair_from)
    new_pairs = np.sort(new_of_old[batch.pair_atoms[pair_from]], axis=1).astype(np.int32)
    permuted = GraphBatch(batch.atom_features[atom_from], batch.pair_features[pair_from], new_pairs,
                          batch.atom_molecule[atom_from], batch.pair_molecule[pair_from], batch.ids)
    return permuted, atom_from, pair_from


@pytest.mark.parametrize("name", ["lrp0", "ab21"])
def test_permuting_atoms_permutes_relevance(model, name: str) -> None:
    batch = random_batch([5, 8, 3], seed=9)
    permuted, atom_from, pair_from = _permute(batch, seed=2)
    lrp = ModelLRP(model, dtype="float64", compile=False)
    e0 = lrp.explain(batch, get_rule(name))
    e1 = lrp.explain(permuted, get_rule(name))
    np.testing.assert_allclose(e1.output, e0.output, rtol=1e-5, atol=1e-5)
    # float32 activations summed in another order: LRP-0's small denominators amplify rounding
    scale = np.abs(e0.atoms).max()
    np.testing.assert_allclose(e1.atoms, e0.atoms[atom_from], rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(e1.pairs, e0.pairs[pair_from], rtol=1e-3, atol=1e-3 * scale)


def test_composite_rule_per_layer(model) -> None:
    from qmlrp.relevance.rules import resolve_rules

    comp = resolve_rules(["mix"], composites={"mix": {"default": "eps", "layers": {"weave*": "ab21", "head.*": "lrp0"}}})
    batch = random_batch([4, 6], seed=3)
    e = ModelLRP(model, dtype="float64", compile=False).explain(batch, comp["mix"])
    assert e.rule == "mix"
    assert e.conservation_error().max() < 1e-9 * max(1.0, np.abs(e.output).max())


def test_default_composite_float32_conserves_and_matches_float64(model, real_batch) -> None:
    """LRP-eps at the embedding and the output unit (the default composite of every rule):
    float32 conserves to 1e-5 (relative) and agrees with float64 (a float64 copy of the model)."""
    from qmlrp.relevance.rules import stable_composites

    rules = stable_composites(RULE_NAMES)
    inputs = batch_to_inputs(real_batch)
    e32 = ModelLRP(model).explain_inputs(inputs, rules)
    e64 = ModelLRP(model, dtype="float64").explain_inputs(inputs, rules)
    for name in RULE_NAMES:
        assert e32[name].relative_conservation_error().max() <= 1e-5, name
        assert e64[name].conservation_error().max() <= 1e-9 * max(1.0, np.abs(e64[name].output).max()), name
        assert e64[name].atoms.dtype == np.float64
        scale = max(np.abs(e64[name].atoms).max(), np.abs(e64[name].pairs).max())
        assert np.abs(e32[name].atoms - e64[name].atoms).max() <= 1e-4 * scale, name
        assert np.abs(e32[name].pairs - e64[name].pairs).max() <= 1e-4 * scale, name


def test_float64_copy_is_float64_end_to_end(model) -> None:
    from qmlrp.relevance.model_lrp import as_float64

    copy = as_float64(model)
    assert {v.dtype for v in copy.weights} == {"float64"}
    inputs = batch_to_inputs(random_batch([4, 9], seed=2))
    feed = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inputs.items()}
    rec = copy.record(feed)
    dtypes = {keras.backend.standardize_dtype(r.outputs.dtype) for r in rec.walk()[1:] if hasattr(r.outputs, "dtype")}
    assert dtypes == {"float64"}
    np.testing.assert_allclose(np.asarray(rec.outputs), np.asarray(model(inputs, training=False)), rtol=1e-5)


def test_empty_explanations_are_flagged(real_batch) -> None:
    """An output unit with only negative contributions: LRP-ab(1,0) and z+ pass nothing
    (flagged as empty, everything absorbed); the default composite still explains it."""
    from qmlrp.relevance.rules import stable

    model = randomised_model(seed=5)
    out = model.head.output_layer
    out.kernels[0].assign(-np.abs(np.asarray(out.kernels[0])))
    out.bias.assign(-np.abs(np.asarray(out.bias)) - 0.1)
    lrp = ModelLRP(model, dtype="float64")
    for name in ("ab10", "zplus"):
        e = lrp.explain(real_batch, get_rule(name))
        assert e.empty().all()
        np.testing.assert_allclose(e.absorbed, e.output, rtol=1e-12)
        assert not ModelLRP(model, dtype="float64").explain(real_batch, stable(get_rule(name))).empty().any()
    assert not lrp.explain(real_batch, get_rule("eps")).empty().any()


def with_head(base: keras.Model, kernel: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray) -> keras.Model:
    """``base``'s layers (shared) below a new head: ``base``'s hidden layer, then an output layer
    ``kernel`` (hidden, n_outputs), ``bias`` and target statistics ``mean``/``std`` (n_outputs,)."""
    from qmlrp.models.gc import GraphConvModel
    from qmlrp.models.head import RegressionHead

    n_outputs = kernel.shape[1]
    model = GraphConvModel(base.input_layer, base.weave_modules, base.atom_embedding, base.readout,
                           RegressionHead(SMALL.head_units, n_outputs=n_outputs, name="head"), name="gc")
    model.build_with_dummy()
    head = model.head
    head.hidden[0].kernels[0].assign(np.asarray(base.head.hidden[0].kernels[0]))
    head.hidden[0].bias.assign(np.asarray(base.head.hidden[0].bias))
    head.output_layer.kernels[0].assign(kernel.astype("float32"))
    head.output_layer.bias.assign(bias.astype("float32"))
    head.target_scaling.set_statistics(mean, std)
    return model


@pytest.mark.parametrize("name", ["eps", "ab21"])
def test_vector_head_explained_per_output(name: str) -> None:
    """Output k of a 3-output model is explained exactly like a scalar model made of column k;
    a linear functional of the outputs is the same combination of the per-output explanations."""
    rng = np.random.default_rng(0)
    base = randomised_model(seed=0)
    kernel, bias = rng.normal(0, 0.3, (SMALL.head_units[-1], 3)), rng.normal(0, 0.2, 3)
    mean, std = rng.normal(3.0, 1.0, 3), rng.uniform(0.5, 2.0, 3)
    model = with_head(base, kernel, bias, mean, std)
    batch = random_batch([5, 8, 3], seed=7)
    y = np.asarray(model(batch_to_inputs(batch), training=False))
    lrp = ModelLRP(model, dtype="float64")
    with pytest.raises(ValueError, match="3 outputs"):
        lrp.explain(batch, get_rule(name))
    per_output = [lrp.explain(batch, get_rule(name), output=k) for k in range(3)]
    for k, e in enumerate(per_output):
        np.testing.assert_allclose(e.output, y[:, k], rtol=1e-5, atol=1e-5)  # float32 outputs of O(1)
        assert e.conservation_error().max() <= 1e-9 * max(1.0, np.abs(e.output).max())
        scalar = with_head(base, kernel[:, k:k + 1], bias[k:k + 1], mean[k:k + 1], std[k:k + 1])
        single = ModelLRP(scalar, dtype="float64").explain(batch, get_rule(name))
        np.testing.assert_allclose(single.atoms, e.atoms, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(single.pairs, e.pairs, rtol=1e-9, atol=1e-12)
    coef = np.array([1.0, 0.0, -2.0])
    combined = lrp.explain(batch, get_rule(name), output=coef)
    np.testing.assert_allclose(combined.output, y @ coef, rtol=1e-5)
    np.testing.assert_allclose(combined.atoms, sum(c * e.atoms for c, e in zip(coef, per_output)), rtol=1e-9, atol=1e-12)
    # Per-molecule coefficients (e.g. each molecule's own real modes): molecule m gets row m's
    # functional -- the same numbers as explaining that functional for every molecule.
    rows = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    per_molecule = lrp.explain(batch, get_rule(name), output=rows)
    np.testing.assert_allclose(per_molecule.output, (y * rows).sum(1), rtol=1e-5)
    assert per_molecule.conservation_error().max() <= 1e-9 * max(1.0, np.abs(per_molecule.output).max())
    for m, row in enumerate(rows):
        shared = lrp.explain(batch, get_rule(name), output=row)
        np.testing.assert_allclose(per_molecule.molecule(m)[0], shared.molecule(m)[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(per_molecule.molecule(m)[1], shared.molecule(m)[1], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="per-molecule coefficients"):
        lrp.explain(batch, get_rule(name), output=rows[:2])


JAX_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tests.relevance.test_model_lrp import randomised_model
from qmlrp.models.inputs import random_batch
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import RULE_NAMES, get_rule, stable
model = randomised_model()
batch = random_batch([3, 7, 11, 2], seed=1)
out = {}
for dtype in ("float64", "float32"):
    lrp = ModelLRP(model, dtype=dtype)
    for name in RULE_NAMES:
        e = lrp.explain(batch, stable(get_rule(name)))
        out[dtype + name] = [str(e.atoms.dtype), float(e.relative_conservation_error().max())]
print(json.dumps(out))
"""


@pytest.mark.integration
def test_jax_backend_float64_and_float32() -> None:
    """The same walk under JAX (as on the GPU machines): float64 exact, float32 within 1e-5."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("jax")
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(repo)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for name in RULE_NAMES:
        assert got["float64" + name][0] == "float64" and got["float64" + name][1] <= 1e-12, (name, got)
        assert got["float32" + name][1] <= 1e-5, (name, got)
