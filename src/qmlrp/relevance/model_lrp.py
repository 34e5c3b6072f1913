"""LRP through a trained model, vectorised over ragged batches: the public entry point.

:class:`ModelLRP` records the model's own forward pass (``model.record``) and walks it backwards
with the relevance functions registered per layer type (:mod:`qmlrp.relevance.walk`,
:mod:`qmlrp.relevance.layer_rules`); nothing here names a layer. Forward and walk run in one
compiled function, one per rule set and output, so relevance costs about as much as a few
forward passes: a ``tf.function`` with a ragged input signature on TensorFlow, ``jax.jit`` on JAX
(which compiles per input shape: batches are padded to bucketed sizes, as for prediction
(:func:`qmlrp.models.inputs.pad_inputs`), the padding atoms in a molecule of their own with zero
start relevance, and the results cut back to the real molecules).

What is explained: a linear functional ``f = sum_k c_k y_k`` of the model's outputs (target
units); ``output=k`` is the unit vector of output k, and a scalar model's output is the default.
The start relevance is ``c_k y_k`` per output. Per molecule:
``sum(atom relevance) + sum(pair relevance) + absorbed == f``, where ``absorbed`` = target means
+ network biases + stabilisers (and 0/0 conventions), computed on the forward side.

Precision: ``dtype="float64"`` runs a float64 copy of the model (weights, BatchNorm statistics and
fold, histogram, every pre-activation), so float64 is float64 end to end; float32 uses the model
as it is. The default composites (:func:`qmlrp.relevance.rules.stable`) keep float32 close to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.features.batch import GraphBatch
from qmlrp.models.inputs import (
    ATOM_FEATURES_KEY,
    ATOM_MOLECULE_KEY,
    COORDINATES_KEY,
    INPUT_DTYPES,
    INPUT_SHAPES,
    MOLECULE_ATOMS_KEY,
    PAIR_ATOMS_KEY,
    PAIR_FEATURES_KEY,
    batch_to_inputs,
    pad_inputs,
)
from qmlrp.relevance import layer_rules  # noqa: F401  (registers the relevance functions)
from qmlrp.relevance.rules import Composite, Rule, as_composite
from qmlrp.relevance.walk import Context, TensorInfo, annotate, backward

_SHAPES: dict[str, tuple[int, ...]] = {**INPUT_SHAPES, COORDINATES_KEY: (3,)}
_DTYPES: dict[str, str] = {**INPUT_DTYPES, COORDINATES_KEY: "float32"}

OutputSelection = int | Sequence[float] | np.ndarray | None
"""Which output to explain: a unit index, coefficients ``c`` (n_outputs,) of ``sum_k c_k y_k``,
per-molecule coefficients (n_molecules, n_outputs) (e.g. the sum over each molecule's real
vibrational modes), or None (the only output of a scalar model)."""


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
        output: (n_molecules,) the explained output ``f = sum_k c_k y_k`` (target units) =
            relevance at the top.
        absorbed: (n_molecules,) relevance that reached no input (all of the below).
        absorbed_mean: (n_molecules,) the target mean's share (LRP-0 on ``z*std + mean``).
        absorbed_bias: (n_molecules,) network biases' share (folded BatchNorm shift included).
        atom_molecule, pair_molecule, pair_atoms, ids: the batch's bookkeeping.
        embedding: (n_atoms, F) relevance of the normalised atom embedding ``h`` (what enters the
            Gaussian histogram), or None.
        target: which output was explained (a unit index or the coefficients), for labels.
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
    target: Any = None

    @property
    def n_molecules(self) -> int:
        return int(self.output.shape[0])

    def input_total(self) -> np.ndarray:
        """(n_molecules,) sum of all atom and pair feature relevances."""
        return _bincount(self.atom_molecule, self.atoms.sum(1), self.n_molecules) + _bincount(
            self.pair_molecule, self.pairs.sum(1), self.n_molecules)

    def conservation_error(self) -> np.ndarray:
        """(n_molecules,) ``|inputs + absorbed - output|`` (target units)."""
        return np.abs(self.input_total() + self.absorbed - self.output)

    def relative_conservation_error(self) -> np.ndarray:
        """(n_molecules,) conservation error over ``max(|output|, |inputs| + |absorbed|)`` (0 for 0/0)."""
        scale = np.maximum(np.abs(self.output), np.abs(self.input_total()) + np.abs(self.absorbed))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(scale > 0, self.conservation_error() / scale, 0.0)

    def empty(self) -> np.ndarray:
        """(n_molecules,) True where no input got any relevance although the output is not 0
        (e.g. LRP-ab(1, 0) or z+ when no contribution at the output unit is positive)."""
        nonzero = _bincount(self.atom_molecule, np.abs(self.atoms).sum(1), self.n_molecules) + _bincount(
            self.pair_molecule, np.abs(self.pairs).sum(1), self.n_molecules)
        return (nonzero == 0) & (self.output != 0)

    def input_share(self) -> np.ndarray:
        """(n_molecules,) share of the explained output that reached the inputs, ``inputs / f``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.output != 0, self.input_total() / self.output, np.nan)

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
            target=parts[0].target,
        )


