"""Known answers for the rules: layer-wise propagation == explicit matrix-form oracle; LRP-0 ==
gradient x input on bias-free ReLU nets; conservation on dense nets; rule validation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.relevance.oracle import DenseReluNet, layerwise_relevance, oracle_relevance, rule_matrix
from qmlrp.relevance import propagate as P
from qmlrp.relevance.propagate import PairIndex, Propagated
from qmlrp.relevance.rules import AlphaBeta, Composite, Epsilon, Lrp0, get_rule, resolve_rules, RULE_NAMES

WIDTHS = (7, 12, 9, 6, 1)


def _np(x):
    return [np.asarray(v) for v in x] if isinstance(x, (list, tuple)) else np.asarray(x)


def linear(*args, **kwargs) -> Propagated:
    res = P.linear(*args, **kwargs)
    return Propagated(_np(res.inputs), _np(res.absorbed), _np(res.bias))


def pairs_to_atoms(*args):
    return tuple(_np(v) for v in P.pairs_to_atoms(*args))


def split_sum(*args):
    parts, lost = P.split_sum(*args)
    return _np(parts), _np(lost)


def atoms_to_molecules(*args):
    return tuple(_np(v) for v in P.atoms_to_molecules(*args))


def _inputs(n: int, d: int, seed: int, signed: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x if signed else np.abs(x)


@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layerwise_equals_matrix_oracle(name: str, seed: int) -> None:
    net = DenseReluNet.random(WIDTHS, seed=seed)
    x = _inputs(16, WIDTHS[0], seed + 100)
    rule = get_rule(name, epsilon=0.1, gamma=0.25)
    fast, _ = layerwise_relevance(net, x, [rule] * len(net.weights))
    slow = oracle_relevance(net, x, [name] * len(net.weights), epsilon=0.1, gamma=0.25)
    np.testing.assert_allclose(fast, slow, rtol=1e-7, atol=1e-9)


def test_layerwise_equals_oracle_float32() -> None:
    net = DenseReluNet.random(WIDTHS, seed=5)
    x = _inputs(16, WIDTHS[0], 7)
    net32 = DenseReluNet(tuple(w.astype(np.float32) for w in net.weights), tuple(b.astype(np.float32) for b in net.biases))
    for name in RULE_NAMES:
        fast, _ = layerwise_relevance(net32, x.astype(np.float32), [get_rule(name)] * 4)
        slow = oracle_relevance(net, x, [name] * 4)
        scale = np.abs(slow).max()
        assert np.abs(fast - slow).max() <= 1e-5 * max(scale, 1.0), name


def test_composite_per_layer_rules_match_oracle() -> None:
    net = DenseReluNet.random(WIDTHS, seed=3)
    x = _inputs(8, WIDTHS[0], 4)
    names = ["zplus", "ab21", "eps", "lrp0"]
    fast, _ = layerwise_relevance(net, x, [get_rule(n) for n in names])
    np.testing.assert_allclose(fast, oracle_relevance(net, x, names), rtol=1e-7, atol=1e-9)


def test_lrp0_bias_free_relu_net_is_gradient_times_input() -> None:
    net = DenseReluNet.random(WIDTHS, seed=11, bias_scale=0.0)
    x = _inputs(32, WIDTHS[0], 12)
    r, absorbed = layerwise_relevance(net, x, [Lrp0()] * 4)
    np.testing.assert_allclose(r, net.gradient_times_input(x), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(absorbed, 0.0, atol=1e-9)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_conservation_with_absorbed(name: str) -> None:
    net = DenseReluNet.random(WIDTHS, seed=21, bias_scale=0.3)
    x = _inputs(32, WIDTHS[0], 22)
    r, absorbed = layerwise_relevance(net, x, [get_rule(name)] * 4)
    y = net.activations(x)[-1][:, 0]
    np.testing.assert_allclose(r.sum(1) + absorbed, y, rtol=1e-9, atol=1e-9)


def test_ab_conserves_exactly_without_bias_when_both_signs_present() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(5, 6)))
    w = rng.normal(size=(6, 3))
    w[0] = np.abs(w[0]) + 0.1
    w[1] = -np.abs(w[1]) - 0.1  # every output has positive and negative contributions
    r_out = rng.normal(size=(5, 3))
    res = linear(AlphaBeta(2.0, 1.0), [x], [w], None, r_out)
    np.testing.assert_allclose(res.inputs[0].sum(1), r_out.sum(1), rtol=1e-10)
    np.testing.assert_allclose(res.absorbed, 0.0, atol=1e-10)


def test_split_inputs_equal_concatenation() -> None:
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(4, 3)), np.abs(rng.normal(size=(4, 5)))
    w1, w2 = rng.normal(size=(3, 2)), rng.normal(size=(5, 2))
    b = rng.normal(size=2)
    r = rng.normal(size=(4, 2))
    for name in RULE_NAMES:
        split = linear(get_rule(name), [x1, x2], [w1, w2], b, r)
        whole = linear(get_rule(name), [np.hstack([x1, x2])], [np.vstack([w1, w2])], b, r)
        np.testing.assert_allclose(np.hstack(split.inputs), whole.inputs[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(split.absorbed, whole.absorbed, rtol=1e-10, atol=1e-12)


def test_plain_preactivation_shortcut_matches_recomputation() -> None:
    rng = np.random.default_rng(2)
    x, w, b = np.abs(rng.normal(size=(6, 4))), rng.normal(size=(4, 3)), rng.normal(size=3)
    r = rng.normal(size=(6, 3))
    for name in RULE_NAMES:
        with_z = linear(get_rule(name), [x], [w], b, r, z=x @ w + b)
        without = linear(get_rule(name), [x], [w], b, r)
        np.testing.assert_allclose(with_z.inputs[0], without.inputs[0], rtol=1e-10, atol=1e-12)


def test_rule_matrix_lrp0_single_sample_by_hand() -> None:
    x = np.array([1.0, 2.0])
    w = np.array([[1.0], [-0.5]])
    b = np.array([0.5])
    # z = 1 - 1 + 0.5 = 0.5; M = [1/0.5, -1/0.5]
    np.testing.assert_allclose(rule_matrix("lrp0", x, w, b)[:, 0], [2.0, -2.0])
    # alpha-beta (1, 0): positive contributions 1 and b+ 0.5 -> [1/1.5, 0]
    np.testing.assert_allclose(rule_matrix("ab10", x, w, b)[:, 0], [1 / 1.5, 0.0])


def test_sum_operations_conserve() -> None:
    rng = np.random.default_rng(3)
    pair_atoms = np.array([[0, 1], [0, 2], [1, 2], [3, 4]])
    pw = np.abs(rng.normal(size=(4, 3)))
    index = PairIndex(pair_atoms, 5)
    totals = np.asarray(index.to_atoms(pw, pw))
    r_atoms = rng.normal(size=(5, 3))
    r_pairs, lost = pairs_to_atoms(pw, totals, r_atoms, index)
    np.testing.assert_allclose(r_pairs.sum() + lost.sum(), r_atoms.sum())
    np.testing.assert_allclose(lost, 0.0, atol=1e-12)
    a, b = np.abs(rng.normal(size=(4, 3))), np.abs(rng.normal(size=(4, 3)))
    (ra, rb), lost = split_sum([a, b], r_pairs)
    np.testing.assert_allclose(ra + rb, r_pairs)
    owner = np.array([0, 0, 1, 1, 1])
    vals = np.abs(rng.normal(size=(5, 2)))
    tot = np.stack([vals[:2].sum(0), vals[2:].sum(0)])
    r_mol = rng.normal(size=(2, 2))
    r_at, lost = atoms_to_molecules(vals, tot, r_mol, owner)
    np.testing.assert_allclose([r_at[:2].sum(), r_at[2:].sum()], r_mol.sum(1))


def test_rule_validation_and_composites() -> None:
    with pytest.raises(ValueError):
        AlphaBeta(2.0, 0.5)
    with pytest.raises(ValueError):
        Epsilon(0.0)
    with pytest.raises(ValueError):
        get_rule("lrp9")
    comp = resolve_rules(["mixed", "eps"], composites={"mixed": {"default": "eps", "layers": {"weave*": "zplus"}}})
    assert isinstance(comp["mixed"], Composite)
    assert comp["mixed"].rule_for("weave0.atom_to_pair").name == "zplus"
    assert comp["mixed"].rule_for("head.dense0").name == "eps"
    assert comp["eps"].rule_for("anything").name == "eps"
