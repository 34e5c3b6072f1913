"""The full study's RECORD.md shows the fold table that its evaluate stage wrote."""

from __future__ import annotations

from pathlib import Path

from qmlrp.training.fold_table import record_table

STUDY = Path(__file__).resolve().parents[2] / "studies" / "qm9-full"


def test_the_record_shows_the_table_evaluate_wrote() -> None:
    written = (STUDY / "plots" / "evaluate" / "folds.md").read_text()
    shown = record_table((STUDY / "RECORD.md").read_text())
    assert shown, "RECORD.md has no fold table between its markers"
    assert shown == written
