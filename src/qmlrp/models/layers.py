"""Linear building blocks whose weights and pre-activations are explicit (for LRP).

Every learned map in the model is one of:

* :class:`SplitDense` -- ``z = sum_k x_k @ W_k + b``, a dense layer on the concatenation of
  several inputs computed *without* concatenating (one kernel block per input part);
* :class:`PairFromAtoms` -- the order-invariant A->P map of Kearnes et al. (2016),
  ``f(A_i, A_j) + f(A_j, A_i)`` with ``f(a, b) = act(a @ W_first + b @ W_second + bias)``,
  computed as per-atom projections gathered per pair;
* :class:`keras.layers.BatchNormalization` directly after a linear map (foldable, see
  :func:`fold_batch_norm`).

Non-learned affine maps (:class:`FeatureScaling`, :class:`TargetScaling`) hold their constants as
non-trainable weights so that they travel inside the saved ``.keras`` file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

PACKAGE = "qmlrp"


def build_once(layer: keras.layers.Layer, *shapes: Any) -> None:
    """``layer.build(*shapes)`` unless it is built already (e.g. restored from a saved config)."""
    if not layer.built:
        layer.build(*shapes)


def _as_list(inputs: Any) -> list[Any]:
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SplitDense(keras.layers.Layer):
    """Dense layer over ``concat(x_1, ..., x_K)`` without materialising the concatenation.

    ``pre_activation(xs) = sum_k xs[k] @ kernels[k] + bias`` acts on the last axis, so the same
    weights serve ragged ``(n, d_k)`` and padded ``(B, 29, [29,] d_k)`` tensors.
    ``kernel`` is the equivalent single kernel ``(sum d_k, units)`` over the concatenation.

    Args:
        units: output width.
        activation: name of a Keras activation (``"relu"`` or ``"linear"``).
        use_bias: whether to add a bias.
    """

    def __init__(
        self,
        units: int,
        activation: str = "relu",
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation_name = activation
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernels: list[Any] = []
        self.bias: Any = None

    def build(self, input_shape: Any) -> None:
        shapes = input_shape if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple)
        ) else [input_shape]
        self.kernels = [
            self.add_weight(
                name=f"kernel_{k}",
                shape=(int(shape[-1]), self.units),
                initializer=self.kernel_initializer,
            )
            for k, shape in enumerate(shapes)
        ]
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    @property
    def input_dims(self) -> tuple[int, ...]:
        return tuple(int(k.shape[0]) for k in self.kernels)

    @property
    def kernel(self) -> Any:
        """(sum d_k, units) kernel over the concatenated inputs."""
        return self.kernels[0] if len(self.kernels) == 1 else ops.concatenate(self.kernels, axis=0)

    def pre_activation(self, inputs: Any) -> Any:
        """``z = sum_k x_k @ W_k + b`` (no activation)."""
        xs = _as_list(inputs)
        if len(xs) != len(self.kernels):
            raise ValueError(f"{self.name}: expected {len(self.kernels)} inputs, got {len(xs)}")
        z = ops.matmul(xs[0], self.kernels[0])
        for x, w in zip(xs[1:], self.kernels[1:]):
            z = z + ops.matmul(x, w)
        if self.use_bias:
            z = z + self.bias
        return z

    def call(self, inputs: Any) -> Any:
        return self.activation(self.pre_activation(inputs))

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        shapes = input_shape if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple)
        ) else [input_shape]
        return (*tuple(shapes[0][:-1]), self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation_name,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairFromAtoms(keras.layers.Layer):
    """Order-invariant A->P layer: ``P_ij = act(z_ij) + act(z_ji)``.

    ``z_ij = A_i @ W_first + A_j @ W_second + b``: the dense layer on ``[A_i, A_j]`` of
    Kearnes et al. (2016), evaluated as per-atom projections ``U = A W_first``, ``V = A W_second``
    (n_atoms x units) added per pair (``U_i + V_j``), instead of concatenating atom features for
    every pair. ``kernel`` is the equivalent ``(2 d, units)`` kernel over ``[A_i, A_j]``.
    """

    def __init__(
        self,
        units: int,
        activation: str = "relu",
        kernel_initializer: str = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation_name = activation
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, atoms_shape: Any) -> None:
        d = int(atoms_shape[-1])
        # One (2d, units) kernel, exactly as a dense layer on [A_i, A_j]; split on use.
        self.kernel = self.add_weight(
            name="kernel", shape=(2 * d, self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.atom_dim = d

    @property
    def kernel_first(self) -> Any:
        """(d, units) block acting on the first atom of the ordered pair."""
        return self.kernel[: self.atom_dim]

    @property
    def kernel_second(self) -> Any:
        """(d, units) block acting on the second atom of the ordered pair."""
        return self.kernel[self.atom_dim :]

    def pre_activations(self, atoms: Any, pair_atoms: Any) -> tuple[Any, Any]:
        """Return ``(z_ij, z_ji)``, each (n_pairs, units), for pairs ``pair_atoms`` (n_pairs, 2)."""
        # (n_atoms, 2*units) = [U | V] in one matmul.
        projected = ops.matmul(atoms, ops.concatenate([self.kernel_first, self.kernel_second], axis=1))
        u = projected[:, : self.units]
        v = projected[:, self.units :]
        i = pair_atoms[:, 0]
        j = pair_atoms[:, 1]
        u_i, u_j = ops.take(u, i, axis=0), ops.take(u, j, axis=0)
        v_i, v_j = ops.take(v, i, axis=0), ops.take(v, j, axis=0)
        return u_i + v_j + self.bias, u_j + v_i + self.bias

    def call(self, atoms: Any, pair_atoms: Any) -> Any:
        z_ij, z_ji = self.pre_activations(atoms, pair_atoms)
        return self.activation(z_ij) + self.activation(z_ji)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation_name,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeatureScaling(keras.layers.Layer):
    """Fixed per-feature scale ``x * s`` (a diagonal linear map; no shift, so zero stays zero).

    Used as the input layer for the continuous features (Gasteiger charge, distance in Angstrom),
    whose scales are set once from the training set with :meth:`adapt_from`. A pure scaling
    folds into the first linear map of the weave module and keeps one-hot features as they are.
    """

    def __init__(self, n_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_features = int(n_features)
        self.scale = self.add_weight(
            name="scale", shape=(self.n_features,), initializer="ones", trainable=False
        )

    def call(self, x: Any) -> Any:
        return x * self.scale

    def adapt_from(self, x: np.ndarray, columns: Sequence[int]) -> None:
        """Set ``scale[c] = 1 / std(x[:, c])`` for the given columns (others stay 1)."""
        scale = np.ones(self.n_features, dtype=np.float32)
        for c in columns:
            sd = float(np.std(x[:, c]))
            if not np.isfinite(sd) or sd <= 0.0:
                raise ValueError(f"{self.name}: feature {c} has zero spread; cannot scale it")
            scale[c] = 1.0 / sd
        self.scale.assign(scale)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(n_features=self.n_features)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class TargetScaling(keras.layers.Layer):
    """Undo target standardisation: ``y = z * std + mean`` (constants, not trained).

    The network learns the standardised target ``z``; this layer returns the target's own units
    (alpha in bohr^3, ZPVE in eV). For LRP it is an affine map after the last dense layer.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = self.add_weight(name="mean", shape=(1,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(1,), initializer="ones", trainable=False)

    def call(self, z: Any) -> Any:
        return z * self.std + self.mean

    def set_statistics(self, mean: float, std: float) -> None:
        if not np.isfinite(std) or std <= 0.0:
            raise ValueError(f"{self.name}: target standard deviation must be positive, got {std}")
        self.mean.assign(np.array([mean], dtype=np.float32))
        self.std.assign(np.array([std], dtype=np.float32))


def fold_batch_norm(
    kernel: np.ndarray, bias: np.ndarray, bn: keras.layers.BatchNormalization
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference-mode BatchNorm that follows ``z = x @ kernel + bias``.

    Returns ``(kernel', bias')`` with ``BN(x @ kernel + bias) == x @ kernel' + bias'``.
    Shapes: kernel (d, u), bias (u,).
    """
    gamma = np.asarray(bn.gamma) if bn.scale else np.ones(kernel.shape[1], np.float32)
    beta = np.asarray(bn.beta) if bn.center else np.zeros(kernel.shape[1], np.float32)
    mean = np.asarray(bn.moving_mean)
    var = np.asarray(bn.moving_variance)
    factor = gamma / np.sqrt(var + bn.epsilon)
    return (np.asarray(kernel) * factor[None, :]).astype(np.float32), (
        (np.asarray(bias) - mean) * factor + beta
    ).astype(np.float32)
