"""CLI commands of the data stages: ``qmlrp ingest`` and ``qmlrp split``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from qmlrp import paths
from qmlrp.params import parse_section, stage_params

PARAMS = typer.Option(Path("params.yaml"), "--params", help="Parameter file with one section per stage.")


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        params: Path = PARAMS,
        source: Optional[str] = typer.Option(None, help="'qm9pack', or dsgdb9nsd.xyz.tar.bz2, or a folder of QM9 XYZ files (overrides params)."),
        limit: Optional[int] = typer.Option(None, help="Seeded uniform sample of this many molecules (overrides params)."),
        output: Path = typer.Option(paths.QM9_TABLE, help="Parquet table to write."),
    ) -> None:
        """Read QM9 (qm9pack or the original XYZ files) into one Parquet table."""
        from qmlrp.data.ingest import IngestParams, ingest

        values = stage_params("ingest", params)
        values.update({k: v for k, v in (("source", source), ("limit", limit)) if v is not None})
        p = parse_section(IngestParams, "ingest", values)
        result = ingest(source=p.source, output=output, rejects=paths.INGEST_REJECTS,
                        metrics=paths.METRICS / "ingest.json", limit=p.limit, seed=p.seed, on_error=p.on_error)
        typer.echo(f"ingest: {result.n_molecules} molecules -> {output} ({result.n_rejected} malformed)")

    @app.command("split")
    def split_command(params: Path = PARAMS) -> None:
        """Shuffle the featurized molecules (seeded) into uniform cross-validation folds."""
        from qmlrp.data.split import SplitParams, split

        p = parse_section(SplitParams, "split", stage_params("split", params))
        result = split(paths.FEATURES, paths.FOLDS, paths.METRICS / "split.json", n_folds=p.n_folds, seed=p.seed)
        typer.echo(f"split: {result['n_molecules']} molecules into {result['n_folds']} folds "
                   f"of {result['min_fold_size']}-{result['max_fold_size']}")
