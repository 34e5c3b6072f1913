"""Each stage's source deps in ``dvc.yaml`` are the files its code can import, derived from the imports
(:mod:`tests.stage_deps`), not a hand-kept list: an edit to any module a stage can execute reruns it, an
edit elsewhere does not. Rewrite them after a change with ``python -m tests.stage_deps dvc.yaml
studies/qm9-2k/dvc.yaml studies/qm9-full/dvc.yaml``.

The full study's training stages list no source file on purpose (one code version trains them over days;
each run.json names its commit and tests/studies/test_published_models.py checks today's code against them)."""

from __future__ import annotations


import pytest
import yaml

from tests.stage_deps import (
    REPO,
    command_modules,
    derived_deps,
    dynamic_imports,
    stage_command,
)

PIPELINES = ["dvc.yaml", "studies/qm9-2k/dvc.yaml", "studies/qm9-full/dvc.yaml"]
SOURCELESS = {"studies/qm9-full/dvc.yaml": {"train", "epochs_curve", "epochs_curve_spectra", "train_spectra", "train_long", "train_crippen"}}


def _stages(pipeline: str) -> list[tuple[str, str, list[str]]]:
    """(stage, pipeline script relative to the repository, the stage's string deps)."""
    out = []
    for name, stage in yaml.safe_load((REPO / pipeline).read_text())["stages"].items():
        script = next(w for w in stage["cmd"].split() if w.endswith(".py")).split("pipeline/", 1)[1]
        out.append((name, f"pipeline/{script}", [d for d in stage.get("deps", []) if isinstance(d, str)]))
    return out


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_stage_lists_exactly_the_sources_its_code_can_import(pipeline: str) -> None:
    prefix = "../../" if "/" in pipeline else ""
    wrong = {}
    for name, script, deps in _stages(pipeline):
        listed = sorted(d for d in deps if d.startswith(prefix + "src/"))
        expected = [] if name in SOURCELESS.get(pipeline, ()) else derived_deps(REPO / script, prefix)
        if listed != expected:
            wrong[name] = {"missing": sorted(set(expected) - set(listed)), "extra": sorted(set(listed) - set(expected))}
    assert not wrong, f"{pipeline}: run `python -m tests.stage_deps {pipeline}`: {wrong}"


def test_the_derivation_follows_lazy_imports_and_skips_annotations() -> None:
    train = command_modules("train")
    # HostBatches reaches the pair table only inside a function; Adam and the schedule through the engine
    assert {"qmlrp.features.pair_table", "qmlrp.training.engine", "qmlrp.training.schedule", "qmlrp.cli",
            "qmlrp.training.commands"} <= train
    # another command of the same module is not a dependency, nor is what only the CLI's other modules load
    assert "qmlrp.training.study" not in train and "qmlrp.relevance.explain" not in train
    ingest = command_modules("ingest")
    assert "qmlrp.data.ingest" in ingest and not any(m.startswith(("qmlrp.models", "qmlrp.features")) for m in ingest)
    # relevance.plots names compare.Comparison under `if TYPE_CHECKING:` only: explain does not import it
    assert "qmlrp.relevance.compare" not in command_modules("explain-stage")
    assert "qmlrp.relevance.compare" in command_modules("compare-explanations")
    assert stage_command(REPO / "pipeline" / "explain.py") == "explain-stage"


def test_no_module_imports_by_name_but_the_cli_table() -> None:
    """A name-based import would be invisible to the derivation; the CLI's is read from its COMMANDS table."""
    assert [h.split(":")[0] for h in dynamic_imports()] == ["qmlrp.cli"]


def test_the_cli_table_names_every_command_and_its_module() -> None:
    from qmlrp import cli

    registered = {c.name: c.callback.__module__ for c in cli.app.registered_commands}
    assert registered == cli.COMMANDS
    one = cli.app_for(["evaluate", "--params", "x.yaml"])
    assert [c.name for c in one.registered_commands] == [n for n, m in cli.COMMANDS.items()
                                                         if m == "qmlrp.training.commands"]
    assert len(cli.app_for(["--help"]).registered_commands) == len(cli.COMMANDS)
    assert len(cli.app_for(["no-such-command"]).registered_commands) == len(cli.COMMANDS)
