"""A fresh clone of the committed repository: ``dvc status`` of the root pipeline reports nothing changed.

Outputs that live only in a DVC cache are absent from a clone ("deleted", "not in cache"): that is
expected. What must not appear is a changed dependency, parameter, command or committed output
(e.g. byte-code hashed into a stage's dependencies, or a lock file older than the code).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.dvc_copy import REPO, run

pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

ABSENT = {"deleted", "not in cache"}


def produced_paths(lock: Path) -> set[str]:
    """Every output path recorded in a ``dvc.lock`` (a clone has them only after ``dvc pull``)."""
    import yaml

    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return {out["path"] for stage in stages.values() for out in stage.get("outs", [])}


def changes(status: dict, produced: set[str] = frozenset()) -> list[str]:
    """What ``dvc status --json`` reports beyond outputs not yet pulled (and dependencies that are
    such outputs, or folders holding them)."""

    def upstream(dep: str) -> bool:
        return any(p == dep or p.startswith(dep.rstrip("/") + "/") for p in produced)

    found = []
    for stage, entries in status.items():
        for entry in entries:
            if not isinstance(entry, dict):
                found.append(f"{stage}: {entry}")
                continue
            for kind, detail in entry.items():
                if kind in ("changed outs", "changed deps") and isinstance(detail, dict) and all(
                        state in ABSENT or (kind == "changed deps" and upstream(path))
                        for path, state in detail.items()):
                    continue  # outputs (and upstream outputs used as deps) not pulled into the clone
                found.append(f"{stage}: {kind} {detail}")
    return found


def test_fresh_clone_is_up_to_date(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    subprocess.run(["python", "-c", "import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=1)",
                    str(clone / "src")], check=True)  # byte-code beside the sources, as any run leaves
    status = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], clone) or "{}")
    assert changes(status, produced_paths(clone / "dvc.lock")) == []


def test_fresh_clone_of_the_study_is_up_to_date_for_what_is_committed(tmp_path: Path) -> None:
    """The full study is trained model by model: every stage its ``dvc.lock`` records (the data
    stages, each finished model) is up to date in a clone; models not trained yet are simply pending."""
    import yaml

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    study = clone / "studies" / "qm9-full"
    lock = study / "dvc.lock"
    recorded = set((yaml.safe_load(lock.read_text()) or {}).get("stages", {}))
    assert {"ingest", "featurize", "split"} <= recorded
    status = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], study) or "{}")
    assert changes({k: v for k, v in status.items() if k in recorded}, produced_paths(lock)) == []
    for stage in sorted(s for s in recorded if s.startswith("train@")):  # each recorded model is committed
        target, fold = stage.removeprefix("train@").rsplit("-", 1)
        assert (study / "models" / target / f"fold{fold}.npz").exists(), stage


def test_fresh_clone_of_the_small_study_is_up_to_date_for_what_is_committed(tmp_path: Path) -> None:
    """``studies/qm9-2k`` runs under its own lock too: every stage its ``dvc.lock`` records is up to date in a
    clone (its data, models and results are DVC-cached, so they are merely absent there)."""
    import yaml

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    study = clone / "studies" / "qm9-2k"
    lock = study / "dvc.lock"
    recorded = set((yaml.safe_load(lock.read_text()) or {}).get("stages", {}))
    assert {"ingest", "featurize", "split", "evaluate_beta_vector"} <= recorded
    status = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], study) or "{}")
    assert changes({k: v for k, v in status.items() if k in recorded}, produced_paths(lock)) == []


def test_pull_without_a_remote_says_what_to_configure(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    done = subprocess.run(["dvc", "pull", "split"], cwd=clone, capture_output=True, text=True,
                          env={**__import__("os").environ, "DVC_NO_ANALYTICS": "1"})
    assert done.returncode != 0 and "No remote provided and no default remote set." in done.stdout + done.stderr
