"""CLI commands of the relevance concern: ``qmlrp explain`` (pictures for XYZ files) and
``qmlrp explain-stage`` (the DVC stage, one target or the Crippen ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer

from qmlrp import paths
from qmlrp.errors import InputError, QmlrpError


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_command(
        files: list[Path] = typer.Argument(..., help="XYZ files (one or more molecules each)."),
        target: str = typer.Option(..., "--target", help="alpha | zpve"),
        rule: str = typer.Option("lrp0", "--rule", help="lrp0 | eps | ab10 | ab21 | gamma | zplus"),
        out: Path = typer.Option(Path("explanations"), "--out", help="Folder for the pictures."),
        models_dir: Path = typer.Option(paths.MODELS, "--models-dir", help="Folder of <target>/fold<k>.keras."),
        fold: int = typer.Option(0, "--fold", help="Which fold's model to explain."),
        epsilon: float = typer.Option(0.1, "--epsilon", help="Stabiliser of LRP-eps."),
    ) -> None:
        """Draw atom relevance on each molecule's 2D depiction (red +, blue -) and print a summary."""
        import numpy as np

        from qmlrp.data.xyz import read_xyz
        from qmlrp.features.featurize import featurize_geometry
        from qmlrp.features.molecule import build_molecule
        from qmlrp.features.pairs import make_batch
        from qmlrp.models.io import load_model, model_path
        from qmlrp.relevance.model_lrp import ModelLRP
        from qmlrp.relevance.plots import molecule_relevance_png
        from qmlrp.relevance.rules import get_rule
        from qmlrp.relevance.summary import ranking, type_relevance
        from qmlrp.training.config import get_target

        spec = get_target(target)
        try:
            lrp_rule = get_rule(rule, epsilon=epsilon)
        except ValueError as err:
            raise QmlrpError(str(err)) from None
        records = []
        for path in files:
            recs = read_xyz(path)
            if not recs:
                raise InputError(str(path), "no molecule in the file")
            for k, rec in enumerate(recs):
                name = rec.name or f"{path.stem}_{k}"
                records.append((f"{path.stem}_{k}" if len(recs) > 1 else path.stem, name, rec))
        mols, graphs = [], []
        for _, name, rec in records:
            mol, _ = build_molecule(rec.atomic_numbers, rec.coordinates, rec.smiles, name)
            mols.append(mol)
            graphs.append(featurize_geometry(rec.atomic_numbers, rec.coordinates, rec.smiles, name))
        model = load_model(model_path(models_dir, spec.name, fold))
        batch = make_batch(graphs, np.arange(len(graphs)))
        e = ModelLRP(model).explain(batch, lrp_rule, name=rule)
        per_atom = e.atom_relevance()
        types = type_relevance(e.atoms, e.pairs, e.atom_molecule, e.pair_molecule, e.n_molecules, absolute=True)
        for m, (stem, name, _) in enumerate(records):
            png = out / f"{stem}_{spec.name}_{rule}.png"
            molecule_relevance_png(mols[m], per_atom[e.atom_molecule == m], png)
            top = ", ".join(ranking(types[m])[:3])
            typer.echo(f"{name}: {spec.name} = {e.output[m]:.5g} {spec.units}; relevance in inputs "
                       f"{e.input_total()[m]:.4g}, absorbed {e.absorbed[m]:.4g}; top types: {top} -> {png}")

    @app.command("explain-stage")
    def explain_stage_command(
        target: str = typer.Option(..., "--target", help="alpha | zpve | crippen (the ground-truth experiment)"),
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
        models_dir: Path = typer.Option(paths.MODELS, "--models-dir", help="Folder of <target>/fold<k>.keras."),
    ) -> None:
        """DVC stage: relevance summaries, hypothesis test, faithfulness and pictures for one target
        (``--target crippen``: train on Crippen logP and score atom relevance by Kendall's tau)."""
        from qmlrp.relevance.explain import ExplainConfig, run_explain, run_ground_truth_stage

        config = ExplainConfig.load(params)
        if target == "crippen":
            s = run_ground_truth_stage(config, params)
            taus = ", ".join(f"{k} {v['tau_mean']:.3f}" for k, v in s["kendall_tau"].items())
            typer.echo(f"explain crippen: test MAE {s['test_mae']:.3g}; Kendall tau {taus}")
            return
        m = run_explain(target, config, models_dir=models_dir)
        for name, r in m["rules"].items():
            h = r["hypothesis"]
            typer.echo(f"explain {target} {name}: top types {', '.join(r['ranking_absolute'][:3])}; "
                       f"geometric rank {h['geometric_mean_rank']:.1f} vs electronic {h['electronic_mean_rank']:.1f}; "
                       f"max conservation error {r['conservation_rel_error']['max']:.1e}")
