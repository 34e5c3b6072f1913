"""``qmlrp predict`` end to end on bad model files and bad records (issue 21): one line each, the
rest still predicted; a single model prints no spread. Uses a small untrained model saved here."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qmlrp.errors import QmlrpError
from tests.models.test_io import rewritten
from tests.training.conftest import small_params
from tests.training.test_predict import xyz_block


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """``models/alpha/fold0.npz``: one small model predicting 75.3 for every molecule, and a
    params.yaml beside it whose train.folds is [0]."""
    import keras

    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model
    from qmlrp.models.io import save_model

    root = tmp_path_factory.mktemp("one_model")
    keras.utils.set_random_seed(5)
    config = ModelConfig(head_units=(16,), embedding_width=8, atom_width=8, pair_width=8, atom_hidden=8, pair_hidden=8)
    model = build_model(config, metadata={"target": "alpha", "fold": 0, "architecture": asdict(config)})
    model.head.target_scaling.set_statistics(75.3, 8.1)
    save_model(model, root / "models" / "alpha" / "fold0.npz")
    small_params(root, folds=[0])
    return root / "models"


def predict(models: Path, *args: str):
    from qmlrp import cli

    return CliRunner().invoke(cli.app, ["predict", *args, "--models-dir", str(models),
                                        "--params", str(models.parent / "params.yaml")])


@pytest.fixture(scope="module")
def methane(tmp_path_factory, qm9_record) -> Path:
    path = tmp_path_factory.mktemp("mol") / "methane.xyz"
    path.write_text(xyz_block(qm9_record(1).atomic_numbers, qm9_record(1).coordinates, "methane"))
    return path


def test_a_single_model_prints_no_spread(models_dir, methane):
    result = predict(models_dir, str(methane))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["molecule  atoms  alpha (bohr^3, 1 model)  QM9 domain",
                                          "methane       5                  75.3000      inside"]
    result = predict(models_dir, str(methane), "--json")
    value = json.loads(result.stdout)["molecules"][0]["alpha"]
    assert value == {"mean": pytest.approx(75.3), "sd": None, "units": "bohr^3", "n_models": 1}


def spoilt_models(models_dir: Path, folder: Path, header=None, arrays=None) -> Path:
    """A copy of ``models_dir`` whose alpha/fold0.npz is rewritten (:func:`tests.models.test_io.rewritten`)."""
    (folder / "models" / "alpha").mkdir(parents=True)
    (folder / "params.yaml").write_text((models_dir.parent / "params.yaml").read_text())
    rewritten(models_dir / "alpha" / "fold0.npz", folder / "models" / "alpha" / "fold0.npz", header, arrays)
    return folder / "models"


def test_a_model_file_with_nan_weights_is_one_line(models_dir, methane, tmp_path, monkeypatch):
    """Refused before any molecule is featurized."""
    from qmlrp.training import predict as predict_module

    monkeypatch.setattr(predict_module, "featurize_files", lambda *a, **k: pytest.fail("featurized first"))

    def spoil(header, members):
        members[f"w{header['names'].index('weave_gc/head/output/bias'):03d}"][0] = np.nan

    models = spoilt_models(models_dir, tmp_path, arrays=spoil)
    result = predict(models, str(methane))
    assert isinstance(result.exception, QmlrpError) and result.stdout == ""  # the CLI: exit status 2
    assert str(result.exception) == (f"{models}/alpha/fold0.npz: weight weave_gc/head/output/bias has 1 NaN and 0 "
                                     "infinite values (of 1): a diverged or damaged model")


def test_a_model_file_declaring_a_huge_width_is_one_line(models_dir, methane, tmp_path):
    models = spoilt_models(models_dir, tmp_path, header=lambda h: h["config"].update(embedding_width=10**9))
    result = predict(models, str(methane))
    assert isinstance(result.exception, QmlrpError) and result.stdout == ""
    assert str(result.exception) == (f"{models}/alpha/fold0.npz: malformed model configuration (the model would have "
                                     "1.89e+11 weights, more than the 100,000,000 allowed (check depth, the widths and "
                                     "head_units))")


def test_a_bad_record_costs_only_itself(models_dir, qm9_record, tmp_path):
    """Record 2 has an unknown element (unreadable), record 4 sulphur (readable, not predictable), the
    last block is cut short: records 1, 3 and 5 are predicted, each bad one is one line, exit status 1."""
    methane, water = qm9_record(1), qm9_record(3)
    good = [xyz_block(m.atomic_numbers, m.coordinates) for m in (methane, water)]
    unknown = xyz_block(water.atomic_numbers, water.coordinates).replace("\nO ", "\nXx ")
    sulphur = xyz_block(water.atomic_numbers, water.coordinates).replace("\nO ", "\nS ")
    path = tmp_path / "mixed.xyz"
    path.write_text(good[0] + unknown + good[1] + sulphur + good[0] + "3\ncut short\nO 0 0 0\n")
    result = predict(models_dir, str(path))
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"error: {path} [mixed#2]: line 10: unknown element symbol 'Xx'",
        f"error: {path} [mixed#4]: element(s) S outside H, C, N, O, F",
        f"error: {path} [mixed#6]: line 30: 3 atoms announced but the file ends early",
    ]
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["mixed#1", "mixed#3", "mixed#5"]
