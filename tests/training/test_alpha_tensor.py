"""The alpha_tensor target (issue 18 item 6): labels -> 6 components, the derived invariants, loss and metrics by
hand, the kind, the linear baseline, and a tiny set overfitted by the tensor head through the one engine."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qmlrp.targets.tensors import (
    anisotropy,
    frobenius,
    isotropic,
    tensor_components,
    tensor_matrices,
    tensor_metrics,
    traceless,
)
from qmlrp.training.tensor_fit import tensor_loss, tensor_scales

LABELS = Path(__file__).resolve().parents[2] / "labels" / "beta" / "rks-b3lyp5-6-31g"


def test_components_from_a_known_alpha_au():
    alpha_au = np.array([[10.0, 1.0, 2.0, 1.0, 20.0, 3.0, 2.0, 3.0, 30.0]])  # index 3a + b
    np.testing.assert_array_equal(tensor_components(alpha_au), [[10.0, 20.0, 30.0, 1.0, 2.0, 3.0]])
    asymmetric = np.array([[10.0, 1.0, 0.0, 3.0, 20.0, 0.0, 0.0, 0.0, 30.0]])  # symmetrised: xy = (1 + 3) / 2
    np.testing.assert_array_equal(tensor_components(asymmetric), [[10.0, 20.0, 30.0, 2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(tensor_matrices(tensor_components(alpha_au))[0], alpha_au.reshape(3, 3))


@pytest.mark.skipif(not LABELS.is_dir(), reason="no beta label folder")
def test_labels_of_the_published_folder():
    from qmlrp.labels.records import read_labels
    from qmlrp.targets import get_target
    from qmlrp.targets.labels import load_labels

    frame = read_labels(LABELS).set_index("id")
    ids = frame.index.to_numpy()[[5, 0, 17]]
    y = load_labels(SimpleNamespace(ids=ids), LABELS, get_target("alpha_tensor"))
    assert y.shape == (3, 6)
    a = np.asarray(frame.loc[ids[0], "alpha_au"]).reshape(3, 3)
    np.testing.assert_allclose(y[0], [a[0, 0], a[1, 1], a[2, 2], a[0, 1], a[0, 2], a[1, 2]])
    np.testing.assert_allclose(isotropic(y), frame.loc[ids, "alpha_iso_au"].to_numpy(), rtol=1e-10)


def test_invariants_by_hand():
    y = np.array([[1.0, 2.0, 4.0, 0.0, 0.0, 0.0]])
    assert isotropic(y)[0] == pytest.approx(7 / 3)
    assert anisotropy(y)[0] == pytest.approx(np.sqrt(((1 - 2) ** 2 + (2 - 4) ** 2 + (4 - 1) ** 2) / 2))
    assert frobenius(np.array([[0, 0, 0, 1.0, 0, 0]]))[0] == pytest.approx(np.sqrt(2))
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 3, 3))
    c = tensor_components(m)
    lam = np.linalg.eigvalsh(tensor_matrices(c))
    eig = np.sqrt(((lam[:, 0] - lam[:, 1]) ** 2 + (lam[:, 1] - lam[:, 2]) ** 2 + (lam[:, 2] - lam[:, 0]) ** 2) / 2)
    np.testing.assert_allclose(anisotropy(c), eig, rtol=1e-12)
    np.testing.assert_allclose(isotropic(traceless(c)), 0.0, atol=1e-12)


def test_loss_on_a_known_tensor_is_the_hand_value():
    y = np.array([[10.0, 10.0, 10.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 1.0, 0.0, 0.0]])
    pred = np.array([[13.0, 10.0, 10.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 2.0, 0.0, 0.0]])
    scales = np.array([2.0, 0.5])
    # molecule 0: d = diag(3, 0, 0): |d_iso| = 1, traceless diag(2, -1, -1), |.|_F = sqrt(6)
    # molecule 1: d_xy = 1: d_iso = 0, |.|_F = sqrt(2)
    first, second = 1 / 2 + np.sqrt(6) / 0.5, np.sqrt(2) / 0.5
    assert tensor_loss(pred, y, scales, np.ones(2)) == pytest.approx((first + second) / 2, rel=1e-6)
    assert tensor_loss(pred, y, scales, np.array([0.0, 1.0])) == pytest.approx(second, rel=1e-6)
    import jax.numpy as jnp

    got = float(tensor_loss(jnp.asarray(pred), jnp.asarray(y), jnp.asarray(scales), jnp.ones(2)))
    assert got == pytest.approx((first + second) / 2, rel=1e-5)


def test_the_loss_is_rotation_invariant():
    rng = np.random.default_rng(1)
    y, pred = tensor_components(rng.normal(size=(4, 3, 3))), tensor_components(rng.normal(size=(4, 3, 3)))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = lambda c: tensor_components(q @ tensor_matrices(c) @ q.T)
    scales = np.array([0.7, 1.3])
    assert tensor_loss(rot(pred), rot(y), scales, np.ones(4)) == pytest.approx(
        tensor_loss(pred, y, scales, np.ones(4)), rel=1e-10)


def test_scales_by_hand():
    y = np.array([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 0.0, 0.0, 2.0]])
    s = tensor_scales(y)
    assert s[0] == pytest.approx(1.0)  # sd of (1, 3)
    assert s[1] == pytest.approx(np.sqrt((0.0 + 8.0) / 2))  # rms |traceless|_F: (0, sqrt(2 * 4))


def test_metrics_and_kind_by_hand():
    from qmlrp.targets import get_target

    y = np.array([[1.0, 2.0, 4.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 0.0, 0.0, 0.0]])
    p = np.array([[1.0, 2.0, 4.0, 0.0, 0.0, 1.0], [4.0, 4.0, 4.0, 0.0, 0.0, 0.0]])
    m = tensor_metrics(y, p)
    assert m["isotropic"]["mae"] == pytest.approx(0.5) and m["isotropic"]["mad"] == pytest.approx(1 / 3)
    assert m["frobenius"]["mae"] == pytest.approx((np.sqrt(2) + np.sqrt(3)) / 2)
    assert m["components"]["yz"]["mae"] == pytest.approx(0.5)
    kind = get_target("alpha_tensor").kind
    assert kind.predictions_file == "predictions.parquet"
    assert kind.metric(p, y) == pytest.approx(m["frobenius"]["mae"])
    combined = kind.combine(np.stack([p, y]))
    assert combined.shape == (2, 2, 8)
    np.testing.assert_allclose(combined[1, :, 6], isotropic(y))
    np.testing.assert_allclose(combined[1, :, 7], anisotropy(y))
    mean, sd = combined.mean(axis=0), combined.std(axis=0)
    report = kind.report(mean[0], sd[0], None, "a.u.", 2)
    assert report["mean"] == pytest.approx(7 / 3) and report["anisotropy"] == pytest.approx(
        float(np.mean([anisotropy(p[:1])[0], anisotropy(y[:1])[0]])))
    assert len(report["components"]) == 6


def test_qmlrp_train_refuses_the_tensor_target(tmp_path):
    from qmlrp.errors import QmlrpError
    from qmlrp.training.config import TrainConfig
    from qmlrp.training.train import train_program

    with pytest.raises(QmlrpError, match="train-alpha-tensor"):
        train_program([("alpha_tensor", 0)], TrainConfig(), features=tmp_path)


def test_linear_baseline_recovers_a_linear_teacher(small_data):
    from qmlrp.features.store import FeatureStore
    from qmlrp.training.tensor_linear import fit_linear_tensor, tensor_descriptors

    store = FeatureStore.open(small_data / "data" / "features")
    s, d = tensor_descriptors(store, np.arange(len(store)))
    rng = np.random.default_rng(0)
    w, u = rng.normal(size=s.shape[1]), rng.normal(size=s.shape[1])
    y = (s @ w)[:, None] * np.array([1, 1, 1, 0, 0, 0.0]) + d @ u
    model = fit_linear_tensor((s[:40], d[:40]), y[:40], (s[40:50], d[40:50]), y[40:50])
    pred = model.predict(s[50:], d[50:])
    assert np.abs(pred - y[50:]).max() < 1e-3 * np.abs(y[50:]).max()


def test_stage_config_reads_its_own_section(tmp_path):
    import yaml

    from qmlrp.errors import QmlrpError
    from qmlrp.training.tensor_stage import SECTION
    from qmlrp.training.vector_stage import stage_config
    from tests.training.conftest import REPO_PARAMS

    params = yaml.safe_load(REPO_PARAMS.read_text())
    params[SECTION] = {"head_units": [16], "epochs": 7, "batch_size": 8}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    config, labels = stage_config(path, section=SECTION)
    assert config.epochs == 7 and config.batch_size == 8 and config.model.head_units == (16,)
    assert labels.endswith("rks-b3lyp5-6-31g")
    params[SECTION]["epoch"] = 3
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(QmlrpError, match=r"train_alpha_tensor: unknown key 'epoch'"):
        stage_config(path, section=SECTION)


def test_a_tiny_set_is_overfitted(small_data, tmp_path):
    """16 molecules, a tensor the head can represent (a teacher of the same family), trained by the one engine:
    the training loss falls far below the untrained model's."""
    from tests.training.conftest import run_in_jax

    out = tmp_path / "fit.json"
    run_in_jax(
        "import json, numpy as np\n"
        "from qmlrp.features.store import FeatureStore\n"
        "from qmlrp.models.config import ModelConfig\n"
        "from qmlrp.targets import get_target\n"
        "from qmlrp.training.config import TrainConfig\n"
        "from qmlrp.training.engine import ModelRun, fit\n"
        "from qmlrp.training.tensor_fit import tensor_loss, tensor_scales\n"
        "from qmlrp.training.vector_fit import predict_vectors\n"
        "from qmlrp.training.vector_linear import atom_environment\n"
        f"store = FeatureStore.open({str(small_data / 'data' / 'features')!r})\n"
        "pos = np.arange(len(store))\n"
        "x, r, owner = atom_environment(store, pos)\n"
        "rng = np.random.default_rng(1)\n"
        "w, u = rng.normal(size=x.shape[1]), rng.normal(size=x.shape[1])\n"
        "a = np.zeros(len(pos)); np.add.at(a, owner, 2.0 + np.tanh(x @ w))\n"
        "y = a[:, None] * np.array([1, 1, 1, 0, 0, 0.0])\n"
        "b = np.tanh(x @ u)\n"
        "from qmlrp.features.layout import ATOMIC_NUMBERS\n"
        "z = x[:, :len(ATOMIC_NUMBERS)] @ np.asarray(ATOMIC_NUMBERS, float)\n"
        "for m in pos:\n"
        "    at = owner == m\n"
        "    dd = r[at] - (z[at] @ r[at]) / z[at].sum()\n"
        "    t = np.einsum('a,ai,aj->ij', b[at], dd, dd) - np.eye(3) * np.sum(b[at] * (dd * dd).sum(1)) / 3\n"
        "    y[m] += [t[0, 0], t[1, 1], t[2, 2], t[0, 1], t[0, 2], t[1, 2]]\n"
        "train = pos[:16]\n"
        "model = ModelConfig(depth=2, atom_width=32, pair_width=32, atom_hidden=32, pair_hidden=32, embedding_width=32,"
        " head_units=(32,))\n"
        "cfg = TrainConfig(epochs=150, batch_size=8, learning_rate=3e-3, schedule='plateau', lr_patience=1000,"
        " early_stopping_patience=1000, xla_pair_bucket=512, batches='host', model=model)\n"
        "run = ModelRun('t', get_target('alpha_tensor'), y, train, train, 0)\n"
        "res = fit(store, [run], cfg, log=False)[0]\n"
        "sc = tensor_scales(y[train])\n"
        "assert np.allclose(np.asarray(res.target_std), np.repeat(sc, 3)) and np.allclose(res.target_mean, 0.0)\n"
        "assert res.model.metadata['head'] == 'equivariant_tensor'\n"
        "pred = predict_vectors(res.model, store, train)\n"
        "final = float(tensor_loss(pred, y[train], sc, np.ones(16)))\n"
        "from qmlrp.targets.tensors import frobenius, traceless\n"
        "aniso = float(np.mean(frobenius(traceless(pred - y[train])))); aniso0 = float(np.mean(frobenius(traceless(y[train]))))\n"
        "zero = float(tensor_loss(np.zeros((16, 6)), y[train], sc, np.ones(16)))\n"
        f"json.dump({{'final': final, 'zero': zero, 'best': res.best_val_mae, 'aniso': aniso, 'aniso0': aniso0}}, open({str(out)!r}, 'w'))\n",
        tmp_path)
    got = json.loads(out.read_text())
    assert got["final"] < 0.15 * got["zero"], got
    assert got["aniso"] < 0.3 * got["aniso0"], got  # the traceless part is learnt too, not only the trace
