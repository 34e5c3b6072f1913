"""CLI commands of the model stages: ``qmlrp train``, ``qmlrp study-train``, ``qmlrp evaluate``
(``qmlrp predict`` lives in :mod:`qmlrp.training.predict`)."""

from __future__ import annotations

from pathlib import Path

import typer

from qmlrp import paths
from qmlrp.training.config import DVCLIVE, METRICS_FILE, PLOTS, RESULTS


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``, one ``_register_<command>`` function each."""
    _register_train(app)
    _register_study_train(app)
    _register_train_matrix(app)
    _register_epochs_curve(app)
    _register_train_crippen(app)
    _register_seed_spread(app)
    _register_evaluate(app)


def _register_train(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        target: str = typer.Option(..., "--target", help="alpha | zpve | frequencies | omega1 | beta"),
        fold: int = typer.Option(..., "--fold", help="Test fold 0..9; the other folds train."),
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        models_dir: Path = typer.Option(paths.MODELS, "--models-dir", help="Where models/<target>/fold<k>.npz go."),
        results_dir: Path = typer.Option(RESULTS, "--results-dir", help="Test predictions and run summaries."),
        live_dir: Path = typer.Option(DVCLIVE, "--live-dir", help="dvclive logs, one directory per run."),
        checkpoint: Path = typer.Option(None, "--checkpoint",
                                        help="Resumable state (default scratch/checkpoints/<target>-fold<k>/e<epochs>.npz)."),
        epochs: int = typer.Option(None, "--epochs", help="Override train.epochs (e.g. an epochs-vs-MAE curve)."),
        time_limit_minutes: float = typer.Option(None, "--time-limit-minutes",
                                                 help="Override train.time_limit_minutes (wall minutes, resumes included)."),
    ) -> None:
        """Train the Weave GC model for one target on the nine folds other than FOLD; test on FOLD.
        Killed and rerun, it resumes from its checkpoint."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.targets import get_target
        from qmlrp.training.dataset_config import target_config
        from qmlrp.training.train import train_fold

        table, features, folds = paths.dataset_paths(get_target(target).dataset)
        config = target_config(target, params)
        from dataclasses import replace

        from qmlrp.errors import QmlrpError

        if epochs is not None:
            if epochs < 1:
                raise QmlrpError(f"--epochs {epochs}: must be >= 1")
            config = replace(config, epochs=epochs)
        if time_limit_minutes is not None:
            if time_limit_minutes <= 0:
                raise QmlrpError(f"--time-limit-minutes {time_limit_minutes:g}: must be > 0")
            config = replace(config, time_limit_minutes=time_limit_minutes)
        default_checkpoint = paths.CHECKPOINTS / f"{target}-fold{fold}" / f"e{config.epochs}.npz"
        s = train_fold(target, fold, params_path=params, features=features, table=table, folds_path=folds,
                       models_dir=models_dir, results_dir=results_dir, live_dir=live_dir,
                       config=config, checkpoint=checkpoint or default_checkpoint)
        typer.echo(f"train {target} fold {fold}: test MAE {s['test_mae']:.5g} {s['units']} "
                   f"(best epoch {s['best_epoch']} of {s['epochs_run']}, {s['fit_seconds']:.0f} s) -> {s['model']}")


def _register_study_train(app: typer.Typer) -> None:
    @app.command("study-train")
    def study_train_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (sections train, study)."),
    ) -> None:
        """Train every (target, fold) of the study -- and its schedule comparison -- as one program."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.training.study import run_study

        for s in run_study(params):
            typer.echo(f"{s['run']}: test MAE {s['test_mae']:.5g} {s['units']} (best epoch {s['best_epoch']} of "
                       f"{s['epochs_run']}, {s['stop_reason']})")


def _register_train_matrix(app: typer.Typer) -> None:
    @app.command("train-matrix")
    def train_matrix_command(
        stage: list[str] = typer.Option(None, "--stage", help="train@<target>-<fold> (repeatable); default: "
                                                               "every model dvc status shows as not up to date."),
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (section cluster)."),
    ) -> None:
        """Train the train matrix's models on a Dask cluster, one task per model; dvc.lock records each."""
        from qmlrp.training.matrix import parse_stage, run_matrix

        models = [parse_stage(s) for s in stage] if stage else None
        outcome = run_matrix(".", params, models, report=typer.echo)
        failed = [s for s, o in outcome.items() if o != "done"]
        if failed:
            raise typer.Exit(code=1)


