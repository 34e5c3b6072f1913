"""The Weave graph-convolution model (Kearnes et al. 2016, as used by Faber et al. 2017).

``GraphConvModel(input_layer, weave_modules, atom_embedding, readout, head)``: a composition
of parts in the spirit of chemprop v2's ``MPNN(message_passing, aggregation, predictor)``::

    input dict --GraphInput--> A (n_atoms, 21), P (n_pairs, 13)
      --WeaveModule x depth--> A (n_atoms, 50)          [last module: no pair update]
      --AtomEmbedding--------> H (n_atoms, 128)          linear + BatchNorm (foldable)
      --GaussianHistogram----> X (n_molecules, 128*11)   softmax memberships, sum over atoms
      --RegressionHead-------> y (n_molecules, 1)        relu dense(2000), linear(1), y*std+mean

Choices (what the papers give -> what we do, and why):

* Weave depth 2, width 50 for every A->A, P->A, A->P, P->P and combining layer, per-atom layer
  of 128, 11 Gaussians, one fully connected ReLU layer of 2000: Kearnes et al.'s two-module
  weave model. Faber et al. (2017) train this GC model on their Molecular Graph without giving
  other widths, so Kearnes's are the defaults (all in ``params.yaml`` ``train.model``).
* The last module computes no new pair features: only atoms reach the readout, so that
  branch would be dead weight (Kearnes's last module discards it too).
* Normalisation: Kearnes batch-normalise the atom features before the histogram (DeepChem puts
  the BN after a ReLU). We put BatchNorm directly after the *linear* per-atom layer, so at
  inference it folds into that layer (:meth:`AtomEmbedding.folded`) -- needed for LRP; the
  Gaussian memberships are the non-linearity there. Momentum 0.9 (not Keras' 0.99) so the moving
  statistics settle within the ~25 steps per epoch of the small default run. No other
  normalisation inside the weave modules.
* Inputs: the continuous features (Gasteiger charge; distance, Angstrom) are divided by their
  training-set standard deviation -- a diagonal linear map, foldable into the first kernels;
  one-hot and count features pass unchanged.
* Targets: standardised with the training split's mean and sd; the output unit starts at zero
  (the untrained model predicts the mean, rather than an offset of several sd from the summed
  readout), and a constant affine layer returns the target's units.
* ReLU everywhere (LRP-friendly), no dropout by default, Glorot-uniform kernels, zero biases.
* Optimiser and schedule: :mod:`qmlrp.training.train` (Adam, reduce-on-plateau, early stopping).

One forward pass (:meth:`GraphConvModel.forward`) serves training, inference and explanation:
``call`` runs it plainly; :meth:`GraphConvModel.record` runs it in inference mode with a
:class:`~qmlrp.models.layers.Tape`, so every part records its layer calls (inputs, outputs,
pre-activations). LRP walks that record (:mod:`qmlrp.relevance.walk`); a new part needs a
``forward`` that calls its sub-layers through :func:`~qmlrp.models.layers.run` and, if its layer
types are new, one relevance function each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from qmlrp.models.config import ModelConfig
from qmlrp.models.head import RegressionHead
from qmlrp.models.inputs import (
    ATOM_MASK_KEY,
    ATOM_MOLECULE_KEY,
    MOLECULE_ATOMS_KEY,
    PAIR_ATOMS_KEY,
    GraphInput,
    batch_to_inputs,
    random_batch,
)
from qmlrp.models.layers import PACKAGE, Record, Tape, build_once, record, run
from qmlrp.models.readout import AtomEmbedding, GaussianHistogram
from qmlrp.models.weave import WeaveModule


@keras.saving.register_keras_serializable(package=PACKAGE)
class GraphConvModel(keras.Model):
    """Weave GC model on ragged input dicts (see :mod:`qmlrp.models.inputs`); output (n_mol, 1)."""

    def __init__(
        self,
        input_layer: keras.layers.Layer,
        weave_modules: Sequence[WeaveModule],
        atom_embedding: AtomEmbedding,
        readout: GaussianHistogram,
        head: RegressionHead,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_layer = input_layer
        self.weave_modules = list(weave_modules)
        self.atom_embedding = atom_embedding
        self.readout = readout
        self.head = head
        # Kept as JSON text: Keras would wrap a dict attribute into a tracked container.
        self._metadata_json = json.dumps(dict(metadata or {}), sort_keys=True)

    @property
    def metadata(self) -> dict[str, Any]:
        """Run information saved with the model (target, units, fold, ...); a copy."""
        return json.loads(self._metadata_json)

    def update_metadata(self, **values: Any) -> None:
        self._metadata_json = json.dumps({**self.metadata, **values}, sort_keys=True)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, inputs: dict[str, Any], training: bool | None = None, tape: Tape | None = None,
                scaled: bool = True) -> Any:
        """The one forward pass: (n_molecules, n_outputs) in target units (standardised with
        ``scaled=False``). With a ``tape`` every part records its call (see :func:`record`)."""
        atoms, pairs = run(tape, self.input_layer, inputs)
        pair_atoms = inputs[PAIR_ATOMS_KEY]
        for module in self.weave_modules:
            atoms, pairs = run(tape, module, atoms, pairs, pair_atoms)
        # padded batches (see pad_inputs) keep their padding atoms out of the BatchNorm statistics
        h = run(tape, self.atom_embedding, atoms, training=training, mask=inputs.get(ATOM_MASK_KEY))
        n_molecules = ops.shape(inputs[MOLECULE_ATOMS_KEY])[0]
        x = run(tape, self.readout, h, inputs[ATOM_MOLECULE_KEY], n_molecules=n_molecules)
        return run(tape, self.head, x, training=training, scaled=scaled)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        return self.forward(inputs, training=training)

    def record(self, inputs: dict[str, Any]) -> Record:
        """Inference-mode forward pass that records every layer call (:class:`Record` tree)."""
        return record(self, inputs, training=False)

    def trace(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Inference-mode intermediates as a flat dict, for reading and tests: ``<path>`` -> the
        layer's output (``weave0.atom_to_pair``, ``embedding``, ``readout``, ``head.dense0``),
        ``<path>.<extra>`` -> recorded extras (pre-activations ``.z``, ``.z_ij``/``.z_ji``), and
        ``output`` (n_molecules, n_outputs) in target units."""
        rec = self.record(inputs)
        out: dict[str, Any] = {}
        for r in rec.walk()[1:]:
            out[r.path] = r.outputs
            out.update({f"{r.path}.{k}": v for k, v in r.extras.items()})
        out["output"] = rec.outputs
        return out

    # -- building and serialisation ------------------------------------------------------------
    def build(self, input_shape: Any = None) -> None:
        """Create all weights from the parts' widths (input shapes are fixed by the layout)."""
        d_a, d_p = self.input_layer.atom_dim, self.input_layer.pair_dim
        for module in self.weave_modules:
            build_once(module, (None, d_a), (None, d_p))
            d_a, d_p = module.atom_units, module.pair_units
        build_once(self.atom_embedding, (None, d_a))
        build_once(self.head, (None, self.atom_embedding.units * self.readout.n_gaussians))
        self.built = True

    def build_with_dummy(self) -> None:
        """Build, then run a tiny synthetic batch through the model (checks the wiring)."""
        self.build()
        self(batch_to_inputs(random_batch([2, 3], seed=0)), training=False)

    def get_build_config(self) -> dict[str, Any]:
        return {"built": True}

    def build_from_config(self, config: dict[str, Any]) -> None:
        self.build()

    def get_config(self) -> dict[str, Any]:
        ser = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "input_layer": ser(self.input_layer),
            "weave_modules": [ser(m) for m in self.weave_modules],
            "atom_embedding": ser(self.atom_embedding),
            "readout": ser(self.readout),
            "head": ser(self.head),
            "metadata": self.metadata,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GraphConvModel:
        de = keras.saving.deserialize_keras_object
        return cls(
            input_layer=de(config["input_layer"]),
            weave_modules=[de(m) for m in config["weave_modules"]],
            atom_embedding=de(config["atom_embedding"]),
            readout=de(config["readout"]),
            head=de(config["head"]),
            metadata=config.get("metadata"),
            name=config.get("name"),
        )


