"""The comparison over retrained models (``compare_folds``): hand-made profiles in fold folders, known
similarities, a subject explained on one fold only, the geometric-vs-electronic count, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from qmlrp.errors import QmlrpError
from qmlrp.relevance.fold_compare import FoldCompareConfig, folds_present, run_compare_folds
from qmlrp.relevance.summary import FEATURE_TYPES

RULE = "eps"


def _rule_entry(profile: np.ndarray, holds: bool, observed: str, share: float) -> dict:
    return {RULE: {"share_means": dict(zip(FEATURE_TYPES, map(float, profile))),
                   "hypothesis": {"holds": holds, "observed_higher": observed, "predicted_higher": "electronic",
                                  "share_geometric_above": share}}}


def _write(root, fold: int, target: str, metrics: dict) -> None:
    path = root / f"fold{fold}" / f"explain_{target}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))


@pytest.fixture()
def profiles():
    rng = np.random.default_rng(3)
    p = {k: rng.dirichlet(np.ones(len(FEATURE_TYPES)), size=3) for k in ("alpha", "zpve")}
    p["omega1"] = rng.dirichlet(np.ones(len(FEATURE_TYPES)))
    return p


def test_deltas_per_fold_are_the_hand_values_and_a_one_fold_subject_is_compared_on_every_fold(tmp_path, profiles):
    root = tmp_path / "metrics" / "explain"
    for f in range(3):
        _write(root, f, "alpha", {"rules": _rule_entry(profiles["alpha"][f], f != 1, "electronic", 0.2 + f / 10)})
        _write(root, f, "zpve", {"rules": _rule_entry(profiles["zpve"][f], True, "geometric", 0.9)})
    _write(root, 0, "frequencies", {"views": {"omega1": {"rules": _rule_entry(profiles["omega1"], True, "geometric", 1.0)}}})
    config = FoldCompareConfig.from_params({"rule": RULE, "comparisons": [
        {"subject": "frequencies/omega1", "similar": "zpve", "control": "alpha"}]})
    m = run_compare_folds(config, root, tmp_path / "plots", tmp_path / "compare.json")
    assert folds_present(root) == [0, 1, 2] and m["folds"] == [0, 1, 2]
    r = m["comparisons"]["frequencies/omega1 ~ zpve vs alpha"]
    assert r["folds"] == [0, 1, 2] and r["subject_folds"] == [0]
    hand = [spearmanr(profiles["omega1"], profiles["zpve"][f])[0] - spearmanr(profiles["omega1"], profiles["alpha"][f])[0]
            for f in range(3)]
    assert r["spearman"]["delta"]["mean"] == pytest.approx(np.mean(hand), abs=1e-12)
    assert r["spearman"]["delta"]["sd"] == pytest.approx(np.std(hand, ddof=1), abs=1e-12)
    assert r["spearman"]["share_of_folds_delta_above_0"] == pytest.approx(np.mean(np.array(hand) > 0))
    cos = [profiles["omega1"] @ profiles["zpve"][f] / np.linalg.norm(profiles["omega1"]) / np.linalg.norm(profiles["zpve"][f])
           for f in range(3)]
    assert r["cosine"]["with_similar"]["mean"] == pytest.approx(np.mean(cos), abs=1e-12)
    h = m["geometric_vs_electronic"]["alpha"]
    assert h["holds_in_folds"] == 2 and h["folds"] == [0, 1, 2]
    assert h["share_geometric_above"]["min"] == pytest.approx(0.2)
    assert (tmp_path / "plots" / "frequencies_omega1.png").stat().st_size > 0
    assert (tmp_path / "plots" / "deltas.csv").read_text().count("\n") == 1 + 3 * 2  # header + folds x similarities
    assert json.loads((tmp_path / "compare.json").read_text())["n_folds"] == {
        "alpha": 3, "frequencies/omega1": 1, "zpve": 3}


def test_bad_input_is_named(tmp_path, profiles):
    root = tmp_path / "explain"
    with pytest.raises(QmlrpError, match="comparisons\\[0\\]"):
        FoldCompareConfig.from_params({"comparisons": [{"subject": "a", "similar": "b"}]})
    with pytest.raises(QmlrpError, match="no fold<k>/ folders"):
        run_compare_folds(FoldCompareConfig(comparisons=({"subject": "alpha", "similar": "zpve", "control": "alpha"},)),
                          root, tmp_path / "p", tmp_path / "m.json")
    _write(root, 0, "alpha", {"rules": _rule_entry(profiles["alpha"][0], True, "electronic", 0.3)})
    _write(root, 0, "zpve", {"rules": _rule_entry(profiles["zpve"][0], True, "geometric", 0.9)})
    _write(root, 0, "frequencies", {"views": {"mode_sum": {"rules": {}}}})
    config = FoldCompareConfig(comparisons=({"subject": "frequencies/omega1", "similar": "zpve", "control": "alpha"},))
    with pytest.raises(QmlrpError, match="no view 'omega1'"):
        run_compare_folds(config, root, tmp_path / "p", tmp_path / "m.json")
    config = FoldCompareConfig(rule="ab10", comparisons=({"subject": "zpve", "similar": "zpve", "control": "alpha"},))
    with pytest.raises(QmlrpError, match="rule 'ab10' not explained"):
        run_compare_folds(config, root, tmp_path / "p", tmp_path / "m.json")
    config = FoldCompareConfig(comparisons=({"subject": "omega1", "similar": "zpve", "control": "alpha"},))
    with pytest.raises(QmlrpError, match="no fold explains all three"):
        run_compare_folds(config, root, tmp_path / "p", tmp_path / "m.json")


def test_an_external_subject_profile_is_compared_with_every_fold(tmp_path, profiles):
    """``external``: a key's one profile from another pipeline's metrics file (the beta_par model's
    ``explain_beta_vector.json``) against the similar and control models of every fold, by hand; a missing
    file, a missing key and another rule are one line each."""
    root = tmp_path / "metrics" / "explain"
    for f in range(3):
        _write(root, f, "alpha", {"rules": _rule_entry(profiles["alpha"][f], True, "electronic", 0.3)})
        _write(root, f, "zpve", {"rules": _rule_entry(profiles["zpve"][f], True, "geometric", 0.9)})
    beta = profiles["omega1"]
    external = tmp_path / "explain_beta_vector.json"
    external.write_text(json.dumps({"rule": RULE, "profiles": {"beta_vector": dict(zip(FEATURE_TYPES, map(float, beta)))}}))
    config = FoldCompareConfig.from_params({"rule": RULE, "external": {"beta_vector": str(external)}, "comparisons": [
        {"subject": "beta_vector", "similar": "alpha", "control": "zpve"}]})
    m = run_compare_folds(config, root, tmp_path / "plots", tmp_path / "compare.json")
    r = m["comparisons"]["beta_vector ~ alpha vs zpve"]
    assert r["folds"] == [0, 1, 2] and r["subject_folds"] == [-1] and r["subject_source"] == str(external)
    hand = [spearmanr(beta, profiles["alpha"][f])[0] - spearmanr(beta, profiles["zpve"][f])[0] for f in range(3)]
    assert r["spearman"]["delta"]["mean"] == pytest.approx(np.mean(hand), abs=1e-12)
    assert r["spearman"]["delta"]["sd"] == pytest.approx(np.std(hand, ddof=1), abs=1e-12)
    assert m["n_folds"]["beta_vector"] == 1
    with pytest.raises(QmlrpError, match=r"compare_folds\.external: expected"):
        FoldCompareConfig.from_params({"external": ["beta_vector"]})
    missing = FoldCompareConfig(external={"beta_vector": str(tmp_path / "absent.json")}, comparisons=config.comparisons)
    with pytest.raises(QmlrpError, match=r"external\.beta_vector: .*absent\.json not found"):
        run_compare_folds(missing, root, tmp_path / "p", tmp_path / "m.json")
    external.write_text(json.dumps({"rule": "ab10", "profiles": {"beta_vector": dict(zip(FEATURE_TYPES, map(float, beta)))}}))
    with pytest.raises(QmlrpError, match=r"explained with rule 'ab10', not 'eps'"):
        run_compare_folds(config, root, tmp_path / "p", tmp_path / "m.json")
    external.write_text(json.dumps({"rule": RULE, "profiles": {}}))
    with pytest.raises(QmlrpError, match=r"has no profiles\.beta_vector"):
        run_compare_folds(config, root, tmp_path / "p", tmp_path / "m.json")
    with pytest.raises(QmlrpError, match=r"compare_folds\.external\.beta_vector: expected a string"):
        FoldCompareConfig.from_params({"external": {"beta_vector": 3}})
