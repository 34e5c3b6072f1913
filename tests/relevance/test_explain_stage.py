"""The explain stage end to end on a 40-molecule store (random-weight model), the Crippen
ground-truth plumbing, and the ``qmlrp explain`` command."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from qmlrp.errors import QmlrpError
from qmlrp.relevance.explain import ExplainConfig, run_explain
from qmlrp.relevance.summary import FEATURE_TYPES

from tests.relevance.test_model_lrp import SMALL, randomised_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    from qmlrp.data.ingest import ingest
    from qmlrp.data.split import split
    from qmlrp.features.featurize import featurize_table
    from qmlrp.models.io import model_path, save_model

    root = tmp_path_factory.mktemp("explain")
    ingest("qm9pack", root / "qm9.parquet", root / "rejects.csv", root / "ingest.json", limit=40, seed=3)
    featurize_table(root / "qm9.parquet", root / "features", root / "failures.csv", root / "featurize.json",
                    workers=1, chunk_size=40, scratch_root=root / "scratch")
    split(root / "features", root / "folds.parquet", root / "split.json", n_folds=5, seed=0)
    model = randomised_model(seed=4)
    model.update_metadata(architecture=asdict(SMALL))  # what a model file records of its architecture
    model.head.target_scaling.set_statistics(75.0, 8.0)
    save_model(model, model_path(root / "models", "alpha", 0))
    return root


CONFIG = {"fold": 0, "molecules": "all", "batch_size": 16, "rules": ["lrp0", "ab21"],
          "outliers": {"k_mae": 2.0, "quantile": None}, "draw": {"ids": [], "count": 1},
          "faithfulness": {"molecules": 6, "atom_steps": 2, "type_steps": 2, "random_repeats": 1}}


def test_stage_outputs(workspace: Path) -> None:
    root = workspace
    m = run_explain("alpha", ExplainConfig.from_params(CONFIG), root / "features", root / "qm9.parquet",
                    root / "folds.parquet", root / "models", root / "plots", root / "metrics")
    out = root / "plots" / "alpha"
    types = pd.read_csv(out / "types.csv")
    assert len(types) == 2 * 3 * 2 * 12  # rules x (signed, absolute, share) x (all, no_outliers) x types
    shares = types[(types["value"] == "share") & (types["subset"] == "all")]
    assert (shares["mean"] >= 0).all()
    for rule in ("lrp0", "ab21"):  # plain shares of |R|: every molecule's 12 shares sum to 1
        np.testing.assert_allclose(shares[shares["rule"] == rule]["mean"].sum(), 1.0, rtol=1e-9)
    per_molecule = pd.read_csv(out / "molecules.csv")
    assert len(per_molecule) == 2 * m["n_molecules"] and set(per_molecule["rule"]) == {"lrp0", "ab21"}
    assert per_molecule["conservation_rel_error"].max() <= 1e-5  # the default composite, float32
    for rule in ("lrp0", "ab21"):
        assert m["rules"][rule]["composite"] == f"{'lrp0' if rule == 'lrp0' else 'ab(2,1)'}; eps(0.1) at embedding, head.output"
        assert m["rules"][rule]["empty_explanations"]["count"] == int(per_molecule[per_molecule["rule"] == rule]["empty"].sum())
    assert set(types["type"]) == set(FEATURE_TYPES)
    for rule in ("lrp0", "ab21"):
        assert (out / f"types_{rule}.png").stat().st_size > 0
        assert m["rules"][rule]["conservation_rel_error"]["max"] <= 1e-5
        assert set(m["rules"][rule]["hypothesis"]) >= {"holds", "sign_test_p", "geometric_mean_rank"}
    assert set(m["faithfulness"]["atoms"]) == {"lrp0", "ab21", "gradient_x_input", "random"}
    assert (out / "aopc.csv").exists() and (out / "perturbation.png").exists()
    assert len(list((out / "molecules").glob("*.png"))) == 2
    metrics_files = list((root / "metrics").iterdir())
    assert [p.name for p in metrics_files] == ["explain_alpha.json"]  # nothing per molecule in metrics/
    assert json.loads(metrics_files[0].read_text())["n_molecules"] == m["n_molecules"]


def test_config_rejects_unknown_rule() -> None:
    with pytest.raises(QmlrpError):
        ExplainConfig.from_params({"rules": ["lrp7"]})
    with pytest.raises(QmlrpError):
        ExplainConfig.from_params({"typo": 1})


def test_ground_truth_plumbing(workspace: Path) -> None:
    from qmlrp.features.store import FeatureStore
    from qmlrp.relevance.ground_truth import run_ground_truth
    from qmlrp.targets.crippen import crippen_data
    from qmlrp.relevance.rules import resolve_rules
    from rdkit.Chem import Crippen

    store = FeatureStore.open(workspace / "features")
    data = crippen_data(store, workspace / "qm9.parquet")
    assert data.positions.size == len(store)
    assert all(c.size == n for c, n in zip(data.contributions, store.n_atoms[data.positions]))
    # the contributions add up to RDKit's molecular logP
    from qmlrp.features.molecule import build_molecule
    row = pd.read_parquet(workspace / "qm9.parquet").set_index("id").loc[int(store.ids[0])]
    mol, _ = build_molecule(np.asarray(row["atomic_numbers"]), np.asarray(row["coordinates"]).reshape(-1, 3), row["smiles"])
    assert abs(Crippen.MolLogP(mol) - data.target[0]) < 1e-6
    # the model of stage train_crippen (here random weights) and its split
    from qmlrp.io import write_json
    from qmlrp.models.io import save_model

    crippen_dir = workspace / "models" / "crippen"
    model = randomised_model(seed=5)
    model.update_metadata(architecture=asdict(SMALL))
    save_model(model, crippen_dir / "model.npz")
    test_ids = [int(i) for i in store.ids[:10]]
    write_json({"test_ids": test_ids}, crippen_dir / "split.json")
    write_json({"n_train": 24, "n_validation": 6, "epochs_run": 1, "best_val_mae": 0.5}, crippen_dir / "run.json")
    summary, frame = run_ground_truth(store, workspace / "qm9.parquet", resolve_rules(["lrp0"]),
                                      model_file=crippen_dir / "model.npz", results_dir=crippen_dir, seed=1)
    assert summary["n_test"] == 10 and set(frame["id"]) == set(test_ids)
    assert set(summary["kendall_tau"]) == {"lrp0", "gradient_x_input", "random"}
    # the summary is the mean of the per-molecule tau in the frame (a check that can fail, unlike -1 <= tau <= 1)
    means = frame.groupby("method")["tau"].mean()
    for method, v in summary["kendall_tau"].items():
        np.testing.assert_allclose(v["tau_mean"], means[method], rtol=1e-12)
    assert set(frame.columns) == {"id", "method", "tau"}


def _xyz_text(row: pd.Series, comment: str = "test molecule") -> str:
    symbols = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    xyz = np.asarray(row["coordinates"]).reshape(-1, 3)
    lines = [str(len(xyz)), comment] + [f"{symbols[int(z)]} {x:.6f} {y:.6f} {w:.6f}"
                                        for z, (x, y, w) in zip(row["atomic_numbers"], xyz)]
    return "\n".join(lines) + "\n"


def test_explain_command(workspace: Path, tmp_path: Path) -> None:
    """Good XYZ and SDF inputs are drawn; each bad input (missing file, unknown suffix, element
    outside the domain) gets one error line; exit status 1; --out pointing at a file is one line."""
    from rdkit import Chem

    from qmlrp.features.molecule import build_molecule
    from qmlrp.relevance.commands import register

    table = pd.read_parquet(workspace / "qm9.parquet")
    good = tmp_path / "mol.xyz"
    good.write_text(_xyz_text(table.iloc[0]))
    row = table.iloc[1]
    mol, _ = build_molecule(np.asarray(row["atomic_numbers"]), np.asarray(row["coordinates"]).reshape(-1, 3),
                            row["smiles"])
    sdf = tmp_path / "second.sdf"
    sdf.write_text(Chem.MolToMolBlock(mol) + "$$$$\n")
    chlorine = tmp_path / "chlorine.xyz"
    chlorine.write_text("2\nHCl\nH 0 0 0\nCl 0 0 1.27\n")
    unknown = tmp_path / "mol.txt"
    unknown.write_text("nothing\n")
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "pics"
    args = ["--target", "alpha", "--rule", "ab21", "--out", str(out), "--models-dir", str(workspace / "models")]
    result = runner.invoke(app, ["explain", str(good), str(tmp_path / "missing.xyz"), str(sdf), str(unknown),
                                 str(chlorine), *args])
    assert result.exit_code == 1, result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors), errors
    assert "missing.xyz" in errors[0] and "mol.txt" in errors[1] and "chlorine.xyz" in errors[2]
    assert "XYZ" not in errors[1] or "SDF" in errors[1]  # no XYZ-only message for other files
    summary = result.stdout.strip().splitlines()
    assert len(summary) == 2 and all("top types" in line and "inputs carry" in line for line in summary)
    assert (out / "mol_alpha_ab21.png").stat().st_size > 0 and (out / "second_alpha_ab21.png").stat().st_size > 0
    ok = runner.invoke(app, ["explain", str(good), str(sdf), *args])
    assert ok.exit_code == 0, ok.output
    as_file = runner.invoke(app, ["explain", str(good), "--target", "alpha", "--out", str(good),
                                  "--models-dir", str(workspace / "models")])
    assert isinstance(as_file.exception, QmlrpError) and "is a file" in str(as_file.exception)
    bad_rule = runner.invoke(app, ["explain", str(good), "--target", "alpha", "--rule", "nope",
                                   "--models-dir", str(workspace / "models")])
    assert isinstance(bad_rule.exception, QmlrpError)


DEPS_SCRIPT = """
import json, sys
import qmlrp.cli  # what pipeline/explain.py loads
from qmlrp.relevance.explain import ExplainConfig, run_explain
root = sys.argv[1]
config = ExplainConfig.from_params(json.loads(sys.argv[2]))
run_explain("alpha", config, root + "/features", root + "/qm9.parquet", root + "/folds.parquet", root + "/models",
            root + "/deps_plots", root + "/deps_metrics")
