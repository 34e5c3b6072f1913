"""``dvc repro`` of the data stages in a temporary copy, push to a directory remote, pull into a fresh clone."""

from __future__ import annotations

import pytest

import filecmp

import pandas as pd

from tests.dvc_copy import make_copy, run


pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

def small(params: dict) -> None:
    params["ingest"]["limit"] = 40
    params["featurize"].update(workers=1, chunk_size=20)


def test_repro_push_pull(tmp_path):
    repo = make_copy(tmp_path, small, remote=tmp_path / "remote")
    run(["dvc", "repro", "split"], repo)
    folds = pd.read_parquet(repo / "data/folds.parquet")
    assert len(folds) == 40 and sorted(folds.fold.unique()) == list(range(10))
    assert "n_featurized" in (repo / "metrics/featurize.json").read_text()
    assert "changed" not in run(["dvc", "status", "split"], repo)      # up to date: nothing reruns
    run(["dvc", "push", "--with-deps", "split"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "small run"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/folds.parquet").exists()
    run(["dvc", "pull", "--with-deps", "split"], clone)
    for path in ("data/qm9.parquet", "data/folds.parquet", "data/features/atoms.parquet", "data/featurize_failures.csv"):
        assert filecmp.cmp(repo / path, clone / path, shallow=False), path
    metrics = run(["dvc", "metrics", "show", "--json"], clone)
    assert "n_featurized" in metrics
    # byte-code caches beside the sources (any `import qmlrp` makes them) are not dependencies
    (clone / "src/qmlrp/data/__pycache__").mkdir(exist_ok=True)
    (clone / "src/qmlrp/data/__pycache__/stray.cpython-311.pyc").write_bytes(b"\0" * 16)
    status = run(["dvc", "status", "split"], clone)
    assert "changed" not in status and "modified" not in status, status
