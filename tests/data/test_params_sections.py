"""The sections ingest, featurize and split follow the one params convention: a frozen dataclass,
unknown keys (with the likely intended key) and wrong types refused before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qmlrp.data.ingest import IngestParams
from qmlrp.data.split import SplitParams
from qmlrp.errors import QmlrpError
from qmlrp.features.featurize import FeaturizeParams
from qmlrp.params import parse_section

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_parse_and_defaults_match_them():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for cls, section in ((IngestParams, "ingest"), (FeaturizeParams, "featurize"), (SplitParams, "split")):
        parsed = parse_section(cls, section, params[section])
        assert parsed == cls(), f"{section}: params.yaml and the dataclass defaults differ"
    assert IngestParams() == IngestParams(source="qm9pack", limit=2000, seed=20171010, on_error="fail")
    assert parse_section(IngestParams, "ingest", {"limit": None}).limit is None


@pytest.mark.parametrize(
    ("cls", "section", "values", "message"),
    [
        (IngestParams, "ingest", {"limt": 2000}, "params.yaml ingest: unknown key 'limt' (did you mean 'limit'?)"),
        (IngestParams, "ingest", {"limit": "2k"}, "params.yaml ingest.limit: '2k' is not int or NoneType"),
        (IngestParams, "ingest", {"on_error": "ignore"}, "params.yaml ingest.on_error: 'ignore' is not one of 'fail', 'skip'"),
        (IngestParams, "ingest", {"limit": 0}, "params.yaml ingest: limit must be positive or null, got 0"),
        (FeaturizeParams, "featurize", {"workers": "two"}, "params.yaml featurize.workers: expected an integer, got 'two'"),
        (FeaturizeParams, "featurize", {"chunksize": 5}, "params.yaml featurize: unknown key 'chunksize' (did you mean 'chunk_size'?)"),
        (SplitParams, "split", {"n_fold": 5}, "params.yaml split: unknown key 'n_fold' (did you mean 'n_folds'?)"),
        (SplitParams, "split", {"n_folds": 1}, "params.yaml split: n_folds must be at least 2, got 1"),
    ],
)
def test_typos_and_wrong_types(cls, section, values, message):
    with pytest.raises(QmlrpError) as err:
        parse_section(cls, section, values)
    assert str(err.value) == message


@pytest.mark.parametrize(("stage", "section", "key"), [("ingest", "ingest", "limt"), ("featurize", "featurize", "wokers"),
                                                        ("split", "split", "seeed")])
@pytest.mark.integration
def test_stage_fails_before_any_work(tmp_path, stage, section, key):
    """``ingest.limt: 2000`` used to ingest all 130,831 molecules."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[section][key] = 2000
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-m", "qmlrp", stage], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: params.yaml {section}: unknown key '{key}' (did you mean")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing read, nothing written
