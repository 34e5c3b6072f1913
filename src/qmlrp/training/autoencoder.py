"""The ``autoencoder`` stage (issue 11): train the tied-weight DAE on the training folds, measure its
reconstruction per feature type against PCA, plug it in front of the trained Weave models
(frozen and fine-tuned), explain the predictions on the code units, and score the applicability
domain by the reconstruction error. The combined models and the code LRP live in
:mod:`qmlrp.stages.combined`; the stage itself is :mod:`qmlrp.stages.autoencoder`.

Outputs (paths relative to the repository root, mirrored in dvc.yaml):

* ``models/autoencoder/model.npz`` (weights, column scaling, out-of-domain threshold)
* ``metrics/autoencoder.json`` (reconstruction per type DAE vs PCA, training, the domain AUROC)
* ``metrics/autoencoder_combined.json`` (combined-model MAE frozen / fine-tuned vs plain, code LRP)
* ``plots/autoencoder/`` (``reconstruction.csv/png``, ``code_relevance_<name>.csv/png``,
  ``code_units_<name>.csv``, ``domain.csv``; ``<name>`` = target, or ``frequencies_<view>``)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.params import FieldError, load_params, parse_section

MODEL = Path("models/autoencoder/model.npz")
METRICS = Path("metrics/autoencoder.json")
COMBINED_METRICS = Path("metrics/autoencoder_combined.json")
PLOTS = Path("plots/autoencoder")

OUTSIDE_SMILES: tuple[str, ...] = (
    "c1ccc2ccccc2c1",            # naphthalene C10H8 (18 atoms)
    "c1ccc2ncccc2c1",            # quinoline
    "c1ccc2cc3ccccc3cc2c1",      # anthracene C14H10 (24 atoms)
    "c1ccc(cc1)-c1ccccc1",       # biphenyl (22 atoms)
    "O=c1ccc2ccccc2o1",          # coumarin
    "CC(=O)Oc1ccccc1C(=O)O",     # aspirin (21 atoms)
    "CC(=O)Nc1ccc(O)cc1",        # paracetamol (20 atoms)
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",  # caffeine (24 atoms)
    "Fc1c(F)c(F)c(F)c(F)c1F",    # hexafluorobenzene
    "c1ccc2nccnc2c1",            # quinoxaline
    "Oc1cccc2ccccc12",           # 1-naphthol
    "c1ccc(Oc2ccccc2)cc1",       # diphenyl ether (23 atoms)
)
"""Plainly outside QM9 (10+ heavy atoms, at most 29 atoms): embedded with RDKit (ETKDG + MMFF)."""


@dataclass(frozen=True)
class AutoencoderParams:
    """``params.yaml`` section ``autoencoder``.

    Attributes:
        noise_sd: sd of the Gaussian input noise in training (scaled units).
        epochs, batch_size, learning_rate: DAE training (Adam on the MSE of the scaled vector).
        seed: weights, noise, shuffling, distortions.
        fold: held-out fold; the DAE trains on all the others (0 = the explain fold).
        hidden, code: layer widths (136, 68).
        pca_components: the PCA baseline's components (68).
        targets: trained Weave models to combine with (``models/<target>/fold<fold>.npz``; absent
            ones are skipped with a note); ``beta`` is applied to the molecules of ``data/beta``.
        model_dirs: target -> folder holding ``<target>/fold<fold>.npz`` (relative to the working
            directory), for models kept elsewhere (the full study's ``models/spectra``); a target not
            named here is looked up in the stage's models folder.
        pca_molecules: the PCA baseline is fitted on a seeded subset of this many training molecules
            (null = all of them: exact SVD of the whole training matrix).
        finetune_epochs, finetune_learning_rate: fine-tuning of the DAE through the supervised loss
            (masked MAE of the standardised target; Weave frozen).
        ood_percentile: threshold of the reconstruction error = this percentile of the training
            folds' errors.
        distortion_sd: sds (Angstrom) of the Gaussian displacement of each atom of the distorted
            held-out molecules, one distorted set per value.
        outside_smiles: molecules outside QM9 (RDKit-embedded); empty = the built-in list.
        lrp_rule, lrp_epsilon: rule of the decoder/encoder layers (and the Weave model's default,
            stabilised as in ``explain``).
        lrp_molecules: held-out molecules explained on the code, a seeded subset (null = the whole fold).
    """

    noise_sd: float = 0.1
    epochs: int = 120
    batch_size: int = 64
    learning_rate: float = 0.0003
    seed: int = 20171010
    fold: int = 0
    hidden: int = 136
    code: int = 68
    pca_components: int = 68
    pca_molecules: int | None = None
    targets: tuple[str, ...] = ("alpha", "zpve", "omega1", "beta", "frequencies")
    model_dirs: dict[str, str] = field(default_factory=dict)
    finetune_epochs: int = 3
    finetune_learning_rate: float = 0.0001
    ood_percentile: float = 99.9
    distortion_sd: tuple[float, ...] = (0.1, 0.2, 0.5)
    outside_smiles: tuple[str, ...] = ()
    lrp_rule: str = "eps"
    lrp_epsilon: float = 0.1
    lrp_molecules: int | None = None

    def __post_init__(self) -> None:
        if not self.noise_sd >= 0:
            raise ValueError(f"noise_sd must be >= 0, got {self.noise_sd}")
        for name in ("epochs", "batch_size", "hidden", "code", "pca_components"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.ood_percentile <= 100:
            raise ValueError(f"ood_percentile must be in (0, 100], got {self.ood_percentile}")
        from qmlrp.targets import TARGETS

        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"targets: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(TARGETS)}")
        for name in ("pca_molecules", "lrp_molecules"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise FieldError(name, f"must be >= 1 or null, got {getattr(self, name)}")
        stray = [t for t in self.model_dirs if t not in self.targets]
        if stray:
            raise FieldError("model_dirs", f"{', '.join(map(repr, stray))} not among the targets "
                             f"({', '.join(self.targets)})")
        empty = [t for t, d in self.model_dirs.items() if not str(d).strip()]
        if empty:
            raise FieldError("model_dirs", f"empty folder for {', '.join(map(repr, empty))}")

    @staticmethod
    def load(path: str | Path) -> AutoencoderParams:
        return parse_section(AutoencoderParams, "autoencoder", load_params(path).get("autoencoder"))


# -- data ----------------------------------------------------------------------------------------
def seeded_subset(positions: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """``n`` of ``positions`` drawn without replacement (seed ``seed``), in their order; all of them when
    ``n`` is None or not smaller."""
    positions = np.asarray(positions)
    if n is None or n >= positions.size:
        return positions
    keep = np.sort(np.random.default_rng(seed).choice(positions.size, size=n, replace=False))
    return positions[keep]


def fold_positions(store: Any, folds_path: str | Path, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` store positions: every fold but ``fold``, and ``fold``."""
    from qmlrp.io import read_parquet

    table = read_parquet(folds_path, ["id", "fold"], "run `dvc repro split`")
    ids, folds = table.column("id").to_numpy(), table.column("fold").to_numpy()
    if fold not in set(folds.tolist()):
        raise QmlrpError(f"{folds_path}: no fold {fold} (folds {sorted(set(folds.tolist()))})")
    known = np.isin(ids, store.ids)
    test = store.positions(ids[known & (folds == fold)])
    train = store.positions(ids[known & (folds != fold)])
    if train.size == 0 or test.size == 0:
        raise QmlrpError(f"{folds_path}: fold {fold} leaves no training or no test molecules")
    return np.sort(train), np.sort(test)


def flat_batches(store: Any, positions: np.ndarray, batch_size: int = 256):  # noqa: ANN201
    """Yield ``(positions, flat (b, D) original units, n_atoms (b,))`` in order."""
    from qmlrp.features.dense import flatten

    for s in range(0, len(positions), batch_size):
        p = positions[s : s + batch_size]
        yield p, flatten(store.batch(p)), store.n_atoms[p]


def fit_scaling(store: Any, positions: np.ndarray) -> Any:
    """:class:`ColumnScaling` from the real entries of the molecules at ``positions`` (batched)."""
    from qmlrp.models.autoencoder import ColumnScaling, moments

    total = None
    for _, flat, n in flat_batches(store, positions):
        m = moments(flat, n)
        total = m if total is None else tuple(a + b for a, b in zip(total, m))
    return ColumnScaling.from_moments(*total)


class FlatBatches:
    """The engine's batch source (:class:`~qmlrp.training.engine.Program`) of scaled flat vectors, built
    per step from the store: ``inputs(chunks) -> (inputs, y (K, S, T), w (K, S))`` for K chunks of store
    positions, S = ``batch_size`` slots (padding rows: zeros, weight 0).

    Without ``targets`` the inputs are ``x`` (K, S, D) scaled and ``y = x`` (the DAE reconstructs its clean
    input; the model adds the noise); with ``targets`` (len(store),) or (len(store), T) (target units, NaN =
    no label, masked by the engine) the inputs are ``{"flat" (K, S, D), "atom_mask" (K, S, N)}``.
    """

    def __init__(self, store: Any, scaling: Any, batch_size: int, targets: np.ndarray | None = None) -> None:
        self.store = store  # host batches: the compiled step takes the inputs as they are
        self.scaling = scaling
        self.batch_size = int(batch_size)
        self.targets = None if targets is None else np.asarray(targets, np.float32).reshape(len(targets), -1)

    def inputs(self, chunks: Sequence[np.ndarray]) -> tuple[Any, np.ndarray, np.ndarray]:
        from qmlrp.features.dense import flatten
        from qmlrp.features.layout import flat_length
        from qmlrp.models.autoencoder import atom_mask

        slots, atoms = self.batch_size, self.scaling.max_atoms
        x = np.zeros((len(chunks), slots, flat_length(atoms)), np.float32)
        mask = np.zeros((len(chunks), slots, atoms), np.float32)
        width = x.shape[2] if self.targets is None else self.targets.shape[1]
        y = np.zeros((len(chunks), slots, width), np.float32)
        w = np.zeros((len(chunks), slots), np.float32)
        for k, chunk in enumerate(chunks):
            if chunk.size == 0:
                continue
            n = self.store.n_atoms[chunk]
            x[k, :chunk.size] = self.scaling.transform(flatten(self.store.batch(chunk)), n)
            mask[k, :chunk.size] = atom_mask(n, atoms)
            y[k, :chunk.size] = x[k, :chunk.size] if self.targets is None else self.targets[chunk]
            w[k, :chunk.size] = 1.0
        return (x if self.targets is None else {"flat": x, "atom_mask": mask}), y, w


def fit_flat(model: Any, batches: FlatBatches, train: np.ndarray, scale: np.ndarray, loss: Literal["mse", "mae"],
             epochs: int, learning_rate: float, seed: int, name: str, checkpoint: str | Path | None = None,
             log: bool = False) -> Any:
    """Train ``model`` (built Keras model) on the molecules at ``train`` through the one training loop
    (:func:`qmlrp.training.engine.train_program`): Adam at a constant ``learning_rate``, ``epochs`` epochs,
    batches in the engine's order (seed ``seed``), the masked ``loss`` (``mse``/``mae``) of
    ``(pred - y) / scale`` (``scale`` (T,)), no validation (the last weights kept, in ``model``).
    Returns the engine's :class:`~qmlrp.training.engine.FitResult` (history: ``loss`` per epoch, the batch mean)."""
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.engine import ModelRun, Program, train_program
    from qmlrp.training.kind_training import STANDARD

    if not model.built:  # stateless_call needs the variables: one inference call on a molecule creates them
        inputs = batches.inputs([np.asarray(train[:1], np.int64)])[0]
        model(inputs[0] if isinstance(inputs, np.ndarray) else {k: v[0] for k, v in inputs.items()}, training=False)
    scale = np.asarray(scale, np.float64).reshape(1, -1)
    config = TrainConfig(seed=seed, batch_size=batches.batch_size, epochs=epochs, loss=loss,
                         learning_rate=learning_rate, schedule="plateau", lr_factor=1.0, lr_patience=epochs + 1,
                         min_learning_rate=learning_rate, early_stopping_patience=epochs + 1, batches="host",
                         checkpoint_minutes=0.0)
    run = ModelRun(name, None, np.zeros(0), np.asarray(train, np.int64), np.zeros(0, np.int64), seed)
    program = Program([run], [model], batches, STANDARD.loss, [np.zeros(scale.shape[1])], scale)
    return train_program(program, config, checkpoint, log=log)[0]


# -- the DAE -------------------------------------------------------------------------------------
def train_autoencoder(store: Any, train: np.ndarray, p: AutoencoderParams, verbose: int = 0,
                      checkpoint: str | Path | None = None) -> tuple[Any, list[float]]:
    """Fit the column scaling and the DAE on the molecules at ``train`` through the engine (:func:`fit_flat`:
    Adam, the MSE of the scaled clean vector reconstructed from its noisy copy): ``(model, loss per epoch)``.
    ``checkpoint``: the engine's resumable ``.npz``."""
    import keras

    from qmlrp.models.autoencoder import AutoencoderConfig, TiedAutoencoder

    keras.utils.set_random_seed(p.seed)
    scaling = fit_scaling(store, train)
    config = AutoencoderConfig(hidden=p.hidden, code=p.code, noise_sd=p.noise_sd)
    model = TiedAutoencoder(config, scaling)
    batches = FlatBatches(store, scaling, p.batch_size)
    name = f"autoencoder/{p.hidden}-{p.code}/noise{p.noise_sd}"  # in the checkpoint's fingerprint
    result = fit_flat(model, batches, train, np.ones(config.n_inputs), "mse", p.epochs, p.learning_rate,
                      p.seed, name, checkpoint, log=verbose > 0)
    return model, [float(row["loss"]) for row in result.history]


def errors_of(model: Any, store: Any, positions: np.ndarray) -> np.ndarray:
    """(n,) reconstruction error (mean squared scaled error per molecule) of the molecules at ``positions``."""
    parts = [model.reconstruction_error(flat, n) for _, flat, n in flat_batches(store, positions)]
    return np.concatenate(parts) if parts else np.zeros(0)


# -- PCA baseline --------------------------------------------------------------------------------
@dataclass
class PCA:
    """Linear baseline on the scaled vector: ``x ~ mean + (x - mean) V V^T``, V (D, k) orthonormal."""

    mean: np.ndarray
    components: np.ndarray

    def reconstruct(self, x_scaled: np.ndarray) -> np.ndarray:
        c = np.asarray(x_scaled, np.float64) - self.mean
        return self.mean + (c @ self.components) @ self.components.T


def fit_pca(store: Any, positions: np.ndarray, scaling: Any, k: int) -> PCA:
    """PCA with ``k`` components of the scaled vectors of the molecules at ``positions``: numpy SVD of the
    centred data matrix (built in batches, centred in place; float64, 47 MB per 1,000 molecules, the SVD's
    factors about as much again)."""
    rows = [scaling.transform(flat, n) for _, flat, n in flat_batches(store, positions)]
    x = np.concatenate(rows).astype(np.float64)
    del rows
    mean = x.mean(0)
    x -= mean
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return PCA(mean, vt[:k].T.copy())


def reconstruction_scores(model: Any, pca: PCA, store: Any, positions: np.ndarray) -> tuple[Any, Any]:
    """``(DAE, PCA)`` :class:`~qmlrp.models.autoencoder.TypeScores` on the molecules at ``positions``
    (original units, real entries)."""
    from qmlrp.models.autoencoder import TypeAccumulator

    dae, lin = TypeAccumulator(), TypeAccumulator()
    for _, flat, n in flat_batches(store, positions):
        x_s = model.scaling.transform(flat, n)
        dae.add(flat, model.scaling.inverse(model.reconstruct(flat, n), n), n)
        lin.add(flat, model.scaling.inverse(pca.reconstruct(x_s), n), n)
    return dae.scores(), lin.scores()


# -- out of domain -------------------------------------------------------------------------------
def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of an outside molecule > score of an inside one), ties count 1/2: the Mann-Whitney U of
    the outside scores over n_outside * n_inside (:func:`scipy.stats.mannwhitneyu`)."""
    from scipy.stats import mannwhitneyu

    inside, outside = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    if inside.size == 0 or outside.size == 0:
        return float("nan")
    return float(mannwhitneyu(outside, inside, alternative="two-sided").statistic / (inside.size * outside.size))


def distorted_store(store: Any, positions: np.ndarray, sd: float, seed: int) -> Any:
    """A store of the molecules at ``positions`` with every atom displaced by N(0, sd^2) Angstrom per
    axis (bonds, rings and atom features kept: the pair distances change)."""
    from qmlrp.features.store import FeatureStore

    graphs = [store.graph(int(k)) for k in positions]
    rng = np.random.default_rng(seed)
    coords = np.concatenate([g.coordinates for g in graphs])
    coords = coords + rng.normal(0.0, sd, coords.shape).astype(np.float32)
    return FeatureStore(store.ids[positions], store.n_atoms[positions], store.n_bonds[positions],
                        np.concatenate([g.atom_features for g in graphs]), coords,
                        np.concatenate([g.ring_masks for g in graphs]),
                        np.concatenate([g.bonds for g in graphs]).astype(np.int64),
                        np.concatenate([g.bond_types for g in graphs]))


def embed_outside(smiles: Sequence[str], seed: int) -> tuple[list[str], list[Any]]:
    """``(names, MolecularGraphs)`` of RDKit-embedded molecules (ETKDG + MMFF), featurized as user
    inputs are; molecules with more than 29 atoms or failing perception are left out."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from qmlrp.features.featurize import featurize_geometry
    from qmlrp.features.layout import MAX_ATOMS

    names, graphs = [], []
    for smi in smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        if mol.GetNumAtoms() > MAX_ATOMS or AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
            continue
        AllChem.MMFFOptimizeMolecule(mol)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
        xyz = mol.GetConformer().GetPositions()
        try:
            graphs.append(featurize_geometry(z, xyz, smi, smi))
        except QmlrpError:
            continue
        names.append(smi)
    return names, graphs


