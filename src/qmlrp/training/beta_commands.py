"""CLI commands of the β∥ model's stages: ``qmlrp beta-data``, ``qmlrp beta-learning-curve`` and the
equivariant vector model's ``qmlrp train-beta-vector --fold k`` and ``qmlrp evaluate-beta-vector``, the
equivariant tensor model's ``qmlrp train-alpha-tensor --fold k``."""

from __future__ import annotations

from pathlib import Path

import typer

PARAMS = typer.Option(Path("params.yaml"), "--params", help="Parameter file with one section per stage.")


def register(app: typer.Typer) -> None:
    @app.command("beta-data")
    def beta_data_command(params: Path = PARAMS) -> None:
        """The β∥ model's data: published labels of one level -> data/beta (table, features, folds)."""
        from qmlrp.labels.dataset import BetaDataParams, build_beta_data
        from qmlrp.params import parse_section, stage_params

        p = parse_section(BetaDataParams, "beta_data", stage_params("beta_data", params))
        m = build_beta_data(p)
        s = m["beta_parallel_au"]
        typer.echo(f"beta-data: {m['n_molecules']} molecules of {m['n_labelled']} labelled at {m['level']} "
                   f"({m['n_excluded']} excluded); beta_parallel mean {s['mean']:.4g} sd {s['sd']:.4g} "
                   f"MAD {s['mad']:.4g} a.u. (bar 0.3 MAD = {s['mae_bar']:.4g})")
        b = m["basis_effect"]
        if b is not None and b["n"]:
            r = "n/a" if b["pearson_r"] is None else f"{b['pearson_r']:.3f}"
            typer.echo(f"basis effect ({b['levels'][1]} vs {b['levels'][0]}, {b['n']} molecules): r {r}, "
                       f"mean ratio {b['mean_ratio']:.3g}, mean |difference| {b['mean_abs_difference_au']:.3g} a.u.")

    @app.command("beta-learning-curve")
    def beta_learning_curve_command(params: Path = PARAMS) -> None:
        """beta test MAE against the number of training labels (all models as one program)."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.training.learning_curve import learning_curve

        m = learning_curve(params)
        for s in m["sizes"]:
            sd = "" if s["mae_sd"] is None else f" ± {s['mae_sd']:.3g}"
            ratio = "n/a" if s["mae_over_mad"] is None else f"{s['mae_over_mad']:.3g}"
            typer.echo(f"n_train {s['n_train']}: test MAE {s['mae_mean']:.4g}{sd} {m['units']} (MAE/MAD {ratio})")

    @app.command("train-beta-vector")
    def train_beta_vector_command(fold: int = typer.Option(..., "--fold", help="Test fold of data/beta/folds.parquet."),
                                  params: Path = PARAMS) -> None:
        """The equivariant mu/beta_vec model and its linear baseline on one fold (beta_par derived)."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.training.vector_stage import train_vector_fold

        s = train_vector_fold(fold, params)
        b = s["beta_parallel"]
        typer.echo(f"beta_vector fold {fold}: beta_par test MAE {b['mae']:.4g} a.u. = {b['mae_over_mad']:.3f} x MAD "
                   f"(linear {s['linear_beta_parallel_mae_over_mad']:.3f}); sign right {s['beta_parallel_sign_accuracy']:.3f}")

    @app.command("train-alpha-tensor")
    def train_alpha_tensor_command(fold: int = typer.Option(..., "--fold", help="Test fold of data/beta/folds.parquet."),
                                   params: Path = PARAMS) -> None:
        """The equivariant polarizability-tensor model (6 components) and its linear baseline on one fold."""
        from qmlrp.training.backend import use_jax_backend

        use_jax_backend()
        from qmlrp.training.tensor_stage import train_tensor_fold

        s = train_tensor_fold(fold, params)
        i, a, f = s["isotropic"], s["anisotropy"], s["frobenius"]
        typer.echo(f"alpha_tensor fold {fold}: isotropic alpha test MAE {i['mae']:.4g} a.u. = {i['mae_over_mad']:.3f} x MAD"
                   f" (linear {s['linear']['isotropic']['mae_over_mad']:.3f}); anisotropy MAE {a['mae']:.4g} a.u. = "
                   f"{a['mae_over_mad']:.3f} x MAD; Frobenius error {f['mae']:.4g} a.u. = {f['mae_over_mad']:.3f} x MAD")

    @app.command("evaluate-beta-vector")
    def evaluate_beta_vector_command(params: Path = PARAMS) -> None:
        """metrics/beta_vector.json: the equivariant GC, the equivariant linear model and the invariant GC."""
        from qmlrp.training.vector_stage import evaluate_vector

        m = evaluate_vector()
        for key in ("equivariant_gc", "equivariant_linear"):
            if m.get(key):
                typer.echo(f"{key}: beta_par MAE/MAD {m[key]['beta_parallel_mae_over_mad_fold_mean']:.3f} (mean of "
                           f"folds), pooled {m[key]['pooled']['beta_parallel']['mae_over_mad']:.3f}")
        inv = m.get("invariant_gc")
        if inv:
            ratio = inv.get("mae_over_mad") or inv.get("pooled", {}).get("mae_over_mad")
            typer.echo(f"invariant_gc: beta_par MAE/MAD {ratio:.3f}")