def _register_epochs_curve(app: typer.Typer) -> None:
    @app.command("epochs-curve")
    def epochs_curve_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (sections epochs_curve, evaluate)."),
        section: str = typer.Option("epochs_curve", "--section", help="The params section naming target, fold, epochs."),
        bars: Path | None = typer.Option(None, "--bars", help="File whose evaluate.thresholds hold the bar (default: --params)."),
        results: Path = typer.Option(Path("results"), "--results-dir", help="Searched for <target>/fold<k>/run.json."),
        metrics: Path = typer.Option(Path("metrics/epochs_curve.json"), "--metrics", help="The metrics file to write."),
        plots: Path = typer.Option(Path("plots/epochs_curve"), "--plots-dir", help="Writes <target>.csv and .png here."),
    ) -> None:
        """Test MAE against epoch budgets of one (target, fold); the epochs and CPU-hours a bar needs."""
        from qmlrp.params import parse_section, stage_params
        from qmlrp.training.config import EvaluateConfig
        from qmlrp.targets import get_target
        from qmlrp.training.epochs_curve import EpochsCurveParams, run_epochs_curve

        cfg = parse_section(EpochsCurveParams, section, stage_params(section, params))
        target = get_target(cfg.target)
        m = run_epochs_curve(cfg.target, cfg.fold, EvaluateConfig.load(bars or params).thresholds.get(cfg.target),
                             target.units, results, metrics, plots)
        curve = ", ".join(f"{r['epochs']} epochs {r['test_mae']:.4g}" for r in m["budgets"])
        typer.echo(f"{cfg.target} fold {cfg.fold}: {curve} {target.units}; epochs for the bar: "
                   f"{m.get('epochs_for_bar', 'n/a')}")


def _register_train_crippen(app: typer.Typer) -> None:
    @app.command("train-crippen")
    def train_crippen_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (sections train, train_crippen)."),
    ) -> None:
        """Train the Weave model on Crippen logP (the ground truth of the LRP benchmark)."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.training.crippen import train_crippen

        s = train_crippen(params, paths.FEATURES, paths.QM9_TABLE)
        typer.echo(f"train crippen: best validation MAE {s['best_val_mae']:.3g} (epoch {s['best_epoch']} of "
                   f"{s['epochs_run']}, {s['fit_seconds']:.0f} s) -> models/crippen/model.npz")


def _register_seed_spread(app: typer.Typer) -> None:
    @app.command("seed-spread")
    def seed_spread_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (sections train, seed_spread)."),
    ) -> None:
        """Retrain the train stage's models with other seeds (one program): run-to-run spread of the metrics."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.training.spread import run_seed_spread

        for target, m in run_seed_spread(params).items():
            means = ", ".join(f"seed {k}: {v:.4g}" for k, v in m["mae_mean_per_seed"].items())
            typer.echo(f"{target}: 10-fold mean test MAE {means}; sd across seeds {m['sd_of_mean_across_seeds']:.3g}")


def _register_evaluate(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        results_dir: Path = typer.Option(RESULTS, "--results-dir", help="Output of the train runs."),
        metrics_file: Path = typer.Option(METRICS_FILE, "--metrics", help="Metrics JSON to write."),
        plots_dir: Path = typer.Option(PLOTS, "--plots-dir", help="Parity and learning-curve plots."),
        table: Path = typer.Option(paths.QM9_TABLE, "--table", help="Ingest table (atom counts for the errors by size)."),
    ) -> None:
        """Per-fold test MAE, mean ± sd over folds, pass/fail against the thresholds in params.yaml."""
        from qmlrp.training.evaluate import evaluate

        metrics = evaluate(params, results_dir, metrics_file, plots_dir, table=table)
        for name, m in metrics.items():
            if isinstance(m, dict) and "mae_mean" in m:
                bars = []
                if "threshold" in m:
                    bars.append(f"<= {m['threshold']:g}")
                if "mad_threshold" in m:
                    bars.append(f"MAE/MAD {m['mae_over_mad']:.2f} <= {m['mad_threshold']:g}")
                verdict = "" if "pass" not in m else (" PASS" if m["pass"] else " FAIL") + f" ({'; '.join(bars)})"
                typer.echo(f"{name}: test MAE {m['mae_mean']:.5g} ± {m['mae_sd']:.2g} {m['units']} "
                           f"over {m['n_folds']} folds{verdict}")
