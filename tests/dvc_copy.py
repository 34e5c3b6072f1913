"""A throw-away copy of the repository for end-to-end ``dvc`` runs in tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COPY = ("dvc.yaml", "params.yaml", "pipeline", "src", ".dvc/config", ".dvcignore", ".gitignore",
        "studies/qm9-full/dvc.yaml", "studies/qm9-full/params.yaml", "studies/qm9-full/spectra.yaml", "studies/qm9-full/long.yaml",
        "studies/qm9-full/.gitignore",
        "studies/qm9-2k/metrics/explain_beta_vector.json")  # the full study's compare_folds reads its beta_par profile


def source_of(cwd: Path) -> Path:
    """The ``src`` folder of the copy holding ``cwd`` (the copy's root or a study folder inside it)."""
    for folder in (cwd, *cwd.parents):
        if (folder / "src" / "qmlrp").is_dir():
            return folder / "src"
    return cwd / "src"


def run(cmd: list[str], cwd: Path) -> str:
    """Run ``cmd`` in ``cwd`` with the copy's sources first on the path (also from a study folder, where
    ``cwd/src`` does not exist and the installed package would be imported); fail the test on error."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(source_of(cwd)), PYTHONWARNINGS="ignore",
               TF_CPP_MIN_LOG_LEVEL="2", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


BETA_STAGES = ("label_beta", "beta_data", "train_beta", "explain_beta", "autoencoder", "train_beta_vector",
               "evaluate_beta_vector", "explain_beta_vector")
"""Stages that need the published labels (``labels/``, not copied) or the beta models."""


def make_copy(tmp_path: Path, update_params: Callable[[dict[str, Any]], None], remote: Path | None = None,
              drop_stages: tuple[str, ...] = ()) -> Path:
    """Copy the pipeline into ``tmp_path/repo``, edit its params, drop ``drop_stages`` from its
    ``dvc.yaml``, ``git init`` and commit it."""
    repo = tmp_path / "repo"
    for name in COPY:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    if drop_stages:
        pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
        for name in drop_stages:
            del pipeline["stages"][name]
        (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    update_params(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    if remote is not None:
        run(["dvc", "remote", "add", "-d", "-f", "local", str(remote)], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "copy"], repo)  # dvclive needs a commit to resolve HEAD
    return repo
