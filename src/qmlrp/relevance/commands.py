"""CLI commands of the relevance concern: ``qmlrp explain`` (pictures for XYZ / SDF files) and
``qmlrp explain-stage`` (the DVC stage, one target or the Crippen ground truth)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from qmlrp import paths
from qmlrp.errors import QmlrpError


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``, one ``_register_<command>`` function each."""
    _register_explain(app)
    _register_explain_stage(app)
    _register_compare_explanations(app)
    _register_explain_beta_vector(app)
    _register_compare_folds(app)
    _register_compare_budgets(app)


def _register_explain(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_command(
        files: list[Path] = typer.Argument(..., help="XYZ (one or more molecules each) or SDF files, as for predict."),
        target: str = typer.Option(..., "--target", help="alpha | zpve"),
        rule: str = typer.Option("lrp0", "--rule", help="lrp0 | eps | ab10 | ab21 | gamma | zplus"),
        out: Path = typer.Option(Path("explanations"), "--out", help="Folder for the pictures."),
        models_dir: Path = typer.Option(None, "--models-dir", help="Folder of <target>/fold<k>.npz (default: models/, "
                                                                  "or the published full-QM9 ensemble when models/ has none)."),
        fold: int = typer.Option(0, "--fold", help="Which fold's model to explain."),
        epsilon: float = typer.Option(0.1, "--epsilon", help="Stabiliser of LRP-eps (pre-activation units)."),
        plain: bool = typer.Option(False, "--plain", help="The rule everywhere (no LRP-eps at the embedding "
                                                          "and output unit; float32 may then be unstable)."),
        same_scale: bool = typer.Option(True, "--same-scale/--own-scale",
                                        help="One colour scale for all molecules, or one per molecule."),
        output: str = typer.Option("", "--output", help="Vector heads: output index k, or coefficients "
                                                        "'c0,c1,...' of sum_k c_k y_k."),
    ) -> None:
        """Per-molecule figures of the relevance (atoms and bonds, colour bar in the target's units)
        and one summary line each. Every file or molecule that cannot be read or featurized gets one
        error line; the others are still drawn; the exit status is 1 if any failed."""
        if out.exists() and not out.is_dir():
            raise QmlrpError(f"--out {out}: is a file; give a folder for the pictures")
        models_dir, published = paths.models_to_use(models_dir)
        if published:
            from qmlrp.models.io import fold_model

            typer.echo(f"note: no models in {paths.MODELS}/: explaining the published full-QM9 {target} model of "
                       f"fold {fold} ({fold_model(models_dir, target, fold)})", err=True)
        # featurizing forks crash-isolated children: do it before anything imports Keras / TensorFlow
        from qmlrp.relevance.user_files import featurize_for_explain

        featurized = featurize_for_explain(files, target)
        from qmlrp.relevance.explain import explain_files, parse_output

        selection = parse_output(output, "--output")
        lines, problems = explain_files(files, target, rule, out, models_dir, fold, epsilon, plain, same_scale,
                                        selection, featurized)
        for problem in problems:
            typer.echo(problem, err=True)
        for line in lines:
            typer.echo(line)
        if any(p.startswith("error: ") for p in problems):
            sys.exit(1)


def _register_explain_stage(app: typer.Typer) -> None:
    @app.command("explain-stage")
    def explain_stage_command(
        target: str = typer.Option(..., "--target", help="a trained target (alpha, zpve, frequencies, omega1, beta) | crippen (the ground-truth experiment)"),
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        models_dir: Path = typer.Option(paths.MODELS, "--models-dir", help="Folder of <target>/fold<k>.npz."),
        fold: int | None = typer.Option(None, "--fold", help="Explain this fold's model (default: explain.fold)."),
        plots_dir: Path = typer.Option(Path("plots/explain"), "--plots-dir", help="Writes <plots-dir>/<target>/."),
        metrics_dir: Path = typer.Option(paths.METRICS, "--metrics-dir", help="Writes explain_<target>.json here."),
    ) -> None:
        """DVC stage: relevance summaries, hypothesis test, faithfulness and pictures for one target
        (``--target crippen``: train on Crippen logP and score atom relevance by Kendall's tau)."""
        import dataclasses

        from qmlrp.relevance.explain import ExplainConfig, run_explain, run_ground_truth_stage

        config = ExplainConfig.load(params)
        if fold is not None:
            config = dataclasses.replace(config, fold=int(fold))
        if target == "crippen":
            s = run_ground_truth_stage(config, params, plots_dir=plots_dir, metrics_dir=metrics_dir)
            taus = ", ".join(f"{k} {v['tau_mean']:.3f}" for k, v in s["kendall_tau"].items())
            typer.echo(f"explain crippen: test MAE {s['test_mae']:.3g}; Kendall tau {taus}")
            return
        m = run_explain(target, config, models_dir=models_dir, plots_dir=plots_dir, metrics_dir=metrics_dir)
        views = m["views"] if "views" in m else {"": m}
        for view, v in views.items():
            label = f"{target} {view}".strip()
            for name, r in v["rules"].items():
                h = r["hypothesis"]
                typer.echo(f"explain {label} {name}: top types {', '.join(r['ranking_absolute'][:3])}; "
                           f"geometric rank {h['geometric_mean_rank']:.1f} vs electronic "
                           f"{h['electronic_mean_rank']:.1f}; max conservation error "
                           f"{r['conservation_rel_error']['max']:.1e}")


def _register_compare_explanations(app: typer.Typer) -> None:
    @app.command("compare-explanations")
    def compare_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (section compare_explanations)."),
    ) -> None:
        """Is one property's relevance pattern closer to a second's than to a third's? (bootstrap spread)"""
        from qmlrp.params import stage_params
        from qmlrp.relevance.compare import CompareConfig, run_compare

        m = run_compare(CompareConfig.from_params(stage_params("compare_explanations", params)))
        for name, r in m["comparisons"].items():
            d = r["spearman"]["delta"]
            typer.echo(f"{name}: Spearman rho {r['spearman']['with_similar']['value']:.2f} vs "
                       f"{r['spearman']['with_control']['value']:.2f}, delta {d['value']:+.2f} "
                       f"[{d['p2_5']:+.2f}, {d['p97_5']:+.2f}]")


