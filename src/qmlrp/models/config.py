"""Architecture hyper-parameters of the Weave model (no Keras import: cheap to load)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (``params.yaml`` section ``train.model``)."""

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

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown model parameters: {sorted(unknown)}")
        values = dict(params)
        for key in ("head_units", "scaled_atom_features", "scaled_pair_features"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)
