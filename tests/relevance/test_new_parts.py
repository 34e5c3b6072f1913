"""A model with new parts is explained without touching the walk: a part made of known layer types
needs no code at all; a new leaf type needs one registered relevance function (until then the walk
says which layer lacks one)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from qmlrp.models.gc import GraphConvModel
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.models.layers import Record, SplitDense, Tape, run
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.propagate import Propagated, split_sum
from qmlrp.relevance.rules import get_rule
from qmlrp.relevance.walk import Context, _REGISTRY, register

from tests.relevance.test_model_lrp import randomised_model


class Sum:
    """A new weightless leaf: elementwise ``a + b`` (not registered unless a test does it)."""

    name = "sum"

    def __call__(self, a: Any, b: Any) -> Any:
        return a + b


SUM = Sum()


@keras.saving.register_keras_serializable(package="qmlrp_tests")
class ResidualAtoms(keras.layers.Layer):
    """A new part: ``A' = relu(A W + b) + A`` on the atoms, pairs passed through."""

    def __init__(self, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = SplitDense(width, "relu", name="dense")
        self.atom_units, self.pair_units = width, None  # pairs pass through (None after the last weave module)

    def build(self, atoms_shape: Any, pairs_shape: Any = None, pair_atoms_shape: Any = None) -> None:
        self.dense.build((None, int(atoms_shape[-1])))

    def forward(self, atoms: Any, pairs: Any, pair_atoms: Any, tape: Tape | None = None) -> tuple[Any, Any]:
        return run(tape, SUM, run(tape, self.dense, atoms), atoms), pairs

    def call(self, atoms: Any, pairs: Any, pair_atoms: Any) -> tuple[Any, Any]:
        return self.forward(atoms, pairs, pair_atoms)

    def get_config(self) -> dict[str, Any]:  # parts are serialisable (saving; float64 copies)
        return {**super().get_config(), "width": self.atom_units}


@keras.saving.register_keras_serializable(package="qmlrp_tests")
class ExtraDense(keras.layers.Layer):
    """A new part made only of known layer types: ``A' = relu(A W + b)``, pairs passed through."""

    def __init__(self, width: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = SplitDense(width, "relu", name="dense")
        self.atom_units, self.pair_units = width, None  # pairs pass through (None after the last weave module)

    def build(self, atoms_shape: Any, pairs_shape: Any = None, pair_atoms_shape: Any = None) -> None:
        self.dense.build((None, int(atoms_shape[-1])))

    def forward(self, atoms: Any, pairs: Any, pair_atoms: Any, tape: Tape | None = None) -> tuple[Any, Any]:
        return run(tape, self.dense, atoms), pairs

    def call(self, atoms: Any, pairs: Any, pair_atoms: Any) -> tuple[Any, Any]:
        return self.forward(atoms, pairs, pair_atoms)

    def get_config(self) -> dict[str, Any]:  # parts are serialisable (saving; float64 copies)
        return {**super().get_config(), "width": self.atom_units}


def with_extra_part(part: keras.layers.Layer) -> keras.Model:
    """The small random model with ``part`` between the weave modules and the embedding."""
    base = randomised_model(seed=2)
    width = base.weave_modules[-1].atom_units
    model = GraphConvModel(base.input_layer, [*base.weave_modules, part], base.atom_embedding, base.readout,
                           base.head, name="extended")
    part.build((None, width))
    rng = np.random.default_rng(1)
    part.dense.kernels[0].assign(rng.normal(0, 0.3, (width, width)).astype("float32"))
    part.dense.bias.assign(rng.normal(0, 0.1, width).astype("float32"))
    return model


def _conserves(model: keras.Model, name: str) -> None:
    batch = random_batch([4, 7, 2], seed=3)
    e = ModelLRP(model, dtype="float64").explain(batch, get_rule(name))
    np.testing.assert_allclose(e.output, np.asarray(model(batch_to_inputs(batch), training=False))[:, 0], rtol=1e-5)
    assert e.conservation_error().max() <= 1e-9 * max(1.0, np.abs(e.output).max())
    assert np.abs(e.atoms).sum() > 0


@pytest.mark.parametrize("name", ["lrp0", "ab21"])
def test_part_of_known_layer_types_needs_no_code(name: str) -> None:
    _conserves(with_extra_part(ExtraDense(12, name="extra")), name)


def test_new_leaf_type_needs_one_function() -> None:
    model = with_extra_part(ResidualAtoms(12, name="residual"))
    with pytest.raises(TypeError, match="no relevance function for Sum at 'residual.sum'"):
        ModelLRP(model, dtype="float64", compile=False).explain(random_batch([3, 2]), get_rule("eps"))

    # -- the one function a new layer type needs (6 lines) --------------------------------------
    @register(Sum, rows="same", nonneg=lambda layer, flags: all(flags))
    def _sum(rec: Record, r_out: list[Any], ctx: Context) -> Propagated:
        """``a + b``: shares in proportion to the summands' values."""
        (r_a, r_b), lost = split_sum([ctx.cast(x) for x in rec.inputs], r_out[0])
        return Propagated([r_a, r_b], lost, None)

    try:
        for name in ("lrp0", "ab21"):
            _conserves(model, name)
    finally:
        del _REGISTRY[Sum]
