"""Writes notebooks/02_explanations.ipynb (kept as a script so the notebook's source is reviewable).

Run ``python notebooks/make_02.py`` after editing; tests/relevance/test_notebook_02.py executes the
notebook on its small sample."""
import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
    md("""# 2 · Explaining a Weave GC model with layer-wise relevance propagation

LRP splits one prediction -- here the polarizability α in a₀³ -- into contributions of the input features:
21 per atom and 13 per atom pair. This notebook trains a deliberately tiny model on 300 QM9 molecules
(a minute on a laptop; the numbers are for illustration, not for conclusions) and shows

1. how LRP **walks the model's own recorded forward pass**, with one relevance function per layer type;
2. **conservation**: prediction = inputs + target mean + biases/stabilisers, per molecule;
3. why the default composite puts **LRP-ε at the embedding and the output unit** (float32 stability, no empty
   explanations);
4. the **pictures** (atoms and bonds, signed colour bar in a₀³) and the **per-type shares**;
5. explaining a **linear functional of a vector output**."""),
    code("""import inspect
import tempfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from IPython.display import Image, display

from qmlrp.data.ingest import ingest
from qmlrp.data.split import split
from qmlrp.features.featurize import featurize_table
from qmlrp.features.store import FeatureStore

keras.utils.set_random_seed(0)
work = Path(tempfile.mkdtemp(prefix="qmlrp-nb02-"))
ingest("qm9pack", work / "qm9.parquet", work / "rejects.csv", work / "ingest.json", limit=300, seed=2)
featurize_table(work / "qm9.parquet", work / "features", work / "failures.csv", work / "featurize.json",
                workers=1, chunk_size=300, scratch_root=work / "scratch")
store = FeatureStore.open(work / "features")
table = pd.read_parquet(work / "qm9.parquet").set_index("id")
alpha = table.loc[store.ids, "alpha_bohr3"].to_numpy()
len(store), alpha.mean().round(2)"""),
    md("""## A tiny model, trained for a few epochs

The same `build_model` as the pipeline, narrower. Inputs are scaled and the output starts at the target mean,
as in training (`qmlrp.training`); plain `keras.Model.fit` is enough here."""),
    code("""from qmlrp.models.config import ModelConfig
from qmlrp.models.gc import build_model
from qmlrp.models.inputs import batch_to_inputs

model = build_model(ModelConfig(atom_width=16, pair_width=16, atom_hidden=16, pair_hidden=16,
                                embedding_width=32, head_units=(64,)))
everything = store.batch(np.arange(len(store)))
model.input_layer.adapt(everything.atom_features, everything.pair_features)
model.head.target_scaling.set_statistics(alpha.mean(), alpha.std())
rng = np.random.default_rng(0)
order = rng.permutation(len(store))
train, test = order[:250], order[250:]

def batches(positions, size=25):
    while True:
        for k in range(0, len(positions), size):
            chunk = positions[k:k + size]
            yield batch_to_inputs(store.batch(chunk)), alpha[chunk, None].astype("float32")

model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mae")
model.fit(batches(train), steps_per_epoch=10, epochs=12, verbose=0)
predicted = np.asarray(model(batch_to_inputs(store.batch(test)), training=False))[:, 0]
print(f"test MAE {np.abs(predicted - alpha[test]).mean():.2f} a0^3 (target sd {alpha.std():.2f})")"""),
    md("""## 1 · The recorded forward pass is the layer graph LRP walks

`model.record(inputs)` runs the one forward pass of the model in inference mode and records every layer call:
the layer, its input and output tensors, and extras such as pre-activations. LRP needs nothing else -- which
tensor fed which layer is read off the record, so branches (pair features feed both P→A and P→P) add up where
they meet. Layer types with a registered relevance function are leaves; any other recorded part (weave
module, head) is walked through its children."""),
    code("""from qmlrp.relevance import walk
from qmlrp.relevance.model_lrp import ModelLRP

batch = store.batch(test[:6])
inputs = batch_to_inputs(batch)
record = model.record(inputs)
rows = [{"path": r.path, "layer type": type(r.layer).__name__,
         "relevance": "function" if walk.spec_for(r.layer) else "walk children",
         "output shape": tuple(np.shape(r.outputs)) if not isinstance(r.outputs, tuple) else "(atoms, pairs)"}
        for r in record.walk()[1:]]
pd.DataFrame(rows)"""),
    md("""Each layer type's relevance function is small. The P→A sum, for example (each pair receives its share of
the relevance of the two atom sums it entered) -- adding a layer type to the model means one model file and
one function like this:"""),
    code("""from qmlrp.relevance import layer_rules
print(inspect.getsource(layer_rules.pair_to_atom_sum))"""),
    md("""## 2 · Conservation, molecule by molecule

The explained quantity is the prediction in a₀³. What does not reach the 34 input features is *absorbed*: by the
target mean (the output is `z·sd + mean`), by the network biases and by the stabilisers. The four columns add up
to the prediction; the conservation error is what they miss."""),
    code("""from qmlrp.relevance.rules import get_rule, stable, stable_composites

lrp32 = ModelLRP(model)
rules = stable_composites(["lrp0", "eps", "ab10", "ab21"])
explained = lrp32.explain_inputs(inputs, rules, batch.ids)
e = explained["eps"]
pd.DataFrame({"id": batch.ids, "predicted": e.output, "inputs": e.input_total(), "target mean": e.absorbed_mean,
              "biases + stabilisers": e.absorbed - e.absorbed_mean, "inputs share": e.input_share(),
              "conservation error": e.conservation_error()}).round({"predicted": 3, "inputs": 3, "target mean": 3,
                                                                    "biases + stabilisers": 3, "inputs share": 3})"""),
    md("""## 3 · Why LRP-ε at the embedding and the output unit

LRP-0 divides each unit's relevance by its pre-activation. The per-atom embedding is batch-normalised (≈ N(0, 1)
per feature) and the output unit is a standardised target, so some denominators pass within rounding of zero and
float32 differs from float64 without bound. `ModelLRP(model, dtype="float64")` runs a float64 copy of the model
(BatchNorm fold included). The plain LRP-ab(1,0) (and z⁺) find *no* positive contribution at the output unit of
some molecules: their explanation is empty, which the metrics count and the pictures flag. The default
composite (`stable`) uses LRP-ε on those two layers and the chosen rule everywhere else."""),
    code("""lrp64 = ModelLRP(model, dtype="float64")
everything_inputs = batch_to_inputs(everything)
plain = {"lrp0": get_rule("lrp0"), "ab10": get_rule("ab10")}
default = {name + " (default composite)": stable(rule) for name, rule in plain.items()}
e32 = lrp32.explain_inputs(everything_inputs, {**plain, **default}, everything.ids)
e64 = lrp64.explain_inputs(everything_inputs, {**plain, **default}, everything.ids)

def worst_error(a, b):
    errors = []
    for m in range(a.n_molecules):
        x32 = np.concatenate([a.molecule(m)[0].ravel(), a.molecule(m)[1].ravel()])
        x64 = np.concatenate([b.molecule(m)[0].ravel(), b.molecule(m)[1].ravel()])
        errors.append(np.abs(x32 - x64).max() / max(np.abs(x64).max(), 1e-300))
    return np.array(errors)

pd.DataFrame([{"rule": name, "float32 vs float64: median": np.median(err := worst_error(e32[name], e64[name])),
               "99th percentile": np.quantile(err, 0.99), "empty explanations": int(e32[name].empty().sum()),
               "median share reaching the inputs": np.nanmedian(e32[name].input_share())}
              for name in e32])"""),
    md("""## 4 · Pictures and per-type shares

Atoms are coloured by the relevance of their own features, bonds by that of the pair features (non-bonded pairs
are summed under the picture). One signed scale in a₀³ is shared by the molecules drawn, so they can be compared;
`qmlrp explain molecule.xyz --target alpha` draws the same figure for your own XYZ or SDF files."""),
    code("""from qmlrp.features.molecule import build_molecule
from qmlrp.relevance.explain import molecule_picture
from qmlrp.relevance.plots import molecule_figure

e = explained["eps"]
pictures, mols = [], []
for m, mol_id in enumerate(batch.ids[:2]):
    row = table.loc[int(mol_id)]
    mol, _ = build_molecule(np.asarray(row["atomic_numbers"]), np.asarray(row["coordinates"]).reshape(-1, 3),
                            row["smiles"])
    mols.append(mol)
    pictures.append(molecule_picture(e, m, f"QM9 {mol_id} ({row['smiles']})", "alpha", "bohr^3",
                                     rules["eps"].describe(), float(row["alpha_bohr3"])))
scale = max(p.scale() for p in pictures)
for mol, picture, mol_id in zip(mols, pictures, batch.ids):
    molecule_figure(mol, picture, work / f"{mol_id}.png", scale=scale)
    display(Image(filename=str(work / f"{mol_id}.png"), width=520))"""),
    md("""Per feature type, the plain share of each molecule's |relevance| (non-negative, the 12 types sum to 1), averaged
over molecules. The explain stage writes these next to the study's dataset-normalised signed and absolute
summaries (`plots/explain/<target>/types.csv`)."""),
    code("""from qmlrp.relevance.summary import FEATURE_TYPES, type_shares

e = e32["lrp0 (default composite)"]
shares = type_shares(e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, e.n_molecules)
pd.Series(shares.mean(0), index=FEATURE_TYPES).sort_values(ascending=False).round(3)"""),
    md("""## 5 · Vector outputs: any unit, any linear functional

For a model with several outputs (e.g. 81 frequencies), `output=k` explains unit k and `output=c` the functional
Σ c_k y_k (e.g. the sum of frequencies, ≈ 2·ZPVE/h). LRP is linear in the start relevance, so the functional's
explanation is the same combination of the per-unit explanations. Our model has one output, so `output=[2.0]`
explains 2α:"""),
    code("""twice = lrp64.explain(batch, stable(get_rule("eps")), output=[2.0])
once = lrp64.explain(batch, stable(get_rule("eps")))
print(np.allclose(twice.atoms, 2 * once.atoms), np.allclose(twice.output, 2 * once.output))"""),
    md("""## 6 · The same questions on all of QM9

Everything above ran on a toy. The full study (`studies/qm9-full`) explains every published model -- α and
ZPVE, 10 folds, each on its own 13,084 held-out molecules -- and the Crippen model trained on all of QM9, and
commits the record. When that record is in this checkout, the cells below read it beside the small default's
(`metrics/explain_<target>.json` of the root pipeline); otherwise they say what to run."""),
    code("""import json
import matplotlib.pyplot as plt

study = Path("studies/qm9-full")
folds_record = study / "metrics" / "compare_folds.json"
have_study = folds_record.exists()
if not have_study:
    print("no full-QM9 record here: cd studies/qm9-full && dvc repro compare_folds explain_crippen")
else:
    record = json.loads(folds_record.read_text())
    rows = []
    for target, verdict in record["geometric_vs_electronic"].items():
        small = json.loads(Path(f"metrics/explain_{target}.json").read_text())["rules"][record["rule"]]["hypothesis"]
        rows.append({"target": target, "predicted higher": verdict["predicted_higher"],
                     "full QM9: holds in folds": f"{verdict['holds_in_folds']} of {len(verdict['folds'])}",
                     "small default: observed higher": small["observed_higher"],
                     "small default: holds": small["holds"]})
    display(pd.DataFrame(rows))"""),
    md("""Each type's mean share of |R| (LRP-ε) over the ten retrained models, with its spread over folds, beside the
single small-default model. The spread over retrained models is the honest error bar for a claim about "the
model": a bootstrap over molecules of one model would hide it."""),
    code("""if have_study:
    profiles = pd.read_csv(study / "plots" / "compare_folds" / "profiles.csv")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, target in zip(axes, ["alpha", "zpve"]):
        full = profiles[profiles.explanation == target].set_index("type").loc[list(FEATURE_TYPES)]
        small = json.loads(Path(f"metrics/explain_{target}.json").read_text())["rules"]["eps"]["share_means"]
        x = np.arange(len(FEATURE_TYPES))
        ax.bar(x - 0.2, full.mean_share, 0.4, yerr=full.sd_over_folds, capsize=2,
               label=f"all of QM9, mean ± sd over {int(full.n_folds.iloc[0])} folds")
        ax.bar(x + 0.2, [small[t] for t in FEATURE_TYPES], 0.4, label="small default (2,000 molecules, 1 model)")
        ax.set_xticks(x, FEATURE_TYPES, rotation=60, ha="right")
        ax.set_title(f"{target}: mean share of |relevance| per feature type (LRP-ε)")
    axes[0].set_ylabel("share of |R| (12 types sum to 1)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(work / "full_qm9_profiles.png", dpi=90)  # the pipeline's plots use the Agg backend
    plt.close(fig)
    display(Image(filename=str(work / "full_qm9_profiles.png")))"""),
    md("""Faithfulness of the fold-0 models (AOPC: mean drop of the prediction, in the target's units, as the most
relevant atoms or feature types are removed first; higher = the ranking finds what the model uses), and
agreement with Crippen's known per-atom logP contributions (Kendall τ per molecule; the goal is 0.5)."""),
    code("""if have_study:
    rows = []
    for target in ["alpha", "zpve"]:
        faith = json.loads((study / "metrics" / "explain" / "fold0" / f"explain_{target}.json").read_text())
        for level in ["atoms", "types"]:
            rows.append({"model": f"{target}, fold 0", "removed": level,
                         **{m: v["aopc"] for m, v in faith["faithfulness"][level].items()}})
    display(pd.DataFrame(rows).round(3))
    full_tau = json.loads((study / "metrics" / "explain_crippen.json").read_text())["kendall_tau"]
    small_tau = json.loads(Path("metrics/explain_crippen.json").read_text())["kendall_tau"]
    display(pd.DataFrame({"all of QM9: mean τ": {m: v["tau_mean"] for m, v in full_tau.items()},
                          "all of QM9: molecules": {m: v["n"] for m, v in full_tau.items()},
                          "small default: mean τ": {m: v["tau_mean"] for m, v in small_tau.items()},
                          "small default: molecules": {m: v["n"] for m, v in small_tau.items()}}).round(3))"""),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
nbf.write(nb, "notebooks/02_explanations.ipynb")
