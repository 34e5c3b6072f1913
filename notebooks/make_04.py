"""Writes notebooks/04_autoencoder.ipynb (kept as a script so the notebook's source is reviewable).

Run ``python notebooks/make_04.py`` after editing; tests/training/test_autoencoder.py executes the
notebook on its small sample."""
import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# 4 · A tied-weight denoising autoencoder on the Molecular Graph

The flattened Molecular Graph -- 21 features for each of 29 atom slots and 13 for each of the 406 atom pairs,
5887 values -- is compressed by a denoising autoencoder (DAE) `5887-136-68-136-5887` whose decoder uses the
encoder's kernels transposed. This notebook runs every part of the `autoencoder` stage on 300 QM9 molecules
(minutes on a laptop; the numbers illustrate, they do not conclude):

1. the **column scaling** and the **tied weights**;
2. **reconstruction per feature type** against a PCA with the same 68 components;
3. the DAE in front of a trained Weave model: **frozen and fine-tuned** vs the plain model;
4. **LRP onto the 68 code units**, conservation, and what a unit encodes;
5. the reconstruction error as an **applicability-domain score**."""),
    code("""from qmlrp.training.backend import use_jax_backend

use_jax_backend()  # before Keras loads: the DAE trains in the engine's loop, which runs Keras on JAX

import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from qmlrp.data.ingest import ingest
from qmlrp.data.split import split
from qmlrp.features.featurize import featurize_table
from qmlrp.features.store import FeatureStore
from qmlrp.training.autoencoder import AutoencoderParams, fold_positions

keras.utils.set_random_seed(0)
work = Path(tempfile.mkdtemp(prefix="qmlrp-nb04-"))
ingest("qm9pack", work / "qm9.parquet", work / "rejects.csv", work / "ingest.json", limit=300, seed=4)
featurize_table(work / "qm9.parquet", work / "features", work / "failures.csv", work / "featurize.json",
                workers=1, chunk_size=300, scratch_root=work / "scratch")
split(work / "features", work / "folds.parquet", work / "split.json", n_folds=10, seed=4)
store = FeatureStore.open(work / "features")
train, test = fold_positions(store, work / "folds.parquet", 0)
alpha = pd.read_parquet(work / "qm9.parquet").set_index("id").loc[store.ids, "alpha_bohr3"].to_numpy()
len(train), len(test)"""),
    md("""## 1 · Scaling and tied weights

Only the two continuous features are standardised -- the Gasteiger charge (e) and the distance (Å) -- on real
entries of the training molecules; one-hot, binary and count columns stay as they are and padding stays 0.
The DAE has one parameter set: two kernels and four biases."""),
    code("""from qmlrp.training.autoencoder import train_autoencoder

p = AutoencoderParams(epochs=40, batch_size=32, noise_sd=0.1)
dae, losses = train_autoencoder(store, train, p)
print(dae.scaling)
print([w.path for w in dae.weights])
print("decoder kernel is the encoder kernel:", dae.decoder1.tied_to.kernel is dae.encoder1.kernel)
print(f"training loss {losses[0]:.4f} -> {losses[-1]:.4f} (MSE, scaled units)")"""),
    md("""## 2 · Reconstruction per feature type, DAE vs PCA (68 components)

