"""LRP rules as small objects: each rule says how a linear map ``z = x @ W + b`` redistributes
the relevance of its outputs onto its inputs (Bach et al. 2015; Montavon et al. 2019).

A rule is a list of :class:`Group` s. A group is a *modified* linear map made of
:class:`Term` s -- ``z_g = sum_t sel_t(x) @ mod_t(W) + bias_g(b)`` -- with a coefficient ``c_g``
and a stabiliser. Relevance flows back as::

    s_g   = R_out / stab_g(z_g)                      (0 where the stabilised denominator is 0)
    R_in  = sum_g c_g sum_t sel_t(x) * (s_g @ mod_t(W).T)

so every rule costs one matmul per term and direction; inputs known to be non-negative (ReLU
outputs) skip the ``x-`` terms. What the inputs do not receive -- ``sum_g c_g bias_g s_g`` plus
the stabiliser's share -- is *absorbed* and reported (see :mod:`qmlrp.relevance.propagate`).

===========  =============================================  =======================================
rule         groups (coefficient: terms, bias)              note
===========  =============================================  =======================================
LRP-0        1: (x, W), b                                   = gradient x input on bias-free ReLU nets
LRP-eps      1: (x, W), b; denominator z + eps*sign(z)      eps absorbs weak / contradictory outputs
LRP-ab       a: (x+, W+), (x-, W-), b+ ; -b: (x+, W-),      alpha - beta = 1; (1, 0) and (2, 1)
             (x-, W+), b-
LRP-gamma    1: (x+, W + g W+), (x-, W + g W-), b + g b+    favours positive contributions
z+           1: (x+, W+), (x-, W-), no bias                 = LRP-ab(1, 0) without bias
===========  =============================================  =======================================

To add a rule, subclass :class:`Rule` and return its groups; :func:`get_rule` maps the names used
in ``params.yaml`` to instances. :class:`Composite` assigns rules per layer (by trace-key pattern).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keras import ops

InputSelect = str
"""``"x"`` (all of the input), ``"x+"`` (positive part) or ``"x-"`` (negative part)."""
INPUT_SELECTS: tuple[str, ...] = ("x", "x+", "x-")


Array = Any
"""A numpy array or a backend tensor: every rule is written with ``keras.ops`` and works on
both, eagerly or inside a compiled function."""


def positive(a: Array) -> Array:
    """Elementwise ``max(a, 0)``."""
    return ops.maximum(a, 0)


def negative(a: Array) -> Array:
    """Elementwise ``min(a, 0)``."""
    return ops.minimum(a, 0)


def select_input(x: Array, select: InputSelect) -> Array:
    """``x``, ``max(x, 0)`` or ``min(x, 0)`` for ``select`` = ``x``, ``x+``, ``x-``."""
    if select == "x":
        return x
    if select == "x+":
        return positive(x)
    if select == "x-":
        return negative(x)
    raise ValueError(f"unknown input selection {select!r}")


@dataclass(frozen=True)
class WeightMod:
    """A named map of a weight (or bias) array: ``W``, ``W+``, ``W + gamma W+`` ..."""

    name: str
    fn: Callable[[Array], Array]

    def __call__(self, w: Array) -> Array:
        return self.fn(w)


IDENTITY = WeightMod("w", lambda w: w)
POSITIVE = WeightMod("w+", positive)
NEGATIVE = WeightMod("w-", negative)
ZERO = WeightMod("0", ops.zeros_like)


def gamma_mod(gamma: float, part: str) -> WeightMod:
    """``W + gamma W+`` (``part="+"``) or ``W + gamma W-`` (``part="-"``)."""
    pick = positive if part == "+" else negative
    return WeightMod(f"w{part}{gamma:g}g", lambda w: w + gamma * pick(w))


@dataclass(frozen=True)
class Term:
    """One product ``sel(x) @ mod(W)`` of a group."""

    select: InputSelect
    weight: WeightMod

    def __post_init__(self) -> None:
        if self.select not in INPUT_SELECTS:
            raise ValueError(f"unknown input selection {self.select!r}")


@dataclass(frozen=True)
class Group:
    """A modified linear map with its own denominator.

    Attributes:
        coefficient: ``c_g`` (``alpha`` or ``-beta`` for LRP-ab, 1 otherwise).
        terms: the products summed into ``z_g``.
        bias: map applied to the layer bias for ``z_g`` (``ZERO`` to leave it out).
        epsilon: stabiliser ``z + epsilon * sign(z)`` (``sign(0) = +1``); 0 means none.
        plain: True when ``z_g`` is the layer's own pre-activation (lets callers reuse it).
    """

    coefficient: float
    terms: tuple[Term, ...]
    bias: WeightMod = IDENTITY
    epsilon: float = 0.0
    plain: bool = False

    def stabilise(self, z: Array) -> Array:
        """Denominator ``z + epsilon * sign(z)`` (``sign(0) = +1``)."""
        if self.epsilon == 0.0:
            return z
        eps = ops.full_like(z, self.epsilon)
        return z + ops.where(z >= 0, eps, -eps)


def safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` with 0 where ``den == 0`` (the LRP convention 0/0 := 0)."""
    return ops.divide_no_nan(num, den)


