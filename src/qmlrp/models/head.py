"""Fully connected regression head: molecule vector -> targets in their own units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from qmlrp.models.layers import PACKAGE, SplitDense, Tape, TargetScaling, build_once, run


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegressionHead(keras.layers.Layer):
    """``relu`` dense layers, a linear output unit (standardised target), then :class:`TargetScaling`.

    Args:
        hidden_units: widths of the hidden dense layers (Kearnes et al. 2016: one layer of 2000).
        dropout: dropout rate after each hidden layer during training (0 disables it).
        n_outputs: number of targets predicted together (1: alpha or ZPVE; 81 for a vector of
            frequencies). Each output has its own mean and sd in :class:`TargetScaling`.
    Input (n_molecules, d); output (n_molecules, n_outputs) in the targets' units.
    """

    def __init__(self, hidden_units: Sequence[int] = (2000,), dropout: float = 0.0, n_outputs: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_outputs = int(n_outputs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout_rate = float(dropout)
        self.hidden = [SplitDense(u, "relu", name=f"dense{k}") for k, u in enumerate(self.hidden_units)]
        self.dropout = keras.layers.Dropout(self.dropout_rate) if self.dropout_rate > 0 else None
        # Zero-initialised output: the untrained model predicts the training mean (standardised 0)
        # instead of a random offset of several standard deviations from the summed readout.
        self.output_layer = SplitDense(self.n_outputs, "linear", kernel_initializer="zeros", name="output")
        self.target_scaling = TargetScaling(self.n_outputs, name="target_scaling")

    def build(self, x_shape: Any) -> None:
        d = int(x_shape[-1])
        for layer in self.hidden:
            build_once(layer, (None, d))
            d = layer.units
        build_once(self.output_layer, (None, d))

    def forward(self, x: Any, training: bool | None = None, tape: Tape | None = None,
                scaled: bool = True) -> Any:
        """(n_molecules, n_outputs): target units, or standardised with ``scaled=False``."""
        for layer in self.hidden:
            x = run(tape, layer, x)
            if self.dropout is not None:
                x = run(tape, self.dropout, x, training=training)
        z = run(tape, self.output_layer, x)
        return run(tape, self.target_scaling, z) if scaled else z

    def call(self, x: Any, training: bool | None = None, scaled: bool = True) -> Any:
        return self.forward(x, training=training, scaled=scaled)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout_rate)
        if self.n_outputs != 1:
            config.update(n_outputs=self.n_outputs)
        return config
