"""The ``qmlrp`` command: help lists the stages, user errors are one line with exit status 2."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys
from pathlib import Path

pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

REPO = Path(__file__).resolve().parents[1]


def qmlrp(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "qmlrp", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_help_lists_stages():
    result = qmlrp("--help")
    assert result.returncode == 0
    for command in ("ingest", "featurize", "split"):
        assert command in result.stdout


def test_bad_source_is_one_line_error(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = qmlrp("ingest", "--source", str(tmp_path / "missing.tar.bz2"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and "missing.tar.bz2: no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_params_file(tmp_path):
    result = qmlrp("split", cwd=tmp_path)
    assert result.returncode == 2 and "params.yaml: parameter file not found" in result.stderr


def test_help_offers_verbose():
    result = qmlrp("--help")
    assert "--verbose" in result.stdout


def corrupt_stage_inputs(root: Path) -> None:
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (root / "data" / "features").mkdir(parents=True)
    (root / "data" / "qm9.parquet").write_bytes(b"")
    (root / "data" / "features" / "molecules.parquet").write_bytes(b"PAR1\x00\x00truncated")


def test_corrupt_parquet_inputs_are_one_line(tmp_path):
    corrupt_stage_inputs(tmp_path)
    result = qmlrp("featurize", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == "error: data/qm9.parquet: empty file, not Parquet (run `dvc repro ingest`)\n"
    result = qmlrp("split", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: data/features/molecules.parquet: unreadable Parquet (truncated or corrupt?")


def test_predict_is_registered_once_from_the_predict_module():
    from qmlrp import cli

    commands = [c for c in cli.app.registered_commands if c.name == "predict"]
    assert len(commands) == 1 and commands[0].callback.__module__ == "qmlrp.training.predict"
    names = [c.name for c in cli.app.registered_commands]
    assert len(names) == len(set(names))


def params_with(tmp_path: Path, old: str, new: str) -> Path:
    """The repository's params.yaml with the line ``old`` replaced by ``new`` (``old`` must occur once)."""
    text = (REPO / "params.yaml").read_text()
    assert text.count(old) == 1
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_train_refuses_a_bad_model_section_in_one_line(tmp_path):
    params_with(tmp_path, "    depth: 2\n", "    depth: -1\n")
    result = qmlrp("train", "--target", "alpha", "--fold", "0", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: params.yaml train.model.depth: must be at least 1, got -1\n")


def test_duplicated_key_is_refused_in_every_reader(tmp_path):
    path = params_with(tmp_path, "  epochs: 10 ", "  epochs: 3\n  epochs: 10 ")
    line = next(k for k, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("  epochs: 3"))
    expected = f"error: params.yaml: key 'train.epochs' is given twice (lines {line} and {line + 1}); keep one\n"
    for command in (["train", "--target", "alpha", "--fold", "0"], ["split"]):
        result = qmlrp(*command, cwd=tmp_path)
        assert (result.returncode, result.stderr) == (2, expected)
