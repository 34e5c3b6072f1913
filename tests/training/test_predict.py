"""``qmlrp predict`` on good and bad files: rows, ensemble statistics, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

QM9_IDS = (1, 22, 4000, 57518)


def cli_app():
    """The ``qmlrp`` app."""
    from qmlrp import cli

    return cli.app


def invoke(*args: str):
    """``qmlrp ARGS`` in-process; predict gets the test models' params (train.folds [0, 1])."""
    from tests.training.conftest import small_params

    runner = CliRunner()
    if args and args[0] == "predict" and "--params" not in args:
        models = Path(args[list(args).index("--models-dir") + 1]) if "--models-dir" in args else Path("models")
        args = (*args, "--params", str(small_params(models.parent)))
    return runner.invoke(cli_app(), list(args))


def xyz_block(numbers, coords, comment: str = "") -> str:
    from qmlrp.data.xyz import PERIODIC_SYMBOLS

    lines = [str(len(numbers)), comment]
    lines += [f"{PERIODIC_SYMBOLS[int(z)]} {x:.6f} {y:.6f} {w:.6f}" for z, (x, y, w) in zip(numbers, coords)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory, qm9_record) -> dict[str, Path]:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    root = tmp_path_factory.mktemp("predict")
    records = [qm9_record(i) for i in QM9_IDS]
    out: dict[str, Path] = {}
    out["single"] = root / "methane.xyz"
    out["single"].write_text(xyz_block(records[0].atomic_numbers, records[0].coordinates, "methane"))
    out["multi"] = root / "three.xyz"
    out["multi"].write_text("".join(xyz_block(r.atomic_numbers, r.coordinates, r.name) for r in records[1:]))
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)OC"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    mol.SetProp("_Name", "methyl_acetate")
    dianion = Chem.AddHs(Chem.MolFromSmiles("[O-]C(=O)C(=O)[O-]"))
    AllChem.EmbedMolecule(dianion, randomSeed=1)
    dianion.SetProp("_Name", "oxalate")
    out["sdf"] = root / "two.sdf"
    with Chem.SDWriter(str(out["sdf"])) as writer:
        writer.write(mol)
        writer.write(dianion)
    rng = np.random.default_rng(0)
    out["sulfur"] = root / "h2s.xyz"
    out["sulfur"].write_text(xyz_block([16, 1, 1], [[0, 0, 0], [1.34, 0, 0], [-0.3, 1.3, 0]]))
    out["big"] = root / "big.xyz"
    out["big"].write_text(xyz_block([6] * 10 + [1] * 22, rng.normal(0, 3, (32, 3))))
    out["radical"] = root / "methyl.xyz"
    out["radical"].write_text(xyz_block([6, 1, 1, 1], [[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]]))
    out["apart"] = root / "apart.xyz"  # even electron count, no sane structure: two bare carbons 8 A apart
    out["apart"].write_text(xyz_block([6, 6], [[0, 0, 0], [8.0, 0, 0]]))
    out["malformed"] = root / "broken.xyz"
    out["malformed"].write_text("three\nnot a count\nC 0 0 0\n")
    out["unsupported"] = root / "notes.txt"
    out["unsupported"].write_text("hello\n")
    return out


@pytest.fixture(scope="module")
def models_dir(trained, small_data) -> Path:
    return small_data / "models"


def test_good_files_print_one_row_per_molecule(files, models_dir):
    result = invoke("predict", str(files["single"]), str(files["multi"]), str(files["sdf"]), "--models-dir", str(models_dir))
    # the SDF's oxalate dianion is charged: one error line, exit 1, every other molecule predicted
    assert result.exit_code == 1, result.output
    lines = result.stdout.strip().splitlines()
    assert "alpha (bohr^3, 2 models)" in lines[0] and "zpve (eV, 2 models)" in lines[0]
    names = [line.split()[0] for line in lines[1:]]
    assert names == ["methane", "three#1", "three#2", "three#3", "methyl_acetate"]
    assert all("±" in line for line in lines[1:])
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "oxalate" in errors[0] and "charged: net charge -2" in errors[0]
    # ETKDG's unoptimised C-H bonds (1.12-1.13 A) are longer than QM9's: predicted, with a warning
    assert all(line.startswith(f"warning: {files['sdf']} [methyl_acetate]: outside QM9's training domain: H-C single")
               for line in lines if line not in errors)


def test_json_output_matches_the_ensemble(files, models_dir):
    from qmlrp.features.featurize import featurize_geometry
    from qmlrp.features.pairs import make_batch
    from qmlrp.models.inputs import batch_to_inputs
    from qmlrp.models.io import find_models, load_model
    from qmlrp.data.xyz import read_xyz

    result = invoke("predict", str(files["multi"]), "--json", "--models-dir", str(models_dir))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["errors"] == [] and len(payload["molecules"]) == 3
    records = read_xyz(files["multi"])
    batch = make_batch([featurize_geometry(r.atomic_numbers, r.coordinates, r.smiles, r.name) for r in records], np.arange(3))
    for target, folds in find_models(models_dir).items():
        values = np.stack([np.asarray(load_model(p)(batch_to_inputs(batch), training=False)).reshape(-1) for _, p in folds])
        got_mean = [m[target]["mean"] for m in payload["molecules"]]
        got_sd = [m[target]["sd"] for m in payload["molecules"]]
        np.testing.assert_allclose(got_mean, values.mean(0), rtol=1e-5)
        np.testing.assert_allclose(got_sd, values.std(0, ddof=1), rtol=1e-4, atol=1e-6)
        assert payload["molecules"][0][target]["n_models"] == len(folds) == 2


BAD = {
    "sulfur": "element(s) S outside H, C, N, O, F",
    "big": "32 atoms, more than the 29 of QM9",
    "radical": "odd number of electrons",
    "apart": "",  # RDKit's perception fails; the wording is RDKit's
    "malformed": "line 1: expected the number of atoms",
    "unsupported": "unsupported file type .txt",
}


def test_bad_inputs_give_one_line_each_and_exit_1(files, models_dir):
    keys = list(BAD)
    args = [str(files[k]) for k in keys[:3]] + [str(files["single"])] + [str(files[k]) for k in keys[3:]]
    result = invoke("predict", *args, "--models-dir", str(models_dir))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(BAD)
    for key, line in zip(keys, errors):
        assert line.startswith(f"error: {files[key]}") and BAD[key] in line, line
    rows = result.stdout.strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("methane")  # the good molecule is still predicted


def test_all_bad_and_missing_models(files, models_dir, tmp_path):
    result = invoke("predict", str(files["sulfur"]), str(tmp_path / "missing.xyz"), "--models-dir", str(models_dir))
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 2
    assert "no such file" in result.stderr and result.stdout.strip() == ""
    from qmlrp.errors import QmlrpError

    result = invoke("predict", str(files["single"]), "--models-dir", str(tmp_path / "nothing"))
    assert isinstance(result.exception, QmlrpError) and "no models found" in str(result.exception)