def _register_compare_folds(app: typer.Typer) -> None:
    @app.command("compare-folds")
    def compare_folds_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (section compare_folds)."),
    ) -> None:
        """The seed's hypotheses over retrained models: profile similarity per fold (metrics/explain/fold<k>/)."""
        from qmlrp.params import stage_params
        from qmlrp.relevance.fold_compare import FoldCompareConfig, run_compare_folds

        m = run_compare_folds(FoldCompareConfig.from_params(stage_params("compare_folds", params)))
        for name, r in m["comparisons"].items():
            d = r["spearman"]["delta"]
            typer.echo(f"{name}: delta Spearman rho {d['mean']:+.2f} over {len(r['folds'])} folds "
                       f"(min {d['min']:+.2f}, max {d['max']:+.2f}; > 0 in {r['spearman']['share_of_folds_delta_above_0']:.0%})")
        for target, h in m["geometric_vs_electronic"].items():
            typer.echo(f"{target}: predicted {h['predicted_higher']} types higher; holds in {h['holds_in_folds']} "
                       f"of {len(h['folds'])} folds")


def _register_compare_budgets(app: typer.Typer) -> None:
    @app.command("compare-budgets")
    def compare_budgets_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (section compare_budgets)."),
    ) -> None:
        """One target's explanations after two training budgets, against the spread of retraining."""
        from qmlrp.params import stage_params
        from qmlrp.relevance.budget_compare import BudgetCompareConfig, run_compare_budgets

        m = run_compare_budgets(BudgetCompareConfig.from_params(stage_params("compare_budgets", params)))
        same, between = m["same_fold"]["spearman"], m["between_folds"]["short"]
        reference = "n/a" if between is None else \
            f"{between['spearman']['mean']:.2f} (min {between['spearman']['min']:.2f})"
        typer.echo(f"{m['target']}: Spearman rho of the two budgets' profiles, same fold {same['mean']:.2f} "
                   f"(min {same['min']:.2f}) over {same['n']} folds; between retrained models {reference}")
        for label, h in m["geometric_vs_electronic"].items():
            if h is not None:
                typer.echo(f"{label}: predicted {h['predicted_higher']} types higher; holds in "
                           f"{h['holds_in_folds']} of {len(h['folds'])} folds")


def _register_explain_beta_vector(app: typer.Typer) -> None:
    @app.command("explain-beta-vector")
    def explain_beta_vector_command() -> None:
        """The equivariant beta_par model explained: exact per-atom parts, LRP feature-type shares vs alpha/ZPVE."""
        from qmlrp.relevance.vector_explain import explain_beta_vector

        m = explain_beta_vector()
        for key in ("hypothesis_beta_vector", "hypothesis_invariant_beta"):
            r = m[key]["spearman"]
            d = r["delta"]
            typer.echo(f"{key}: Spearman rho with alpha {r['with_similar']['value']:.2f}, with ZPVE "
                       f"{r['with_control']['value']:.2f}, delta {d['value']:+.2f} [{d['p2_5']:+.2f}, {d['p97_5']:+.2f}]")
