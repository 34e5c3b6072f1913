"""Explicit matrix-form LRP for small dense ReLU networks: the correctness oracle.

For one sample and one layer ``z_j = sum_i x_i w_ij + b_j`` the rule is written out as the
matrix ``M`` (d_in, d_out) of its redistribution coefficients, ``R_in = M @ R_out``, built from
the contribution matrix ``Z_ij = x_i w_ij`` exactly as the rule is stated in the literature
(Bach et al. 2015; Montavon et al. 2019) -- element by element, no gradient trick, float64. The
network's input relevance is the product of these matrices applied to the output.
:mod:`qmlrp.relevance.propagate` must agree with it (tests/relevance/test_oracle.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qmlrp.relevance.propagate import linear
from qmlrp.relevance.rules import Rule


@dataclass(frozen=True)
class DenseReluNet:
    """``x -> relu(x W_1 + b_1) -> ... -> x W_L + b_L`` (last layer linear, output width 1).

    Attributes:
        weights: (d_{l-1}, d_l) kernels.
        biases: (d_l,) biases.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @classmethod
    def random(cls, widths: Sequence[int], seed: int = 0, bias_scale: float = 0.1) -> DenseReluNet:
        """He-initialised net with widths ``(d_0, ..., d_L)``; ``bias_scale=0`` gives no biases."""
        rng = np.random.default_rng(seed)
        ws = tuple(rng.normal(0, np.sqrt(2.0 / a), (a, b)) for a, b in zip(widths[:-1], widths[1:]))
        bs = tuple(bias_scale * rng.normal(size=b) for b in widths[1:])
        return cls(ws, bs)

    def activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Inputs of every layer, then the output: ``[x, a_1, ..., a_{L-1}, y]``."""
        out = [x]
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = out[-1] @ w + b
            out.append(z if k == len(self.weights) - 1 else np.maximum(z, 0))
        return out

    def gradient_times_input(self, x: np.ndarray) -> np.ndarray:
        """(n, d_0) ``x * dy/dx`` by explicit backpropagation through the ReLU masks."""
        acts = self.activations(x)
        g = np.ones((x.shape[0], 1))
        for k in range(len(self.weights) - 1, -1, -1):
            g = g @ self.weights[k].T
            if k > 0:
                g = g * (acts[k] > 0)
        return x * g


def _signed(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1.0, -1.0)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` broadcast over rows, 0 where ``den == 0``."""
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, np.broadcast_to(den, out.shape), out=out, where=np.broadcast_to(den, out.shape) != 0)
    return out


def rule_matrix(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray,
                epsilon: float = 0.1, gamma: float = 0.25) -> np.ndarray:
    """Redistribution matrix M (d_in, d_out) of rule ``name`` for one sample ``x`` (d_in,).

    ``lrp0``: Z_ij / (sum_i Z_ij + b_j); ``eps``: Z_ij / (z_j + eps sign z_j);
    ``abAB``: alpha Z+_ij / (sum Z+ + b+) - beta Z-_ij / (sum Z- + b-);
    ``gamma``: (Z + g Z+)_ij / (sum_i (Z + g Z+)_ij + b_j + g b+_j); ``zplus``: Z+_ij / sum_i Z+_ij.
    """
    zc = x[:, None] * w  # contributions Z_ij
    zp, zn = np.maximum(zc, 0), np.minimum(zc, 0)
    if name == "lrp0":
        return _divide(zc, zc.sum(0) + b)
    if name == "eps":
        z = zc.sum(0) + b
        return _divide(zc, z + epsilon * _signed(z))
    if name in ("ab10", "ab21"):
        alpha, beta = (1.0, 0.0) if name == "ab10" else (2.0, 1.0)
        m = alpha * _divide(zp, zp.sum(0) + np.maximum(b, 0))
        if beta:
            m = m - beta * _divide(zn, zn.sum(0) + np.minimum(b, 0))
        return m
    if name == "gamma":
        zg = zc + gamma * zp
        return _divide(zg, zg.sum(0) + b + gamma * np.maximum(b, 0))
    if name == "zplus":
        return _divide(zp, zp.sum(0))
    raise ValueError(f"no oracle for rule {name!r}")


def oracle_relevance(net: DenseReluNet, x: np.ndarray, rules: Sequence[str],
                     epsilon: float = 0.1, gamma: float = 0.25) -> np.ndarray:
    """(n, d_0) input relevance of the output, one rule name per layer (first layer first).

    Per sample: ``R_0 = M_1 (M_2 (... (M_L y)))`` with each ``M_l`` from :func:`rule_matrix`.
    """
    if len(rules) != len(net.weights):
        raise ValueError("one rule per layer")
    out = np.zeros_like(x, dtype=np.float64)
    for n in range(x.shape[0]):
        acts = net.activations(x[n : n + 1].astype(np.float64))
        r = acts[-1][0]
        for k in range(len(net.weights) - 1, -1, -1):
            m = rule_matrix(rules[k], acts[k][0], net.weights[k], net.biases[k], epsilon, gamma)
            r = m @ r
        out[n] = r
    return out