def output_coefficients(selection: OutputSelection, n_outputs: int, n_molecules: int | None = None) -> np.ndarray:
    """Float64 coefficients ``c`` of the explained functional ``sum_k c_k y_k``: (n_outputs,), or
    (n_molecules, n_outputs) when ``n_molecules`` is given (a shared selection is repeated; a
    per-molecule one must have that many rows)."""
    if n_molecules is not None:
        sel = None if selection is None or isinstance(selection, (int, np.integer)) else np.asarray(selection, np.float64)
        if sel is not None and sel.ndim == 2:
            if sel.shape != (n_molecules, n_outputs):
                raise ValueError(f"per-molecule coefficients of shape {sel.shape} for {n_molecules} molecules "
                                 f"and {n_outputs} outputs")
            return sel
        return np.repeat(output_coefficients(selection, n_outputs)[None, :], n_molecules, axis=0)
    if selection is None:
        if n_outputs != 1:
            raise ValueError(f"the model has {n_outputs} outputs: choose one (output=k) or a functional "
                             "(output=[c_0, ..., c_n-1])")
        return np.ones(1)
    if isinstance(selection, (int, np.integer)):
        if not 0 <= int(selection) < n_outputs:
            raise ValueError(f"output {selection} out of range: the model has {n_outputs} outputs")
        c = np.zeros(n_outputs)
        c[int(selection)] = 1.0
        return c
    c = np.asarray(selection, np.float64).reshape(-1)
    if c.size != n_outputs:
        raise ValueError(f"{c.size} coefficients for {n_outputs} outputs")
    return c


