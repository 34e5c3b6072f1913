"""LRP through a trained :class:`qmlrp.models.gc.GraphConvModel`, vectorised over ragged batches.

The inference-mode ``model.trace`` and the backward walk (:mod:`qmlrp.relevance.propagate`)
run in one compiled function (``tf.function`` with ragged input signature, one per rule set),
so relevance costs about as much as a few forward passes. The walk, in reverse order::

    y = z*std + mean        LRP-0 always (a fixed unit conversion with one input: R(z) = z*std;
                            the target mean is absorbed and reported separately)
    head.output, head.denseK    rule of that layer; ReLU passes relevance unchanged
    readout (sum over atoms)    shares m_i / sum_i m_i
    Gaussian memberships        fixed gates: all bins' relevance back to h_if
    embedding (linear+BN)       rule on the folded affine map
    weave modules (reversed)    atom_update / pair_update (concatenated parts), P->A sums,
                                A->P split between the two atoms, A->A, P->P
    input scaling               x * s with s > 0 and no bias: relevance passes unchanged (the
                                same as folding s into the first kernels, for every rule)

The start relevance is the model output ``y`` in target units. Per molecule:
``sum(atom relevance) + sum(pair relevance) + absorbed == y``, where ``absorbed`` = target mean
+ network biases + stabilisers (and 0/0 conventions), computed on the forward side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.features.batch import GraphBatch
from qmlrp.models.inputs import INPUT_DTYPES, INPUT_SHAPES, batch_to_inputs
from qmlrp.relevance.propagate import (
    PairIndex,
    atoms_to_molecules,
    gaussian_gates,
    linear,
    pair_from_atoms,
    pairs_to_atoms,
    per_molecule,
    split_sum,
)
from qmlrp.relevance.rules import Composite, Lrp0, Rule, as_composite

TARGET_SCALING_RULE = Lrp0()
FIELDS = ("atoms", "pairs", "output", "absorbed", "absorbed_mean", "absorbed_bias", "embedding")


def _bincount(owner: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner, weights=np.asarray(values, np.float64), minlength=n)


def atom_totals(atoms: np.ndarray, pairs: np.ndarray, pair_atoms: np.ndarray, pair_share: float = 0.5) -> np.ndarray:
    """(n_atoms,) per-atom relevance: the atom's 21 feature relevances + ``pair_share`` of the
    summed relevance of each pair it belongs to (0.5 splits a pair evenly between its atoms)."""
    out = atoms.sum(1).astype(np.float64)
    if pair_share:
        p = pairs.sum(1) * pair_share
        out += _bincount(pair_atoms[:, 0], p, out.size)
        out += _bincount(pair_atoms[:, 1], p, out.size)
    return out


@dataclass
class Explanation:
    """Signed relevance of one batch of molecules for one rule (or composite).

    Attributes:
        rule: rule or composite name.
        atoms: (n_atoms, 21) relevance of every atom feature.
        pairs: (n_pairs, 13) relevance of every pair feature (unordered pairs i < j).
        output: (n_molecules,) model output (target units) = relevance at the top.
        absorbed: (n_molecules,) relevance that reached no input (all of the below).
        absorbed_mean: (n_molecules,) the target mean's share (LRP-0 on ``z*std + mean``).
        absorbed_bias: (n_molecules,) network biases' share (folded BatchNorm shift included).
        atom_molecule, pair_molecule, pair_atoms, ids: the batch's bookkeeping.
        embedding: (n_atoms, F) relevance of the normalised atom embedding ``h`` (what enters the
            Gaussian histogram), or None.
    """

    rule: str
    atoms: np.ndarray
    pairs: np.ndarray
    output: np.ndarray
    absorbed: np.ndarray
    absorbed_mean: np.ndarray
    absorbed_bias: np.ndarray
    atom_molecule: np.ndarray
    pair_molecule: np.ndarray
    pair_atoms: np.ndarray
    ids: np.ndarray
    embedding: np.ndarray | None = None

    @property
    def n_molecules(self) -> int:
        return int(self.output.shape[0])

    def input_total(self) -> np.ndarray:
        """(n_molecules,) sum of all atom and pair feature relevances."""
        return _bincount(self.atom_molecule, self.atoms.sum(1), self.n_molecules) + _bincount(
            self.pair_molecule, self.pairs.sum(1), self.n_molecules)

    def conservation_error(self) -> np.ndarray:
        """(n_molecules,) ``|inputs + absorbed - output|``."""
        return np.abs(self.input_total() + self.absorbed - self.output)

    def network_input(self) -> np.ndarray:
        """(n_molecules,) relevance entering the network (``y - absorbed_mean``, i.e. ``z * std``)."""
        return self.output - self.absorbed_mean

    def absorbed_share(self) -> np.ndarray:
        """(n_molecules,) share of the output ``y`` absorbed by the network's biases and
        stabilisers, ``(absorbed - absorbed_mean) / y`` (the target mean's share is
        :meth:`mean_share`; inputs + network + mean shares add up to 1)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.output != 0, (self.absorbed - self.absorbed_mean) / self.output, np.nan)

    def mean_share(self) -> np.ndarray:
        """(n_molecules,) share of ``y`` absorbed by the target mean (LRP-0 on ``z*std + mean``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.output != 0, self.absorbed_mean / self.output, np.nan)

    def atom_relevance(self, pair_share: float = 0.5) -> np.ndarray:
        """(n_atoms,) per-atom total (:func:`atom_totals`)."""
        return atom_totals(self.atoms, self.pairs, self.pair_atoms, pair_share)

    def molecule(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``(atoms (n_m, 21), pairs (n_m(n_m-1)/2, 13))`` of molecule ``m`` (batch index)."""
        return self.atoms[self.atom_molecule == m], self.pairs[self.pair_molecule == m]

    @staticmethod
    def concatenate(parts: list[Explanation]) -> Explanation:
        """Join explanations of consecutive batches (molecule and atom indices re-based)."""
        atom_off = np.cumsum([0] + [p.atoms.shape[0] for p in parts])
        mol_off = np.cumsum([0] + [p.n_molecules for p in parts])
        cat = np.concatenate
        return Explanation(
            rule=parts[0].rule,
            atoms=cat([p.atoms for p in parts]),
            pairs=cat([p.pairs for p in parts]),
            output=cat([p.output for p in parts]),
            absorbed=cat([p.absorbed for p in parts]),
            absorbed_mean=cat([p.absorbed_mean for p in parts]),
            absorbed_bias=cat([p.absorbed_bias for p in parts]),
            atom_molecule=cat([p.atom_molecule + o for p, o in zip(parts, mol_off)]),
            pair_molecule=cat([p.pair_molecule + o for p, o in zip(parts, mol_off)]),
            pair_atoms=cat([p.pair_atoms + o for p, o in zip(parts, atom_off)]),
            ids=cat([p.ids for p in parts]),
            embedding=None if any(p.embedding is None for p in parts) else cat([p.embedding for p in parts]),
        )


