"""CLI commands of the β labels: ``label-beta``, ``dalton-write``, ``dalton-read``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from qmlrp.errors import InputError, QmlrpError

#: exit status of a run in which every molecule failed (bad input/params exit with 2)
ALL_FAILED_EXIT = 1


def apply_overrides(section: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` overrides (VALUE read as YAML; ``a.b=`` reaches a nested key) of a section.

    Raises:
        InputError: an override without ``=``, or a nested key under a non-mapping.
    """
    import yaml

    out = dict(section)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--set", f"expected KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        *parents, leaf = key.strip().split(".")
        node = out
        for name in parents:
            child = node.get(name)
            child = dict(child) if isinstance(child, dict) else {} if child is None else child
            if not isinstance(child, dict):
                raise InputError("--set", f"{name} is not a mapping in {item!r}")
            node[name] = child
            node = child
        node[leaf] = value
    return out


def run_label_beta(params_path: str | Path = "params.yaml",
                   overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the ``label_beta`` stage from the params file (and ``KEY=VALUE`` overrides); return
    its metrics. The whole section is checked (unknown keys, types, values) before any work."""
    from qmlrp.labels.config import LabelBetaParams, read_section
    from qmlrp.labels.run import run_stage

    section = apply_overrides(read_section(params_path), overrides or [])
    return run_stage(LabelBetaParams.from_mapping(section))


def all_failed(m: dict[str, Any]) -> bool:
    """True when every molecule this run computed failed, or the selection has failures and
    no label at all (a rerun of an all-failed run)."""
    if m["n_computed_this_run"]:
        return m["n_ok_this_run"] == 0
    return m["n_done"] == 0 and m["n_failed"] > 0


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise InputError("--ids", f"expected comma-separated integers, got {text!r}") from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``, one ``_register_<command>`` function each."""
    _register_label_beta(app)
    _register_dalton_write(app)
    _register_dalton_read(app)


def _register_label_beta(app: typer.Typer) -> None:
    @app.command("label-beta")
    def label_beta_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        overrides: Optional[list[str]] = typer.Option(
            None, "--set", "-S", help="Override a label_beta key: KEY=VALUE (YAML value; "
                                      "sanity.min_distance_angstrom=0.4 for nested keys)."),
    ) -> None:
        """Static β, α and μ labels (PySCF, Dask) for the molecules chosen in params label_beta.

        Labels already in the output folder (the published, git-tracked set) are never
        recomputed; new ones are added as new shards. Exit 1 when every molecule failed.
        """
        try:
            m = run_label_beta(params, overrides or [])
        except KeyboardInterrupt:
            typer.echo("label-beta: interrupted; finished molecules are saved - rerun to resume",
                       err=True)
            raise typer.Exit(130) from None
        typer.echo(
            f"label-beta: {m['n_done']}/{m['n_selected']} labelled, {m['n_failed']} failed, "
            f"{m['n_computed_this_run']} computed in {m['wall_s']:.0f} s -> {m['labels_dir']}")
        if all_failed(m):
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(m["failure_kinds"].items()))
            typer.echo(f"error: label-beta: every molecule failed ({kinds}); reasons in "
                       f"{Path(m['labels_dir']) / '_failures.jsonl'}", err=True)
            raise typer.Exit(ALL_FAILED_EXIT)


