"""The autoencoder stage: params, the PCA baseline against an independent computation, AUROC, the
combined models of vector targets (padding masked), and the stage end to end on the tiny pipeline
(60 molecules, the 2-epoch Weave models of conftest, tiny omega1/frequencies/beta models and a tiny
beta store of other molecules)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qmlrp.errors import QmlrpError
from qmlrp.training.autoencoder import (AutoencoderParams, auroc, fit_pca, fit_scaling, flat_batches, fold_positions,
                                       seeded_subset)


def write_params(root: Path, **values: object) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"autoencoder": values}))
    return path


def test_params(tmp_path) -> None:
    p = AutoencoderParams.load(write_params(tmp_path))
    assert (p.fold, p.pca_components, p.code, p.hidden, p.ood_percentile) == (0, 68, 68, 136, 99.9)
    with pytest.raises(QmlrpError, match="did you mean 'noise_sd'"):
        AutoencoderParams.load(write_params(tmp_path, noise_s=0.1))
    with pytest.raises(QmlrpError, match="epochs"):
        AutoencoderParams.load(write_params(tmp_path, epochs=0))
    with pytest.raises(QmlrpError, match="unknown 'gap'"):
        AutoencoderParams.load(write_params(tmp_path, targets=["alpha", "gap"]))
    repo = AutoencoderParams.load(Path(__file__).resolve().parents[2] / "params.yaml")
    assert repo.fold == 0 and repo.pca_components == 68
    assert (repo.model_dirs, repo.pca_molecules, repo.lrp_molecules) == ({}, None, None)  # the root: models/, all


def test_params_model_dirs_and_subsets(tmp_path) -> None:
    """model_dirs maps combined targets to folders (one clear line otherwise); subset sizes are >= 1."""
    p = AutoencoderParams.load(write_params(tmp_path, targets=["alpha", "omega1"], model_dirs={"omega1": "m/s"}))
    assert p.model_dirs == {"omega1": "m/s"}
    bad = {"unknown target": ({"gap": "m"}, r"autoencoder\.model_dirs: 'gap' not among the targets"),
           "not a string": ({"omega1": 3}, r"autoencoder\.model_dirs\.omega1: expected a string"),
           "empty": ({"omega1": " "}, r"autoencoder\.model_dirs: empty folder for 'omega1'"),
           "not a mapping": (["omega1"], r"autoencoder\.model_dirs: expected a mapping")}
    for value, message in bad.values():
        with pytest.raises(QmlrpError, match=message) as err:
            AutoencoderParams.load(write_params(tmp_path, targets=["alpha", "omega1"], model_dirs=value))
        assert "\n" not in str(err.value)
    for key in ("pca_molecules", "lrp_molecules"):
        with pytest.raises(QmlrpError, match=rf"autoencoder\.{key}: must be >= 1"):
            AutoencoderParams.load(write_params(tmp_path, **{key: 0}))


def test_seeded_subset() -> None:
    positions = np.arange(100, 200)
    a, b = seeded_subset(positions, 10, 1), seeded_subset(positions, 10, 1)
    np.testing.assert_array_equal(a, b)
    assert a.size == 10 and np.all(np.diff(a) > 0) and set(a) <= set(positions.tolist())
    assert not np.array_equal(a, positions[:10])  # not the first ten (QM9's order is by size)
    assert seeded_subset(positions, None, 1) is positions and seeded_subset(positions, 500, 1).size == 100


def test_auroc_known_answers() -> None:
    assert auroc(np.array([1.0, 2, 3]), np.array([4.0, 5])) == 1.0
    assert auroc(np.array([4.0, 5]), np.array([1.0, 2, 3])) == 0.0
    assert auroc(np.ones(4), np.ones(3)) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(0.5, 1, size=40)
    brute = np.mean([1.0 if y > x else 0.5 if y == x else 0.0 for x in a for y in b])
    assert auroc(a, b) == pytest.approx(brute)


def test_pca_equals_gram_eigendecomposition(small_data) -> None:
    """Reconstructions of the SVD baseline == those of the top eigenvectors of the Gram matrix."""
    from qmlrp.features.store import FeatureStore

    store = FeatureStore.open(small_data / "data" / "features")
    train, test = fold_positions(store, small_data / "data" / "folds.parquet", 0)
    scaling = fit_scaling(store, train)
    k = 5
    pca = fit_pca(store, train, scaling, k)
    x = np.concatenate([scaling.transform(f, n) for _, f, n in flat_batches(store, train)]).astype(np.float64)
    mean = x.mean(0)
    xc = x - mean
    vals, vecs = np.linalg.eigh(xc @ xc.T)
    top = np.argsort(vals)[::-1][:k]
    components = xc.T @ vecs[:, top] / np.sqrt(vals[top])
    y = np.concatenate([scaling.transform(f, n) for _, f, n in flat_batches(store, test)]).astype(np.float64)
    expected = mean + (y - mean) @ components @ components.T
    np.testing.assert_allclose(pca.reconstruct(y), expected, atol=1e-7)
    np.testing.assert_allclose(pca.components.T @ pca.components, np.eye(k), atol=1e-10)


def test_dvc_stage_depends_on_each_combined_model() -> None:
    """dvc.yaml's autoencoder stage lists the model file of every target params.yaml combines, and
    data/beta when beta is one of them."""
    repo = Path(__file__).resolve().parents[2]
    deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["autoencoder"]["deps"]
    targets = AutoencoderParams.load(repo / "params.yaml").targets
    assert set(targets) == {"alpha", "zpve", "omega1", "frequencies", "beta"}
    for target in targets:
        assert f"models/{target}/fold${{autoencoder.fold}}.npz" in deps
    assert "data/beta" in deps and "src/qmlrp/stages" in deps


def test_full_study_stage_depends_on_each_combined_model() -> None:
    """studies/qm9-full's autoencoder stage lists the model of every target its params combine, in the
    folder autoencoder.model_dirs names, and the root stage's source deps."""
    repo = Path(__file__).resolve().parents[2]
    study = repo / "studies" / "qm9-full"
    deps = yaml.safe_load((study / "dvc.yaml").read_text())["stages"]["autoencoder"]["deps"]
    p = AutoencoderParams.load(study / "params.yaml")
    assert set(p.targets) == {"alpha", "zpve", "omega1", "frequencies"}
    for target in p.targets:
        assert f"{p.model_dirs.get(target, 'models')}/{target}/fold${{autoencoder.fold}}.npz" in deps
    root = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["autoencoder"]["deps"]
    sources = [d for d in root if d.startswith(("src/", "pipeline/"))]
    assert [f"../../{d}" for d in sources] == [d for d in deps if d.startswith("../../")]


