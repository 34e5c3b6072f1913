"""Writes notebooks/03_frequencies_and_beta.ipynb (kept as a script so the notebook's source is reviewable).

Run ``python notebooks/make_03.py`` after editing; tests/test_notebook_03.py executes the notebook on its
small sample."""
import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# 3 · Harmonic frequencies and the first hyperpolarizability β∥

Aim 3 of qmlrp extends the Weave GC model from one number per molecule to

* **all harmonic frequencies** (QM9 lists 3N−6 per molecule, 3N−5 for its five linear ones): one model with an
  81-output head, modes sorted high → low, NaN-padded to 81 and masked out of the loss;
* the **first hyperpolarizability β∥**, which QM9 does not have: the project computes it with PySCF
  (`label_beta`, B3LYP(VWN5)/6-31G) and publishes the labels in `labels/beta/`.

This notebook runs everything on a small sample (300 QM9 molecules, tiny models, a few epochs: minutes on a laptop).
The numbers illustrate the machinery; the pipelines' numbers are in `studies/qm9-2k/metrics/evaluate.json`,
`studies/qm9-2k/metrics/beta_learning_curve.json` and `studies/qm9-2k/metrics/compare_explanations.json`."""),
    code("""from qmlrp.training.backend import use_jax_backend

use_jax_backend()  # the training engine runs Keras on JAX (before anything imports Keras)

import tempfile
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qmlrp.data.ingest import ingest
from qmlrp.data.split import split
from qmlrp.features.featurize import featurize_table
from qmlrp.features.store import FeatureStore

work = Path(tempfile.mkdtemp(prefix="qmlrp-nb03-"))
ingest("qm9pack", work / "qm9.parquet", work / "rejects.csv", work / "ingest.json", limit=300, seed=3)
featurize_table(work / "qm9.parquet", work / "features", work / "failures.csv", work / "featurize.json",
                workers=1, chunk_size=300, scratch_root=work / "scratch")
split(work / "features", work / "folds.parquet", work / "split.json", n_folds=5, seed=0)
store = FeatureStore.open(work / "features")
table = pd.read_parquet(work / "qm9.parquet").set_index("id")
len(store)"""),
    md("""## The frequency labels

How many modes does QM9 list? 3N−6 for every non-linear molecule, 3N−5 for linear ones (every atom on one axis).
The target vector sorts them high → low (index 0 is ω₁, the highest frequency) and pads with NaN to 81 = 3·29−6."""),
    code("""from qmlrp.targets import get_target
from qmlrp.targets.labels import load_labels
from qmlrp.targets.spectra import is_linear, n_modes

listed = table["frequencies_cm1"].map(len)
expected = [n_modes(int(n), is_linear(np.asarray(xyz).reshape(-1, 3)))
            for n, xyz in zip(table["n_atoms"], table["coordinates"])]
print("molecules whose listed mode count is 3N-6 (or 3N-5 when linear):", int((listed == expected).sum()), "of", len(table))

frequencies = get_target("frequencies")
y = load_labels(store, work / "qm9.parquet", frequencies)
print("target array:", y.shape, "| real modes per molecule:", np.isfinite(y).sum(1).min(), "to", np.isfinite(y).sum(1).max())
print("first molecule, highest five (cm^-1):", np.round(y[0, :5], 1), "| descending:", bool(np.all(np.diff(y[0][np.isfinite(y[0])]) <= 0)))"""),
    md("""## One joint frequency model and one ω₁-only model

