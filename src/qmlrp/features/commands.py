"""CLI command of the featurize stage: ``qmlrp featurize``."""

from __future__ import annotations

from pathlib import Path

import typer

from qmlrp import paths
from qmlrp.params import parse_section, stage_params


def register(app: typer.Typer) -> None:
    @app.command("featurize")
    def featurize_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
    ) -> None:
        """Build the Molecular Graph (21 atom + 13 pair features) of every ingested molecule."""
        from qmlrp.features.featurize import FeaturizeParams, featurize_table

        p = parse_section(FeaturizeParams, "featurize", stage_params("featurize", params))
        result = featurize_table(paths.QM9_TABLE, paths.FEATURES, paths.FEATURIZE_FAILURES,
                                 paths.METRICS / "featurize.json", workers=p.workers, chunk_size=p.chunk_size)
        typer.echo(f"featurize: {result['n_featurized']}/{result['n_input']} molecules featurized, "
                   f"{result['n_failed']} failed (listed in {paths.FEATURIZE_FAILURES})")
