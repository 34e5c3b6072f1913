"""``qmlrp predict`` never loses the batch and never predicts wrong chemistry silently: crashes and
overlapping atoms cost one molecule, disconnected blocks and ions are refused, molecules outside
QM9's ranges are marked, missing fold models refuse (or are counted), library noise stays hidden."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.features.test_domain import embedded
from tests.features.test_molecule_domain import NH4
from tests.training.conftest import small_params
from tests.training.test_predict import invoke, xyz_block

pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models_dir(trained, small_data) -> Path:
    return small_data / "models"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, qm9_record) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("domain")
    methane, water, benzene = qm9_record(1), qm9_record(3), qm9_record(214)
    out: dict[str, Path] = {}

    def write(key: str, text: str) -> None:
        out[key] = root / f"{key}.xyz"
        out[key].write_text(text)

    write("good", xyz_block(methane.atomic_numbers, methane.coordinates))
    overlap = np.array(water.coordinates, float)
    overlap[2] = overlap[0]  # an H on the O: used to segfault RDKit and lose every molecule of the call
    write("overlap", xyz_block(water.atomic_numbers, overlap))
    write("two", xyz_block(np.concatenate([methane.atomic_numbers, water.atomic_numbers]),
                           np.concatenate([methane.coordinates, water.coordinates + [6.0, 0, 0]])))
    write("nh4", xyz_block(*NH4))
    write("naphthalene", xyz_block(*embedded("c1ccc2ccccc2c1")))
    centre = benzene.coordinates.mean(axis=0)
    write("stretched", xyz_block(benzene.atomic_numbers, centre + 1.12 * (benzene.coordinates - centre)))
    write("h2", xyz_block([1, 1], [[0, 0, 0], [0.74, 0, 0]]))  # RDKit's Hückel code prints "suspicious"
    return out


def test_overlap_disconnected_and_ion_cost_one_line_each(inputs, models_dir):
    result = invoke("predict", *(str(inputs[k]) for k in ("overlap", "good", "two", "nh4")), "--models-dir", str(models_dir))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {inputs['overlap']} [overlap]: atoms 1 and 3 are 0.000 Å apart (less than 0.5 Å: overlapping atoms)",
        f"error: {inputs['two']} [two]: disconnected: 2 fragments (one molecule per XYZ block)",
        f"error: {inputs['nh4']} [nh4]: odd number of electrons: charged: perceived as a cation (net charge +1); "
        "outside the neutral QM9 domain",
    ]
    rows = result.stdout.strip().splitlines()
    assert len(rows) == 2 and rows[1].split()[0] == "good" and rows[1].split()[-1] == "inside"


def test_a_crash_while_perceiving_costs_only_that_molecule(inputs, models_dir, monkeypatch):
    from qmlrp.features import user_inputs

    real = user_inputs._featurize_one

    def crash_on_h2(molecule):
        if molecule.name == "h2":
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(molecule)

    monkeypatch.setattr(user_inputs, "_featurize_one", crash_on_h2)
    result = invoke("predict", str(inputs["h2"]), str(inputs["good"]), "--models-dir", str(models_dir))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {inputs['h2']} [h2]: RDKit cannot perceive the structure "
                                     "(the perceiving process crashed (SIGSEGV))")
    assert result.stdout.strip().splitlines()[1].startswith("good")


def test_outside_training_domain_is_warned_and_marked(inputs, models_dir):
    result = invoke("predict", str(inputs["good"]), str(inputs["naphthalene"]), str(inputs["stretched"]), "--json",
                    "--models-dir", str(models_dir))
    assert result.exit_code == 0, result.output
    warnings = result.stderr.strip().splitlines()
    assert f"warning: {inputs['naphthalene']} [naphthalene]: outside QM9's training domain: 10 heavy atoms, QM9 has at most 9" in warnings
    assert any(w.startswith(f"warning: {inputs['stretched']} [stretched]: outside QM9's training domain: H-C single bond length")
               for w in warnings)
    assert all(w.startswith("warning: ") for w in warnings)
    molecules = {m["name"]: m for m in json.loads(result.stdout)["molecules"]}
    assert molecules["good"]["in_training_domain"] is True and molecules["good"]["domain_warnings"] == []
    assert molecules["naphthalene"]["in_training_domain"] is False
    assert molecules["naphthalene"]["domain_warnings"][:2] == ["10 heavy atoms, QM9 has at most 9", "10 C atoms, QM9 has at most 9"]
    assert molecules["stretched"]["in_training_domain"] is False
    table = invoke("predict", str(inputs["naphthalene"]), "--models-dir", str(models_dir))
    assert table.stdout.strip().splitlines()[1].split()[-1] == "outside"


@pytest.fixture
def nine_of_ten(models_dir, tmp_path) -> Path:
    """The test models with alpha's fold 1 deleted (what a failed `dvc repro` left behind)."""
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    (copy / "alpha" / "fold1.npz").unlink()
    small_params(tmp_path)
    return copy