class ModelLRP:
    """LRP for one :class:`GraphConvModel`.

    The folded embedding weights are read when the object is made: rebuild it after further
    training. One compiled function per distinct rule set is cached.

    Args:
        model: the trained model (inference mode is used throughout).
        dtype: float type of the backward pass (``float32`` is fast; ``float64`` for tight checks).
        recompute: recompute every pre-activation and sum in ``dtype`` from the layer inputs
            instead of taking the trace's float32 values -- with float64 the conservation check
            is then exact to rounding (tests); off by default (costs matmuls).
        compile: run as a ``tf.function`` (TensorFlow backend); False runs eagerly.
    """

    def __init__(self, model: keras.Model, dtype: str = "float32", recompute: bool = False,
                 compile: bool = True) -> None:
        self.model = model
        self.dtype = keras.backend.standardize_dtype(np.dtype(dtype).name)
        self.recompute = bool(recompute)
        self.compile = compile and keras.backend.backend() == "tensorflow"
        self.modules = list(model.weave_modules)
        self.n_hidden = len(model.head.hidden)
        kernel, bias = model.atom_embedding.folded()
        self.embedding = (np.asarray(kernel, self.dtype), np.asarray(bias, self.dtype))
        self._functions: dict[tuple[tuple[str, Composite], ...], Callable[[dict[str, Any]], Any]] = {}

    # -- public -------------------------------------------------------------------------------
    def explain_inputs(self, inputs: Mapping[str, np.ndarray], rules: Mapping[str, Rule | Composite],
                       ids: np.ndarray | None = None) -> dict[str, Explanation]:
        """One forward trace and one backward walk per rule: ``{name: Explanation}``."""
        comps = {name: as_composite(rule) for name, rule in rules.items()}
        fn = self._function(comps)
        feed = {k: np.asarray(inputs[k], INPUT_DTYPES[k]) for k in INPUT_SHAPES}
        out = fn(feed)
        atom_molecule = np.asarray(inputs["atom_molecule"], np.int64)
        pair_atoms = np.asarray(inputs["pair_atoms"], np.int64)
        pair_molecule = atom_molecule[pair_atoms[:, 0]] if pair_atoms.size else np.zeros(0, np.int64)
        n_mol = int(np.asarray(inputs["molecule_atoms"]).shape[0])
        result = {}
        for name in comps:
            values = {f: np.asarray(keras.ops.convert_to_numpy(out[name][f])) for f in FIELDS}
            result[name] = Explanation(
                rule=name, atoms=values["atoms"], pairs=values["pairs"],
                output=values["output"].astype(np.float64),
                absorbed=values["absorbed"].astype(np.float64),
                absorbed_mean=values["absorbed_mean"].astype(np.float64),
                absorbed_bias=values["absorbed_bias"].astype(np.float64),
                atom_molecule=atom_molecule, pair_molecule=pair_molecule, pair_atoms=pair_atoms,
                ids=np.arange(n_mol) if ids is None else np.asarray(ids),
                embedding=values["embedding"])
        return result

    def explain(self, batch: GraphBatch, rule: Rule | Composite, name: str | None = None) -> Explanation:
        """Relevance of every atom/pair feature of ``batch`` for one rule."""
        comp = as_composite(rule)
        label = name or comp.label
        return self.explain_inputs(batch_to_inputs(batch), {label: comp}, batch.ids)[label]

    # -- compiled function --------------------------------------------------------------------
    def _function(self, comps: dict[str, Composite]) -> Callable[[dict[str, Any]], Any]:
        key = tuple(comps.items())
        if key not in self._functions:
            def run(inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
                t = self.model.trace(inputs)
                if self.dtype != "float32":
                    t = {k: ops.cast(v, self.dtype) for k, v in t.items()}
                return {name: self._walk(t, inputs, c) for name, c in comps.items()}

            if self.compile:
                import tensorflow as tf

                signature = [{k: tf.TensorSpec((None, *INPUT_SHAPES[k]), INPUT_DTYPES[k]) for k in INPUT_SHAPES}]
                self._functions[key] = tf.function(run, input_signature=signature, autograph=False)
            else:
                self._functions[key] = run
        return self._functions[key]

    def _z(self, t: dict[str, Any], key: str) -> Any:
        """The trace's pre-activation ``key``, or None (recompute it) in ``recompute`` mode."""
        return None if self.recompute else t[key]

    def _w(self, v: Any) -> Any:
        return ops.cast(v, self.dtype)

    def _walk(self, t: dict[str, Any], inputs: dict[str, Any], rules: Composite) -> dict[str, Any]:
        """The backward walk over a trace ``t`` (see the module docstring)."""
        dt = self.dtype
        atom_molecule = inputs["atom_molecule"]
        pair_atoms = inputs["pair_atoms"]
        n_mol = ops.shape(inputs["molecule_atoms"])[0]
        n_atoms = ops.shape(atom_molecule)[0]
        pair_molecule = ops.take(atom_molecule, pair_atoms[:, 0], axis=0)
        index = PairIndex(pair_atoms, n_atoms)
        acc: dict[str, Any] = {"absorbed": ops.zeros((n_mol,), dt), "bias": ops.zeros((n_mol,), dt)}

        def book(absorbed: Any, bias: Any, owner: Any) -> None:
            if owner is not None:
                absorbed = per_molecule(absorbed, owner, n_mol)
                bias = None if bias is None else per_molecule(bias, owner, n_mol)
            acc["absorbed"] = acc["absorbed"] + absorbed
            if bias is not None:
                acc["bias"] = acc["bias"] + bias

        head = self.model.head
        y = t["output"]
        # target scaling y = z * std + mean (LRP-0; the mean is absorbed)
        scaling = head.target_scaling
        res = linear(TARGET_SCALING_RULE, [t["head.output.z"]], [ops.reshape(self._w(scaling.std), (1, 1))],
                     self._w(scaling.mean), y, z=self._z(t, "output"), nonneg=[False])
        absorbed_mean = res.absorbed
        book(res.absorbed, None, None)
        r = res.inputs[0]
        # head: output layer, then hidden ReLU layers in reverse
        names = [layer.name for layer in head.hidden]
        chain = [("head.output", head.output_layer)] + [(f"head.{n}", l) for n, l in zip(names, head.hidden)][::-1]
        for pos, (key, layer) in enumerate(chain):
            below = chain[pos + 1][0] if pos + 1 < len(chain) else "readout"
            res = linear(rules.rule_for(key), [t[below]], [self._w(k) for k in layer.kernels],
                         None if layer.bias is None else self._w(layer.bias), r,
                         z=self._z(t, f"{key}.z"), nonneg=[True])
            book(res.absorbed, res.bias, None)
            r = res.inputs[0]
        # readout: sum of memberships over atoms, then the Gaussian gates
        memberships = t["readout.memberships"]
        shape = ops.shape(memberships)
        flat = ops.reshape(memberships, (n_atoms, shape[1] * shape[2]))
        totals = per_molecule(flat, atom_molecule, n_mol) if self.recompute else t["readout"]
        r_m, lost = atoms_to_molecules(flat, totals, r, atom_molecule)
        book(lost, None, None)
        r_h = gaussian_gates(ops.reshape(r_m, (n_atoms, shape[1], shape[2])))
        # embedding (BatchNorm folded into the linear map)
        last = f"weave{len(self.modules) - 1}.atoms_out"
        kernel, bias = self.embedding
        res = linear(rules.rule_for("embedding"), [t[last]], [kernel], bias, r_h,
                     z=self._z(t, "embedding"), nonneg=[True])
        book(res.absorbed, res.bias, atom_molecule)
        r_atoms, r_pairs = res.inputs[0], None
        for k in range(len(self.modules) - 1, -1, -1):
            r_atoms, r_pairs = self._weave(k, t, r_atoms, r_pairs, rules, index, book, atom_molecule, pair_molecule)
        return {"atoms": r_atoms, "pairs": r_pairs, "output": y[:, 0], "absorbed": acc["absorbed"],
                "absorbed_mean": absorbed_mean, "absorbed_bias": acc["bias"], "embedding": r_h}

    def _weave(self, k: int, t: dict[str, Any], r_atoms_out: Any, r_pairs_out: Any, rules: Composite,
               index: PairIndex, book: Callable[..., None], atom_molecule: Any, pair_molecule: Any) -> tuple[Any, Any]:
        """Relevance of module k's inputs: atoms (n_atoms, d_a), pairs (n_pairs, d_p)."""
        p = f"weave{k}."
        module = self.modules[k]
        a_in, p_in = t[p + "atoms_in"], t[p + "pairs_in"]
        raw = k == 0  # the first module sees the (signed) input features; later ones ReLU outputs

        def dense(name: str, xs: list[Any], r: Any, nonneg: list[bool], owner: Any) -> list[Any]:
            layer = getattr(module, name)
            res = linear(rules.rule_for(p + name), xs, [self._w(w) for w in layer.kernels],
                         None if layer.bias is None else self._w(layer.bias), r,
                         z=self._z(t, f"{p}{name}.z"), nonneg=nonneg)
            book(res.absorbed, res.bias, owner)
            return res.inputs

        # A' = relu([AA, PA] W_a + b_a)
        r_aa, r_pa = dense("atom_update", [t[p + "atom_to_atom"], t[p + "pair_to_atom"]], r_atoms_out,
                           [True, True], atom_molecule)
        # AA = relu(A W_aa + b)
        r_a = dense("atom_to_atom", [a_in], r_aa, [not raw], atom_molecule)[0]
        # PA_i = sum over the pairs of atom i of relu(P W_pa + b)
        pairwise = t[p + "pair_to_atom.pairwise"]
        totals = index.to_atoms(pairwise, pairwise) if self.recompute else t[p + "pair_to_atom"]
        r_pw, lost = pairs_to_atoms(pairwise, totals, r_pa, index)
        book(lost, None, atom_molecule)
        r_p = dense("pair_to_atom", [p_in], r_pw, [not raw], pair_molecule)[0]
        if r_pairs_out is not None:
            # P' = relu([AP, PP] W_p + b_p)
            r_ap, r_pp = dense("pair_update", [t[p + "atom_to_pair"], t[p + "pair_to_pair"]], r_pairs_out,
                               [True, True], pair_molecule)
            # PP = relu(P W_pp + b)
            r_p = r_p + dense("pair_to_pair", [p_in], r_pp, [not raw], pair_molecule)[0]
            # AP = relu(z_ij) + relu(z_ji), each a dense layer on the two atoms
            z_ij, z_ji = t[p + "atom_to_pair.z_ij"], t[p + "atom_to_pair.z_ji"]
            (r_ij, r_ji), lost = split_sum([ops.relu(z_ij), ops.relu(z_ji)], r_ap)
            book(lost, None, pair_molecule)
            layer = module.atom_to_pair
            zs = (None, None) if self.recompute else (z_ij, z_ji)
            res = pair_from_atoms(rules.rule_for(p + "atom_to_pair"), a_in, index, self._w(layer.kernel_first),
                                  self._w(layer.kernel_second), self._w(layer.bias), r_ij, r_ji, *zs,
                                  nonneg=not raw)
            book(res.absorbed, res.bias, pair_molecule)
            r_a = r_a + res.inputs[0]
        return r_a, r_p


def explain_batches(lrp: ModelLRP, batches: Any, rules: Mapping[str, Rule | Composite]) -> dict[str, Explanation]:
    """Explain an iterable of :class:`GraphBatch` and join the results per rule."""
    parts: dict[str, list[Explanation]] = {name: [] for name in rules}
    for batch in batches:
        for name, e in lrp.explain_inputs(batch_to_inputs(batch), rules, batch.ids).items():
            parts[name].append(e)
    return {name: Explanation.concatenate(p) for name, p in parts.items()}
