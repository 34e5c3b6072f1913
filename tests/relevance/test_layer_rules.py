"""Every rule on every layer type against its explicit matrix form (qmlrp.relevance.oracle), through
the registered relevance functions and a recorded call -- exactly what the model walk runs."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from qmlrp.models.layers import FeatureScaling, PairFromAtoms, SplitDense, Tape, TargetScaling
from qmlrp.models.readout import AtomEmbedding, GaussianHistogram
from qmlrp.models.weave import PAIR_TO_ATOM_SUM
from qmlrp.relevance import layer_rules  # noqa: F401  (registers the functions)
from tests.relevance import oracle
from qmlrp.relevance.propagate import Propagated
from qmlrp.relevance.rules import RULE_NAMES, as_composite, get_rule
from qmlrp.relevance.walk import Context, TensorInfo, annotate, spec_for
from qmlrp.models.layers import Record

EPS, GAMMA = 0.1, 0.25
RNG = np.random.default_rng(0)
# three molecules: 3, 4 and 2 atoms, all pairs i < j
COUNTS = (3, 4, 2)
ATOM_MOLECULE = np.repeat(np.arange(3), COUNTS).astype(np.int32)
PAIR_ATOMS = np.concatenate([np.stack(np.triu_indices(n, 1), 1) + o for n, o in zip(COUNTS, (0, 3, 7))]).astype(np.int32)
PAIR_MOLECULE = ATOM_MOLECULE[PAIR_ATOMS[:, 0]]


def run_layer(layer: Any, args: tuple, rule_name: str, r_out: np.ndarray, input_rows: dict[int, str],
              nonneg: dict[int, bool] | None = None, **kwargs: Any) -> tuple[Propagated, Record]:
    """Record one call of ``layer`` (float64) and apply its registered relevance function."""
    tape = Tape("")
    tape.call(layer, *args, **kwargs)
    parent = Record("", None, args, tape.children[0].outputs, children=tape.children)
    rec = tape.children[0]
    ctx = Context(as_composite(get_rule(rule_name, EPS, GAMMA)), "float64",
                  {"atoms": ATOM_MOLECULE, "pairs": PAIR_MOLECULE}, len(COUNTS))
    for k, rows in input_rows.items():
        ctx.info[id(args[k])] = TensorInfo(rows, bool((nonneg or {}).get(k, False)))
    annotate(parent, ctx.info)
    res = spec_for(layer).function(rec, [r_out], ctx)
    return res, rec


def f64(layer_cls: type, *args: Any, **kwargs: Any) -> Any:
    """The layer with float64 weights (its sub-layers too: they take the global policy)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        return layer_cls(*args, **kwargs)
    finally:
        keras.config.set_dtype_policy(previous)