@pytest.fixture(scope="module")
def beta_small(small_data) -> Path:
    """A tiny beta store of *other* molecules: ``beta/{qm9.parquet (with a synthetic
    beta_parallel_au = 2 alpha - 50), features/, folds.parquet}`` (30 molecules, 10 folds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qmlrp.data.ingest import ingest
    from qmlrp.data.split import split
    from qmlrp.features.featurize import featurize_table

    root = small_data / "beta_small"
    beta = root / "beta"
    ingest(source="qm9pack", output=beta / "qm9.parquet", rejects=root / "rejects.csv", metrics=root / "ingest.json",
           limit=30, seed=2, on_error="fail")
    table = pq.read_table(beta / "qm9.parquet")
    alpha = table.column("alpha_bohr3").to_numpy()
    pq.write_table(table.append_column("beta_parallel_au", pa.array(2.0 * alpha - 50.0)), beta / "qm9.parquet")
    featurize_table(beta / "qm9.parquet", beta / "features", root / "failures.csv", root / "featurize.json",
                    workers=1, chunk_size=30, scratch_root=root / "scratch")
    split(beta / "features", beta / "folds.parquet", root / "split.json", n_folds=10, seed=1)
    return beta


def tiny_model(n_outputs: int, seed: int) -> Any:
    """A small Weave model with random weights (biases, output kernel included), savable."""
    from dataclasses import asdict

    from tests.relevance.test_model_lrp import SMALL, randomised_model

    model = randomised_model(n_outputs=n_outputs, seed=seed)
    model.update_metadata(architecture=asdict(SMALL))
    return model


def test_vector_combined_mae_ignores_padding(small_data) -> None:
    """The frequency-style (n, T) MAE counts real labels only: padded outputs may predict anything,
    unlabelled molecules change nothing, and the fine-tuning loss masks the padding too (fine-tuning itself
    runs in the engine's JAX process: ``engine_cases.py``)."""
    import keras

    from qmlrp.features.store import FeatureStore
    from qmlrp.models.autoencoder import AutoencoderConfig, TiedAutoencoder
    from qmlrp.stages.combined import combined_mae, labelled
    from qmlrp.training.engine import masked_labels
    from qmlrp.training.kind_training import STANDARD

    store = FeatureStore.open(small_data / "data" / "features")
    positions = np.arange(12)
    keras.utils.set_random_seed(0)
    ae = TiedAutoencoder(AutoencoderConfig(), fit_scaling(store, np.arange(len(store))))
    weave = tiny_model(5, seed=3)
    rng = np.random.default_rng(1)
    y = rng.normal(3.0, 2.0, (len(store), 5))
    real_modes = np.array([3, 1, 2, 0, 3, 2, 1, 3, 0, 2, 3, 1] + [3] * (len(store) - 12))  # output 3, 4: padding
    y[np.arange(5)[None, :] >= real_modes[:, None]] = np.nan
    mae, pred = combined_mae(ae, weave, store, positions, y)
    assert pred.shape == (12, 5)
    real = np.isfinite(y[positions])
    assert mae == pytest.approx(np.mean(np.abs(pred - y[positions])[real]), rel=1e-12)
    # padded labels written another way (inf instead of NaN) are padding all the same
    assert combined_mae(ae, weave, store, positions, np.where(np.isnan(y), np.inf, y))[0] == pytest.approx(mae, rel=1e-12)
    # unlabelled molecules (rows 3 and 8) are dropped by `labelled` and never counted anyway
    kept = labelled(y, positions)
    assert kept.tolist() == [0, 1, 2, 4, 5, 6, 7, 9, 10, 11]
    assert combined_mae(ae, weave, store, kept, y)[0] == pytest.approx(mae, rel=1e-6)
    # padded predictions: move outputs 3 and 4 far away -> the MAE stays; move output 2 -> it changes
    mean = np.full(5, 3.0)
    mean[3:] = 1e4
    weave.head.target_scaling.set_statistics(mean, np.full(5, 2.0))
    moved, pred2 = combined_mae(ae, weave, store, positions, y)
    assert np.all(np.abs(pred2[:, 3:] - pred[:, 3:]) > 1e3)
    assert moved == pytest.approx(mae, rel=1e-6)
    mean[2] = 50.0
    weave.head.target_scaling.set_statistics(mean, np.full(5, 2.0))
    assert combined_mae(ae, weave, store, positions, y)[0] > mae + 1.0
    # the fine-tuning loss (the engine's masked loss of the standardised target, MAE): by hand
    std = np.array([1.0, 2.0, 4.0, 1.0, 1.0])
    t = np.array([[[1.0, 2.0, np.nan, np.nan, np.nan], [0.0, np.nan, np.nan, np.nan, np.nan]]], np.float32)
    q = np.array([[2.0, 6.0, 1e6, -1e6, 7.0], [-3.0, 5.0, 5.0, 5.0, 5.0]], np.float32)
    labels, mask = masked_labels(t, np.ones((1, 2)))
    value = float(STANDARD.loss(q, labels[0], mask[0], std, "mae"))
    assert value == pytest.approx((1.0 / 1 + 4.0 / 2 + 3.0 / 1) / 3, rel=1e-6)


@pytest.mark.integration
def test_stage_end_to_end(small_data, trained, beta_small, tmp_path) -> None:
    import shutil

    from qmlrp.features.store import FeatureStore
    from qmlrp.models.autoencoder import FEATURE_TYPES, load_autoencoder
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import load_model, save_model
    from qmlrp.training.autoencoder import errors_of
    from tests.training.conftest import run_in_jax
    from qmlrp.targets import get_target
    from qmlrp.targets.labels import load_labels
    from qmlrp.targets.spectra import masked_mae

    data = small_data / "data"
    models = tmp_path / "models"
    for target in ("alpha", "zpve"):
        (models / target).mkdir(parents=True)
        shutil.copy(small_data / "models" / target / "fold0.npz", models / target / "fold0.npz")
    for seed, (target, width) in enumerate((("omega1", 1), ("frequencies", 81), ("beta", 1))):
        save_model(tiny_model(width, seed), models / target / "fold0.npz")
    params = write_params(tmp_path, epochs=3, batch_size=16, finetune_epochs=1, lrp_molecules=4,
                          distortion_sd=[0.3], outside_smiles=["c1ccc2ccccc2c1", "CC(=O)Nc1ccc(O)cc1"])
    out = tmp_path / "out"
    # the DAE and its fine-tuning train in the engine: a JAX process (this session runs TensorFlow)
    run_in_jax(
        "import json\nfrom pathlib import Path\nfrom qmlrp.stages.autoencoder import run_stage\nlines = []\n"
        f"result = run_stage({str(params)!r}, features={str(data / 'features')!r},"
        f" folds_path={str(data / 'folds.parquet')!r}, models_dir={str(models)!r}, table={str(data / 'qm9.parquet')!r},"
        f" beta_data=Path({str(beta_small)!r}), metrics=Path({str(out / 'autoencoder.json')!r}),"
        f" combined_metrics=Path({str(out / 'combined.json')!r}), plots=Path({str(out / 'plots')!r}),"
        f" model_path=Path({str(out / 'model.npz')!r}), log=lines.append)\n"
        f"Path({str(out / 'result.json')!r}).write_text(json.dumps({{'result': result, 'lines': lines}}))\n", tmp_path)
    report = json.loads((out / "result.json").read_text())
    result, lines = report["result"], report["lines"]
    assert json.loads((out / "autoencoder.json").read_text()) == result
    assert set(result["reconstruction"]) == set(FEATURE_TYPES)
    rows = list(csv.DictReader(open(out / "plots" / "reconstruction.csv")))
    assert [r["type"] for r in rows] == list(FEATURE_TYPES)
    assert (out / "plots" / "reconstruction.png").stat().st_size > 0
    # the stored threshold is the 99.9th percentile of the training folds' errors
    model = load_autoencoder(out / "model.npz")
    store = FeatureStore.open(data / "features")
    train, test = fold_positions(store, data / "folds.parquet", 0)
    assert model.metadata["ood_threshold"] == pytest.approx(np.percentile(errors_of(model, store, train), 99.9), rel=1e-5)
    domain = result["domain"]
    assert domain["n"] == {"qm9_heldout": test.size, "outside": 2}
    assert 0.0 <= domain["auroc_heldout_vs_outside"] <= 1.0
    # combined models: the plain path reproduces the trained model's recorded test MAE
    combined = json.loads((out / "combined.json").read_text())
    assert set(combined["targets"]) == {"alpha", "zpve", "omega1", "frequencies", "beta"}
    assert combined["skipped"] == {}
    for target in ("alpha", "zpve"):
        entry = combined["targets"][target]
        assert entry["mae_plain"] == pytest.approx(trained[(target, 0)]["test_mae"], rel=1e-4)
        assert (entry["dataset"], entry["n_test"]) == ("qm9", test.size)
    # the plain path of the new targets reproduces each model's own (ragged) predictions, on its
    # dataset's held-out fold, over real labels only
    beta_store = FeatureStore.open(beta_small / "features")
    beta_test = fold_positions(beta_store, beta_small / "folds.parquet", 0)[1]
    for target, (st, pos, table) in {"omega1": (store, test, data / "qm9.parquet"),
                                     "frequencies": (store, test, data / "qm9.parquet"),
                                     "beta": (beta_store, beta_test, beta_small / "qm9.parquet")}.items():
        entry = combined["targets"][target]
        y = load_labels(st, table, get_target(target))
        pos = pos[np.isfinite(y.reshape(len(y), -1)[pos]).any(1)]
        pred = np.asarray(load_model(models / target / "fold0.npz")(batch_to_inputs(st.batch(pos))), np.float64)
        assert entry["mae_plain"] == pytest.approx(masked_mae(pred.reshape(y[pos].shape), y[pos]), rel=1e-4)
        assert entry["n_test"] == pos.size
    beta = combined["targets"]["beta"]
    assert beta["dataset"] == "beta" and beta["n_test"] == beta_test.size and beta["units"] == "a.u."
    assert beta["n_train"] == len(beta_store) - beta_test.size
    assert beta["dae_training_overlap"] == int(np.isin(beta_store.ids[beta_test], store.ids[train]).sum())
    assert combined["targets"]["frequencies"]["n_outputs"] == 81
    summaries = {t: combined["targets"][t]["code_lrp"] for t in ("alpha", "zpve", "omega1", "beta")}
    summaries.update({f"frequencies_{v}": s for v, s in combined["targets"]["frequencies"]["code_lrp"].items()})
    assert set(summaries) >= {"frequencies_omega1", "frequencies_mode_sum"}
    for name, lrp in summaries.items():
        entry = combined["targets"][name.split("_")[0]]
        assert np.isfinite(entry["mae_frozen"]) and np.isfinite(entry["mae_finetuned"])
        assert lrp["molecules"] == min(4, entry["n_test"]) and len(lrp["top_units"]) == 5
        assert lrp["max_conservation_error"] < 1e-3
        assert (out / "plots" / f"code_relevance_{name}.png").exists()
        assert len(list(csv.DictReader(open(out / "plots" / f"code_relevance_{name}.csv")))) == 68
    assert any("alpha (qm9, " in line and "test MAE plain" in line for line in lines)
    assert any("beta (beta, " in line for line in lines)


def test_predict_hook_flags_beyond_threshold(small_data, tmp_path) -> None:
    """``qmlrp predict``'s hook adds the error and flags molecules above the stored threshold."""
    from types import SimpleNamespace

    import keras

    from qmlrp.features.store import FeatureStore
    from qmlrp.models.autoencoder import AutoencoderConfig, TiedAutoencoder, save_autoencoder
    from qmlrp.training.autoencoder import flag_out_of_domain, flat_of_graphs
    from qmlrp.training.predict import Prediction

    store = FeatureStore.open(small_data / "data" / "features")
    graphs = [store.graph(k) for k in range(4)]
    keras.utils.set_random_seed(0)
    ae = TiedAutoencoder(AutoencoderConfig(), fit_scaling(store, np.arange(len(store))))
    errors = ae.reconstruction_error(*flat_of_graphs(graphs))
    ae.metadata.update({"ood_threshold": float(np.median(errors)), "ood_percentile": 99.9})
    save_autoencoder(ae, tmp_path / "autoencoder" / "model.npz")
    predictions = [Prediction("f.xyz", f"m{k}", g.n_atoms) for k, g in enumerate(graphs)]
    flag_out_of_domain(predictions, [SimpleNamespace(graph=g) for g in graphs], tmp_path)
    for p, e in zip(predictions, errors):
        assert p.values["autoencoder"]["reconstruction_error"] == pytest.approx(float(e), rel=1e-6)
        assert p.values["autoencoder"]["beyond_threshold"] == (e > np.median(errors))
        assert bool(p.warnings) == (e > np.median(errors))
    untouched = [Prediction("f.xyz", "m", 3)]
    flag_out_of_domain(untouched, [SimpleNamespace(graph=graphs[0])], tmp_path / "none")
    assert untouched[0].values == {} and untouched[0].warnings == []


@pytest.mark.integration
def test_notebook_04_runs() -> None:
    from tests.notebook_run import run_notebook

    _, text = run_notebook("04_autoencoder.ipynb")
    assert "decoder kernel is the encoder kernel: True" in text
    assert "max conservation error" in text and "AUROC held-out" in text
    # section 6: the small default's record, and the full study's beside it once studies/qm9-full has one
    assert "AUROC vs outside QM9" in text and "alpha: MAE finetuned (bohr^3)" in text
    full_record = Path(__file__).resolve().parents[2] / "studies" / "qm9-full" / "metrics" / "autoencoder.json"
    assert ("all of QM9" in text) == full_record.exists()