Both are trained by the project's one training loop, `qmlrp.training.engine.fit`, on fold 0's training folds
(a tiny architecture, 8 epochs). The joint model's loss is the MAE of the standardised modes over **real modes
only**: padding never counts. The separate ω₁ model answers the seed's question "joint network vs separate
network" for the highest frequency."""),
    code("""from qmlrp.models.config import ModelConfig
from qmlrp.training.config import TrainConfig
from qmlrp.training.engine import fit
from qmlrp.training.train import fold_run, predict_positions

tiny = ModelConfig(atom_width=16, pair_width=16, atom_hidden=16, pair_hidden=16, embedding_width=32, head_units=(128,))
config = TrainConfig(targets=("frequencies", "omega1"), epochs=8, batch_size=32, learning_rate=3e-3, model=tiny,
                     early_stopping_patience=8)
joint_run, split0 = fold_run(store, work / "qm9.parquet", work / "folds.parquet", "frequencies", 0, config)
omega_run, _ = fold_run(store, work / "qm9.parquet", work / "folds.parquet", "omega1", 0, config)
joint = fit(store, [joint_run], config, log=False)[0]   # heads of different width: one program each
separate = fit(store, [omega_run], config, log=False)[0]
test = split0.test
pred = predict_positions(joint.model, store, test, 256)
pred_omega = predict_positions(separate.model, store, test, 256)
print("joint model output:", pred.shape, "| test molecules:", test.size)"""),
    md("""## Metrics

MAE over all real modes, per mode index, ω₁ from the joint and from the separate model (the pipeline's bar for ω₁
is 3.15 cm⁻¹ on full QM9), and two spectrum-level scores on the stick spectra: the spectral information similarity
(SIS, Gaussian broadening of 15 cm⁻¹; 1 = identical) and the Wasserstein-1 distance (cm⁻¹: the mean shift that
turns one spectrum into the other)."""),
    code("""from qmlrp.targets.spectra import label_mad, masked_mae, spectrum_scores

truth = y[test]
per_mode = [masked_mae(pred[:, k], truth[:, k]) for k in range(81)]
sis, w1 = spectrum_scores(pred, truth)
omega_true = truth[:, 0]
summary = pd.Series({
    "MAE, all real modes (cm^-1)": masked_mae(pred, truth),
    "MAD of the labels (cm^-1)": label_mad(truth),
    "omega1 MAE, joint model (cm^-1)": masked_mae(pred[:, 0], omega_true),
    "omega1 MAE, separate model (cm^-1)": masked_mae(pred_omega, omega_true),
    "mean SIS": float(sis.mean()),
    "mean Wasserstein-1 (cm^-1)": float(w1.mean()),
})
summary.round(3)"""),
    code("""fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(np.arange(1, 82), per_mode, marker=".")
ax.set_xlabel("mode index (1 = highest frequency)")
ax.set_ylabel("test MAE (cm$^{-1}$)")
ax.set_title("Joint frequency model: MAE per mode index (fold 0, tiny model, 300 molecules)")
fig.tight_layout()"""),
    md("""Predicted against reference stick spectrum of one test molecule (unit sticks: QM9 has no intensities)."""),
    code("""m = int(np.argmax(np.isfinite(truth).sum(1)))  # the test molecule with the most modes
real = np.isfinite(truth[m])
fig, ax = plt.subplots(figsize=(8, 3))
ax.vlines(truth[m, real], 0, 1, color="k", lw=1, label="reference (B3LYP/6-31G(2df,p), QM9)")
ax.vlines(pred[m, real], 0, -1, color="tab:red", lw=1, label="predicted")
ax.axhline(0, color="grey", lw=0.5)
ax.set_xlabel("wavenumber (cm$^{-1}$)")
ax.set_yticks([])
ax.set_title(f"QM9 {int(store.ids[test][m])} ({table.loc[int(store.ids[test][m]), 'smiles']}): "
             f"SIS {sis[m]:.2f}, W1 {w1[m]:.0f} cm$^{{-1}}$")
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()"""),
    md("""## β labels: the published set

The labels live in the repository, one folder per level of theory, as small Parquet shards that every run of
`label_beta` resumes from and extends. Each row carries the level, the program versions and its own cost."""),
    code("""import qmlrp
from qmlrp.labels.records import read_labels

repo = Path(qmlrp.__file__).resolve().parents[2]
labels = read_labels(repo / "labels" / "beta" / "rks-b3lyp5-6-31g")
print(len(labels), "molecules at", labels[["method", "xc", "basis"]].iloc[0].to_dict(),
      "| PySCF", labels["pyscf_version"].iloc[0], "| CPU-s per molecule, median:", round(float(labels["cpu_s"].median()), 1))
labels[["id", "smiles", "n_atoms", "beta_parallel_au", "beta_vec_au", "cpu_s"]].head()"""),
    code("""finite = labels["beta_parallel_au"].dropna()
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(finite, bins=30)
ax.set_xlabel("β∥ (a.u.)")
ax.set_ylabel("molecules")
ax.set_title(f"Published β∥ labels, B3LYP(VWN5)/6-31G (n = {finite.size})")
fig.tight_layout()
print("MAD of beta_parallel (a.u.):", round(float(np.mean(np.abs(finite - finite.mean()))), 2))"""),
    md("""## A β∥ model on the labelled molecules

`beta_data` ingests exactly the labelled molecules from QM9 (by id), featurizes them and splits them into folds;
the β∥ model is the same GC trained by the same `fit()`. Its bar is MAE ≤ 0.3 × MAD of the labels."""),
    code("""from qmlrp.labels.dataset import BetaDataParams, build_beta_data

beta_dir = work / "beta"
build_beta_data(BetaDataParams(labels=str(repo / "labels/beta/rks-b3lyp5-6-31g"), compare=None,
                                              n_folds=5), output=beta_dir, metrics=work / "beta_data.json",
                               basis_table=work / "basis_effect.csv", scratch_root=work / "beta_scratch")
beta_store = FeatureStore.open(beta_dir / "features")
beta_config = replace(config, targets=("beta",), epochs=20)
beta_run, beta_split = fold_run(beta_store, beta_dir / "qm9.parquet", beta_dir / "folds.parquet", "beta", 0, beta_config)
beta_fit = fit(beta_store, [beta_run], beta_config, log=False)[0]
beta_pred = predict_positions(beta_fit.model, beta_store, beta_split.test, 256)
beta_true = beta_run.y[beta_split.test]
mad = float(np.mean(np.abs(beta_run.y - beta_run.y.mean())))
print(f"{len(beta_store)} labelled molecules; fold 0 test MAE {np.mean(np.abs(beta_pred - beta_true)):.1f} a.u.; "
      f"MAD {mad:.1f} a.u.; MAE/MAD {np.mean(np.abs(beta_pred - beta_true)) / mad:.2f}")"""),
    md("""Is a GC at MAE ≈ MAD short of labels, or is it the network? References answer, fitted on the same split
(penalties chosen on the validation molecules): ridge regression on Morgan count fingerprints (topology) and kernel
ridge on Coulomb-matrix eigenvalues (geometry). The same references fitted to QM9's α of the same molecules are the
control: if they learn α from this many molecules, a failure on β∥ is β∥'s. The pipeline's `beta_learning_curve`
stage draws all of them against the number of labels."""),
    code("""from qmlrp.training.baselines import reference_inputs, reference_maes

fingerprints, coulomb = reference_inputs(beta_dir / "qm9.parquet", beta_store.ids)
alpha = pd.read_parquet(beta_dir / "qm9.parquet", columns=["id", "alpha_bohr3"]).set_index("id")["alpha_bohr3"]
alpha = alpha.reindex(beta_store.ids).to_numpy()
reference_rows = {}
for target_name, labels in (("beta_parallel", beta_run.y), ("control: QM9 alpha", alpha)):
    refs = reference_maes(fingerprints, coulomb, labels, beta_run.train, beta_run.validation, beta_split.test)
    labels_mad = float(np.mean(np.abs(labels - labels.mean())))
    reference_rows[target_name] = {f"{k} / MAD": refs[f"{k}_mae"] / labels_mad for k in ("ridge", "krr", "mean")}
reference_rows["beta_parallel"]["GC / MAD"] = float(np.mean(np.abs(beta_pred - beta_true))) / mad
pd.DataFrame(reference_rows).T.round(2)"""),
    md("""## Explaining the frequency model

LRP explains any linear functional of the outputs. Two views of the joint model: ω₁ (output 0) and the whole
spectrum through the sum of each molecule's own real modes (per-molecule coefficients: 1 on its 3N−6 modes,
0 on the padding). Relevance is summarised per feature type as the share of each molecule's total |R|."""),
    code("""from qmlrp.models.inputs import batch_to_inputs
from qmlrp.relevance.compare import cosine, spearman
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import get_rule, stable
from qmlrp.relevance.summary import FEATURE_TYPES, type_shares

batch = store.batch(test)
n_real = np.isfinite(y[test]).sum(1)
views = {"omega1": 0, "mode_sum": (np.arange(81)[None, :] < n_real[:, None]).astype(float)}
lrp = ModelLRP(joint.model)
profiles = {}
for name, output in views.items():
    e = lrp.explain_inputs(batch_to_inputs(batch), {"eps": stable(get_rule("eps"))}, batch.ids, output=output)["eps"]
    print(name, "max relative conservation error:", f"{e.relative_conservation_error().max():.1e}")
    profiles[name] = type_shares(e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, e.n_molecules).mean(0)
frame = pd.DataFrame(profiles, index=list(FEATURE_TYPES))
print("Spearman rho between the two views' type profiles:", round(float(spearman(frame["omega1"].to_numpy(), frame["mode_sum"].to_numpy())), 2))
ax = frame.plot.barh(figsize=(7, 4), title="Frequency model: mean share of |relevance| per feature type (LRP-ε)")
ax.set_xlabel("share of the molecule's total |R| (dimensionless)")
plt.tight_layout()"""),
    md("""The pipeline's `compare_explanations` stage asks the seed's questions on the trained models -- is β∥ explained
like α, are the frequencies explained like ZPVE? -- with Spearman ρ and cosine similarity of these profiles, their
difference to a control property and a bootstrap over molecules for the spread (`studies/qm9-2k/metrics/compare_explanations.json`)."""),
]