def build_model(config: ModelConfig, metadata: dict[str, Any] | None = None,
                n_outputs: int | None = None) -> GraphConvModel:
    """A freshly initialised (and built) :class:`GraphConvModel` for ``config``.

    ``n_outputs``: width of the head (1: a scalar target; 81: the padded frequency vector). When
    None it is read from ``metadata["n_outputs"]`` (absent: 1), which is how model files record it;
    a width > 1 is written into the metadata so that the saved file rebuilds the same head.
    """
    if config.depth < 1:
        raise ValueError("model depth must be at least 1 weave module")
    metadata = dict(metadata or {})
    recorded = int(metadata.get("n_outputs", 1))
    width = recorded if n_outputs is None else int(n_outputs)
    if width < 1:
        raise ValueError(f"n_outputs must be positive, got {width}")
    if n_outputs is not None and "n_outputs" in metadata and recorded != width:
        raise ValueError(f"n_outputs {width} disagrees with the metadata's {recorded}")
    if width != 1:  # scalar models keep their metadata (and file bytes) unchanged
        metadata["n_outputs"] = width
    modules = [
        WeaveModule(
            atom_units=config.atom_width,
            pair_units=config.pair_width,
            atom_hidden=config.atom_hidden,
            pair_hidden=config.pair_hidden,
            update_pairs=k < config.depth - 1,
            activation=config.activation,
            name=f"weave{k}",
        )
        for k in range(config.depth)
    ]
    model = GraphConvModel(
        input_layer=GraphInput(config.scaled_atom_features, config.scaled_pair_features, name="graph_input"),
        weave_modules=modules,
        atom_embedding=AtomEmbedding(config.embedding_width, config.batch_norm_momentum, name="embedding"),
        readout=GaussianHistogram(name="readout"),
        head=RegressionHead(config.head_units, config.dropout, n_outputs=width, name="head"),
        metadata=metadata,
        name="weave_gc",
    )
    model.build_with_dummy()
    return model