class Rule:
    """Base class: a rule is a tuple of :class:`Group` s (see the module docstring)."""

    name: str = "rule"

    def groups(self) -> tuple[Group, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


@dataclass(frozen=True, repr=False)
class Lrp0(Rule):
    """LRP-0: ``R_i = sum_j x_i w_ij / z_j R_j`` -- no free parameter, the default."""

    name: str = "lrp0"

    def groups(self) -> tuple[Group, ...]:
        return (Group(1.0, (Term("x", IDENTITY),), IDENTITY, 0.0, plain=True),)


@dataclass(frozen=True, repr=False)
class Epsilon(Rule):
    """LRP-eps: denominator ``z_j + eps sign(z_j)``; ``eps`` in the units of the pre-activations."""

    epsilon: float = 0.1
    name: str = "eps"

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise ValueError(f"LRP-eps needs epsilon > 0, got {self.epsilon}")

    def groups(self) -> tuple[Group, ...]:
        return (Group(1.0, (Term("x", IDENTITY),), IDENTITY, self.epsilon, plain=True),)


@dataclass(frozen=True, repr=False)
class AlphaBeta(Rule):
    """LRP-alpha-beta: positive and negative contributions normalised separately,
    ``R_i = sum_j (alpha z_ij+ / z_j+ - beta z_ij- / z_j-) R_j`` with ``alpha - beta = 1``.

    Positive contributions are ``x+ W+`` and ``x- W-`` (both > 0), negative ones ``x+ W-`` and
    ``x- W+``; biases join the group of their sign. A group whose denominator is 0 (no
    contribution of that sign) passes nothing, so such outputs are not conserved exactly:
    that share is reported as absorbed.
    """

    alpha: float = 1.0
    beta: float = 0.0
    name: str = "ab10"

    def __post_init__(self) -> None:
        if abs(self.alpha - self.beta - 1.0) > 1e-9 or self.beta < 0:
            raise ValueError(f"LRP-ab needs alpha - beta = 1 and beta >= 0, got ({self.alpha}, {self.beta})")

    def groups(self) -> tuple[Group, ...]:
        pos = Group(self.alpha, (Term("x+", POSITIVE), Term("x-", NEGATIVE)), POSITIVE)
        if self.beta == 0:
            return (pos,)
        neg = Group(-self.beta, (Term("x+", NEGATIVE), Term("x-", POSITIVE)), NEGATIVE)
        return (pos, neg)


@dataclass(frozen=True, repr=False)
class Gamma(Rule):
    """LRP-gamma: contributions ``z_ij + gamma (z_ij)+``, i.e. ``x+ (W + g W+) + x- (W + g W-)``,
    bias ``b + g b+`` (Montavon et al. 2019 for ReLU inputs, extended to signed inputs)."""

    gamma: float = 0.25
    name: str = "gamma"

    def __post_init__(self) -> None:
        if self.gamma < 0:
            raise ValueError(f"LRP-gamma needs gamma >= 0, got {self.gamma}")

    def groups(self) -> tuple[Group, ...]:
        bias = WeightMod(f"b+{self.gamma:g}g", lambda b: b + self.gamma * positive(b))
        terms = (Term("x+", gamma_mod(self.gamma, "+")), Term("x-", gamma_mod(self.gamma, "-")))
        return (Group(1.0, terms, bias),)


@dataclass(frozen=True, repr=False)
class ZPlus(Rule):
    """z+ rule: only positive contributions, biases ignored (they are absorbed)."""

    name: str = "zplus"

    def groups(self) -> tuple[Group, ...]:
        return (Group(1.0, (Term("x+", POSITIVE), Term("x-", NEGATIVE)), ZERO),)


RULE_NAMES: tuple[str, ...] = ("lrp0", "eps", "ab10", "ab21", "gamma", "zplus")


def get_rule(name: str, epsilon: float = 0.1, gamma: float = 0.25) -> Rule:
    """Rule by its ``params.yaml`` name: ``lrp0``, ``eps``, ``ab10``, ``ab21``, ``gamma``, ``zplus``."""
    if name == "lrp0":
        return Lrp0()
    if name == "eps":
        return Epsilon(epsilon)
    if name == "ab10":
        return AlphaBeta(1.0, 0.0, name="ab10")
    if name == "ab21":
        return AlphaBeta(2.0, 1.0, name="ab21")
    if name == "gamma":
        return Gamma(gamma)
    if name == "zplus":
        return ZPlus()
    raise ValueError(f"unknown LRP rule {name!r} (known: {', '.join(RULE_NAMES)})")


@dataclass(frozen=True)
class Composite:
    """One rule per layer (as zennit's composites): the first ``(pattern, rule)`` that matches
    wins, else ``default``. A pattern is an fnmatch pattern on the layer's record path (e.g.
    ``weave0.atom_to_pair``, ``head.dense0``, ``embedding``, ``weave*``) or ``type:<class name>``
    for every layer of a type (``type:PairFromAtoms``).

    A single :class:`Rule` is a composite with no overrides (:func:`as_composite`).
    """

    default: Rule
    overrides: tuple[tuple[str, Rule], ...] = field(default_factory=tuple)
    name: str = ""

    def rule_for(self, path: str, type_name: str = "") -> Rule:
        for pattern, rule in self.overrides:
            if pattern.startswith("type:"):
                if type_name and fnmatch.fnmatchcase(type_name, pattern[5:]):
                    return rule
            elif fnmatch.fnmatchcase(path, pattern):
                return rule
        return self.default

    @property
    def label(self) -> str:
        return self.name or self.default.name

    def describe(self) -> str:
        """Human-readable rule assignment, e.g. ``lrp0; eps(0.1) at embedding, head.output``."""
        text = _rule_text(self.default)
        groups: dict[str, list[str]] = {}
        for pattern, rule in self.overrides:
            groups.setdefault(_rule_text(rule), []).append(pattern)
        for rule_text, patterns in groups.items():
            if rule_text != _rule_text(self.default):
                text += f"; {rule_text} at {', '.join(patterns)}"
        return text


def _rule_text(rule: Rule) -> str:
    if isinstance(rule, Epsilon):
        return f"eps({rule.epsilon:g})"
    if isinstance(rule, Gamma):
        return f"gamma({rule.gamma:g})"
    if isinstance(rule, AlphaBeta):
        return f"ab({rule.alpha:g},{rule.beta:g})"
    return rule.name


STABLE_LAYERS: tuple[str, ...] = ("embedding", "head.output")
"""Layers whose pre-activations cross zero for many molecules: the per-atom embedding (BatchNorm
output, ~N(0, 1) per feature) and the output unit (standardised target, ~N(0, 1)). LRP-0 and
LRP-gamma divide by them (float32 rounding amplified without bound), and LRP-ab(1, 0) / z+ find
no positive contribution at the output unit of some molecules (empty explanations). LRP-eps on
these layers fixes both; :func:`stable` puts it there."""


def stable(rule: Rule | Composite, epsilon: float = 0.1, layers: Sequence[str] = STABLE_LAYERS) -> Composite:
    """The default composite: ``rule`` everywhere except LRP-eps at ``layers`` (record paths or
    ``type:`` patterns, see :class:`Composite`); overrides already in a composite come first."""
    comp = as_composite(rule)
    eps = Epsilon(epsilon)
    extra = tuple((pattern, eps) for pattern in layers if pattern not in {p for p, _ in comp.overrides})
    return Composite(comp.default, comp.overrides + extra, comp.label)


def as_composite(rule: Rule | Composite) -> Composite:
    """Wrap a single rule as a :class:`Composite`."""
    return rule if isinstance(rule, Composite) else Composite(rule, (), rule.name)


def composite_from_spec(
    name: str, default: str, layers: Mapping[str, str] | None = None, epsilon: float = 0.1, gamma: float = 0.25
) -> Composite:
    """Composite from ``params.yaml``: ``{default: eps, layers: {"weave*": zplus}}``."""
    overrides = tuple((pattern, get_rule(r, epsilon, gamma)) for pattern, r in (layers or {}).items())
    return Composite(get_rule(default, epsilon, gamma), overrides, name)


def resolve_rules(
    names: Sequence[str], epsilon: float = 0.1, gamma: float = 0.25,
    composites: Mapping[str, Mapping[str, object]] | None = None,
    stabilise: Sequence[str] = (),
) -> dict[str, Composite]:
    """``{name: Composite}`` for rule names or names of composites defined in ``composites``;
    ``stabilise`` lists layers that get LRP-eps in every one of them (:func:`stable`)."""
    out: dict[str, Composite] = {}
    composites = composites or {}
    for name in names:
        if name in composites:
            spec = composites[name]
            out[name] = composite_from_spec(name, str(spec["default"]), spec.get("layers"), epsilon, gamma)  # type: ignore[arg-type]
        else:
            rule = get_rule(name, epsilon, gamma)
            out[name] = Composite(rule, (), name)
        if stabilise:
            out[name] = stable(out[name], epsilon, stabilise)
    return out


def stable_composites(names: Sequence[str], epsilon: float = 0.1, gamma: float = 0.25) -> dict[str, Composite]:
    """The default composite of each rule name (LRP-eps at :data:`STABLE_LAYERS`)."""
    return resolve_rules(names, epsilon, gamma, stabilise=STABLE_LAYERS)