cells += [
    md("""## On all of QM9

The full study (`studies/qm9-full`) trains the same two frequency models -- all 81 modes, and ω₁ alone -- on the
nine other folds of all of QM9 (fold 0 held out, 12 epochs, the α/ZPVE protocol) and records them in
`metrics/evaluate_spectra.json`. When that record is in this checkout, the cells below set it beside the small
default's (`metrics/evaluate.json`, 2,000 molecules); the ω₁ bar is 3.15 cm⁻¹."""),
    code("""import json

study = Path("studies/qm9-full")
spectra_record = study / "metrics" / "evaluate_spectra.json"
have_study = spectra_record.exists()
if not have_study:
    print("no full-QM9 record here: cd studies/qm9-full && dvc repro evaluate_spectra")
else:
    full, small = json.loads(spectra_record.read_text()), json.loads(Path("metrics/evaluate.json").read_text())

    def row(record):
        f, j = record["frequencies"], record["omega1_joint_vs_separate"]
        return {"folds": f["n_folds"], "MAE, all real modes (cm^-1)": f["mae_mean"], "MAE / MAD": f["mae_over_mad"],
                "omega1, joint model (cm^-1)": j["joint_mae_mean"], "omega1, omega1-only model (cm^-1)":
                j["separate_mae_mean"], "mean SIS": f["spectrum"]["sis_mean"],
                "mean Wasserstein-1 (cm^-1)": f["spectrum"]["wasserstein1_mean"]}

    display(pd.DataFrame({"all of QM9": row(full), "small default": row(small)}).round(3))"""),
    code("""if have_study:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for label, path in [("all of QM9, fold 0", study / "plots" / "evaluate_spectra" / "frequencies_per_mode.csv"),
                        ("small default", Path("plots/evaluate/frequencies_per_mode.csv"))]:
        modes = pd.read_csv(path)
        ax.plot(modes["mode"], modes["mae"], marker=".", label=label)
    ax.axhline(3.15, color="k", ls="--", lw=0.8, label="ω₁ bar, 3.15 cm$^{-1}$")
    ax.set_yscale("log")
    ax.set_xlabel("mode index (1 = highest frequency)")
    ax.set_ylabel("test MAE (cm$^{-1}$)")
    ax.set_title("81-output frequency model: test MAE per mode index")
    ax.legend(fontsize=8)
    fig.tight_layout()"""),
    md("""Are the frequencies explained like ZPVE rather than like α? The study's `compare_folds` stage measures the
Spearman ρ of the type profiles (LRP-ε) of the frequency views with those of the ten retrained ZPVE and α models;
Δ = ρ(with ZPVE) − ρ(with α) > 0 supports the seed's hypothesis, and its spread is over retrained models."""),
    code("""if have_study:
    folds = json.loads((study / "metrics" / "compare_folds.json").read_text())
    display(pd.DataFrame({name: {"Δ Spearman, mean": c["spearman"]["delta"]["mean"],
                                 "sd over folds": c["spearman"]["delta"]["sd"],
                                 "share of folds with Δ > 0": c["spearman"]["share_of_folds_delta_above_0"],
                                 "folds": len(c["folds"])}
                          for name, c in folds["comparisons"].items()}).T.round(3))"""),
]
cells += [
    md("""## β∥ from vectors: the equivariant head

β∥ = (3/5) β_vec·μ̂ is the projection of one vector on another; about half of its spread is the angle between
them. A model that sees only invariant features cannot know that angle, and the invariant GC above stays near the
MAD. The equivariant head (`models/vector_head.py`) predicts μ and β_vec as sums of learned per-atom scalars
times the atoms' positions (and, with bond dipoles, per-pair weights along the bond directions), so the vectors
turn with the molecule by construction, and β∥ is derived from them. First that promise, on an untrained model:
rotating and translating a molecule rotates both vectors and leaves β∥ alone."""),
    code("""from scipy.spatial.transform import Rotation

from qmlrp.models.config import ModelConfig
from qmlrp.models.equivariant import build_vector_model
from qmlrp.models.inputs import COORDINATES_KEY, molecule_inputs
from qmlrp.targets.vectors import parallel_from_vectors

vector_model = build_vector_model(ModelConfig(depth=2, atom_width=16, pair_width=16, atom_hidden=16, pair_hidden=16,
                                              embedding_width=16, head_units=(16,), pair_head_units=(16,)), metadata={})
weights_rng = np.random.default_rng(0)
for w in vector_model.trainable_weights:  # random weights (an untrained head starts at 0: nothing to turn)
    w.assign(weights_rng.normal(0, 0.3, w.shape).astype(np.float32))
vector_model.head.scaling.set_scales([1.0, 30.0])  # a.u.: dipole- and beta-sized
mol_inputs = molecule_inputs(store, np.arange(4))
rotation = Rotation.random(random_state=0).as_matrix()
turned = dict(mol_inputs)
turned[COORDINATES_KEY] = (mol_inputs[COORDINATES_KEY] @ rotation.T + np.array([3.0, -1.0, 2.0])).astype(np.float32)
v = np.asarray(vector_model(mol_inputs, training=False), np.float64)
v_turned = np.asarray(vector_model(turned, training=False), np.float64)
expected = np.concatenate([v[:, :3] @ rotation.T, v[:, 3:] @ rotation.T], axis=1)
print(f"rotated vectors vs rotation of the vectors, max |difference| / max |vector|: "
      f"{np.abs(v_turned - expected).max() / np.abs(v).max():.1e}")
print(f"beta_par before and after, max |difference|: "
      f"{np.abs(parallel_from_vectors(v_turned) - parallel_from_vectors(v)).max():.1e} a.u.")"""),
    md("""The pipeline's record on the 1,026 labelled molecules (`studies/qm9-2k`, the 10 folds of `train_beta`):
the invariant GC, the equivariant *linear* model (the same vector construction with q_a linear in the atom's
features: what the network has to beat) and the equivariant GC, trained as a 5-network seed ensemble per fold
(`train_beta_vector.members`), β∥ derived from the averaged vectors. The bar is β∥ MAE ≤ 0.5 × MAD (10-fold
mean)."""),
    code("""record = Path("studies/qm9-2k/metrics/beta_vector.json")
vectors = json.loads(record.read_text())
rows = {}
invariant = vectors["invariant_gc"]  # the invariant beta_par models' record: their fold results, or evaluate.json's entry
invariant_ratio = invariant.get("beta_parallel_mae_over_mad_fold_mean", invariant.get("mae_over_mad"))
rows["invariant GC"] = {"beta_par MAE/MAD (fold mean)": invariant_ratio, "sd over folds": None,
                        "sign right": invariant.get("beta_parallel_sign_accuracy"), "|mu| MAE/MAD": None,
                        "|beta_vec| MAE/MAD": None}
for name, key in (("equivariant linear", "equivariant_linear"), ("equivariant GC", "equivariant_gc")):
    r = vectors[key]
    rows[name] = {"beta_par MAE/MAD (fold mean)": r["beta_parallel_mae_over_mad_fold_mean"],
                  "sd over folds": r["beta_parallel_mae_over_mad_fold_sd"],
                  "sign right": r["pooled"]["beta_parallel_sign_accuracy"],
                  "|mu| MAE/MAD": r["pooled"]["mu_norm"]["mae_over_mad"],
                  "|beta_vec| MAE/MAD": r["pooled"]["beta_vec_norm"]["mae_over_mad"]}
print("equivariant table (10-fold, 1,026 labels); bar 0.5 x MAD; passes:", vectors.get("passes_bar"))
display(pd.DataFrame(rows).T.round(3))
folds = sorted(vectors["equivariant_gc"]["per_fold"], key=int)
fig, ax = plt.subplots(figsize=(7, 3))
width = 0.4
for offset, (name, key) in zip((-width / 2, width / 2), (("equivariant linear", "equivariant_linear"),
                                                          ("equivariant GC (5-network ensemble)", "equivariant_gc"))):
    ratios = [vectors[key]["per_fold"][k]["beta_parallel"]["mae_over_mad"] for k in folds]
    ax.bar(np.arange(len(folds)) + offset, ratios, width, label=name)
ax.axhline(invariant_ratio, color="grey", lw=1, label="invariant GC (10-fold)")
ax.axhline(vectors["bar_beta_parallel_mae_over_mad"], color="k", ls="--", lw=0.8, label="bar 0.5 × MAD")
ax.set_xticks(np.arange(len(folds)), [f"fold {k}" for k in folds], fontsize=7)
ax.set_ylabel("β∥ test MAE / MAD (dimensionless)")
ax.set_title("β∥ per fold: invariant vs equivariant models (1,026 labels)")
ax.set_ylim(0, 1.3)
ax.legend(fontsize=7, loc="upper center", ncol=2)
fig.tight_layout()"""),
    md("""What does LRP say? With μ̂ fixed per molecule, β∥ is linear in the head's per-atom scalars, so each atom's part
is exact, and LRP-ε carries it to the input features (the ensemble's relevance is the mean of its members', for
the ensemble's μ̂). The seed's hypothesis: β∥'s feature-type profile is closer to α's than to ZPVE's
(`studies/qm9-2k/metrics/explain_beta_vector.json`; Δ = similarity with α − similarity with ZPVE, bootstrap over
molecules)."""),
    code("""explained = json.loads(Path("studies/qm9-2k/metrics/explain_beta_vector.json").read_text())
profiles = pd.DataFrame(explained["profiles"])[["beta_vector", "alpha", "zpve"]].rename(columns={
    "beta_vector": "β∥ (equivariant 5-network ensembles, 10 test folds)", "alpha": "α (fold-0 model)",
    "zpve": "ZPVE (fold-0 model)"})
ax = profiles.plot.barh(figsize=(7, 4.5), title="studies/qm9-2k: mean share of |relevance| per feature type (LRP-ε)")
ax.set_xlabel("share of the molecule's total |R| (dimensionless)")
plt.tight_layout()
h = explained["hypothesis_beta_vector"]
for measure in ("spearman", "cosine"):
    d = h[measure]
    print(f"{measure}: with alpha {d['with_similar']['value']:.3f}, with ZPVE {d['with_control']['value']:.3f}, "
          f"delta {d['delta']['value']:+.3f} [{d['delta']['p2_5']:+.3f}, {d['delta']['p97_5']:+.3f}]")"""),
]
nb = nbf.v4.new_notebook()
nb["cells"] = cells
nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/03_frequencies_and_beta.ipynb")