def test_missing_fold_refuses(inputs, nine_of_ten):
    result = invoke("predict", str(inputs["good"]), "--models-dir", str(nine_of_ten))
    assert result.exit_code != 0 and result.stdout == ""
    assert str(result.exception) == (f"{nine_of_ten}: alpha: fold 1 missing (1 of 2 models); "
                                     "pass --allow-missing-folds to predict with the others")


def test_missing_fold_allowed_says_how_many_models(inputs, nine_of_ten):
    result = invoke("predict", str(inputs["good"]), "--json", "--allow-missing-folds", "--models-dir", str(nine_of_ten))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (f"warning: {nine_of_ten}: alpha: fold 1 missing (1 of 2 models); "
                                     "predicting with the others")
    molecule = json.loads(result.stdout)["molecules"][0]
    assert molecule["alpha"]["n_models"] == 1 and molecule["zpve"]["n_models"] == 2
    table = invoke("predict", str(inputs["good"]), "--allow-missing-folds", "--models-dir", str(nine_of_ten))
    assert "alpha (bohr^3, 1 model)" in table.stdout and "zpve (eV, 2 models)" in table.stdout


def test_out_file(inputs, models_dir, tmp_path):
    result = invoke("predict", str(inputs["good"]), "--out", str(tmp_path), "--models-dir", str(models_dir))
    assert result.exit_code != 0 and str(result.exception) == f"--out {tmp_path}: is a folder, expected a file name"
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("predict", str(inputs["good"]), "--out", str(blocker / "p.json"), "--models-dir", str(models_dir))
    assert str(result.exception) == f"--out {blocker / 'p.json'}: {blocker} is a file, not a folder"
    result = invoke("predict", str(inputs["good"]), "--json", "--out", str(tmp_path / "p.json"), "--models-dir", str(models_dir))
    assert result.exit_code == 0 and json.loads((tmp_path / "p.json").read_text()) == json.loads(result.stdout)


def run_qmlrp(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "PYTHONWARNINGS"))}
    return subprocess.run([sys.executable, "-m", "qmlrp", *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=600)


def test_only_qmlrp_lines_unless_verbose(inputs, models_dir):
    args = ("predict", str(inputs["h2"]), str(inputs["overlap"]), str(inputs["good"]), "--models-dir", str(models_dir),
            "--params", str(small_params(models_dir.parent)))
    quiet = run_qmlrp(*args)
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines() == [
        f"error: {inputs['overlap']} [overlap]: atoms 1 and 3 are 0.000 Å apart (less than 0.5 Å: overlapping atoms)",
        f"warning: {inputs['h2']} [h2]: outside QM9's training domain: a H-H single bond, which QM9 does not have"]
    rows = quiet.stdout.strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("molecule") and [r.split()[0] for r in rows[1:]] == ["h2", "good"]
    verbose = run_qmlrp(*args, "--verbose")
    assert verbose.returncode == 1
    assert "suspicious" in verbose.stdout + verbose.stderr  # RDKit's own line, shown only on request
    # the backend's start-up lines too: JAX's (the default: "pjrt_client") or TensorFlow's
    assert any(word in verbose.stderr for word in ("pjrt", "oneDNN", "absl")), verbose.stderr[-2000:]
