"""The cross-target comparison of relevance patterns: similarities against independent
computations, the bootstrap, and the stage end to end on hand-made share tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from qmlrp.errors import QmlrpError
from qmlrp.relevance.compare import (
    CompareConfig,
    bootstrap_profiles,
    cosine,
    run_compare,
    spearman,
)
from qmlrp.relevance.summary import FEATURE_TYPES


def test_similarities_match_independent_computations() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 12)), rng.random((5, 12))
    b[0, :3] = b[0, 3]  # ties: average ranks, as scipy
    for k in range(5):
        assert spearman(a[k], b[k]) == pytest.approx(spearmanr(a[k], b[k]).statistic, abs=1e-12)
        assert cosine(a[k], b[k]) == pytest.approx(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k]))
    np.testing.assert_allclose(spearman(a, b), [spearmanr(x, y).statistic for x, y in zip(a, b)], atol=1e-12)
    assert spearman(a[0], a[0]) == pytest.approx(1.0)
    assert spearman(a[0], -a[0]) == pytest.approx(-1.0)


def test_bootstrap_profiles() -> None:
    rng = np.random.default_rng(1)
    same = np.tile(rng.dirichlet(np.ones(12)), (30, 1))  # identical molecules: no spread at all
    boot = bootstrap_profiles(same, 50, rng)
    assert boot.shape == (50, 12)
    np.testing.assert_allclose(boot, np.broadcast_to(same[0], boot.shape), atol=1e-12)
    varied = rng.dirichlet(np.ones(12), size=400)
    boot = bootstrap_profiles(varied, 400, np.random.default_rng(2))
    # the bootstrap sd of a mean is ~ sd / sqrt(n)
    np.testing.assert_allclose(boot.std(0, ddof=1), varied.std(0, ddof=1) / np.sqrt(400), rtol=0.25)
    np.testing.assert_allclose(boot.mean(0), varied.mean(0), atol=3 * varied.std(0).max() / 20)


def _write(root: Path, key: str, profile: np.ndarray, n: int, seed: int, rules=("eps", "lrp0")) -> None:
    rng = np.random.default_rng(seed)
    frames = []
    for rule in rules:
        shares = rng.dirichlet(profile * 200, size=n)  # molecules scattered around the profile
        frame = pd.DataFrame(shares, columns=list(FEATURE_TYPES))
        frame.insert(0, "outlier", False)
        frame.insert(0, "rule", rule)
        frame.insert(0, "id", np.arange(n))
        frames.append(frame)
    (root / key).mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_parquet(root / key / "shares.parquet")


def test_stage_end_to_end(tmp_path: Path) -> None:
    """beta built like alpha (same profile) and unlike zpve (reversed ranking): the similarity
    with alpha is ~1, with zpve ~-1, delta ~2 with a tight interval and no replicate <= 0."""
    base = np.linspace(1.0, 12.0, 12)
    base /= base.sum()
    root = tmp_path / "explain"
    _write(root, "alpha", base, 300, 0)
    _write(root, "beta", base, 120, 1)
    _write(root, "zpve", base[::-1], 300, 2)
    _write(root, "frequencies/mode_sum", base[::-1], 200, 3)
    config = CompareConfig.from_params({"rule": "eps", "bootstrap": 200, "seed": 0, "comparisons": [
        {"subject": "beta", "similar": "alpha", "control": "zpve"},
        {"subject": "frequencies/mode_sum", "similar": "zpve", "control": "alpha"}]})
    m = run_compare(config, root, tmp_path / "plots", tmp_path / "metrics.json")
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert m["n_molecules"] == {"alpha": 300, "beta": 120, "frequencies/mode_sum": 200, "zpve": 300}
    for name in ("beta ~ alpha vs zpve", "frequencies/mode_sum ~ zpve vs alpha"):
        r = m["comparisons"][name]["spearman"]
        assert r["with_similar"]["value"] > 0.95 and r["with_control"]["value"] < -0.95
        assert r["delta"]["p2_5"] > 1.8 and r["delta"]["p2_5"] <= r["delta"]["value"] <= r["delta"]["p97_5"] + 1e-12
        assert m["comparisons"][name]["spearman"]["bootstrap_share_delta_le_0"] == 0.0
    profiles = pd.read_csv(tmp_path / "plots" / "profiles.csv")
    assert len(profiles) == 4 * 12
    alpha = profiles[profiles["explanation"] == "alpha"].set_index("type").loc[list(FEATURE_TYPES), "mean_share"]
    np.testing.assert_allclose(alpha.sum(), 1.0, rtol=1e-9)
    assert (tmp_path / "plots" / "beta.png").stat().st_size > 0
    assert (tmp_path / "plots" / "frequencies_mode_sum.png").stat().st_size > 0


def test_no_difference_gives_an_interval_around_zero(tmp_path: Path) -> None:
    """All three explanations drawn around one profile: delta's interval contains 0."""
    base = np.random.default_rng(5).dirichlet(np.ones(12) * 5)
    root = tmp_path / "explain"
    for k, key in enumerate(("alpha", "beta", "zpve")):
        _write(root, key, base, 150, 10 + k)
    config = CompareConfig.from_params({"bootstrap": 200, "comparisons": [
        {"subject": "beta", "similar": "alpha", "control": "zpve"}]})
    d = run_compare(config, root, tmp_path / "plots", tmp_path / "m.json")["comparisons"]["beta ~ alpha vs zpve"]
    assert d["cosine"]["delta"]["p2_5"] < 0 < d["cosine"]["delta"]["p97_5"]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(QmlrpError, match="compare_explanations"):
        CompareConfig.from_params({"bootstrapp": 100})
    with pytest.raises(QmlrpError, match="subject, similar, control"):
        CompareConfig.from_params({"comparisons": [{"subject": "beta", "similar": "alpha"}]})
    config = CompareConfig.from_params({"comparisons": [{"subject": "beta", "similar": "alpha", "control": "zpve"}]})
    with pytest.raises(QmlrpError, match="shares.parquet: not found"):
        run_compare(config, tmp_path, tmp_path / "plots", tmp_path / "m.json")
    _write(tmp_path, "beta", np.full(12, 1 / 12), 5, 0, rules=("lrp0",))
    _write(tmp_path, "alpha", np.full(12, 1 / 12), 5, 0)
    _write(tmp_path, "zpve", np.full(12, 1 / 12), 5, 0)
    with pytest.raises(QmlrpError, match="no molecules explained with rule 'eps'"):
        run_compare(config, tmp_path, tmp_path / "plots", tmp_path / "m.json")
