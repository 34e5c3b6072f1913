"""LRP as a walk over a recorded forward pass: relevance functions registered per layer type.

The model records its own forward pass (:meth:`qmlrp.models.gc.GraphConvModel.record`): a tree of
:class:`~qmlrp.models.layers.Record` s, one per layer call, holding the layer, its input and
output tensors and extras such as pre-activations. The walk needs nothing else from the model:

1. **annotate** (forward sweep): for every recorded tensor, which rows it has (``atoms``,
   ``pairs`` or ``molecules`` -- to book absorbed relevance to molecules) and whether it is known
   to be non-negative (ReLU outputs: the rules then skip the ``x-`` terms).
2. **backward**: starting from the relevance of the root's outputs, each record's relevance
   function turns the relevance of its outputs into that of its inputs; which tensor fed which
   layer is read off the record (tensor identity), so branches (A->A and P->A, pairs feeding
   both P->A and P->P) add up where they meet. A layer type with a registered function is a
   leaf; any other record with children (a weave module, the head, the model) is walked through
   its children. A layer type with neither is an error naming its path.

Adding a layer type = its model file (a ``forward`` that calls sub-layers via
:func:`qmlrp.models.layers.run`) + one function here registered with :func:`register`, e.g.::

    @register(MyLayer, rows="same", nonneg=lambda layer, inputs: False)
    def _my_layer(rec: Record, r_out: list[Array], ctx: Context) -> Propagated:
        ...  # relevance of leaves(rec.inputs), absorbed per output row

Each function returns a :class:`~qmlrp.relevance.propagate.Propagated`: one relevance per input
leaf (None for indices and counts), and what each output row absorbed (biases, stabilisers,
0/0 conventions), computed on the forward side so that a wrong gather or scatter shows up as a
conservation error instead of vanishing into "absorbed".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keras import ops

from qmlrp.models.layers import Record
from qmlrp.relevance.propagate import Propagated, per_molecule
from qmlrp.relevance.rules import Composite, Rule

Array = Any
RelevanceFunction = Callable[[Record, list[Array], "Context"], Propagated]
ROW_KINDS: tuple[str, ...] = ("atoms", "pairs", "molecules")


@dataclass(frozen=True)
class LayerSpec:
    """What the walk knows about one layer type.

    Attributes:
        function: relevance of the inputs from that of the outputs.
        rows: rows of the outputs: ``"same"`` as the first signal input, or a kind in
            :data:`ROW_KINDS`.
        nonneg: ``(layer, [input leaf known >= 0 or None]) -> output known >= 0``.
    """

    function: RelevanceFunction
    rows: str = "same"
    nonneg: Callable[[Any, list[bool | None]], bool] = lambda layer, flags: False


_REGISTRY: dict[type, LayerSpec] = {}


def register(*types: type, rows: str = "same",
             nonneg: Callable[[Any, list[bool | None]], bool] | None = None) -> Callable[[RelevanceFunction], RelevanceFunction]:
    """Decorator: register a relevance function for layer types (subclasses inherit it)."""
    if rows != "same" and rows not in ROW_KINDS:
        raise ValueError(f"rows must be 'same' or one of {ROW_KINDS}, got {rows!r}")

    def decorate(fn: RelevanceFunction) -> RelevanceFunction:
        for t in types:
            _REGISTRY[t] = LayerSpec(fn, rows, nonneg or (lambda layer, flags: False))
        return fn

    return decorate


def spec_for(layer: Any) -> LayerSpec | None:
    """The registered spec of ``type(layer)`` or of its nearest registered base class."""
    for t in type(layer).__mro__:
        if t in _REGISTRY:
            return _REGISTRY[t]
    return None


def leaves(x: Any) -> list[Any]:
    """Flatten call arguments / outputs: lists and tuples in order, dicts by sorted key; None kept."""
    if isinstance(x, (list, tuple)):
        return [leaf for item in x for leaf in leaves(item)]
    if isinstance(x, Mapping):
        return [leaf for key in sorted(x) for leaf in leaves(x[key])]
    return [x]


@dataclass(frozen=True)
class TensorInfo:
    rows: str
    nonneg: bool


@dataclass
class Context:
    """Everything a relevance function may need besides its record.

    Attributes:
        rules: the composite (rule per layer path / type).
        dtype: float type of the backward pass (the model's own: float64 for a float64 copy).
        owners: ``{"atoms": atom_molecule (n_atoms,), "pairs": pair_molecule (n_pairs,)}``.
        n_molecules: molecules in the batch.
        info: per recorded tensor (by ``id``) its rows and sign (from :func:`annotate`).
        keep: record paths whose output relevance is kept in ``kept``.
    """

    rules: Composite
    dtype: str
    owners: dict[str, Array]
    n_molecules: Any
    info: dict[int, TensorInfo] = field(default_factory=dict)
    keep: tuple[str, ...] = ()
    kept: dict[str, Array] = field(default_factory=dict)
    absorbed: Array = None
    bias: Array = None
    mean: Array = None

    def __post_init__(self) -> None:
        zeros = ops.zeros((self.n_molecules,), self.dtype)
        self.absorbed, self.bias, self.mean = zeros, zeros, zeros

    def rule(self, rec: Record) -> Rule:
        return self.rules.rule_for(rec.path, type(rec.layer).__name__)

    def nonneg(self, tensor: Any) -> bool:
        i = self.info.get(id(tensor))
        return bool(i and i.nonneg)

    def cast(self, value: Any) -> Array:
        return ops.cast(value, self.dtype)

    def per_molecule(self, values: Array, rows: str) -> Array:
        """(n_rows,) -> (n_molecules,) by the owners of ``rows``."""
        if rows == "molecules":
            return values
        return per_molecule(values, self.owners[rows], self.n_molecules)

    def book(self, result: Propagated, rows: str) -> None:
        """Add a layer's absorbed relevance (and its bias / mean part) to the per-molecule totals."""
        if result.absorbed is not None:
            self.absorbed = self.absorbed + self.per_molecule(result.absorbed, rows)
        if result.bias is not None:
            share = self.per_molecule(result.bias, rows)
            if result.tag == "mean":
                self.mean = self.mean + share
            else:
                self.bias = self.bias + share


def annotate(rec: Record, info: dict[int, TensorInfo]) -> None:
    """Forward sweep: rows and sign of every tensor recorded below ``rec`` (seeded with its inputs)."""
    for child in rec.children:
        spec = spec_for(child.layer)
        if spec is None:
            if not child.children:
                raise TypeError(f"LRP: no relevance function for {type(child.layer).__name__} at "
                                f"{child.path!r}; register one with qmlrp.relevance.walk.register")
            annotate(child, info)
            continue
        known = [info.get(id(t)) for t in leaves(child.inputs) if t is not None]
        signal = next((k for k in known if k is not None), None)
        rows = spec.rows if spec.rows != "same" else (signal.rows if signal else "molecules")
        flags = [(info[id(t)].nonneg if id(t) in info else None) for t in leaves(child.inputs) if t is not None]
        positive = bool(spec.nonneg(child.layer, flags))
        for t in leaves(child.outputs):
            if t is not None:
                info[id(t)] = TensorInfo(rows, positive)


def _add(rel: dict[int, tuple[Any, Array]], tensor: Any, r: Array) -> None:
    key = id(tensor)
    rel[key] = (tensor, r if key not in rel else rel[key][1] + r)


def backward(rec: Record, r_outputs: Sequence[Array | None], ctx: Context) -> list[Array | None]:
    """Relevance of ``leaves(rec.inputs)`` from that of ``leaves(rec.outputs)`` (see module doc)."""
    rel: dict[int, tuple[Any, Array]] = {}
    for t, r in zip(leaves(rec.outputs), r_outputs):
        if t is not None and r is not None:
            _add(rel, t, r)
    for child in reversed(rec.children):
        outs = leaves(child.outputs)
        r_out = [rel[id(t)][1] if t is not None and id(t) in rel else None for t in outs]
        if all(r is None for r in r_out):
            continue  # nothing downstream used this call
        r_out = [ops.zeros_like(ctx.cast(t)) if r is None and t is not None else r for t, r in zip(outs, r_out)]
        if child.path in ctx.keep:
            ctx.kept[child.path] = r_out[0] if len(r_out) == 1 else r_out
        spec = spec_for(child.layer)
        if spec is None:
            r_in = backward(child, r_out, ctx)
        else:
            result = spec.function(child, r_out, ctx)
            first = next((t for t in outs if t is not None), None)
            ctx.book(result, ctx.info[id(first)].rows)
            r_in = result.inputs
        ins = leaves(child.inputs)
        if len(r_in) != len(ins):
            raise ValueError(f"LRP: {child.path}: {len(r_in)} input relevances for {len(ins)} inputs")
        for t, r in zip(ins, r_in):
            if r is not None and t is not None:
                _add(rel, t, r)
    return [rel[id(t)][1] if t is not None and id(t) in rel else None for t in leaves(rec.inputs)]