print(json.dumps(sorted({getattr(m, "__file__", None) or "" for n, m in list(sys.modules.items())
                         if n == "qmlrp" or n.startswith("qmlrp.")})))
"""


@pytest.mark.integration
def test_explain_stage_deps_cover_every_imported_module(workspace: Path) -> None:
    """Run the stage's code in a fresh interpreter and check that dvc.yaml's explain deps cover
    every qmlrp module it imported (a change to any of them must rerun the stage)."""
    import os
    import subprocess
    import sys

    import yaml

    repo = Path(__file__).resolve().parents[2]
    deps = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["explain"]["deps"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", DEPS_SCRIPT, str(workspace), json.dumps(CONFIG)], capture_output=True,
                         text=True, env=env, cwd=repo)
    assert run.returncode == 0, run.stderr[-3000:]
    modules = [Path(p).resolve().relative_to(repo).as_posix() for p in json.loads(run.stdout.strip().splitlines()[-1])]
    assert "src/qmlrp/relevance/explain.py" in modules and "src/qmlrp/models/gc.py" in modules
    uncovered = [m for m in modules if not any(m == d or m.startswith(d.rstrip("/") + "/") for d in deps)]
    assert not uncovered, f"explain stage imports modules that dvc.yaml does not list as deps: {uncovered}"
    # every listed file exists, and the modules of other stages are not listed: an edit to the comparison of
    # explanations, the autoencoder's code relevance or the test oracle must not rerun the explain stages
    assert all((repo / d).exists() for d in deps if d.startswith(("src/", "pipeline/"))), deps
    for other_stage_module in ("src/qmlrp/relevance/compare.py", "src/qmlrp/relevance/code.py",
                               "src/qmlrp/relevance/oracle.py"):
        assert other_stage_module not in modules
        assert not any(other_stage_module == d or other_stage_module.startswith(d.rstrip("/") + "/") for d in deps)
    # explain_beta and explain_crippen run the same code on other data: the same source deps
    for stage in ("explain_beta", "explain_crippen"):
        other = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][stage]["deps"]
        assert [d for d in other if d.startswith("src/")] == [d for d in deps if d.startswith("src/")], stage


def test_output_selection_parsing() -> None:
    from qmlrp.relevance.explain import parse_output

    assert parse_output(None, "x") is None and parse_output("", "x") is None
    assert parse_output(2, "x") == 2 and parse_output("2", "x") == 2
    assert parse_output([1, 0, -2], "x") == (1.0, 0.0, -2.0) and parse_output("1,0,-2", "x") == (1.0, 0.0, -2.0)
    views = ExplainConfig.from_params({"outputs": {"frequencies": {"omega1": 0, "mode_sum": "modes",
                                                                    "pair": [0.5, 0.5]}}}).outputs
    assert views == {"frequencies": {"omega1": 0, "mode_sum": "modes", "pair": (0.5, 0.5)}}
    with pytest.raises(QmlrpError, match="explain.outputs.frequencies.first"):
        ExplainConfig.from_params({"outputs": {"frequencies": {"first": "highest"}}})
    with pytest.raises(QmlrpError, match="unknown target"):
        ExplainConfig.from_params({"outputs": {"frequency": {"omega1": 0}}})
    with pytest.raises(QmlrpError, match="unknown keys|output"):
        ExplainConfig.from_params({"output": 0})  # the old single key is gone: outputs per target


def test_vector_target_views(workspace: Path) -> None:
    """A frequency model is explained once per view: omega1 (output 0) and the sum over each
    molecule's own real modes; the explained value is that functional of the predictions."""
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import load_model, model_path, save_model
    from qmlrp.features.store import FeatureStore

    root = workspace
    model = randomised_model(seed=5, n_outputs=81)
    model.head.target_scaling.set_statistics(np.linspace(3000.0, 100.0, 81), np.full(81, 50.0))
    model.update_metadata(architecture=asdict(SMALL))
    save_model(model, model_path(root / "models", "frequencies", 0))
    config = ExplainConfig.from_params({**CONFIG, "rules": ["eps"],
                                        "outputs": {"frequencies": {"omega1": 0, "mode_sum": "modes"}}})
    m = run_explain("frequencies", config, root / "features", root / "qm9.parquet", root / "folds.parquet",
                    root / "models", root / "plots", root / "metrics")
    assert set(m["views"]) == {"omega1", "mode_sum"} and m["views"]["mode_sum"]["output"] == "modes"
    store = FeatureStore.open(root / "features")
    frame = pd.read_parquet(root / "qm9.parquet", columns=["id", "frequencies_cm1"]).set_index("id")
    n_modes = np.array([len(v) for v in frame["frequencies_cm1"].reindex(store.ids)])
    y = np.asarray(load_model(model_path(root / "models", "frequencies", 0))(
        batch_to_inputs(store.batch(np.arange(len(store)))), training=False), np.float64)
    expected = {"omega1": y[:, 0], "mode_sum": np.array([row[:n].sum() for row, n in zip(y, n_modes)])}
    for view, values in expected.items():
        out = root / "plots" / "frequencies" / view
        per_molecule = pd.read_csv(out / "molecules.csv").set_index("id").loc[store.ids]
        np.testing.assert_allclose(per_molecule["output"], values, rtol=1e-4)
        assert per_molecule["conservation_rel_error"].max() <= 1e-4
        shares = pd.read_parquet(out / "shares.parquet")
        np.testing.assert_allclose(shares[list(FEATURE_TYPES)].sum(1), 1.0, rtol=1e-5)
        assert (out / "types_eps.png").exists()