def check(got: Any, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("signed", [True, False])
def test_split_dense_two_parts(name: str, signed: bool) -> None:
    layer = f64(SplitDense, 5, "relu")
    layer.build([(None, 4), (None, 3)])
    layer.bias.assign(RNG.normal(0, 0.3, 5))
    x1, x2 = RNG.normal(size=(6, 4)), RNG.normal(size=(6, 3))
    if not signed:
        x1, x2 = np.abs(x1), np.abs(x2)
    r_out = RNG.normal(size=(6, 5))
    res, _ = run_layer(layer, ([x1, x2],), name, r_out, {}, None)
    want = oracle.linear_oracle(name, [x1, x2], [np.asarray(k) for k in layer.kernels], np.asarray(layer.bias), r_out,
                                EPS, GAMMA)
    check(res.inputs[0], want[0])
    check(res.inputs[1], want[1])


@pytest.mark.parametrize("name", RULE_NAMES)
def test_split_dense_relu_inputs_known_nonnegative(name: str) -> None:
    """Declaring inputs >= 0 (ReLU outputs) drops the x- terms: same answer for x >= 0."""
    layer = f64(SplitDense, 4, "relu")
    layer.build((None, 6))
    layer.bias.assign(RNG.normal(0, 0.3, 4))
    x = np.abs(RNG.normal(size=(9, 6)))
    r_out = RNG.normal(size=(9, 4))
    res, _ = run_layer(layer, (x,), name, r_out, {0: "atoms"}, {0: True})
    want = oracle.linear_oracle(name, [x], [np.asarray(layer.kernel)], np.asarray(layer.bias), r_out, EPS, GAMMA)
    check(res.inputs[0], want[0])


@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("signed", [True, False])
def test_pair_from_atoms(name: str, signed: bool) -> None:
    """The A->P update (no reference test for ab, gamma and z+ before this one)."""
    layer = f64(PairFromAtoms, 5, "relu")
    layer.build((None, 4))
    layer.bias.assign(RNG.normal(0, 0.3, 5))
    atoms = RNG.normal(size=(9, 4))
    if not signed:
        atoms = np.abs(atoms)
    r_out = RNG.normal(size=(PAIR_ATOMS.shape[0], 5))
    res, rec = run_layer(layer, (atoms, PAIR_ATOMS), name, r_out, {0: "atoms"}, {0: not signed})
    want = oracle.pair_from_atoms_oracle(name, atoms, PAIR_ATOMS, np.asarray(layer.kernel), np.asarray(layer.bias),
                                         r_out, EPS, GAMMA)
    check(res.inputs[0], want)
    assert res.inputs[1] is None  # indices carry no relevance
    # conservation per pair: inputs + absorbed = output relevance
    np.testing.assert_allclose(np.asarray(res.inputs[0]).sum() + np.asarray(res.absorbed).sum(), r_out.sum(),
                               rtol=1e-9, atol=1e-9)


def test_pair_to_atom_sum() -> None:
    pairwise = np.abs(RNG.normal(size=(PAIR_ATOMS.shape[0], 3)))
    pairwise[0] = 0.0  # a pair with nothing to give
    r_atoms = RNG.normal(size=(9, 3))
    res, rec = run_layer(PAIR_TO_ATOM_SUM, (pairwise, PAIR_ATOMS, 9), "lrp0", r_atoms, {0: "pairs"}, {0: True})
    check(res.inputs[0], oracle.pair_sum_oracle(pairwise, PAIR_ATOMS, r_atoms))
    np.testing.assert_allclose(np.asarray(res.inputs[0]).sum() + np.asarray(res.absorbed).sum(), r_atoms.sum(), rtol=1e-12)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_atom_embedding_folds_batch_norm_in_float64(name: str) -> None:
    layer = f64(AtomEmbedding, 6)
    layer.build((None, 4))
    bn = layer.batch_norm
    layer.dense.bias.assign(RNG.normal(0, 0.3, 6))
    bn.gamma.assign(RNG.uniform(0.5, 2.0, 6))
    bn.beta.assign(RNG.normal(0, 0.3, 6))
    bn.moving_mean.assign(RNG.normal(0, 0.5, 6))
    bn.moving_variance.assign(RNG.uniform(0.3, 3.0, 6))
    atoms = np.abs(RNG.normal(size=(9, 4)))
    r_out = RNG.normal(size=(9, 6))
    res, rec = run_layer(layer, (atoms,), name, r_out, {0: "atoms"}, {0: True})
    kernel, bias = oracle.fold_oracle(np.asarray(layer.dense.kernel), np.asarray(layer.dense.bias), np.asarray(bn.gamma),
                                      np.asarray(bn.beta), np.asarray(bn.moving_mean), np.asarray(bn.moving_variance),
                                      bn.epsilon)
    np.testing.assert_allclose(np.asarray(rec.outputs), atoms @ kernel + bias, rtol=1e-12, atol=1e-12)  # the fold
    check(res.inputs[0], oracle.linear_oracle(name, [atoms], [kernel], bias, r_out, EPS, GAMMA)[0])


def test_gaussian_histogram() -> None:
    layer = f64(GaussianHistogram)
    h = RNG.normal(size=(9, 3))
    out = np.asarray(layer(h, ATOM_MOLECULE, n_molecules=3))
    r_out = RNG.normal(size=out.shape)
    res, rec = run_layer(layer, (h, ATOM_MOLECULE), "lrp0", r_out, {0: "atoms"}, n_molecules=3)
    memberships = np.asarray(layer.memberships(h))
    check(res.inputs[0], oracle.histogram_oracle(memberships, ATOM_MOLECULE, r_out))
    np.testing.assert_allclose(np.asarray(res.inputs[0]).sum(), r_out.sum(), rtol=1e-12)  # exact: nothing absorbed


def test_target_scaling_vector() -> None:
    layer = f64(TargetScaling, 3)
    layer.set_statistics([1.0, -2.0, 0.5], [2.0, 0.5, 3.0])
    z = RNG.normal(size=(4, 3))
    y = z * [2.0, 0.5, 3.0] + [1.0, -2.0, 0.5]
    r_out = y * [1.0, 0.0, -2.0]  # the functional y_0 - 2 y_2
    res, _ = run_layer(layer, (z,), "eps", r_out, {0: "molecules"})  # LRP-0 whatever the composite says
    check(res.inputs[0], r_out * z * [2.0, 0.5, 3.0] / y)
    check(res.bias, (r_out / y * [1.0, -2.0, 0.5]).sum(1))
    assert res.tag == "mean"


def test_feature_scaling_passes_relevance() -> None:
    layer = f64(FeatureScaling, 3)
    layer.scale.assign([2.0, 0.5, 1.0])
    x = RNG.normal(size=(9, 3))
    r_out = RNG.normal(size=(9, 3))
    res, _ = run_layer(layer, (x,), "ab21", r_out, {0: "atoms"})
    check(res.inputs[0], r_out)


def test_every_model_layer_type_has_a_tested_function() -> None:
    """A new layer type in the model without a relevance function fails here (and in the walk)."""
    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model
    from qmlrp.models.inputs import batch_to_inputs, random_batch

    model = build_model(ModelConfig(head_units=(8,), embedding_width=4, atom_width=4, pair_width=4, atom_hidden=4,
                                    pair_hidden=4))
    rec = model.record(batch_to_inputs(random_batch([3, 2])))
    leaf_types = {type(r.layer).__name__ for r in rec.walk()[1:] if spec_for(r.layer) is not None}
    tested = {"SplitDense", "PairFromAtoms", "PairToAtomSum", "AtomEmbedding", "GaussianHistogram", "TargetScaling",
              "FeatureScaling"}
    assert leaf_types == tested


def test_unregistered_layer_is_an_error_naming_its_path() -> None:
    class Mystery(keras.layers.Layer):
        def call(self, x: Any) -> Any:
            return x * 2.0

    layer = Mystery(name="mystery")
    tape = Tape("")
    x = np.ones((2, 3))
    tape.call(layer, x)
    parent = Record("", None, (x,), tape.children[0].outputs, children=tape.children)
    with pytest.raises(TypeError, match="'mystery'"):
        annotate(parent, {})