def layerwise_relevance(net: DenseReluNet, x: np.ndarray, rules: Sequence[Rule]) -> tuple[np.ndarray, np.ndarray]:
    """The same with :func:`qmlrp.relevance.propagate.linear`, vectorised over the batch.

    Returns ``(R_0 (n, d_0), absorbed (n,))`` with ``R_0.sum(1) + absorbed == y``.
    """
    acts = net.activations(x)
    r = acts[-1]
    absorbed = np.zeros(x.shape[0])
    for k in range(len(net.weights) - 1, -1, -1):
        z = acts[k] @ net.weights[k] + net.biases[k]
        res = linear(rules[k], [acts[k]], [net.weights[k]], net.biases[k], r, z=z)
        r = np.asarray(res.inputs[0])
        absorbed = absorbed + np.asarray(res.absorbed)
    return r, absorbed


# -- explicit forms of the graph operations (one loop per pair / atom, float64) -----------------


def linear_oracle(name: str, xs: Sequence[np.ndarray], ws: Sequence[np.ndarray], b: np.ndarray,
                  r_out: np.ndarray, epsilon: float = 0.1, gamma: float = 0.25) -> list[np.ndarray]:
    """A dense layer on the concatenation ``[x_1, ..., x_K]``: per row, ``M @ R_out`` with ``M`` the
    rule's matrix for the stacked kernel; returns the relevance of each part (n, d_k)."""
    x = np.concatenate(xs, axis=1)
    w = np.concatenate(ws, axis=0)
    r_in = np.stack([rule_matrix(name, x[n], w, b, epsilon, gamma) @ r_out[n] for n in range(x.shape[0])])
    bounds = np.cumsum([0] + [v.shape[1] for v in xs])
    return [r_in[:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def pair_from_atoms_oracle(name: str, atoms: np.ndarray, pair_atoms: np.ndarray, w: np.ndarray, b: np.ndarray,
                           r_pairs: np.ndarray, epsilon: float = 0.1, gamma: float = 0.25) -> np.ndarray:
    """A->P ``P_ij = relu([A_i, A_j] W + b) + relu([A_j, A_i] W + b)``, pair by pair: the two
    ordered terms share ``R(P_ij)`` in proportion to their values, then each term's relevance
    goes through the rule's matrix on its own concatenated input and lands on atoms i and j."""
    d = atoms.shape[1]
    out = np.zeros_like(atoms, dtype=np.float64)
    for p, (i, j) in enumerate(pair_atoms):
        for first, second in ((i, j), (j, i)):
            x = np.concatenate([atoms[first], atoms[second]])
            a_this = np.maximum(x @ w + b, 0)
            x_other = np.concatenate([atoms[second], atoms[first]])
            total = a_this + np.maximum(x_other @ w + b, 0)
            share = _divide(a_this * r_pairs[p], total)
            r_x = rule_matrix(name, x, w, b, epsilon, gamma) @ share
            out[first] += r_x[:d]
            out[second] += r_x[d:]
    return out


def pair_sum_oracle(pairwise: np.ndarray, pair_atoms: np.ndarray, r_atoms: np.ndarray) -> np.ndarray:
    """P->A ``PA_a = sum_{p containing a} pw_p``: pair p gets ``pw_p / PA_a`` of each of its atoms'."""
    totals = np.zeros((r_atoms.shape[0], pairwise.shape[1]))
    for p, (i, j) in enumerate(pair_atoms):
        totals[i] += pairwise[p]
        totals[j] += pairwise[p]
    out = np.zeros_like(pairwise, dtype=np.float64)
    for p, (i, j) in enumerate(pair_atoms):
        for a in (i, j):
            out[p] += _divide(pairwise[p] * r_atoms[a], totals[a])
    return out


def histogram_oracle(memberships: np.ndarray, atom_molecule: np.ndarray, r_readout: np.ndarray) -> np.ndarray:
    """Histogram readout ``X[m, f*K + k] = sum_{i in m} mem[i, f, k]``: atom i gets its share of
    each bin, and all K bins of feature f return to ``h_if`` (fixed gates). Returns (n_atoms, F)."""
    n_atoms, width, n_bins = memberships.shape
    out = np.zeros((n_atoms, width))
    for i in range(n_atoms):
        same = atom_molecule == atom_molecule[i]
        for f in range(width):
            for k in range(n_bins):
                total = memberships[same, f, k].sum()
                if total != 0:
                    out[i, f] += memberships[i, f, k] / total * r_readout[atom_molecule[i], f * n_bins + k]
    return out


def fold_oracle(kernel: np.ndarray, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                var: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """``BN(x W + b) = x W' + b'`` written out: ``W'_ij = W_ij g_j / sqrt(v_j + eps)``,
    ``b'_j = (b_j - mu_j) g_j / sqrt(v_j + eps) + beta_j``."""
    factor = gamma / np.sqrt(var + epsilon)
    return kernel * factor[None, :], (bias - mean) * factor + beta
