"""``dvc repro`` of train (matrix target x fold) + evaluate on 60 molecules, in a temporary copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.training.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]
COPY = ("dvc.yaml", "params.yaml", "pipeline", "src", ".dvc/config", ".dvcignore", ".gitignore")


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(cwd / "src"), PYTHONWARNINGS="ignore",
               TF_CPP_MIN_LOG_LEVEL="2", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def make_copy(tmp_path: Path) -> Path:
    """Repository copy whose params/dvc.yaml carry the model stages (the proposal until merged)."""
    repo = tmp_path / "repo"
    for name in COPY:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    proposal = yaml.safe_load((FIXTURES / "params_train.yaml").read_text())
    for section in ("train", "evaluate"):
        params.setdefault(section, proposal[section])
    params["ingest"]["limit"] = 60
    params["featurize"].update(workers=1, chunk_size=30)
    params["train"].update(folds=[0, 1], epochs=2, batch_size=16, time_limit_minutes=None)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())
    stages = yaml.safe_load((FIXTURES / "dvc_train.yaml").read_text())
    if "train" not in dvc["stages"]:
        dvc["stages"].update(stages["stages"])
        dvc["metrics"] = sorted(set(dvc.get("metrics", [])) | set(stages["metrics"]))
        dvc["plots"] = dvc.get("plots", []) + stages["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    cli = repo / "src" / "qmlrp" / "cli.py"
    if '"qmlrp.training.commands"' not in cli.read_text():
        cli.write_text(cli.read_text().replace('    "qmlrp.features.commands",\n',
                                               '    "qmlrp.features.commands",\n    "qmlrp.training.commands",\n'))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "copy"], repo)  # dvclive needs a commit to resolve HEAD
    return repo


def test_repro_train_matrix_and_evaluate(tmp_path):
    repo = make_copy(tmp_path)
    out = run(["dvc", "repro", "evaluate"], repo)
    for target in ("alpha", "zpve"):
        for fold in (0, 1):
            assert f"train@{target}-{fold}" in out
            assert (repo / "models" / target / f"fold{fold}.keras").exists()
            assert (repo / "dvclive" / target / f"fold{fold}" / "metrics.json").exists()
    metrics = json.loads((repo / "metrics/evaluate.json").read_text())
    assert metrics["alpha"]["n_folds"] == 2 and "pass" in metrics["zpve"]
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    assert "alpha" in json.dumps(shown) and "mae_mean" in json.dumps(shown)
    assert "changed" not in run(["dvc", "status", "evaluate"], repo)  # up to date: nothing reruns
    run(["dvc", "plots", "show", "--json"], repo)
