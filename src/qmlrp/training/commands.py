"""CLI commands of the model stages: ``qmlrp train``, ``qmlrp evaluate``, ``qmlrp predict``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from qmlrp import paths
from qmlrp.training.config import DVCLIVE, METRICS_FILE, PLOTS, RESULTS

# TensorFlow's C++ start-up notices (oneDNN, CPU features) would precede every stage's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        target: str = typer.Option(..., "--target", help="alpha | zpve"),
        fold: int = typer.Option(..., "--fold", help="Test fold 0..9; the other folds train."),
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        models_dir: Path = typer.Option(paths.MODELS, "--models-dir", help="Where models/<target>/fold<k>.keras go."),
        results_dir: Path = typer.Option(RESULTS, "--results-dir", help="Test predictions and run summaries."),
        live_dir: Path = typer.Option(DVCLIVE, "--live-dir", help="dvclive logs, one directory per run."),
    ) -> None:
        """Train the Weave GC model for one target on the nine folds other than FOLD; test on FOLD."""
        from qmlrp.training.train import train_fold

        s = train_fold(target, fold, params_path=params, models_dir=models_dir, results_dir=results_dir,
                       live_dir=live_dir)
        typer.echo(f"train {target} fold {fold}: test MAE {s['test_mae']:.5g} {s['units']} "
                   f"(best epoch {s['best_epoch']} of {s['epochs_run']}, {s['fit_seconds']:.0f} s) -> {s['model']}")

    @app.command("evaluate")
    def evaluate_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        results_dir: Path = typer.Option(RESULTS, "--results-dir", help="Output of the train runs."),
        metrics_file: Path = typer.Option(METRICS_FILE, "--metrics", help="Metrics JSON to write."),
        plots_dir: Path = typer.Option(PLOTS, "--plots-dir", help="Parity and learning-curve plots."),
    ) -> None:
        """Per-fold test MAE, mean ± sd over folds, pass/fail against the thresholds in params.yaml."""
        from qmlrp.training.evaluate import evaluate

        metrics = evaluate(params, results_dir, metrics_file, plots_dir)
        for name, m in metrics.items():
            if isinstance(m, dict):
                verdict = "" if "pass" not in m else (" PASS" if m["pass"] else " FAIL") + f" (<= {m['threshold']:g})"
                typer.echo(f"{name}: test MAE {m['mae_mean']:.5g} ± {m['mae_sd']:.2g} {m['units']} "
                           f"over {m['n_folds']} folds{verdict}")

    @app.command("predict")
    def predict_command(
        files: list[Path] = typer.Argument(..., help="XYZ (one or more molecules each) or SDF files."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
        models_dir: Path = typer.Option(paths.MODELS, "--models-dir", help="Folder of <target>/fold<k>.keras."),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Molecules per forward pass."),
    ) -> None:
        """Predict alpha (bohr^3) and ZPVE (eV) as mean ± sd over the fold models.

        Molecules outside the models' domain get one error line each on stderr (exit status 1);
        the others are still predicted.
        """
        from qmlrp.training.predict import Ensemble, format_table, predict_files, to_json

        ensemble = Ensemble(models_dir)
        predictions, failures = predict_files(files, ensemble, batch_size=batch_size)
        for failure in failures:
            typer.echo(failure.line(), err=True)
        if as_json:
            typer.echo(json.dumps(to_json(predictions, failures), indent=2))
        elif predictions:
            typer.echo(format_table(predictions, ensemble.targets, ensemble.units))
        if failures:
            sys.exit(1)
