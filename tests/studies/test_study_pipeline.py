"""The full study's pipeline (``studies/qm9-full``) end to end on a tiny sample, in a throw-away copy:
data stages by ``dvc repro``, the ``train`` matrix on a local Dask cluster of 2 workers
(``qmlrp train-matrix``, one task per model, each recorded in ``dvc.lock`` as it lands), then
``dvc repro`` finds nothing left to train and only evaluates (and explains, and runs the autoencoder stage
with the spectra models of ``models/spectra``)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.dvc_copy import make_copy, run

pytestmark = pytest.mark.integration


def test_study_matrix_on_a_local_dask_cluster_then_dvc_repro_only_evaluates(tmp_path):
    repo = make_copy(tmp_path, lambda params: None)
    study = repo / "studies" / "qm9-full"
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["ingest"]["limit"] = 60
    params["featurize"].update(workers=1, chunk_size=60)
    params["train"].update(folds=[0, 1], epochs=1, batch_size=16, time_limit_minutes=None,
                           model={**params["train"]["model"], "head_units": [32], "embedding_width": 16})
    params["cluster"] = {"scheduler": "local", "workers": 2, "threads_per_worker": 1}
    params["epochs_curve"]["epochs"] = [2]
    params["epochs_curve_spectra"]["epochs"] = [2]
    params["long"].update(folds=[0], epochs=2)
    params["autoencoder"].update(epochs=2, batch_size=16, finetune_epochs=1, pca_molecules=30, lrp_molecules=4,
                                 distortion_sd=[0.3], outside_smiles=["c1ccc2ccccc2c1", "CC(=O)Nc1ccc(O)cc1"])
    (study / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "split"], study)
    out = run(["python", "-m", "qmlrp", "train-matrix"], study)
    stages = {f"train@{t}-{f}" for t in ("alpha", "zpve") for f in (0, 1)}
    assert {line.split(":")[0] for line in out.splitlines() if "recorded in dvc.lock" in line} == stages, out
    lock = yaml.safe_load((study / "dvc.lock").read_text())["stages"]
    assert stages <= set(lock)
    status = run(["dvc", "status", "dvc.yaml"], study)
    assert "train@" not in status and "evaluate" in status, status
    out = run(["dvc", "repro"], study)
    assert "Running stage 'train@" not in out and "Running stage 'evaluate'" in out, out
    assert "Running stage 'autoencoder'" in out, out
    curve = json.loads((study / "metrics" / "epochs_curve.json").read_text())  # fold 0 at 1 and 2 epochs, and long's 2
    assert [(b["epochs"], b["run"]) for b in curve["budgets"]] == [
        (1, "results/alpha/fold0"), (2, "results/epochs/e2/alpha/fold0"), (2, "results/long/alpha/fold0")]
    omega1 = json.loads((study / "metrics" / "epochs_curve_omega1.json").read_text())  # train_spectra's, then 2 epochs
    assert [(b["epochs"], b["run"]) for b in omega1["budgets"]] == [
        (1, "results/spectra/omega1/fold0"), (2, "results/epochs-spectra/e2/omega1/fold0")]
    assert omega1["target"] == "omega1" and omega1["bar"] == 3.15 and (study / "plots/epochs_curve_omega1/omega1.png").exists()
    long = json.loads((study / "metrics" / "evaluate_long.json").read_text())  # alpha fold 0 at long.epochs
    assert long["alpha"]["n_folds"] == 1 and long["protocol"]["folds_run"] == 1 and "zpve" not in long
    assert json.loads((study / "results" / "long" / "alpha" / "fold0" / "run.json").read_text())["epochs_run"] == 2
    assert (study / "models" / "long" / "alpha" / "fold0.npz").exists()
    metrics = json.loads((study / "metrics" / "evaluate.json").read_text())
    assert metrics["protocol"] == {"folds_run": 2, "folds_of_protocol": 10, "complete": False}
    for target in ("alpha", "zpve"):
        assert metrics[target]["n_folds"] == 2
        for fold in (0, 1):
            assert (study / "models" / target / f"fold{fold}.npz").exists()
            record = json.loads((study / "results" / target / f"fold{fold}" / "run.json").read_text())
            assert record["epochs_run"] == 1 and record["models_in_program"] == 1
            assert len(record["commit"]) == 40 and record["process_cpu_seconds"] > 0
    check_autoencoder(study)
    folds_compared = json.loads((study / "metrics" / "compare_folds.json").read_text())["comparisons"]
    beta = folds_compared["beta_vector ~ alpha vs zpve"]  # the beta_par ensembles' profile (studies/qm9-2k) vs every fold
    assert beta["subject_folds"] == [-1] and beta["folds"] == [0, 1]
    assert beta["subject_source"] == "../qm9-2k/metrics/explain_beta_vector.json"
    budgets = json.loads((study / "metrics" / "compare_budgets.json").read_text())  # alpha fold 0 at 1 and 2 epochs
    assert budgets["folds_compared"] == [0] and budgets["budgets"]["12 epochs"]["folds"] == [0, 1]
    assert budgets["between_folds"]["short"]["spearman"]["n"] == 1 and budgets["between_folds"]["long"] is None
    assert -1.0 <= budgets["same_fold"]["spearman"]["mean"] <= 1.0
    assert (study / "metrics" / "explain_long" / "fold0" / "explain_alpha.json").exists()
    # a second call has nothing to do; the root pipeline is untouched by the study's run
    assert "every model is up to date" in run(["python", "-m", "qmlrp", "train-matrix"], study)
    assert not (repo / "data" / "qm9.parquet").exists()
    assert "studies/qm9-full/metrics/evaluate.json" in run(["dvc", "metrics", "show"], repo)
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], study)


def check_autoencoder(study: Path) -> None:
    """The autoencoder stage's metrics: every feature type reconstructed, the domain's AUROCs, fold 0 held out,
    the four fold-0 models combined (the spectra ones from models/spectra), code LRP on the seeded subset."""
    from qmlrp.models.autoencoder import FEATURE_TYPES

    folds = pq.read_table(study / "data" / "folds.parquet", columns=["fold"]).column("fold").to_numpy()
    ae = json.loads((study / "metrics" / "autoencoder.json").read_text())
    assert (ae["fold"], ae["train_molecules"], ae["test_molecules"]) == (0, int((folds != 0).sum()), int((folds == 0).sum()))
    assert set(ae["reconstruction"]) == set(FEATURE_TYPES)
    assert set(ae["domain"]["auroc_heldout_vs_distorted"]) == {"qm9_distorted_0.3A"}
    assert {"auroc_heldout_vs_outside", "auroc_heldout_vs_all_outside"} <= set(ae["domain"])
    assert ae["params"]["model_dirs"] == {"omega1": "models/spectra", "frequencies": "models/spectra"}
    assert (study / "models" / "autoencoder" / "model.npz").exists()
    assert (study / "plots" / "autoencoder" / "reconstruction.csv").exists()
    combined = json.loads((study / "metrics" / "autoencoder_combined.json").read_text())
    assert combined["skipped"] == {} and set(combined["targets"]) == {"alpha", "zpve", "omega1", "frequencies"}
    for name, entry in combined["targets"].items():
        assert 4 <= entry["n_test"] <= ae["test_molecules"] and entry["mae_finetuned"] is not None, name
        lrp = entry["code_lrp"] if name != "frequencies" else entry["code_lrp"]["omega1"]
        assert lrp["molecules"] == 4, name
    assert set(combined["targets"]["frequencies"]["code_lrp"]) == {"omega1", "mode_sum"}