def _policy64(config: Any) -> Any:
    """A layer config with every dtype policy set to float64."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float64"}}
        return {k: _policy64(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_policy64(v) for v in config]
    return config


def as_float64(model: keras.Model) -> keras.Model:
    """A float64 copy of ``model`` (same config and weights, every layer's dtype policy float64)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        copy = type(model).from_config(_policy64(model.get_config()))
        copy.build()
    finally:
        keras.config.set_dtype_policy(previous)
    if len(copy.weights) != len(model.weights):
        raise ValueError("float64 copy: the weights do not match the model's")
    for target, source in zip(copy.weights, model.weights):
        if target.name != source.name or tuple(target.shape) != tuple(source.shape):
            raise ValueError(f"float64 copy: weight {target.path} does not match {source.path}")
        target.assign(np.asarray(keras.ops.convert_to_numpy(source), np.float64))
    return copy


def jit_with_weights(model: keras.Model, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (which calls ``model``) under ``jax.jit``, the model's weights passed as arguments
    (a Keras ``StatelessScope``) rather than baked into the program as constants: the compiled
    program is then the same for every model of one architecture (the folds share it, in memory
    and in JAX's persistent cache) and stays small."""
    import jax

    variables = list(model.variables)

    def stateless(values: list[Any], *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(stateless)
    return lambda *args: jitted([v.value for v in variables], *args)


@dataclass(frozen=True)
class _Key:
    rules: tuple[tuple[str, Composite], ...]
    keep: tuple[str, ...] = field(default_factory=tuple)


class ModelLRP:
    """LRP for one model whose ``record(inputs)`` returns a :class:`~qmlrp.models.layers.Record`
    tree (e.g. :class:`~qmlrp.models.gc.GraphConvModel`) and whose outputs are (n_molecules, n_outputs).

    Args:
        model: the trained model (inference mode is used throughout).
        dtype: ``float32`` (the model as it is; fast) or ``float64`` (a float64 copy of the model,
            end to end; made once here -- rebuild this object after further training).
        compile: run compiled (``tf.function`` on TensorFlow, ``jax.jit`` on JAX); False runs eagerly.
        bucket_molecules, bucket_atoms, bucket_pairs: JAX pads each batch to multiples of these
            (molecules: one more than the batch's), so that a few compiled shapes serve all batches.
    """

    def __init__(self, model: keras.Model, dtype: str = "float32", compile: bool = True,
                 bucket_molecules: int = 64, bucket_atoms: int = 256, bucket_pairs: int = 4096) -> None:
        self.dtype = keras.backend.standardize_dtype(np.dtype(dtype).name)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if self.dtype == "float64" and keras.backend.backend() == "jax":
            import jax

            if not jax.config.jax_enable_x64:
                raise ValueError("float64 LRP on JAX needs 64-bit arrays: set JAX_ENABLE_X64=1")
        self.model = as_float64(model) if self.dtype == "float64" else model
        self.compile = compile and keras.backend.backend() in ("tensorflow", "jax")
        self.buckets = (bucket_molecules, bucket_atoms, bucket_pairs) \
            if self.compile and keras.backend.backend() == "jax" else None
        self.n_outputs = int(getattr(getattr(model, "head", None), "n_outputs", 1))
        # models that read the geometry (the equivariant vector head) get the coordinates too
        self.input_keys = (*INPUT_SHAPES, COORDINATES_KEY) if getattr(model, "needs_coordinates", False) \
            else tuple(INPUT_SHAPES)
        self._functions: dict[_Key, Callable[[dict[str, Any]], Any]] = {}

    # -- public -------------------------------------------------------------------------------
    def explain_inputs(self, inputs: Mapping[str, np.ndarray], rules: Mapping[str, Rule | Composite],
                       ids: np.ndarray | None = None, output: OutputSelection = None,
                       keep: Sequence[str] = ("embedding",)) -> dict[str, Explanation]:
        """One recorded forward pass and one backward walk per rule: ``{name: Explanation}``.

        Args:
            inputs: the model's input dict (:func:`~qmlrp.models.inputs.batch_to_inputs`).
            rules: rule or composite per name.
            ids: molecule ids for the explanations (default 0..n-1).
            output: which output (see :data:`OutputSelection`).
            keep: record paths whose output relevance is returned too (``embedding`` fills
                :attr:`Explanation.embedding`).
        """
        comps = {name: as_composite(rule) for name, rule in rules.items()}
        n_mol = int(np.asarray(inputs[MOLECULE_ATOMS_KEY]).shape[0])
        coef = output_coefficients(output, self.n_outputs, n_mol).astype(self.dtype)
        fn = self._function(_Key(tuple(comps.items()), tuple(keep)))
        if COORDINATES_KEY in self.input_keys and COORDINATES_KEY not in inputs:
            raise ValueError(f"this model needs the input {COORDINATES_KEY!r} (n_atoms, 3), Angstrom")
        feed = {k: np.asarray(inputs[k], _DTYPES[k]) for k in self.input_keys}
        atom_molecule = np.asarray(inputs[ATOM_MOLECULE_KEY], np.int64)
        pair_atoms = np.asarray(inputs[PAIR_ATOMS_KEY], np.int64)
        sizes = {"atoms": atom_molecule.size, "embedding": atom_molecule.size, "pairs": pair_atoms.shape[0]}
        if self.buckets is not None:
            feed, coef = self._padded(feed, coef)
        if self.dtype == "float64":
            feed = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feed.items()}
        out = fn(feed, coef)
        pair_molecule = atom_molecule[pair_atoms[:, 0]] if pair_atoms.size else np.zeros(0, np.int64)
        if output is None:
            target: Any = 0
        elif isinstance(output, (int, np.integer)) or np.ndim(output) == 1:
            target = output
        else:
            target = "per-molecule coefficients"
        result = {}
        for name in comps:
            values = {f: np.asarray(keras.ops.convert_to_numpy(v))[:sizes.get(f, n_mol)] for f, v in out[name].items()}
            result[name] = Explanation(
                rule=name, atoms=values["atoms"], pairs=values["pairs"],
                output=values["output"].astype(np.float64),
                absorbed=values["absorbed"].astype(np.float64),
                absorbed_mean=values["absorbed_mean"].astype(np.float64),
                absorbed_bias=values["absorbed_bias"].astype(np.float64),
                atom_molecule=atom_molecule, pair_molecule=pair_molecule, pair_atoms=pair_atoms,
                ids=np.arange(n_mol) if ids is None else np.asarray(ids),
                embedding=values.get("embedding"), target=target)
        return result

    def explain(self, batch: GraphBatch, rule: Rule | Composite, name: str | None = None,
                output: OutputSelection = None) -> Explanation:
        """Relevance of every atom/pair feature of ``batch`` for one rule."""
        comp = as_composite(rule)
        label = name or comp.label
        return self.explain_inputs(batch_to_inputs(batch), {label: comp}, batch.ids, output=output)[label]

    def _padded(self, feed: dict[str, np.ndarray], coef: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The batch padded to bucketed sizes; the padding molecules' coefficients are 0."""
        molecules, atoms, pairs = self.buckets
        n = int(feed[MOLECULE_ATOMS_KEY].shape[0])
        slots = -(-(n + 1) // molecules) * molecules
        padded, _, _ = pad_inputs(feed, np.zeros((n, 1), np.float32), slots, atoms, pairs)
        coef = np.concatenate([coef, np.zeros((slots - n, coef.shape[1]), coef.dtype)])
        return {k: padded[k] for k in self.input_keys}, coef

    # -- compiled function --------------------------------------------------------------------
    def _function(self, key: _Key) -> Callable[[dict[str, Any]], Any]:
        if key not in self._functions:
            def run(inputs: dict[str, Any], coef: Any) -> dict[str, dict[str, Any]]:
                rec = self.model.record(inputs)
                return {name: self._walk(rec, inputs, comp, coef, key.keep) for name, comp in key.rules}

            if self.compile and self.buckets is not None:
                self._functions[key] = jit_with_weights(self.model, run)
            elif self.compile:
                import tensorflow as tf

                dtypes = {k: ("float64" if self.dtype == "float64" and _DTYPES[k] == "float32" else _DTYPES[k])
                          for k in self.input_keys}
                signature = [{k: tf.TensorSpec((None, *_SHAPES[k]), dtypes[k]) for k in self.input_keys},
                             tf.TensorSpec((None, self.n_outputs), self.dtype)]
                self._functions[key] = tf.function(run, input_signature=signature, autograph=False)
            else:
                self._functions[key] = run
        return self._functions[key]

    def _walk(self, rec: Any, inputs: dict[str, Any], rules: Composite, coef: Any,
              keep: tuple[str, ...]) -> dict[str, Any]:
        """Annotate the record, start at ``c_mk y_mk`` (``coef`` (n_molecules, n_outputs)) and walk
        back to the input features."""
        dt = self.dtype
        atom_molecule = inputs[ATOM_MOLECULE_KEY]
        pair_molecule = ops.take(atom_molecule, inputs[PAIR_ATOMS_KEY][:, 0], axis=0)
        ctx = Context(rules, dt, {"atoms": atom_molecule, "pairs": pair_molecule},
                      ops.shape(inputs[MOLECULE_ATOMS_KEY])[0], keep=keep)
        ctx.info[id(inputs[ATOM_FEATURES_KEY])] = TensorInfo("atoms", False)
        ctx.info[id(inputs[PAIR_FEATURES_KEY])] = TensorInfo("pairs", False)
        annotate(rec, ctx.info)
        y = ops.cast(rec.outputs, dt)
        r_y = y * ops.cast(coef, dt)
        r_in = dict(zip(sorted(inputs), backward(rec, [r_y], ctx)))  # leaves() orders dict keys
        atoms, pairs = r_in.get(ATOM_FEATURES_KEY), r_in.get(PAIR_FEATURES_KEY)
        out = {
            "atoms": ops.zeros_like(ops.cast(inputs[ATOM_FEATURES_KEY], dt)) if atoms is None else atoms,
            "pairs": ops.zeros_like(ops.cast(inputs[PAIR_FEATURES_KEY], dt)) if pairs is None else pairs,
            "output": ops.sum(r_y, axis=-1), "absorbed": ctx.absorbed, "absorbed_mean": ctx.mean,
            "absorbed_bias": ctx.bias,
        }
        if "embedding" in ctx.kept:
            out["embedding"] = ctx.kept["embedding"]
        return out


def explain_batches(lrp: ModelLRP, batches: Any, rules: Mapping[str, Rule | Composite]) -> dict[str, Explanation]:
    """Explain an iterable of :class:`GraphBatch` and join the results per rule."""
    parts: dict[str, list[Explanation]] = {name: [] for name in rules}
    for batch in batches:
        for name, e in lrp.explain_inputs(batch_to_inputs(batch), rules, batch.ids).items():
            parts[name].append(e)
    return {name: Explanation.concatenate(p) for name, p in parts.items()}
