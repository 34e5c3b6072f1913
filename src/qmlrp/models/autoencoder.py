"""A tied-weight denoising autoencoder (DAE) on the flattened Molecular Graph (issue 11).

Architecture (Keras layers): ``5887 -> 136 -> 68 -> 136 -> 5887``.

* encoder ``h1 = relu(x W1 + b1)`` (136), ``code = relu(h1 W2 + b2)`` (68 = 2 x (21 + 13));
* decoder ``h2 = relu(code W2^T + c2)`` (136), ``x_hat = h2 W1^T + c1`` (5887, linear output):
  the decoder's kernels *are* the encoder's kernels transposed (one parameter set, tied), each
  decoder layer has its own bias;
* Gaussian noise of sd ``noise_sd`` (scaled units) is added to the input in training only
  (``keras.layers.GaussianNoise``: identity at inference).

Input scaling (:class:`ColumnScaling`, fitted on the training molecules only and stored with the
model): the two continuous features -- the Gasteiger charge (atom feature 8, e) and the distance
(pair feature 12, Angstrom) -- are standardised per feature (one mean and sd for each, pooled over
all atom slots / pair slots) on *real* entries only; one-hot, binary and count columns are left as
they are; padding entries (atoms beyond ``n_atoms``, pairs involving them) stay exactly 0 in both
directions. The network reads and reconstructs the scaled vector; :meth:`ColumnScaling.inverse`
returns the original units.

Model file (``.npz``, the project's weights-file style, cf. :mod:`qmlrp.models.io`): a JSON
header (format, architecture, scaling, metadata such as the out-of-domain threshold, weight names)
plus float32 arrays, read with ``allow_pickle=False``; a corrupt or foreign file is one
:class:`~qmlrp.errors.QmlrpError` line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.errors import QmlrpError
from qmlrp.features.layout import (
    ATOM_FEATURE_TYPES,
    MAX_ATOMS,
    N_ATOM_FEATURES,
    N_PAIR_FEATURES,
    PAIR_FEATURE_TYPES,
    flat_length,
)
from qmlrp.features.pairs import upper_pairs
from qmlrp.models.weights_file import assign_weights, read_weights_file, write_weights_file

FORMAT = "qmlrp-autoencoder/1"
CONTINUOUS_ATOM_FEATURES: tuple[int, ...] = (8,)
"""Gasteiger charge (e): standardised."""
CONTINUOUS_PAIR_FEATURES: tuple[int, ...] = (12,)
"""Distance (Angstrom): standardised."""
FEATURE_TYPES: tuple[str, ...] = (*ATOM_FEATURE_TYPES, *PAIR_FEATURE_TYPES)
"""The 12 feature types (8 atom + 4 pair), in this order."""


# -- layout of the flat vector -----------------------------------------------------------------
def n_pairs(max_atoms: int = MAX_ATOMS) -> int:
    """Unordered pairs i < j of ``max_atoms`` slots (406 for 29)."""
    return max_atoms * (max_atoms - 1) // 2


def column_feature(max_atoms: int = MAX_ATOMS) -> tuple[np.ndarray, np.ndarray]:
    """``(is_pair (D,) bool, feature (D,) int)`` of every column of the flat vector (D = 5887):
    atom columns carry their atom-feature index 0..20, pair columns their pair-feature index 0..12."""
    n_atom_cols = N_ATOM_FEATURES * max_atoms
    feature = np.concatenate([np.tile(np.arange(N_ATOM_FEATURES), max_atoms),
                              np.tile(np.arange(N_PAIR_FEATURES), n_pairs(max_atoms))])
    is_pair = np.arange(flat_length(max_atoms)) >= n_atom_cols
    return is_pair, feature


def column_types(max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """(D,) index 0..11 into :data:`FEATURE_TYPES` of every flat column."""
    is_pair, feature = column_feature(max_atoms)
    atom_type = np.zeros(N_ATOM_FEATURES, np.int64)
    for k, cols in enumerate(ATOM_FEATURE_TYPES.values()):
        atom_type[list(cols)] = k
    pair_type = np.zeros(N_PAIR_FEATURES, np.int64)
    for k, cols in enumerate(PAIR_FEATURE_TYPES.values()):
        pair_type[list(cols)] = len(ATOM_FEATURE_TYPES) + k
    out = np.empty(is_pair.size, np.int64)
    out[~is_pair] = atom_type[feature[~is_pair]]
    out[is_pair] = pair_type[feature[is_pair]]
    return out


def real_mask(n_atoms: np.ndarray, max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """(B, D) bool: True on the entries of real atoms and of pairs of two real atoms.

    Args:
        n_atoms: (B,) atoms per molecule (real atoms occupy slots 0..n-1, as in ``to_dense``).
    """
    n_atoms = np.asarray(n_atoms).reshape(-1, 1)
    slot = np.arange(max_atoms)
    atoms = np.repeat(slot[None, :] < n_atoms, N_ATOM_FEATURES, axis=1)
    _, j = upper_pairs(max_atoms)
    pairs = np.repeat(j[None, :] < n_atoms, N_PAIR_FEATURES, axis=1)
    return np.concatenate([atoms, pairs], axis=1)


def atom_mask(n_atoms: np.ndarray, max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """(B, max_atoms) float32, 1 for real atom slots."""
    return (np.arange(max_atoms)[None, :] < np.asarray(n_atoms).reshape(-1, 1)).astype(np.float32)


def n_atoms_of(flat: np.ndarray, max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """(B,) real atoms of flat vectors: slots whose element one-hot (features 0..4) is set."""
    atoms = np.asarray(flat)[:, : N_ATOM_FEATURES * max_atoms].reshape(len(flat), max_atoms, N_ATOM_FEATURES)
    return (atoms[:, :, :5].sum(-1) > 0.5).sum(1)


# -- scaling -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnScaling:
    """Standardisation of the continuous features on real entries (see the module docstring).

    Attributes:
        atom_features / pair_features: indices of the standardised atom and pair features.
        atom_mean, atom_sd: per standardised atom feature (e for the Gasteiger charge).
        pair_mean, pair_sd: per standardised pair feature (Angstrom for the distance).
        max_atoms: slots of the flat vector.
    """

    atom_features: tuple[int, ...]
    atom_mean: tuple[float, ...]
    atom_sd: tuple[float, ...]
    pair_features: tuple[int, ...]
    pair_mean: tuple[float, ...]
    pair_sd: tuple[float, ...]
    max_atoms: int = MAX_ATOMS

    @staticmethod
    def fit(flat: np.ndarray, n_atoms: np.ndarray, max_atoms: int = MAX_ATOMS) -> ColumnScaling:
        """Means and sds of the continuous features over the real entries of ``flat`` (B, D)."""
        return ColumnScaling.from_moments(*moments(flat, n_atoms, max_atoms), max_atoms=max_atoms)

    @staticmethod
    def from_moments(count: np.ndarray, total: np.ndarray, squares: np.ndarray, max_atoms: int = MAX_ATOMS) -> ColumnScaling:
        """From per-feature sums over real entries (see :func:`moments`; batches add up)."""
        n_cont = len(CONTINUOUS_ATOM_FEATURES)
        if np.any(count < 2):
            raise QmlrpError("column scaling: fewer than 2 real entries of a continuous feature")
        mean = total / count
        sd = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        sd = np.where(sd > 0, sd, 1.0)
        return ColumnScaling(CONTINUOUS_ATOM_FEATURES, tuple(map(float, mean[:n_cont])), tuple(map(float, sd[:n_cont])),
                             CONTINUOUS_PAIR_FEATURES, tuple(map(float, mean[n_cont:])), tuple(map(float, sd[n_cont:])),
                             max_atoms)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(shift (D,), scale (D,))``: original = scaled * scale + shift on real entries
        (shift 0, scale 1 on columns that are not standardised)."""
        is_pair, feature = column_feature(self.max_atoms)
        shift = np.zeros(is_pair.size, np.float64)
        scale = np.ones(is_pair.size, np.float64)
        for f, m, s in zip(self.atom_features, self.atom_mean, self.atom_sd):
            cols = ~is_pair & (feature == f)
            shift[cols], scale[cols] = m, s
        for f, m, s in zip(self.pair_features, self.pair_mean, self.pair_sd):
            cols = is_pair & (feature == f)
            shift[cols], scale[cols] = m, s
        return shift, scale

    def transform(self, flat: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
        """(B, D) original units -> scaled (float32); padding stays 0."""
        shift, scale = self.vectors()
        mask = real_mask(n_atoms, self.max_atoms)
        return np.where(mask, (np.asarray(flat, np.float64) - shift) / scale, 0.0).astype(np.float32)

    def inverse(self, scaled: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
        """(B, D) scaled -> original units (float32); padding set to 0."""
        shift, scale = self.vectors()
        mask = real_mask(n_atoms, self.max_atoms)
        return np.where(mask, np.asarray(scaled, np.float64) * scale + shift, 0.0).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> ColumnScaling:
        return ColumnScaling(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def moments(flat: np.ndarray, n_atoms: np.ndarray, max_atoms: int = MAX_ATOMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per continuous feature (atom ones, then pair ones): count, sum and sum of squares over the
    real entries of ``flat`` (B, D), float64."""
    is_pair, feature = column_feature(max_atoms)
    mask = real_mask(n_atoms, max_atoms)
    flat = np.asarray(flat, np.float64)
    out = []
    for pair, feats in ((False, CONTINUOUS_ATOM_FEATURES), (True, CONTINUOUS_PAIR_FEATURES)):
        for f in feats:
            cols = (is_pair == pair) & (feature == f)
            values = flat[:, cols][mask[:, cols]]
            out.append((values.size, values.sum(), (values**2).sum()))
    c, s, q = (np.array(v, np.float64) for v in zip(*out))
    return c, s, q


# -- layers ------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="qmlrp")
class TiedDense(keras.layers.Layer):
    """``act(x W^T + c)``: the transpose of a :class:`keras.layers.Dense` ``tied_to`` (its kernel,
    not a copy) and a bias of this layer's own."""

    def __init__(self, tied_to: keras.layers.Dense, activation: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tied_to = tied_to
        self.activation = keras.activations.get(activation)

    def build(self, input_shape: Any) -> None:
        units = int(self.tied_to.kernel.shape[0])
        self.bias = self.add_weight(name="bias", shape=(units,), initializer="zeros")

    def call(self, x: Any) -> Any:
        return self.activation(ops.matmul(x, ops.transpose(self.tied_to.kernel)) + self.bias)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture: ``n_inputs -> hidden -> code -> hidden -> n_inputs``; ``noise_sd`` (scaled units)."""

    n_inputs: int = flat_length(MAX_ATOMS)
    hidden: int = 136
    code: int = 68
    noise_sd: float = 0.1


class TiedAutoencoder(keras.Model):
    """The DAE (module docstring). ``call(x (B, D) scaled, training) -> x_hat (B, D) scaled``.

    Attributes:
        config: the architecture; scaling: the fitted :class:`ColumnScaling` (None until set);
        metadata: JSON-able run facts saved with the model (e.g. ``ood_threshold``).
    """

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig(), scaling: ColumnScaling | None = None,
                 metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", "autoencoder")
        super().__init__(**kwargs)
        self.config = config
        self.scaling = scaling
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.noise = keras.layers.GaussianNoise(config.noise_sd, name="noise")
        self.encoder1 = keras.layers.Dense(config.hidden, activation="relu", name="encoder1")
        self.encoder2 = keras.layers.Dense(config.code, activation="relu", name="encoder2")
        self.decoder2 = TiedDense(self.encoder2, activation="relu", name="decoder2")
        self.decoder1 = TiedDense(self.encoder1, activation=None, name="decoder1")
        self.build((None, config.n_inputs))

    def build(self, input_shape: Any) -> None:
        self.encoder1.build((None, self.config.n_inputs))
        self.encoder2.build((None, self.config.hidden))
        self.decoder2.build((None, self.config.code))
        self.decoder1.build((None, self.config.hidden))
        self.built = True

    def encode(self, x: Any) -> Any:
        """(B, D) scaled -> (B, code) ReLU code (no noise)."""
        return self.encoder2(self.encoder1(x))

    def decode(self, code: Any) -> Any:
        """(B, code) -> (B, D) reconstruction, scaled units (linear output)."""
        return self.decoder1(self.decoder2(code))

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.decode(self.encode(self.noise(x, training=training)))

    def arrays(self) -> dict[str, np.ndarray]:
        """The one parameter set, float64: ``W1 (D, H), b1 (H,), W2 (H, C), b2 (C,), c2 (H,), c1 (D,)``."""
        get = lambda v: np.asarray(keras.ops.convert_to_numpy(v), np.float64)  # noqa: E731
        return {"W1": get(self.encoder1.kernel), "b1": get(self.encoder1.bias), "W2": get(self.encoder2.kernel),
                "b2": get(self.encoder2.bias), "c2": get(self.decoder2.bias), "c1": get(self.decoder1.bias)}

    # -- numpy conveniences (inference) -------------------------------------------------------
    def _scaling(self) -> ColumnScaling:
        if self.scaling is None:
            raise QmlrpError("autoencoder: no column scaling fitted")
        return self.scaling

    def reconstruct(self, flat: np.ndarray, n_atoms: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(B, D) original units -> (B, D) scaled reconstruction (inference)."""
        x = self._scaling().transform(flat, n_atoms)
        out = [np.asarray(keras.ops.convert_to_numpy(self(x[s : s + batch_size], training=False)))
               for s in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros_like(x)

    def reconstruction_error(self, flat: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
        """(B,) mean squared error over the D scaled entries (the training loss per molecule):
        the out-of-domain score."""
        x = self._scaling().transform(flat, n_atoms)
        return np.mean((self.reconstruct(flat, n_atoms) - x) ** 2, axis=1)


# -- model file --------------------------------------------------------------------------------
def weight_names(model: TiedAutoencoder) -> list[str]:
    """Weight paths without the model's own (possibly uniquified) name: ``encoder1/kernel`` ..."""
    return [w.path.split("/", 1)[-1] for w in model.weights]


def save_autoencoder(model: TiedAutoencoder, path: str | Path) -> None:
    """Write ``model`` to ``path`` (``.npz``) atomically: JSON header + float32 weights, same bytes
    for the same weights."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the autoencoder is saved as .npz")
    header = {"format": FORMAT, "config": asdict(model.config),
              "scaling": None if model.scaling is None else model.scaling.to_json(),
              "metadata": dict(model.metadata), "names": weight_names(model)}
    write_weights_file(path, header, [np.asarray(keras.ops.convert_to_numpy(w), np.float32) for w in model.weights])


def load_autoencoder(path: str | Path) -> TiedAutoencoder:
    """Load a model saved by :func:`save_autoencoder` (no pickle, no code executed)."""
    path = Path(path)
    if not path.exists():
        raise QmlrpError(f"{path}: autoencoder not found (run `qmlrp autoencoder` first)")
    header, arrays = read_weights_file(path, FORMAT, "autoencoder")
    try:
        config = AutoencoderConfig(**header["config"])
        widths = (config.n_inputs, config.hidden, config.code)
        if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise ValueError(f"widths {widths} must be positive integers")
        # the architecture must account for exactly the weights present before anything is built
        # (tied kernels: encoder kernels and biases, decoder biases)
        declared = (config.n_inputs + 1) * config.hidden + (config.hidden + 1) * config.code + config.hidden + config.n_inputs
        present = sum(int(a.size) for a in arrays)
        if declared != present:
            raise QmlrpError(f"{path}: its architecture has {declared:,} weights but the file holds {present:,}")
        scaling = None if header["scaling"] is None else ColumnScaling.from_json(header["scaling"])
        model = TiedAutoencoder(config, scaling, header.get("metadata"))
    except (TypeError, ValueError, KeyError) as err:
        raise QmlrpError(f"{path}: malformed autoencoder header ({err})") from None
    assign_weights(model.weights, weight_names(model), header["names"], arrays, path)
    return model


# -- the combined model: DAE -> reconstructed MG -> a trained Weave model ------------------------
def pair_gather_index(max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """(max_atoms * max_atoms,) index into the upper pairs (406) + one zero row (406) for the
    diagonal: builds the symmetric (N, N) pair tensor from the flat i < j rows."""
    i, j = upper_pairs(max_atoms)
    full = np.full((max_atoms, max_atoms), len(i), np.int32)
    full[i, j] = np.arange(len(i))
    full[j, i] = np.arange(len(i))
    return full.reshape(-1)


def unflatten(flat: Any, max_atoms: int = MAX_ATOMS) -> tuple[Any, Any]:
    """Flat (B, D) -> ``atoms (B, N, 21)``, symmetric ``pairs (B, N, N, 13)`` (keras ops; the
    inverse of :func:`qmlrp.features.dense.flatten` on real entries)."""
    n_atom_cols = N_ATOM_FEATURES * max_atoms
    atoms = ops.reshape(flat[:, :n_atom_cols], (-1, max_atoms, N_ATOM_FEATURES))
    upper = ops.reshape(flat[:, n_atom_cols:], (-1, n_pairs(max_atoms), N_PAIR_FEATURES))
    upper = ops.concatenate([upper, ops.zeros_like(upper[:, :1])], axis=1)
    pairs = ops.take(upper, pair_gather_index(max_atoms), axis=1)
    return atoms, ops.reshape(pairs, (-1, max_atoms, max_atoms, N_PAIR_FEATURES))


class CombinedModel(keras.Model):
    """``x (scaled) -> encoder -> code -> decoder -> x_hat -> original units -> Weave -> y``.

    Inputs: dict ``flat`` (B, D) scaled MG, ``atom_mask`` (B, N) real atoms. The Weave model is
    run in its padded form (:class:`qmlrp.models.dense.DenseGraphConvModel`, sharing the trained
    weights) on the reconstructed MG with the molecule's real atom mask. ``use_autoencoder=False``
    feeds the input MG itself (the plain model on the same code path).
    """

    def __init__(self, autoencoder: TiedAutoencoder, weave: keras.Model, use_autoencoder: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from qmlrp.models.dense import DenseGraphConvModel

        self.autoencoder = autoencoder
        self.weave = weave
        self.dense = DenseGraphConvModel(weave)
        self.use_autoencoder = use_autoencoder
        shift, scale = autoencoder._scaling().vectors()
        self.shift = ops.convert_to_tensor(shift.astype(np.float32))
        self.scale = ops.convert_to_tensor(scale.astype(np.float32))

    def reconstructed_mg(self, flat: Any, mask: Any, training: bool | None = None) -> tuple[Any, Any]:
        """``(atoms (B, N, 21), pairs (B, N, N, 13))`` in original units (padding as the mask says)."""
        x_hat = self.autoencoder(flat, training=training) if self.use_autoencoder else flat
        atoms, pairs = unflatten(x_hat * self.scale + self.shift)
        pm = ops.expand_dims(mask, 2) * ops.expand_dims(mask, 1)
        return atoms * ops.expand_dims(mask, -1), pairs * ops.expand_dims(pm, -1)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> Any:
        mask = ops.cast(inputs["atom_mask"], "float32")
        atoms, pairs = self.reconstructed_mg(inputs["flat"], mask, training=training)
        return self.dense({"atoms": atoms, "pairs": pairs, "atom_mask": mask}, training=training)


@dataclass
class TypeScores:
    """Reconstruction quality per feature type on real entries (original units).

    Attributes: r2, mae: ``{type: value}``; counts: ``{type: real entries}``."""

    r2: dict[str, float] = field(default_factory=dict)
    mae: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class TypeAccumulator:
    """Streams (B, D) originals and reconstructions (original units) and gives R^2 and MAE per
    feature type over real entries. R^2 = 1 - SS_res / SS_tot, SS_tot around each feature's own
    mean (a type's features pooled)."""

    def __init__(self, max_atoms: int = MAX_ATOMS) -> None:
        self.is_pair, self.feature = column_feature(max_atoms)
        self.types = column_types(max_atoms)
        self.max_atoms = max_atoms
        n = N_ATOM_FEATURES + N_PAIR_FEATURES
        self.key = np.where(self.is_pair, N_ATOM_FEATURES + self.feature, self.feature)  # 0..33
        self.count = np.zeros(n)
        self.sum = np.zeros(n)
        self.sq = np.zeros(n)
        self.res = np.zeros(n)
        self.abs = np.zeros(n)

    def add(self, x: np.ndarray, x_hat: np.ndarray, n_atoms: np.ndarray) -> None:
        mask = real_mask(n_atoms, self.max_atoms).astype(np.float64)
        x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
        n = len(self.count)
        for arr, values in ((self.count, mask), (self.sum, x * mask), (self.sq, x * x * mask),
                            (self.res, (x - x_hat) ** 2 * mask), (self.abs, np.abs(x - x_hat) * mask)):
            arr += np.bincount(self.key, weights=values.sum(0), minlength=n)

    def scores(self) -> TypeScores:
        atom_type = {f: k for k, cols in enumerate(ATOM_FEATURE_TYPES.values()) for f in cols}
        pair_type = {N_ATOM_FEATURES + f: len(ATOM_FEATURE_TYPES) + k
                     for k, cols in enumerate(PAIR_FEATURE_TYPES.values()) for f in cols}
        owner = {**atom_type, **pair_type}
        out = TypeScores()
        for t, name in enumerate(FEATURE_TYPES):
            keys = [k for k, v in owner.items() if v == t]
            c = self.count[keys]
            ss_tot = float(np.sum(self.sq[keys] - np.divide(self.sum[keys] ** 2, c, out=np.zeros_like(c), where=c > 0)))
            ss_res = float(np.sum(self.res[keys]))
            total = float(c.sum())
            out.counts[name] = int(total)
            out.mae[name] = float(np.sum(self.abs[keys]) / total) if total else float("nan")
            out.r2[name] = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else float("nan"))
        return out
