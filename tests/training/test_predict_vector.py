"""``qmlrp predict`` with the equivariant vector model: beta_par with mu and beta_vec, rotating with the input."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.models.config import ModelConfig

SMALL = ModelConfig(depth=1, atom_width=8, pair_width=8, atom_hidden=8, pair_hidden=8, embedding_width=8, head_units=(8,))


def _xyz(numbers, coords, name: str) -> str:
    from qmlrp.data.xyz import PERIODIC_SYMBOLS

    lines = [str(len(numbers)), name] + [f"{PERIODIC_SYMBOLS[int(z)]} {x:.6f} {y:.6f} {w:.6f}"
                                         for z, (x, y, w) in zip(numbers, coords)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from dataclasses import asdict

    from qmlrp.models.equivariant import build_vector_model
    from qmlrp.models.io import save_model

    root = tmp_path_factory.mktemp("vector_models")
    rng = np.random.default_rng(0)
    for fold in (0, 1):
        m = build_vector_model(SMALL, metadata={"architecture": asdict(SMALL), "target": "beta_vector"})
        for w in m.head.trainable_weights:
            w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
        m.head.scaling.set_scales([0.8, 40.0])
        save_model(m, root / "beta_vector" / f"fold{fold}.npz")
    return root


def test_predict_reports_beta_parallel_and_the_vectors_which_rotate(models_dir, qm9_record, tmp_path):
    from qmlrp.training.predict import Ensemble, predict_files

    record = qm9_record(120)
    coords = np.asarray(record.coordinates, np.float64)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    rot = q if np.linalg.det(q) > 0 else -q
    (tmp_path / "a.xyz").write_text(_xyz(record.atomic_numbers, coords, "a"))
    (tmp_path / "b.xyz").write_text(_xyz(record.atomic_numbers, coords @ rot.T + 5.0, "b"))
    ensemble = Ensemble(models_dir, expected_folds=[0, 1])
    (a, b), failures = predict_files([tmp_path / "a.xyz", tmp_path / "b.xyz"], ensemble)
    assert not failures
    va, vb = a.values["beta_vector"], b.values["beta_vector"]
    mu, beta = np.array(va["mu"]), np.array(va["beta_vec"])
    assert np.linalg.norm(mu) > 1e-3
    np.testing.assert_allclose(np.array(vb["mu"]), mu @ rot.T, atol=1e-4)
    np.testing.assert_allclose(np.array(vb["beta_vec"]), beta @ rot.T, atol=1e-3 * max(1.0, np.abs(beta).max()))
    assert vb["mean"] == pytest.approx(va["mean"], rel=1e-4, abs=1e-4)
    assert va["n_models"] == 2 and va["sd"] is not None and va["units"] == "a.u."


def test_train_refuses_the_vector_target_in_one_line(tmp_path):
    from qmlrp.errors import QmlrpError
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.train import train_program

    with pytest.raises(QmlrpError, match="train-beta-vector"):
        train_program([("beta_vector", 0)], TrainConfig(), features=tmp_path, table=tmp_path, folds_path=tmp_path)
