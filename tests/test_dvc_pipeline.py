"""``dvc repro`` of the data stages in a temporary copy, push to a directory remote, pull into a fresh clone."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COPY = ("dvc.yaml", "params.yaml", "pipeline", "src", ".dvc/config", ".dvcignore", ".gitignore")


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def make_copy(tmp_path: Path, limit: int = 40) -> Path:
    repo = tmp_path / "repo"
    for name in COPY:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"]["limit"] = limit
    params["featurize"].update(workers=1, chunk_size=20)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["dvc", "remote", "add", "-d", "-f", "local", str(tmp_path / "remote")], repo)
    return repo


def test_repro_push_pull(tmp_path):
    repo = make_copy(tmp_path)
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
