"""The explain stage end to end on a 40-molecule store (random-weight model), the Crippen
ground-truth plumbing, and the ``qmlrp explain`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from qmlrp.errors import QmlrpError
from qmlrp.relevance.explain import ExplainConfig, run_explain
from qmlrp.relevance.summary import FEATURE_TYPES

from tests.relevance.test_model_lrp import randomised_model


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
    assert len(types) == 2 * 2 * 2 * 12  # rules x (signed, absolute) x (all, no_outliers) x types
    assert set(types["type"]) == set(FEATURE_TYPES)
    for rule in ("lrp0", "ab21"):
        assert (out / f"types_{rule}.png").stat().st_size > 0
        # float32: LRP-0 divides by near-zero pre-activations of a random net; exact in float64 (test_model_lrp)
        assert m["rules"][rule]["conservation_rel_error"]["max"] < 1e-2
        assert m["rules"][rule]["conservation_rel_error"]["median"] < 1e-5
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
    from qmlrp.relevance.ground_truth import crippen_data, run_ground_truth
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
    summary, frame = run_ground_truth(store, workspace / "qm9.parquet", resolve_rules(["lrp0"]),
                                      {"epochs": 1, "time_limit_minutes": 1, "test_fraction": 0.25, "seed": 1},
                                      {"atom_width": 8, "pair_width": 8, "atom_hidden": 8, "pair_hidden": 8,
                                       "embedding_width": 8, "head_units": [16]})
    assert set(summary["kendall_tau"]) == {"lrp0", "gradient_x_input", "random"}
    assert all(-1 <= v["tau_mean"] <= 1 for v in summary["kendall_tau"].values())
    assert set(frame.columns) == {"id", "method", "tau"}


def test_explain_command(workspace: Path, tmp_path: Path) -> None:
    from qmlrp.relevance.commands import register

    row = pd.read_parquet(workspace / "qm9.parquet").iloc[0]
    symbols = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    xyz = np.asarray(row["coordinates"]).reshape(-1, 3)
    lines = [str(len(xyz)), "test molecule"] + [f"{symbols[int(z)]} {x:.6f} {y:.6f} {w:.6f}"
                                                 for z, (x, y, w) in zip(row["atomic_numbers"], xyz)]
    path = tmp_path / "mol.xyz"
    path.write_text("\n".join(lines) + "\n")
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    out = tmp_path / "pics"
    result = runner.invoke(app, ["explain", str(path), "--target", "alpha", "--rule", "ab21", "--out", str(out),
                                 "--models-dir", str(workspace / "models")])
    assert result.exit_code == 0, result.output
    assert "top types" in result.output
    assert (out / "mol_alpha_ab21.png").stat().st_size > 0
    bad = runner.invoke(app, ["explain", str(tmp_path / "missing.xyz"), "--target", "alpha",
                              "--models-dir", str(workspace / "models")])
    assert isinstance(bad.exception, QmlrpError)
    bad_rule = runner.invoke(app, ["explain", str(path), "--target", "alpha", "--rule", "nope",
                                   "--models-dir", str(workspace / "models")])
    assert isinstance(bad_rule.exception, QmlrpError)
