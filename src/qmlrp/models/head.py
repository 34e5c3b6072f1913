"""Fully connected regression head: molecule vector -> one target in its own units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from qmlrp.models.layers import PACKAGE, build_once, SplitDense, TargetScaling


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegressionHead(keras.layers.Layer):
    """``relu`` dense layers, a linear output unit (standardised target), then :class:`TargetScaling`.

    Args:
        hidden_units: widths of the hidden dense layers (Kearnes et al. 2016: one layer of 2000).
        dropout: dropout rate after each hidden layer during training (0 disables it).
    Input (n_molecules, d); output (n_molecules, 1) in the target's units.
    """

    def __init__(self, hidden_units: Sequence[int] = (2000,), dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout_rate = float(dropout)
        self.hidden = [SplitDense(u, "relu", name=f"dense{k}") for k, u in enumerate(self.hidden_units)]
        self.dropout = keras.layers.Dropout(self.dropout_rate) if self.dropout_rate > 0 else None
        # Zero-initialised output: the untrained model predicts the training mean (standardised 0)
        # instead of a random offset of several standard deviations from the summed readout.
        self.output_layer = SplitDense(1, "linear", kernel_initializer="zeros", name="output")
        self.target_scaling = TargetScaling(name="target_scaling")

    def build(self, x_shape: Any) -> None:
        d = int(x_shape[-1])
        for layer in self.hidden:
            build_once(layer, (None, d))
            d = layer.units
        build_once(self.output_layer, (None, d))

    def trace(self, x: Any) -> dict[str, Any]:
        """Inference-mode intermediates: ``dense{k}.z``, ``dense{k}``, ``output.z`` (standardised),
        ``output`` (units)."""
        t: dict[str, Any] = {}
        for layer in self.hidden:
            t[f"{layer.name}.z"] = layer.pre_activation(x)
            x = t[layer.name] = layer.activation(t[f"{layer.name}.z"])
        t["output.z"] = self.output_layer.pre_activation(x)
        t["output"] = self.target_scaling(t["output.z"])
        return t

    def standardized(self, x: Any, training: bool | None = None) -> Any:
        """Output before :class:`TargetScaling`: (n_molecules, 1) standardised target."""
        for layer in self.hidden:
            x = layer(x)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return self.output_layer(x)

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.target_scaling(self.standardized(x, training=training))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout_rate)
        return config
