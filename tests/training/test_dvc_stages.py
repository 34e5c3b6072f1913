"""``dvc repro`` of train (matrix target x fold) + evaluate on 60 molecules, in a temporary copy."""

from __future__ import annotations

import pytest

import json

from tests.dvc_copy import BETA_STAGES, make_copy, run


pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

def small(params: dict) -> None:
    params["ingest"]["limit"] = 60
    params["featurize"].update(workers=1, chunk_size=30)
    params["train"].update(folds=[0, 1], epochs=2, batch_size=16, time_limit_minutes=None,
                           targets=["alpha", "zpve", "frequencies"])
    params["evaluate"]["also"] = []  # beta: its stages need the published labels, not copied here


def test_repro_train_matrix_and_evaluate(tmp_path):
    repo = make_copy(tmp_path, small, drop_stages=BETA_STAGES)
    out = run(["dvc", "repro", "evaluate"], repo)
    for target in ("alpha", "zpve"):
        for fold in (0, 1):
            assert f"train@{target}-{fold}" in out
            assert (repo / "models" / target / f"fold{fold}.npz").exists()
            assert (repo / "dvclive" / target / f"fold{fold}" / "metrics.json").exists()
    assert (repo / "results" / "frequencies" / "fold1" / "predictions.parquet").exists()
    metrics = json.loads((repo / "metrics/evaluate.json").read_text())
    assert metrics["alpha"]["n_folds"] == 2 and "pass" in metrics["zpve"]
    assert metrics["frequencies"]["n_folds"] == 2 and "omega1" in metrics["frequencies"]
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    assert "alpha" in json.dumps(shown) and "mae_mean" in json.dumps(shown)
    assert "changed" not in run(["dvc", "status", "evaluate"], repo)  # up to date: nothing reruns
    run(["dvc", "plots", "show", "--json"], repo)
