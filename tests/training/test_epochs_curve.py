"""The epochs curve: budgets read from run.json files, the fitted a + b E^-c, the epochs a bar needs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qmlrp.errors import QmlrpError
from qmlrp.training.epochs_curve import epochs_for, fit_curve, run_epochs_curve, summarize


def write_run(path: Path, epochs: int, mae: float, cpu_hours: float) -> None:
    path.mkdir(parents=True)
    path.joinpath("run.json").write_text(json.dumps({
        "epochs_run": epochs, "test_mae": mae, "best_epoch": epochs, "stop_reason": "max epochs",
        "process_cpu_seconds": cpu_hours * 3600, "commit": "c" * 40}))


def curve(e: float) -> float:
    return 0.2 + 3.0 / e  # a = 0.2, b = 3, c = 1


def test_three_budgets_give_the_curve_and_the_epochs_for_the_bar(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_run(results / "alpha" / "fold0", 12, curve(12), 0.36)
    for e in (24, 36):
        write_run(results / "epochs" / f"e{e}" / "alpha" / "fold0", e, curve(e), 0.03 * e)
    m = run_epochs_curve("alpha", 0, 0.227, "bohr^3", results, tmp_path / "m.json", tmp_path / "plots")
    assert [r["epochs"] for r in m["budgets"]] == [12, 24, 36]
    assert m["fit"]["a"] == pytest.approx(0.2, abs=1e-4) and m["fit"]["c"] == pytest.approx(1.0, abs=1e-3)
    assert m["epochs_for_bar"] == pytest.approx(3.0 / 0.027, abs=0.5)  # 111 epochs
    assert m["bar_met_by"] == [] and m["bar_reachable_by_epochs"] is True
    assert m["cpu_hours_per_model_epoch"] == pytest.approx(0.03)
    assert m["cpu_hours_for_bar"]["per_model"] == pytest.approx(111.1 * 0.03, abs=0.1)
    assert (tmp_path / "plots" / "alpha.png").stat().st_size > 0
    assert json.loads((tmp_path / "m.json").read_text())["fold"] == 0


def test_a_bar_below_the_asymptote_is_not_reachable_and_two_budgets_give_no_fit() -> None:
    rows = [{"epochs": e, "test_mae": curve(e), "cpu_hours": 0.03 * e} for e in (12, 24, 36)]
    m = summarize(rows, 0.15)
    assert m["bar_reachable_by_epochs"] is False and m["epochs_for_bar"] is None and "cpu_hours_for_bar" not in m
    assert epochs_for(0.15, fit_curve(*map(lambda k: __import__("numpy").array([r[k] for r in rows], float),
                                           ("epochs", "test_mae")))) == math.inf
    assert summarize(rows[:2], 0.227)["fit"] is None


def test_no_run_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(QmlrpError, match="no run of alpha fold 0"):
        run_epochs_curve("alpha", 0, 0.227, "bohr^3", tmp_path, tmp_path / "m.json", tmp_path / "p")


def test_every_run_of_the_model_under_results_is_a_budget(tmp_path: Path) -> None:
    """The study's own budget wherever its stage writes it (results/spectra/ for omega1), the curve's
    stages (results/epochs-spectra/e<E>/) and train_long's (results/long/); other models are not read."""
    results = tmp_path / "results"
    write_run(results / "spectra" / "omega1" / "fold0", 12, curve(12), 0.3)
    write_run(results / "epochs-spectra" / "e24" / "omega1" / "fold0", 24, curve(24), 0.6)
    write_run(results / "long" / "omega1" / "fold0", 72, curve(72), 1.8)
    write_run(results / "spectra" / "omega1" / "fold1", 12, 9.0, 0.3)  # another fold
    write_run(results / "spectra" / "frequencies" / "fold0", 12, 17.6, 0.3)  # another target
    m = run_epochs_curve("omega1", 0, 0.3, "cm^-1", results, tmp_path / "m.json", tmp_path / "plots")
    assert [(r["epochs"], Path(r["run"]).relative_to(results).parts[0]) for r in m["budgets"]] == [
        (12, "spectra"), (24, "epochs-spectra"), (72, "long")]
    assert m["fit"]["a"] == pytest.approx(0.2, abs=1e-3) and m["bar_met_by"] == [72]
    assert (tmp_path / "plots" / "omega1.csv").read_text().count("\n") == 4  # header + 3 budgets


def test_two_runs_of_one_budget_are_not_three_budgets() -> None:
    rows = [{"epochs": e, "test_mae": curve(e), "cpu_hours": 0.03 * e} for e in (12, 24, 24)]
    assert summarize(rows, 0.227)["fit"] is None