R² and MAE over the real atoms and pairs of the held-out fold, in the features' own units."""),
    code("""from qmlrp.training.autoencoder import fit_pca, reconstruction_scores

pca = fit_pca(store, train, dae.scaling, 68)
dae_scores, pca_scores = reconstruction_scores(dae, pca, store, test)
pd.DataFrame({"DAE R²": dae_scores.r2, "PCA R²": pca_scores.r2, "DAE MAE": dae_scores.mae,
              "PCA MAE": pca_scores.mae}).round(3)"""),
    code("""import matplotlib.pyplot as plt

scores = pd.DataFrame({"DAE": dae_scores.r2, "PCA (68 components)": pca_scores.r2})
ax = scores.plot.barh(figsize=(7, 4.5), color=["tab:orange", "tab:blue"])
ax.set_xlabel("R² of the reconstruction on the held-out fold (1 = perfect)")
ax.set_title("Reconstruction per feature type: tied-weight DAE vs PCA, same code size")
ax.set_xlim(min(0.0, float(scores.min().min())), 1.0); ax.invert_yaxis(); plt.tight_layout()"""),
    md("""With 270 training molecules, PCA's 68 components nearly span the training set, so PCA is the strong baseline
here; the stage's numbers (2,000 molecules) are in `metrics/autoencoder.json`.

## 3 · The DAE in front of a Weave model

A tiny Weave model is trained on the same training folds; the combined model feeds it the *reconstructed* MG
(padded forward pass, the molecule's real atom mask). Fine-tuning trains the DAE through the supervised loss
with the Weave model frozen."""),
    code("""from qmlrp.models.autoencoder import save_autoencoder
from qmlrp.models.config import ModelConfig
from qmlrp.models.gc import build_model
from qmlrp.models.inputs import batch_to_inputs
from qmlrp.stages.combined import combined_mae, finetune

weave = build_model(ModelConfig(atom_width=16, pair_width=16, atom_hidden=16, pair_hidden=16,
                                embedding_width=32, head_units=(64,)))
everything = store.batch(train)
weave.input_layer.adapt(everything.atom_features, everything.pair_features)
weave.head.target_scaling.set_statistics(alpha[train].mean(), alpha[train].std())

def batches(positions, size=27):
    while True:
        for k in range(0, len(positions), size):
            chunk = positions[k:k + size]
            yield batch_to_inputs(store.batch(chunk)), alpha[chunk, None].astype("float32")

weave.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mae")
weave.fit(batches(train), steps_per_epoch=10, epochs=12, verbose=0)
save_autoencoder(dae, work / "dae.npz")
plain, _ = combined_mae(dae, weave, store, test, alpha, use_autoencoder=False)
frozen, _ = combined_mae(dae, weave, store, test, alpha)
tuned_dae = finetune(work / "dae.npz", weave, store, train, alpha, AutoencoderParams(finetune_epochs=2, batch_size=32))
tuned, _ = combined_mae(tuned_dae, weave, store, test, alpha)
print(f"test MAE (a0^3): plain {plain:.2f}, DAE frozen {frozen:.2f}, DAE fine-tuned {tuned:.2f}")"""),
    md("""## 4 · LRP onto the code

The project's LRP gives the relevance of every feature of the Weave model's input -- the reconstructed MG. LRP-ε
continues it through the decoder's two dense layers to the 68 code units (the column scaling folded into the
last layer). Per molecule: prediction = Σ code relevance + what the decoder and the Weave model absorbed."""),
    code("""from qmlrp.models.autoencoder import FEATURE_TYPES, column_types
from qmlrp.features.dense import flatten
from qmlrp.relevance.code import correlations, descriptors, explain_code
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import get_rule, stable_composites

batch = store.batch(test)
e = explain_code(dae, ModelLRP(weave), batch, flatten(batch), store.n_atoms[test],
                 stable_composites(["eps"])["eps"], get_rule("eps"), column_types())
print("max conservation error (a0^3):", float(e.conservation_error().max()))
top = np.argsort(-np.abs(e.r_code).mean(0))[:5]
pd.DataFrame({"mean |R|": np.abs(e.r_code).mean(0)[top], "mean R": e.r_code.mean(0)[top]}, index=top).round(3)"""),
    md("""What the top units encode: each unit's relevance pushed on down through the encoder onto the 12 feature types,
and the unit's correlation with a few descriptors."""),
    code("""meaning = pd.DataFrame(e.unit_types.mean(0)[top], index=top, columns=FEATURE_TYPES)
corr = pd.DataFrame(correlations(e.code, descriptors(batch)), index=range(e.code.shape[1])).loc[top]
display(meaning.round(3))
corr.round(2)"""),
    md("""## 5 · The reconstruction error as an applicability-domain score

Threshold: the 99.9th percentile of the training molecules' errors. Held-out QM9 molecules against the same
molecules with distorted geometries and RDKit-embedded molecules with 10+ heavy atoms (naphthalene, ...)."""),
    code("""from qmlrp.training.autoencoder import auroc, distorted_store, embed_outside, errors_of, flat_of_graphs

threshold = np.percentile(errors_of(dae, store, train), 99.9)
held_out = errors_of(dae, store, test)
distorted = distorted_store(store, test, 0.5, 0)
bent = errors_of(dae, distorted, np.arange(len(distorted)))
names, graphs = embed_outside(["c1ccc2ccccc2c1", "CC(=O)Nc1ccc(O)cc1", "c1ccc(cc1)-c1ccccc1"], 0)
outside = dae.reconstruction_error(*flat_of_graphs(graphs))
print(f"threshold {threshold:.4f}; flagged: held-out {np.mean(held_out > threshold):.2f}, "
      f"distorted {np.mean(bent > threshold):.2f}, outside {np.mean(outside > threshold):.2f}")
print(f"AUROC held-out vs distorted (0.5 A) {auroc(held_out, bent):.2f}, vs outside {auroc(held_out, outside):.2f}")"""),
    code("""fig, ax = plt.subplots(figsize=(7, 3.8))
bins = np.logspace(np.log10(min(held_out.min(), bent.min(), outside.min())), np.log10(max(bent.max(), outside.max())), 30)
ax.hist(held_out, bins=bins, alpha=0.6, label="held-out QM9")
ax.hist(bent, bins=bins, alpha=0.6, label="same molecules, distorted by 0.5 Å")
ax.hist(outside, bins=bins, alpha=0.9, label="outside QM9 (10+ heavy atoms)")
ax.axvline(threshold, color="k", ls="--", label="threshold (99.9th pct of training)")
ax.set_xscale("log"); ax.set_xlabel("reconstruction error (mean squared, scaled units)"); ax.set_ylabel("molecules")
ax.set_title("The DAE's reconstruction error as an applicability-domain score"); ax.legend(fontsize=8); plt.tight_layout()"""),
    md("""## 6 · On all of QM9

The full study (`studies/qm9-full`, stage `autoencoder`) trains the same DAE on the nine training folds of all
of QM9 and combines it with the published fold-0 models. When its record is in this checkout, the cells below set
it beside the small default's (`metrics/autoencoder.json`, 1,800 training molecules): reconstruction R² per
feature type against the 68-component PCA, the applicability-domain AUROCs, and the combined models' test MAE."""),
    code("""import json

study = Path("studies/qm9-full")
small = json.loads(Path("metrics/autoencoder.json").read_text())
full_path = study / "metrics" / "autoencoder.json"
full = json.loads(full_path.read_text()) if full_path.exists() else None
if full is None:
    print("no full-QM9 autoencoder record here yet: cd studies/qm9-full && dvc repro autoencoder "
          "(queued behind the study's training; the small default's record follows)")
records = {"small default": small, **({"all of QM9": full} if full else {})}
frame = pd.DataFrame({(name, f"{model} R²"): {t: v[f"{model.lower()}_r2"] for t, v in r["reconstruction"].items()}
                      for name, r in records.items() for model in ("DAE", "PCA")})
frame.round(3)"""),
    code("""rows = {}
for name, r in records.items():
    d = r["domain"]
    rows[name] = {"training molecules": r["train_molecules"], **{f"AUROC vs {k}": v for k, v in
                  d["auroc_heldout_vs_distorted"].items()}, "AUROC vs outside QM9": d["auroc_heldout_vs_outside"]}
    combined_path = (study / "metrics" if name == "all of QM9" else Path("metrics")) / "autoencoder_combined.json"
    for target, c in json.loads(combined_path.read_text())["targets"].items():
        for variant in ("plain", "frozen", "finetuned"):
            rows[name][f"{target}: MAE {variant} ({c['units']})"] = c[f"mae_{variant}"]
pd.DataFrame(rows).round(4)"""),

]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
nbf.write(nb, "notebooks/04_autoencoder.ipynb")