def flat_of_graphs(graphs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(flat (B, D), n_atoms (B,))`` of MolecularGraphs."""
    from qmlrp.features.dense import flatten
    from qmlrp.features.pairs import make_batch

    batch = make_batch(list(graphs), np.arange(len(graphs)))
    return flatten(batch), np.array([g.n_atoms for g in graphs])


# -- plots and tables ----------------------------------------------------------------------------
def _num(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def write_reconstruction(dae: Any, pca: Any, out_dir: Path) -> None:
    """``reconstruction.csv`` (type, n entries, R^2 and MAE of DAE and PCA) and ``reconstruction.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmlrp.models.autoencoder import FEATURE_TYPES

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "reconstruction.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["type", "entries", "dae_r2", "pca_r2", "dae_mae", "pca_mae"])
        for t in FEATURE_TYPES:
            w.writerow([t, dae.counts[t], *(f"{v:.6g}" for v in (dae.r2[t], pca.r2[t], dae.mae[t], pca.mae[t]))])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    y = np.arange(len(FEATURE_TYPES))
    for ax, key, label in ((axes[0], "r2", "R² (1 = perfect)"), (axes[1], "mae", "MAE (feature units: e, Å, one-hot)")):
        a = [getattr(dae, key)[t] for t in FEATURE_TYPES]
        b = [getattr(pca, key)[t] for t in FEATURE_TYPES]
        ax.barh(y - 0.2, np.nan_to_num(a), 0.4, label="DAE")
        ax.barh(y + 0.2, np.nan_to_num(b), 0.4, label="PCA (68)")
        ax.set_xlabel(label)
    axes[0].set_yticks(y, FEATURE_TYPES)
    axes[0].invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right")
    fig.suptitle("Held-out reconstruction per feature type (real atoms/pairs)")
    fig.tight_layout()
    fig.savefig(out_dir / "reconstruction.png", dpi=110)
    plt.close(fig)


def flag_out_of_domain(predictions: Sequence[Any], featurized: Sequence[Any], models_dir: str | Path) -> None:
    """``qmlrp predict``'s applicability-domain hook: with ``models_dir/autoencoder/model.npz`` present,
    add each molecule's reconstruction error and the model's threshold to ``values["autoencoder"]``
    and a warning when the error is beyond it (``predictions`` and ``featurized`` in the same order).
    Without the model file nothing changes."""
    path = Path(models_dir) / "autoencoder" / "model.npz"
    if not path.exists() or not featurized:
        return
    from qmlrp.models.autoencoder import load_autoencoder

    model = load_autoencoder(path)
    threshold = model.metadata.get("ood_threshold")
    flat, n = flat_of_graphs([f.graph for f in featurized])
    for prediction, error in zip(predictions, model.reconstruction_error(flat, n)):
        beyond = threshold is not None and float(error) > threshold
        prediction.values["autoencoder"] = {"reconstruction_error": float(error), "threshold": threshold,
                                            "beyond_threshold": bool(beyond)}
        if beyond:
            prediction.warnings.append(f"autoencoder reconstruction error {error:.3g} above the training folds' "
                                       f"{model.metadata.get('ood_percentile', 99.9):g}th percentile {threshold:.3g}")
