"""A dataset's own training section lies over ``train`` for that dataset's targets only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qmlrp.errors import QmlrpError
from qmlrp.training.config import TrainConfig
from qmlrp.training.dataset_config import section_name, target_config

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def _params(tmp_path: Path, **train_beta: object) -> Path:
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train_beta"] = train_beta
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_overrides_apply_to_beta_only(tmp_path: Path) -> None:
    path = _params(tmp_path, epochs=150, early_stopping_patience=30, learning_rate="3e-4")
    plain = TrainConfig.load(path)
    beta = target_config("beta", path)
    assert (beta.epochs, beta.early_stopping_patience, beta.learning_rate) == (150, 30, 3e-4)
    assert beta.batch_size == plain.batch_size and beta.model == plain.model and beta.seed == plain.seed
    for name in ("alpha", "zpve", "frequencies", "omega1"):
        assert target_config(name, path) == plain
    assert section_name("beta") == "train_beta" and section_name("alpha") is None


def test_repository_params_give_beta_more_epochs() -> None:
    assert target_config("beta", REPO_PARAMS).epochs > TrainConfig.load(REPO_PARAMS).epochs


def test_bad_overrides_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(QmlrpError, match=r"train_beta.*'epoch'"):
        target_config("beta", _params(tmp_path, epoch=100))
    with pytest.raises(QmlrpError, match="train_beta"):
        target_config("beta", _params(tmp_path, targets=["beta"]))
    with pytest.raises(QmlrpError, match="epochs"):
        target_config("beta", _params(tmp_path, epochs=0))
