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
non-trainable weights so that they travel inside the saved ``.npz`` weights file.

Recording: every part of the model has one ``forward(..., tape=None)``; ``call`` runs it without
a tape. With a :class:`Tape` the forward also records, per layer call, a :class:`Record` (the
layer, its inputs, outputs and extras such as pre-activations ``z``), nested as the layers are.
:func:`run` is how a part calls a sub-layer: Keras' ``__call__`` without a tape, the recorded
``forward`` with one. LRP (:mod:`qmlrp.relevance.walk`) walks these records: the model's own
layer graph, recovered from which tensors flowed into which layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

PACKAGE = "qmlrp"


def build_once(layer: keras.layers.Layer, *shapes: Any) -> None:
    """``layer.build(*shapes)`` unless it is built already (e.g. restored from a saved config)."""
    if not layer.built:
        layer.build(*shapes)


@dataclass
class Record:
    """One recorded layer call.

    Attributes:
        path: dotted layer path below the recorded root (``weave0.atom_to_pair``, ``head.output``).
        layer: the layer (or weightless operation) object.
        inputs: positional arguments of the call (tensors, lists of tensors, dicts, ints).
        outputs: what the call returned.
        kwargs: keyword arguments of the call (``training``, ``n_molecules``, ...).
        extras: values the layer chose to record (pre-activations ``z``, ...).
        children: records of the sub-layer calls, in execution order.
    """

    path: str
    layer: Any
    inputs: tuple[Any, ...]
    outputs: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    children: list[Record] = field(default_factory=list)

    def walk(self) -> list[Record]:
        """This record and all below it, depth first, in execution order."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


class Tape:
    """Collects :class:`Record` s during one forward pass (inference mode is the caller's job)."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.extras: dict[str, Any] = {}
        self.children: list[Record] = []

    def put(self, key: str, value: Any) -> None:
        """Record an extra value (e.g. the pre-activation ``z``) of the layer being run."""
        self.extras[key] = value

    def call(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``layer`` on ``args``: its ``forward(..., tape=child)`` if it has one (so its own
        sub-layers are recorded too), else ``layer(*args, **kwargs)``; append its record."""
        name = getattr(layer, "name", type(layer).__name__)
        path = f"{self.path}.{name}" if self.path else name
        taken = {r.path for r in self.children}
        if path in taken:  # the same layer called twice: number the later calls
            path = next(f"{path}#{k}" for k in range(2, 10**6) if f"{path}#{k}" not in taken)
        child = Tape(path)
        forward = getattr(layer, "forward", None)
        outputs = forward(*args, tape=child, **kwargs) if forward is not None else layer(*args, **kwargs)
        self.children.append(Record(path, layer, args, outputs, dict(kwargs), child.extras, child.children))
        return outputs


def record(root: Any, *args: Any, **kwargs: Any) -> Record:
    """Run ``root.forward(*args, tape=...)`` and return its record (path ``""``; children's paths
    start at the root's sub-layers, e.g. ``embedding``)."""
    tape = Tape("")
    outputs = root.forward(*args, tape=tape, **kwargs)
    return Record("", root, args, outputs, dict(kwargs), tape.extras, tape.children)


def run(tape: Tape | None, layer: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a sub-layer: ``layer(*args, **kwargs)`` without a tape, recorded with one."""
    if tape is None:
        return layer(*args, **kwargs)
    return tape.call(layer, *args, **kwargs)


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

    def forward(self, inputs: Any, tape: Tape | None = None) -> Any:
        """``activation(z)``; records ``z`` (the pre-activation, same shape as the output)."""
        z = self.pre_activation(inputs)
        if tape is not None:
            tape.put("z", z)
        return self.activation(z)

    def call(self, inputs: Any) -> Any:
        return self.forward(inputs)

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
        # One gather per pair end of the whole [U | V] row (the backward pass: two scatter-adds of
        # 2*units-wide rows instead of four of units-wide ones); the same numbers as four gathers.
        at_i = ops.take(projected, pair_atoms[:, 0], axis=0)  # [U_i | V_i]
        at_j = ops.take(projected, pair_atoms[:, 1], axis=0)  # [U_j | V_j]
        u_i, v_i = at_i[:, : self.units], at_i[:, self.units :]
        u_j, v_j = at_j[:, : self.units], at_j[:, self.units :]
        return u_i + v_j + self.bias, u_j + v_i + self.bias

    def forward(self, atoms: Any, pair_atoms: Any, tape: Tape | None = None) -> Any:
        """(n_pairs, units) ``act(z_ij) + act(z_ji)``; records ``z_ij`` and ``z_ji``."""
        z_ij, z_ji = self.pre_activations(atoms, pair_atoms)
        if tape is not None:
            tape.put("z_ij", z_ij)
            tape.put("z_ji", z_ji)
        return self.activation(z_ij) + self.activation(z_ji)

    def call(self, atoms: Any, pair_atoms: Any) -> Any:
        return self.forward(atoms, pair_atoms)

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

    Args:
        n_outputs: width of ``z`` and ``y`` (one mean and sd per output; 1 for a scalar target).
    """

    def __init__(self, n_outputs: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_outputs = int(n_outputs)
        self.mean = self.add_weight(name="mean", shape=(self.n_outputs,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(self.n_outputs,), initializer="ones", trainable=False)

    def call(self, z: Any) -> Any:
        return z * self.std + self.mean

    def set_statistics(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        """Set the target mean and sd (scalars, or one per output), in the target's units."""
        mean_a = np.broadcast_to(np.asarray(mean, np.float64), (self.n_outputs,))
        std_a = np.broadcast_to(np.asarray(std, np.float64), (self.n_outputs,))
        if not (np.all(np.isfinite(std_a)) and np.all(std_a > 0.0)):
            raise ValueError(f"{self.name}: target standard deviation must be positive, got {std}")
        self.mean.assign(mean_a.astype(self.mean.dtype))
        self.std.assign(std_a.astype(self.std.dtype))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(n_outputs=self.n_outputs)
        return config


def fold_batch_norm(kernel: Any, bias: Any, bn: keras.layers.BatchNormalization, dtype: str) -> tuple[Any, Any]:
    """Fold an inference-mode BatchNorm that follows ``z = x @ kernel + bias`` (the one fold:
    :meth:`AtomEmbedding.folded <qmlrp.models.readout.AtomEmbedding.folded>` and the LRP canonizer
    in :mod:`qmlrp.relevance.layer_rules` both call it).

    Returns ``(kernel', bias')`` with ``BN(x @ kernel + bias) == x @ kernel' + bias'``, backend
    tensors in ``dtype``. Shapes: kernel (d, u), bias (u,). Keras ops throughout, so it also runs
    inside a compiled LRP walk (float64 for a float64 model).
    """
    kernel, bias = ops.cast(kernel, dtype), ops.cast(bias, dtype)
    units = int(kernel.shape[1])
    gamma = ops.cast(bn.gamma, dtype) if bn.scale else ops.ones((units,), dtype)
    beta = ops.cast(bn.beta, dtype) if bn.center else ops.zeros((units,), dtype)
    factor = gamma / ops.sqrt(ops.cast(bn.moving_variance, dtype) + bn.epsilon)
    return kernel * factor[None, :], (bias - ops.cast(bn.moving_mean, dtype)) * factor + beta