def _register_dalton_write(app: typer.Typer) -> None:
    @app.command("dalton-write")
    def dalton_write_command(
        output: Path = typer.Option(..., "--output", "-o", help="Folder for the .dal/.mol pairs."),
        table: Path = typer.Option(Path("data/qm9.parquet"), "--table", help="QM9 molecule table."),
        ids: Optional[str] = typer.Option(None, "--ids", help="Comma-separated QM9 ids."),
        count: Optional[int] = typer.Option(None, "--count", help="Random selection size."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random selection seed."),
        max_atoms: Optional[int] = typer.Option(None, "--max-atoms", help="Size cap."),
        method: Optional[str] = typer.Option(None, "--method", help="rks or rhf."),
        xc: Optional[str] = typer.Option(None, "--xc", help="Functional (PySCF name)."),
        basis: Optional[str] = typer.Option(None, "--basis", help="Basis set."),
        params: Path = typer.Option(Path("params.yaml"), "--params",
                                    help="Defaults for level and selection (section label_beta)."),
    ) -> None:
        """DALTON .dal/.mol inputs (static quadratic response) for a selection of molecules.

        The selection is --ids, else --count/--seed/--max-atoms, else that of params label_beta;
        the level is params label_beta's unless overridden.
        """
        import dataclasses

        from qmlrp.labels.config import LabelBetaParams, load_label_beta_params
        from qmlrp.labels.dalton_write import write_inputs
        from qmlrp.labels.selection import load_molecules, select_molecules

        base = load_label_beta_params(params) if Path(params).exists() else LabelBetaParams()
        over = {k: v for k, v in (("method", method), ("xc", xc), ("basis", basis)) if v is not None}
        try:
            p = dataclasses.replace(base, **over)
        except (TypeError, ValueError) as err:
            raise InputError("level of theory", str(err)) from None
        level = p.level
        frame = load_molecules(table)
        if ids is not None:
            wanted = _parse_ids(ids)
            missing = sorted(set(wanted) - set(frame["id"]))
            if missing:
                raise InputError(str(table), f"ids not in table: {missing[:10]}")
            frame = frame.set_index("id", drop=False).loc[wanted].reset_index(drop=True)
        else:
            frame = select_molecules(
                frame, count if count is not None else p.count,
                seed if seed is not None else p.seed,
                max_atoms if max_atoms is not None else p.max_atoms)
        pairs = write_inputs(frame, output, level)
        typer.echo(f"dalton-write: {len(pairs)} .dal/.mol pairs in {output} "
                   f"(commands in {Path(output) / 'dalton_jobs.txt'})")


def _register_dalton_read(app: typer.Typer) -> None:
    @app.command("dalton-read")
    def dalton_read_command(
        outputs: list[Path] = typer.Argument(..., help="DALTON .out files or folders of them."),
        output: Path = typer.Option(..., "--output", "-o", help="Label table (.parquet) to write."),
        table: Optional[Path] = typer.Option(
            None, "--table", help="QM9 table: fill SMILES, check geometry, rotate to its frame."),
    ) -> None:
        """Read DALTON quadratic-response outputs into the β label table (Parquet)."""
        import json

        from qmlrp.labels import records
        from qmlrp.labels.dalton_read import outputs_to_rows
        from qmlrp.labels.selection import load_molecules

        files: list[Path] = []
        for p in outputs:
            if p.is_dir():
                files.extend(sorted(p.glob("*.out")))
            elif p.exists():
                files.append(p)
            else:
                raise InputError(str(p), "no such file or folder")
        if not files:
            raise QmlrpError("dalton-read: no .out files given")
        frame = load_molecules(table) if table is not None else None
        rows, failures = outputs_to_rows(files, frame)
        if rows:
            levels = {(r["method"], r["xc"], r["basis"]) for r in rows}
            if len(levels) > 1:
                raise QmlrpError(f"dalton-read: outputs of several levels {sorted(levels)}; "
                                 "labels of different levels never mix - read them separately")
            records.write_table_atomic(records.rows_to_table(rows), output)
        fail_path = output.with_name(output.stem + "_failures.jsonl")
        if failures:
            fail_path.parent.mkdir(parents=True, exist_ok=True)
            fail_path.write_text("".join(json.dumps({"file": f, "reason": r}) + "\n"
                                         for f, r in failures))
            for f, r in failures:
                typer.echo(f"dalton-read: skipped {f}: {r}", err=True)
        typer.echo(f"dalton-read: {len(rows)} rows -> {output if rows else '(nothing written)'}"
                   f", {len(failures)} failed" + (f" (listed in {fail_path})" if failures else ""))
