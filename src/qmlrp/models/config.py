"""Architecture hyper-parameters of the Weave model and the checked reading of its weights file (no Keras
import: cheap to load, and safe before `predict` forks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmlrp.errors import QmlrpError
from qmlrp.features.layout import ATOM_FEATURES, N_ATOM_FEATURES, N_PAIR_FEATURES, PAIR_FEATURES
from qmlrp.params import FieldError

N_GAUSSIANS = 11
"""Gaussians of the histogram readout (:data:`qmlrp.models.readout.GAUSSIAN_MEMBERSHIPS`)."""
MAX_WEIGHTS = 100_000_000
"""Most weights a model may have (400 MB of float32; the paper's model has 2.9 million): a width
typed with too many zeros is refused before anything is allocated."""
MODEL_FORMAT = "qmlrp-weights/1"
"""``format`` in the header of a Weave model's weights file (:mod:`qmlrp.models.weights_file`)."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (``params.yaml`` section ``train.model``).

    Every field is checked on construction (:class:`~qmlrp.params.FieldError` naming it): depth and
    widths are positive integers, ``dropout`` and ``batch_norm_momentum`` lie in [0, 1), the scaled
    features are feature names, and the whole model has at most :data:`MAX_WEIGHTS` weights.
    """

    depth: int = 2
    atom_width: int = 50
    pair_width: int = 50
    atom_hidden: int = 50
    pair_hidden: int = 50
    embedding_width: int = 128
    head_units: tuple[int, ...] = (2000,)
    dropout: float = 0.0
    batch_norm_momentum: float = 0.9
    scaled_atom_features: tuple[str, ...] = ("gasteiger_charge",)
    scaled_pair_features: tuple[str, ...] = ("distance",)
    activation: str = "relu"
    pair_head_units: tuple[int, ...] = ()
    """The equivariant vector head only: widths of the per-pair layers of its bond-dipole branch
    (:class:`~qmlrp.models.vector_head.BondDipole`); empty = atom charges only. Other models ignore it."""

    def __post_init__(self) -> None:
        for key in ("depth", "atom_width", "pair_width", "atom_hidden", "pair_hidden", "embedding_width"):
            _positive_int(key, getattr(self, key))
        if not isinstance(self.head_units, tuple):
            raise FieldError("head_units", f"expected a list of widths, got {self.head_units!r}")
        for k, units in enumerate(self.head_units):
            _positive_int(f"head_units[{k}]", units)
        if not isinstance(self.pair_head_units, tuple):
            raise FieldError("pair_head_units", f"expected a list of widths, got {self.pair_head_units!r}")
        for k, units in enumerate(self.pair_head_units):
            _positive_int(f"pair_head_units[{k}]", units)
        for key in ("dropout", "batch_norm_momentum"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FieldError(key, f"expected a number, got {value!r}")
            if not 0.0 <= value < 1.0:
                raise FieldError(key, f"must be in [0, 1), got {value!r}")
        for key, known in (("scaled_atom_features", ATOM_FEATURES), ("scaled_pair_features", PAIR_FEATURES)):
            names = getattr(self, key)
            unknown = [n for n in names if n not in known] if isinstance(names, tuple) else [names]
            if unknown:
                raise FieldError(key, f"{unknown[0]!r} is not a feature name")
        if not isinstance(self.activation, str):
            raise FieldError("activation", f"expected a string, got {self.activation!r}")
        weights = self.weight_count()
        if weights > MAX_WEIGHTS:
            raise ValueError(f"the model would have {weights:.3g} weights, more than the {MAX_WEIGHTS:,} allowed "
                             "(check depth, the widths and head_units)")

    def weight_count(self, n_outputs: int = 1) -> int:
        """Number of weights (every kernel, bias, BatchNorm and scaling value) of the model built
        from this config with ``n_outputs`` outputs, from the shapes alone (closed form: nothing is
        built, so a huge depth or width costs nothing)."""
        a0, p0 = N_ATOM_FEATURES, N_PAIR_FEATURES
        ah, ph, au, pu = self.atom_hidden, self.pair_hidden, self.atom_width, self.pair_width

        def atom_part(a: int, p: int) -> int:  # A->A, P->A (both to ah), update [ah, ah] -> au
            return (a + 1) * ah + (p + 1) * ah + (2 * ah + 1) * au

        def pair_part(a: int, p: int) -> int:  # A->P on [a_i, a_j] and P->P (both to ph), update -> pu
            return (2 * a + 1) * ph + (p + 1) * ph + (2 * ph + 1) * pu

        total = a0 + p0  # the input scales
        total += atom_part(a0, p0) + (self.depth - 1) * atom_part(au, pu)
        if self.depth > 1:  # the last module updates no pairs
            total += pair_part(a0, p0) + (self.depth - 2) * pair_part(au, pu)
        total += (au + 1) * self.embedding_width + 4 * self.embedding_width  # dense + BatchNorm
        d = N_GAUSSIANS * self.embedding_width
        for units in self.head_units:
            total += (d + 1) * units
            d = units
        return total + (d + 1) * n_outputs + 2 * n_outputs  # output layer and target scaling

    def vector_weight_count(self, n_vectors: int = 2) -> int:
        """Weights of the equivariant vector model (:mod:`qmlrp.models.equivariant`) built from this
        config: the same trunk, then ``head_units`` per-atom layers on the embedding, the q layer
        (``n_vectors`` outputs) and one scale per vector."""
        d = N_GAUSSIANS * self.embedding_width
        invariant_head = 0
        for units in self.head_units:
            invariant_head += (d + 1) * units
            d = units
        trunk = self.weight_count(1) - invariant_head - (d + 1) - 2
        d = self.embedding_width
        total = trunk
        for units in self.head_units:
            total += (d + 1) * units
            d = units
        total += (d + 1) * n_vectors + n_vectors
        if self.pair_head_units:  # [h_i, p_ij] -> per-pair layers -> one bond weight per vector
            d = self.embedding_width + self.head_pair_dim
            for units in self.pair_head_units:
                total += (d + 1) * units
                d = units
            total += (d + 1) * n_vectors
        return total

    @property
    def head_pair_dim(self) -> int:
        """Width of the pair states the trunk hands to a head: the last pair update's (``pair_width``), or the
        13 input pair features of a one-module trunk (the last module updates no pairs)."""
        return self.pair_width if self.depth > 1 else N_PAIR_FEATURES

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelConfig:
        """A config from a mapping (e.g. a model file's header); ValueError for unknown keys or bad values."""
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown model parameters: {sorted(unknown)}")
        values = dict(params)
        for key in ("head_units", "pair_head_units", "scaled_atom_features", "scaled_pair_features"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(key, f"expected an integer, got {value!r}")
    if value < 1:
        raise FieldError(key, f"must be at least 1, got {value}")



HEAD_WEIGHT_COUNTS: dict[str | None, Callable[[ModelConfig, dict[str, Any]], int]] = {
    None: lambda config, meta: config.weight_count(int(meta.get("n_outputs", 1))),  # the invariant MLP head
    "equivariant_vector": lambda config, meta: config.vector_weight_count(int(meta.get("n_vectors", 2))),
    # the tensor head's 2 per-atom scalars (isotropic, traceless) and 2 scales weigh as much as 2 vectors'
    "equivariant_tensor": lambda config, meta: config.vector_weight_count(2),
}
"""Weights a model file's architecture must hold, by the ``head`` of its metadata (None: the scalar or
padded-vector MLP head; ``n_outputs`` and ``n_vectors`` from the metadata)."""


def read_model_file(path: str | Path) -> tuple[ModelConfig, dict[str, Any] | None, list[str], list[Any]]:
    """``(config, metadata, weight names, arrays)`` of a Weave model's ``.npz`` weights file, checked
    without Keras (so ``predict`` can check its models before it forks): the file
    (:func:`~qmlrp.models.weights_file.read_weights_file`: declared array shapes, finite weights),
    every architecture field, and that the architecture has exactly as many weights as the file holds.

    Raises:
        QmlrpError: one line naming ``path`` and what is wrong.
    """
    from qmlrp.models.weights_file import read_weights_file

    header, arrays = read_weights_file(path, MODEL_FORMAT, "model")
    try:
        config = ModelConfig.from_params(header["config"])
        metadata = header.get("metadata")
        head = metadata.get("head") if isinstance(metadata, dict) else None
        if head not in HEAD_WEIGHT_COUNTS:
            raise ValueError(f"unknown head {head!r}; known: {', '.join(k for k in HEAD_WEIGHT_COUNTS if k)}")
        declared = HEAD_WEIGHT_COUNTS[head](config, metadata or {})
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise QmlrpError(f"{path}: malformed model configuration ({err})") from None
    present = sum(int(a.size) for a in arrays)
    if declared != present:
        raise QmlrpError(f"{path}: its architecture has {declared:,} weights but the file holds {present:,}")
    return config, metadata, list(header["names"]), arrays
