"""One target's explanations after two training budgets (``compare_budgets``): hand-made profiles in fold
folders, the similarities by hand (scipy), the per-type shift, the retraining reference, the hypothesis
counts per budget, and bad input."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from scipy.stats import spearmanr

from qmlrp.errors import QmlrpError
from qmlrp.relevance.budget_compare import BudgetCompareConfig, run_compare_budgets
from qmlrp.relevance.summary import FEATURE_TYPES

RULE = "eps"


def write_fold(root, fold: int, profile: np.ndarray, holds: bool) -> None:
    path = root / f"fold{fold}" / "explain_alpha.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rules": {RULE: {
        "share_means": dict(zip(FEATURE_TYPES, map(float, profile))),
        "hypothesis": {"holds": holds, "observed_higher": "electronic" if holds else "geometric",
                       "predicted_higher": "electronic", "share_geometric_above": 0.3}}}}))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_same_fold_and_between_fold_similarities_are_the_hand_values(tmp_path) -> None:
    rng = np.random.default_rng(5)
    short = rng.dirichlet(np.ones(len(FEATURE_TYPES)), size=4)  # folds 0-3 at the short budget
    long = rng.dirichlet(np.ones(len(FEATURE_TYPES)), size=3)  # folds 0-2 at the long one (fold 3 not yet)
    for k, p in enumerate(short):
        write_fold(tmp_path / "short", k, p, holds=True)
    for k, p in enumerate(long):
        write_fold(tmp_path / "long", k, p, holds=k != 1)
    config = BudgetCompareConfig.from_params({"budgets": {"12 epochs": str(tmp_path / "short"),
                                                          "72 epochs": str(tmp_path / "long")}})
    m = run_compare_budgets(config, tmp_path / "plots", tmp_path / "m.json")
    assert m["folds_compared"] == [0, 1, 2] and m["budgets"]["12 epochs"]["folds"] == [0, 1, 2, 3]
    same = [spearmanr(short[k], long[k]).statistic for k in range(3)]
    assert m["same_fold"]["spearman"]["mean"] == pytest.approx(np.mean(same))
    assert m["same_fold"]["spearman"]["min"] == pytest.approx(min(same))
    assert m["same_fold"]["cosine"]["mean"] == pytest.approx(np.mean([cosine(short[k], long[k]) for k in range(3)]))
    between = [spearmanr(short[f], short[g]).statistic for f, g in combinations(range(4), 2)]
    assert m["between_folds"]["short"]["spearman"]["n"] == 6
    assert m["between_folds"]["short"]["spearman"]["mean"] == pytest.approx(np.mean(between))
    assert m["between_folds"]["long"]["cosine"]["n"] == 3
    t = FEATURE_TYPES[4]
    assert m["share_shift"][t]["mean"] == pytest.approx(np.mean(long[:, 4] - short[:3, 4]))
    assert m["geometric_vs_electronic"]["12 epochs"]["holds_in_folds"] == 4
    assert m["geometric_vs_electronic"]["72 epochs"]["holds_in_folds"] == 2
    assert m["hypothesis_share_of_folds"] == {"12 epochs": 1.0, "72 epochs": pytest.approx(2 / 3)}
    assert json.loads((tmp_path / "m.json").read_text())["folds_compared"] == [0, 1, 2]
    table = (tmp_path / "plots" / "alpha.csv").read_text().splitlines()
    assert len(table) == 1 + len(FEATURE_TYPES) and "mean share, 72 epochs" in table[0]
    assert (tmp_path / "plots" / "alpha.png").stat().st_size > 0


def test_no_common_fold_or_no_explanation_is_one_line(tmp_path) -> None:
    write_fold(tmp_path / "short", 0, np.full(len(FEATURE_TYPES), 1 / len(FEATURE_TYPES)), holds=True)
    write_fold(tmp_path / "long", 1, np.full(len(FEATURE_TYPES), 1 / len(FEATURE_TYPES)), holds=True)
    config = BudgetCompareConfig.from_params({"budgets": {"a": str(tmp_path / "short"), "b": str(tmp_path / "long")}})
    with pytest.raises(QmlrpError, match="no fold is explained at both budgets"):
        run_compare_budgets(config, tmp_path / "plots", tmp_path / "m.json")
    config = BudgetCompareConfig.from_params({"budgets": {"a": str(tmp_path / "short"), "b": str(tmp_path / "none")}})
    with pytest.raises(QmlrpError, match=r"none: no fold<k>/explain_alpha.json \(run the explain stages of 'b'\)"):
        run_compare_budgets(config, tmp_path / "plots", tmp_path / "m.json")


@pytest.mark.parametrize("budgets", [{"a": "x"}, {"a": "x", "b": "y", "c": "z"}])
def test_budgets_must_be_two(budgets) -> None:
    with pytest.raises(QmlrpError, match="compare_budgets.budgets: expected two entries"):
        BudgetCompareConfig.from_params({"budgets": budgets})


def test_a_misspelled_key_is_named() -> None:
    with pytest.raises(QmlrpError, match="compare_budgets: unknown key 'rules' \\(did you mean 'rule'\\?\\)"):
        BudgetCompareConfig.from_params({"rules": "eps"})


def test_the_command_prints_the_comparison(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from qmlrp.cli import build_app

    rng = np.random.default_rng(2)
    for k in range(3):
        write_fold(tmp_path / "metrics" / "explain", k, rng.dirichlet(np.ones(len(FEATURE_TYPES))), holds=True)
    write_fold(tmp_path / "metrics" / "explain_long", 0, rng.dirichlet(np.ones(len(FEATURE_TYPES))), holds=False)
    (tmp_path / "params.yaml").write_text("compare_budgets:\n  target: alpha\n")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(build_app(), ["compare-budgets"])
    assert done.exit_code == 0, done.output
    assert "alpha: Spearman rho of the two budgets' profiles, same fold" in done.output and "over 1 folds" in done.output
    assert "12 epochs: predicted electronic types higher; holds in 3 of 3 folds" in done.output
    assert "72 epochs: predicted electronic types higher; holds in 0 of 1 folds" in done.output
    assert (tmp_path / "metrics" / "compare_budgets.json").exists()
