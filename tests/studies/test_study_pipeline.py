"""The full study's pipeline (``studies/qm9-full``) end to end on a tiny sample, in a throw-away copy."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from tests.dvc_copy import make_copy, run


def test_study_pipeline_end_to_end(tmp_path):
    repo = make_copy(tmp_path, lambda params: None)
    study = repo / "studies" / "qm9-full"
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["ingest"]["limit"] = 60
    params["featurize"].update(workers=1, chunk_size=60)
    params["train"].update(folds=[0, 1], epochs=2, batch_size=16, time_limit_minutes=None,
                           model={**params["train"]["model"], "head_units": [32], "embedding_width": 16})
    (study / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], study)
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    metrics = json.loads((study / "metrics" / "evaluate.json").read_text())
    assert metrics["protocol"] == {"folds_run": 2, "folds_of_protocol": 10, "complete": False}
    for target in ("alpha", "zpve"):
        assert metrics[target]["n_folds"] == 2
        for fold in (0, 1):
            assert (study / "models" / target / f"fold{fold}.npz").exists()
            run_json = json.loads((study / "results" / target / f"fold{fold}" / "run.json").read_text())
            assert run_json["models_in_program"] == 5 and run_json["epochs_run"] == 2
    curves = pd.read_csv(study / "plots" / "schedules" / "zpve.csv")
    assert list(curves.columns) == ["epoch", "zpve-fold0-cosine", "zpve-fold0-plateau"] and len(curves) == 2
    assert not (study / "models" / "zpve" / "fold0-plateau.npz").exists()  # comparison models are not published
    # the root pipeline is untouched by the study's run, and both show up in `dvc metrics show`
    assert not (repo / "data" / "qm9.parquet").exists()
    shown = run(["dvc", "metrics", "show"], repo)
    assert "studies/qm9-full/metrics/evaluate.json" in shown
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], study)
