"""The full study's background runner (``studies/qm9-full/background.sh``) end to end on a tiny sample: it
trains from a git worktree, commits each model with its evaluation and lock entries to the checkout at once,
skips what the checkout's lock records, follows ``study.commit`` between models, reads the queue, and stops
on a failed stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.dvc_copy import REPO, make_copy, run

pytestmark = pytest.mark.integration

STUDY = "studies/qm9-full"


def runner(worktree: Path, checkout: Path, *stages: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QMLRP_VENV=str(Path(sys.executable).parent.parent), PYTHONWARNINGS="ignore",
               TF_CPP_MIN_LOG_LEVEL="2", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["bash", str(checkout / STUDY / "background.sh"), str(worktree), str(checkout), *stages],
                          check=False, capture_output=True, text=True, env=env, timeout=1200)


def log(repo: Path) -> list[str]:
    return run(["git", "log", "--format=%s"], repo).splitlines()


def committed(repo: Path, commit: str = "HEAD") -> set[str]:
    return set(run(["git", "show", "--name-only", "--format=", commit], repo).split())


def test_the_runner_commits_each_model_with_its_record_and_resumes_its_queue(tmp_path: Path) -> None:
    repo = make_copy(tmp_path, lambda params: None)
    study = repo / STUDY
    for name in ("background.sh", "queue"):
        (study / name).write_bytes((REPO / STUDY / name).read_bytes())
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["ingest"]["limit"] = 60
    params["featurize"].update(workers=1, chunk_size=60)
    params["train"].update(epochs=1, batch_size=16, time_limit_minutes=None,
                           model={**params["train"]["model"], "head_units": [32], "embedding_width": 16})
    params["long"].update(folds=[0, 1], epochs=2)
    (study / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (study / "queue").write_text("# two models\ntrain_long@alpha-0\n  train_long@alpha-1  # the second\n")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny study"], repo)
    worktree = tmp_path / "worktree"
    run(["git", "worktree", "add", "-q", "--detach", str(worktree), "HEAD"], repo)
    run(["dvc", "repro", "split"], worktree / STUDY)

    done = runner(worktree, repo, "train_long@alpha-0")
    assert done.returncode == 0, done.stderr[-3000:]
    subject = log(repo)[0]
    assert subject.startswith("full study: train_long@alpha-0 done (alpha fold 0: test MAE "), subject
    assert "2 epochs" in subject and subject.endswith("dvc repro -s train_long@alpha-0)")
    files = committed(repo)
    assert {f"{STUDY}/models/long/alpha/fold0.npz", f"{STUDY}/results/long/alpha/fold0/run.json",
            f"{STUDY}/metrics/evaluate_long.json", f"{STUDY}/dvc.lock"} <= files, files
    lock = yaml.safe_load((study / "dvc.lock").read_text())["stages"]
    assert {"train_long@alpha-0", "evaluate_long"} <= set(lock) and "train_long@alpha-1" not in lock
    record = json.loads((study / "metrics" / "evaluate_long.json").read_text())
    assert record["alpha"]["n_folds"] == 1 and record["protocol"]["complete"] is False
    assert not run(["git", "status", "--porcelain", "--", STUDY], repo).strip()  # nothing left uncommitted

    # a recorded stage is skipped; a new commit named in study.commit moves the worktree before the next model
    (repo / "NOTE").write_text("a later commit\n")
    run(["git", "add", "NOTE"], repo)
    run(["git", "commit", "-qm", "later"], repo)
    later = run(["git", "rev-parse", "HEAD"], repo).strip()
    (tmp_path / "study.commit").write_text(later + "\n")
    done = runner(worktree, repo)  # the queue: fold 0 is done, fold 1 runs at the later commit
    assert done.returncode == 0, done.stderr[-3000:]
    assert "background: train_long@alpha-0 is done" in done.stdout
    assert f"background: worktree at {later}" in done.stdout
    assert log(repo)[0].startswith("full study: train_long@alpha-1 done (alpha fold 1: ")
    assert json.loads((study / "results" / "long" / "alpha" / "fold1" / "run.json").read_text())["commit"] == later
    record = json.loads((study / "metrics" / "evaluate_long.json").read_text())
    assert record["alpha"]["n_folds"] == 2 and set(record["alpha"]["mae_per_fold"]) == {"fold0", "fold1"}

    # everything recorded: nothing to do, no commit; a stage that fails stops the runner with a line
    before = log(repo)
    done = runner(worktree, repo)
    assert done.returncode == 0 and done.stdout.count(" is done") == 2 and log(repo) == before
    done = runner(worktree, repo, "train_long@alpha-7")
    assert done.returncode == 1 and "background: train_long@alpha-7 failed" in done.stderr
    assert log(repo) == before
