"""The Weave trunk with the equivariant vector head (issue 18): mu and beta_vec from the atom layer.

``VectorGCModel(input_layer, weave_modules, atom_embedding, head)``::

    input dict --GraphInput--> A (n_atoms, 21), P (n_pairs, 13)
      --WeaveModule x depth--> A (n_atoms, 50)
      --AtomEmbedding--------> H (n_atoms, 128)            the same trunk as GraphConvModel
      --EquivariantVectorHead> y (n_molecules, 3 V)        mu (a.u.), beta_vec (a.u.), vector-major

The input dict is the GC model's plus ``coordinates`` (n_atoms, 3) float32, Angstrom, in the frame
the labels' vectors are given in (QM9's). Only this model reads them: the invariant models' batches
are unchanged. beta_par = 3/5 beta_vec . mu_hat, |mu|, |beta_vec| are derived
(:func:`derived_quantities`), never predicted directly.

With ``config.pair_head_units`` the vector head also adds bond dipoles from the trunk's pair states
(:class:`~qmlrp.models.vector_head.BondDipole`). The head is swappable:
:class:`~qmlrp.models.tensor_head.EquivariantTensorHead` on the same trunk
predicts the rank-2 polarizability tensor (6 components, a.u.; issue 18 item 6).

Model files: the same ``.npz`` weights format; the metadata's ``head`` is ``equivariant_vector``
(with ``n_vectors``) or ``equivariant_tensor``, ``architecture.head_units`` are the widths of the
per-atom layers before the head's per-atom scalars.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.models.config import ModelConfig
from qmlrp.models.inputs import (
    ATOM_FEATURES_KEY,
    ATOM_MASK_KEY,
    ATOM_MOLECULE_KEY,
    COORDINATES_KEY,
    MOLECULE_ATOMS_KEY,
    PAIR_ATOMS_KEY,
    GraphInput,
    batch_to_inputs,
    random_batch,
)
from qmlrp.models.layers import PACKAGE, Record, Tape, build_once, record, run
from qmlrp.models.readout import AtomEmbedding
from qmlrp.models.tensor_head import EquivariantTensorHead
from qmlrp.models.vector_head import EquivariantVectorHead
from qmlrp.models.weave import WeaveModule

VECTOR_HEAD = "equivariant_vector"
"""``metadata["head"]`` of a :class:`VectorGCModel` file with the vector head (mu, beta_vec)."""
TENSOR_HEAD = "equivariant_tensor"
"""``metadata["head"]`` of a :class:`VectorGCModel` file with the rank-2 tensor head (alpha, 6 components)."""
EQUIVARIANT_HEADS: tuple[str, ...] = (VECTOR_HEAD, TENSOR_HEAD)
VECTOR_NAMES: tuple[str, ...] = ("dipole", "beta_vec")


@keras.saving.register_keras_serializable(package=PACKAGE)
class VectorGCModel(keras.Model):
    """Weave trunk + an equivariant head (:class:`EquivariantVectorHead`: (n_molecules, 3 * n_vectors);
    :class:`~qmlrp.models.tensor_head.EquivariantTensorHead`: (n_molecules, 6)), a.u."""

    needs_coordinates = True
    """Its input dict must hold ``coordinates`` (read by :mod:`qmlrp.relevance.model_lrp` and predict)."""

    def __init__(self, input_layer: GraphInput, weave_modules: Sequence[WeaveModule], atom_embedding: AtomEmbedding,
                 head: EquivariantVectorHead | EquivariantTensorHead, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_layer = input_layer
        self.weave_modules = list(weave_modules)
        self.atom_embedding = atom_embedding
        self.head = head
        self._metadata_json = json.dumps(dict(metadata or {}), sort_keys=True)

    @property
    def metadata(self) -> dict[str, Any]:
        return json.loads(self._metadata_json)

    def update_metadata(self, **values: Any) -> None:
        self._metadata_json = json.dumps({**self.metadata, **values}, sort_keys=True)

    def forward(self, inputs: dict[str, Any], training: bool | None = None, tape: Tape | None = None,
                scaled: bool = True) -> Any:
        """(n_molecules, head.n_outputs) in a.u. (``scaled=False``: before the head's scales)."""
        atoms, pairs = run(tape, self.input_layer, inputs)
        last_pairs = pairs
        for module in self.weave_modules:
            last_pairs = pairs  # the last module reads these and updates no pairs: the head's pair states
            atoms, pairs = run(tape, module, atoms, pairs, inputs[PAIR_ATOMS_KEY])
        h = run(tape, self.atom_embedding, atoms, training=training, mask=inputs.get(ATOM_MASK_KEY))
        n_molecules = ops.shape(inputs[MOLECULE_ATOMS_KEY])[0]
        with_pairs = (last_pairs, inputs[PAIR_ATOMS_KEY]) if getattr(self.head, "uses_pairs", False) else ()
        return run(tape, self.head, h, inputs[COORDINATES_KEY], inputs[ATOM_FEATURES_KEY],
                   inputs[ATOM_MOLECULE_KEY], *with_pairs, n_molecules=n_molecules, scaled=scaled)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        return self.forward(inputs, training=training)

    def record(self, inputs: dict[str, Any]) -> Record:
        return record(self, inputs, training=False)

    def build(self, input_shape: Any = None) -> None:
        d_a, d_p = self.input_layer.atom_dim, self.input_layer.pair_dim
        for module in self.weave_modules:
            build_once(module, (None, d_a), (None, d_p))
            d_a, d_p = module.atom_units, module.pair_units
        build_once(self.atom_embedding, (None, d_a))
        build_once(self.head, (None, self.atom_embedding.units))  # pair width: the head's own pair_dim
        self.built = True

    def build_with_dummy(self) -> None:
        self.build()
        batch = random_batch([2, 3], seed=0)
        inputs = batch_to_inputs(batch)
        inputs[COORDINATES_KEY] = np.zeros((batch.n_atoms, 3), np.float32)
        self(inputs, training=False)

    def get_build_config(self) -> dict[str, Any]:
        return {"built": True}

    def build_from_config(self, config: dict[str, Any]) -> None:
        self.build()

    def get_config(self) -> dict[str, Any]:
        ser = keras.saving.serialize_keras_object
        return {"name": self.name, "input_layer": ser(self.input_layer),
                "weave_modules": [ser(m) for m in self.weave_modules],
                "atom_embedding": ser(self.atom_embedding), "head": ser(self.head), "metadata": self.metadata}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VectorGCModel:
        de = keras.saving.deserialize_keras_object
        return cls(input_layer=de(config["input_layer"]), weave_modules=[de(m) for m in config["weave_modules"]],
                   atom_embedding=de(config["atom_embedding"]), head=de(config["head"]),
                   metadata=config.get("metadata"), name=config.get("name"))


def is_vector_metadata(metadata: dict[str, Any] | None) -> bool:
    """Whether a model file's metadata describes a :class:`VectorGCModel` (either equivariant head)."""
    return bool(metadata) and metadata.get("head") in EQUIVARIANT_HEADS


def build_vector_model(config: ModelConfig, metadata: dict[str, Any] | None = None,
                       n_vectors: int | None = None, head: str | None = None) -> VectorGCModel:
    """A freshly initialised, built :class:`VectorGCModel`; ``config.head_units`` are the per-atom
    widths before the head's per-atom scalars. ``head`` (default ``metadata["head"]``, else
    ``equivariant_vector``) picks the head: ``equivariant_vector`` with ``n_vectors`` (default
    ``metadata["n_vectors"]``, else 2: mu, beta_vec), or ``equivariant_tensor`` (6 components)."""
    if config.depth < 1:
        raise ValueError("model depth must be at least 1 weave module")
    metadata = dict(metadata or {})
    kind = head or metadata.get("head") or VECTOR_HEAD
    if kind == TENSOR_HEAD:
        head_layer: EquivariantVectorHead | EquivariantTensorHead = EquivariantTensorHead(config.head_units, name="head")
        metadata.update(head=TENSOR_HEAD)
        metadata.pop("n_vectors", None)
    elif kind == VECTOR_HEAD:
        width = int(metadata.get("n_vectors", 2) if n_vectors is None else n_vectors)
        if width < 1:
            raise ValueError(f"n_vectors must be positive, got {width}")
        head_layer = EquivariantVectorHead(config.head_units, width, pair_units=config.pair_head_units,
                                           pair_dim=config.head_pair_dim, name="head")
        metadata.update(head=VECTOR_HEAD, n_vectors=width)
    else:
        raise ValueError(f"unknown equivariant head {kind!r}; choose one of {', '.join(EQUIVARIANT_HEADS)}")
    modules = [WeaveModule(atom_units=config.atom_width, pair_units=config.pair_width, atom_hidden=config.atom_hidden,
                           pair_hidden=config.pair_hidden, update_pairs=k < config.depth - 1,
                           activation=config.activation, name=f"weave{k}") for k in range(config.depth)]
    model = VectorGCModel(
        input_layer=GraphInput(config.scaled_atom_features, config.scaled_pair_features, name="graph_input"),
        weave_modules=modules,
        atom_embedding=AtomEmbedding(config.embedding_width, config.batch_norm_momentum, name="embedding"),
        head=head_layer,
        metadata=metadata,
        name="weave_vector",
    )
    model.build_with_dummy()
    return model


def derived_quantities(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """From (n, 6) ``[mu (3), beta_vec (3)]`` (a.u.): ``mu`` (n, 3), ``beta_vec`` (n, 3),
    ``mu_norm`` (n,), ``beta_vec_norm`` (n,), ``beta_parallel`` (n,) = 3/5 beta_vec . mu/|mu|
    (NaN where |mu| = 0)."""
    v = np.asarray(vectors, np.float64).reshape(len(vectors), -1)
    mu, beta = v[:, 0:3], v[:, 3:6]
    mu_norm = np.linalg.norm(mu, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        par = 0.6 * np.einsum("ni,ni->n", beta, mu) / mu_norm
    return {"mu": mu, "beta_vec": beta, "mu_norm": mu_norm, "beta_vec_norm": np.linalg.norm(beta, axis=1),
            "beta_parallel": np.where(mu_norm > 0, par, np.nan)}
