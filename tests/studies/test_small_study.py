"""``studies/qm9-2k`` holds the small default's 10-fold analyses; the root pipeline is its demo (folds 0, 1).

The two must not drift apart: a stage defined in both runs the same command on the same inputs (paths
seen from the study folder), and the parameter sections both have are equal except the folds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "studies" / "qm9-2k"
UP = "../../"
MOVED = {"seed_spread", "beta_learning_curve", "compare_explanations"}


def from_study(path: Any) -> Any:
    """A study-relative path (or ``{path: options}``) as seen from the repository root."""
    if isinstance(path, dict):
        return {from_study(k): v for k, v in path.items()}
    return path[len(UP):] if path.startswith(UP) else path


def test_shared_stages_are_the_root_stages_seen_from_the_study():
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    study = yaml.safe_load((STUDY / "dvc.yaml").read_text())["stages"]
    shared = set(root) & set(study)
    assert {"ingest", "featurize", "split", "train", "evaluate", "explain", "beta_data", "train_beta"} <= shared
    assert MOVED <= set(study) and not MOVED & set(root), "the heavy analyses live in the study only"
    for name in shared:
        mine = dict(study[name], cmd=study[name]["cmd"].replace(f"python {UP}pipeline/", "python pipeline/"))
        mine["deps"] = [from_study(d) for d in study[name].get("deps", [])]
        assert mine == {**root[name], "deps": root[name].get("deps", [])}, name


def test_shared_params_equal_the_root_params_but_the_folds():
    root = yaml.safe_load((REPO / "params.yaml").read_text())
    study = yaml.safe_load((STUDY / "params.yaml").read_text())
    assert study["train"]["folds"] == list(range(10)) and root["train"]["folds"] == [0, 1]
    for section in set(root) & set(study):
        mine, theirs = dict(study[section]), dict(root[section])
        if section == "train":
            mine.pop("folds"), theirs.pop("folds")
        if section == "beta_data":
            mine = {k: from_study(v) if isinstance(v, str) else v for k, v in mine.items()}
        assert mine == theirs, section
    assert MOVED <= set(study) and not MOVED & set(root)
