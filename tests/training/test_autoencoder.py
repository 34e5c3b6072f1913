"""The autoencoder stage: params, the PCA baseline against an independent computation, AUROC, and
the stage end to end on the tiny pipeline (60 molecules, the 2-epoch Weave models of conftest)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from qmlrp.errors import QmlrpError
from qmlrp.training.autoencoder import AutoencoderParams, auroc, fit_pca, fit_scaling, flat_batches, fold_positions


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
    repo = AutoencoderParams.load(Path(__file__).resolve().parents[2] / "params.yaml")
    assert repo.fold == 0 and repo.pca_components == 68


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


def test_stage_end_to_end(small_data, trained, tmp_path) -> None:
    from qmlrp.features.store import FeatureStore
    from qmlrp.models.autoencoder import FEATURE_TYPES, load_autoencoder
    from qmlrp.training.autoencoder import errors_of, run_stage

    data = small_data / "data"
    params = write_params(tmp_path, epochs=3, batch_size=16, finetune_epochs=1, lrp_molecules=4,
                          distortion_sd=[0.3], outside_smiles=["c1ccc2ccccc2c1", "CC(=O)Nc1ccc(O)cc1"])
    out = tmp_path / "out"
    lines: list[str] = []
    result = run_stage(params, features=data / "features", folds_path=data / "folds.parquet",
                       models_dir=small_data / "models", table=data / "qm9.parquet",
                       metrics=out / "autoencoder.json", combined_metrics=out / "combined.json",
                       plots=out / "plots", model_path=out / "model.npz", log=lines.append)
    assert json.loads((out / "autoencoder.json").read_text()) == json.loads(json.dumps(result))
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
    assert set(combined["targets"]) == {"alpha", "zpve"}
    assert set(combined["skipped"]) == {"omega1", "beta", "frequencies"}
    for target in ("alpha", "zpve"):
        entry = combined["targets"][target]
        assert entry["mae_plain"] == pytest.approx(trained[(target, 0)]["test_mae"], rel=1e-4)
        assert np.isfinite(entry["mae_frozen"]) and np.isfinite(entry["mae_finetuned"])
        lrp = entry["code_lrp"]
        assert lrp["molecules"] == 4 and lrp["max_conservation_error"] < 1e-3
        assert len(lrp["top_units"]) == 5
        assert (out / "plots" / f"code_relevance_{target}.png").exists()
        units = list(csv.DictReader(open(out / "plots" / f"code_relevance_{target}.csv")))
        assert len(units) == 68
    assert any("alpha: test MAE plain" in line for line in lines)


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


def test_notebook_04_runs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    repo = Path(__file__).resolve().parents[2]
    notebook = nbformat.read(repo / "notebooks" / "04_autoencoder.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(repo)}})
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "decoder kernel is the encoder kernel: True" in text
    assert "max conservation error" in text and "AUROC held-out" in text
