"""The beta_vector target (issue 18): labels -> vectors, loss and metrics by hand, the linear baseline,
and a tiny set overfitted by the equivariant GC."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qmlrp.targets.vectors import parallel_from_vectors, vector_metrics, vectors_from_labels
from qmlrp.training.vector_fit import vector_loss, vector_scales


def test_vectors_from_labels_and_beta_parallel():
    rng = np.random.default_rng(0)
    beta = rng.normal(size=(4, 3, 3, 3))
    beta = (beta + beta.transpose(0, 2, 1, 3) + beta.transpose(0, 3, 2, 1) + beta.transpose(0, 1, 3, 2)
            + beta.transpose(0, 2, 3, 1) + beta.transpose(0, 3, 1, 2)) / 6  # fully symmetric (static beta)
    mu = rng.normal(size=(4, 3))
    v = vectors_from_labels(mu, beta.reshape(4, 27))
    np.testing.assert_allclose(v[:, 3:], np.einsum("nijj->ni", beta))
    # the labels' definition: (1 / 5|mu|) sum_ij mu_j (beta_jii + beta_iji + beta_iij)
    definition = np.einsum("nj,njii->n", mu, beta) * 3 / (5 * np.linalg.norm(mu, axis=1))
    np.testing.assert_allclose(parallel_from_vectors(v), definition, rtol=1e-12)


def test_loss_on_a_known_vector_is_the_hand_value():
    y = np.array([[0.0, 0.0, 1.0, 10.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    pred = np.array([[0.0, 3.0, 5.0, 10.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 6.0, 8.0]])
    scales = np.array([0.5, 2.0])
    # molecule 0: |(0, 3, 4)| / 0.5 = 10; molecule 1: |(0, 6, 8)| / 2 = 5
    assert vector_loss(pred, y, scales, np.ones(2)) == pytest.approx(7.5, rel=1e-6)
    assert vector_loss(pred, y, scales, np.array([1.0, 0.0])) == pytest.approx(10.0, rel=1e-6)
    import jax.numpy as jnp

    assert float(vector_loss(jnp.asarray(pred), jnp.asarray(y), jnp.asarray(scales), jnp.ones(2))) == pytest.approx(7.5, rel=1e-5)
    np.testing.assert_allclose(vector_scales(y), [np.sqrt(4 / 6), np.sqrt(100 / 6)])  # rms component


def test_metrics_by_hand():
    y = np.array([[0, 0, 1, 0, 0, 10.0], [0, 0, 1, 0, 0, -10.0]])
    p = np.array([[0, 0, 2, 0, 0, 5.0], [0, 0, 1, 0, 0, 10.0]])
    m = vector_metrics(y, p)
    # beta_par: true (6, -6), predicted (3, 6): MAE (3 + 12) / 2, MAD 6, one sign right
    assert m["beta_parallel"]["mae"] == pytest.approx(7.5)
    assert m["beta_parallel"]["mad"] == pytest.approx(6.0)
    assert m["beta_parallel_sign_accuracy"] == pytest.approx(0.5)
    assert m["mu_norm"]["mae"] == pytest.approx(0.5)
    assert m["component_mae"]["beta_vec_z"] == pytest.approx(12.5)


def test_linear_baseline_recovers_a_linear_teacher(small_data):
    from qmlrp.features.store import FeatureStore
    from qmlrp.training.vector_linear import atom_environment, descriptors, fit_linear

    store = FeatureStore.open(small_data / "data" / "features")
    pos = np.arange(len(store))
    x, r, owner = atom_environment(store, pos)
    w = np.random.default_rng(0).normal(size=(2, x.shape[1]))
    # teacher: q = w . x, centred per molecule, times r - (centre): the baseline's own family
    y = np.zeros((len(pos), 6))
    for m in pos:
        at = owner == m
        for v in range(2):
            q = x[at] @ w[v]
            y[m, 3 * v:3 * v + 3] = ((q - q.mean())[:, None] * r[at]).sum(axis=0)
    d = descriptors(store, pos)
    model = fit_linear(d[:40], y[:40], d[40:50], y[40:50])
    pred = model.predict(d[50:])
    assert np.abs(pred - y[50:]).max() < 1e-3 * np.abs(y[50:]).max()


def test_a_tiny_set_is_overfitted(small_data, tmp_path):
    """16 molecules, a target the head can represent (a teacher of the same family), trained by the one
    engine: the training loss falls far below the untrained model's."""
    from tests.training.conftest import run_in_jax

    out = tmp_path / "fit.json"
    run_in_jax(
        "import json, numpy as np\n"
        "from qmlrp.features.store import FeatureStore\n"
        "from qmlrp.models.config import ModelConfig\n"
        "from qmlrp.targets import get_target\n"
        "from qmlrp.training.config import TrainConfig\n"
        "from qmlrp.training.engine import ModelRun, fit\n"
        "from qmlrp.training.vector_fit import predict_vectors, vector_loss, vector_scales\n"
        "from qmlrp.training.vector_linear import atom_environment\n"
        f"store = FeatureStore.open({str(small_data / 'data' / 'features')!r})\n"
        "pos = np.arange(len(store))\n"
        "x, r, owner = atom_environment(store, pos)\n"
        "w = np.random.default_rng(1).normal(size=(2, x.shape[1]))\n"
        "y = np.zeros((len(pos), 6))\n"
        "for m in pos:\n"
        "    at = owner == m\n"
        "    for v in range(2):\n"
        "        q = np.tanh(x[at] @ w[v])\n"
        "        y[m, 3*v:3*v+3] = ((q - q.mean())[:, None] * r[at]).sum(axis=0)\n"
        "train = pos[:16]\n"
        "model = ModelConfig(depth=2, atom_width=32, pair_width=32, atom_hidden=32, pair_hidden=32, embedding_width=32,"
        " head_units=(32,))\n"
        "cfg = TrainConfig(epochs=150, batch_size=8, learning_rate=3e-3, schedule='plateau', lr_patience=1000,"
        " early_stopping_patience=1000, xla_pair_bucket=512, batches='host', model=model)\n"
        "run = ModelRun('v', get_target('beta_vector'), y, train, train, 0)\n"
        "res = fit(store, [run], cfg, log=False)[0]\n"
        "s = vector_scales(y[train])\n"
        "assert np.allclose(np.asarray(res.target_std)[::3], s) and np.allclose(res.target_mean, 0.0)\n"
        "final = float(vector_loss(predict_vectors(res.model, store, train), y[train], s, np.ones(16)))\n"
        "zero = float(vector_loss(np.zeros((16, 6)), y[train], s, np.ones(16)))\n"
        f"json.dump({{'final': final, 'zero': zero, 'best': res.best_val_mae}}, open({str(out)!r}, 'w'))\n",
        tmp_path)
    got = json.loads(out.read_text())
    assert got["final"] < 0.15 * got["zero"], got


def test_stage_config_rejects_a_mistyped_key_in_one_line(tmp_path):
    import yaml

    from qmlrp.errors import QmlrpError
    from qmlrp.training.vector_stage import stage_config
    from tests.training.conftest import REPO_PARAMS

    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train_beta_vector"]["epoch"] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(QmlrpError, match=r"train_beta_vector: unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        stage_config(path)
    del params["train_beta_vector"]["epoch"]
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    config, labels = stage_config(path)
    assert config.epochs == 80 and config.batch_size == 32 and config.schedule == "plateau"
    assert config.model.head_units == (64,) and config.model.atom_width == params["train"]["model"]["atom_width"]
    assert labels.endswith("rks-b3lyp5-6-31g")


def test_max_train_molecules_reaches_the_split(monkeypatch, tmp_path):
    """``train.max_train_molecules`` (a learning curve's subsample) is passed to the fold split of the vector model
    (it was read and then ignored here before 2026-12-02)."""
    from dataclasses import replace

    import qmlrp.data.split as split_module
    from qmlrp.training import vector_stage
    from tests.training.conftest import REPO_PARAMS

    seen = {}

    class Stop(Exception):
        pass

    def fake_split(store, folds, fold, validation_fraction, seed, max_train_molecules=None):
        seen["max"] = max_train_molecules
        raise Stop

    config, _ = vector_stage.stage_config(REPO_PARAMS)
    monkeypatch.setattr(split_module, "make_split", fake_split)
    monkeypatch.setattr(vector_stage, "FeatureStore", type("S", (), {"open": staticmethod(lambda path: None)}))
    monkeypatch.setattr(vector_stage, "load_labels", lambda store, labels, target: None)
    with pytest.raises(Stop):
        vector_stage.train_vector_fold(0, REPO_PARAMS, tmp_path / "m", tmp_path / "r",
                                       config=replace(config, max_train_molecules=104), log=False)
    assert seen["max"] == 104


def test_members_setting_is_read_and_bad_values_are_one_line(tmp_path):
    """``train_beta_vector.members``: networks per fold (default 1); a non-integer, 0 or a tensor-section
    ``members`` is refused in one line naming the key."""
    import yaml

    from qmlrp.errors import QmlrpError
    from qmlrp.training.vector_stage import stage_settings
    from tests.training.conftest import REPO_PARAMS

    params = yaml.safe_load(REPO_PARAMS.read_text())
    path = tmp_path / "params.yaml"
    params["train_beta_vector"].pop("members", None)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert stage_settings(path).members == 1
    params["train_beta_vector"]["members"] = 3
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    settings = stage_settings(path)
    assert settings.members == 3 and settings.config.epochs == 80  # not a train key: the rest is read as before
    for bad in (0, 2.5, "five", True):
        params["train_beta_vector"]["members"] = bad
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        with pytest.raises(QmlrpError, match=r"train_beta_vector\.members: .* is not a whole number of networks"):
            stage_settings(path)
    params["train_beta_vector"]["members"] = 1
    params["train_alpha_tensor"]["members"] = 2
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(QmlrpError, match=r"train_alpha_tensor\.members: only the vector head"):
        stage_settings(path, section="train_alpha_tensor")


def test_a_seed_ensemble_fold_writes_its_members_and_averages_them(small_data, tmp_path):
    """``fit_equivariant_fold(..., members=3)``: three networks of seeds seed + fold + 1000 s (one program),
    member 0 at the fold's model path, the others and members.json under members/fold<k>/; the test predictions
    written are the mean of the three published (float16) files' predictions; member 0 equals a single-network
    run of the same seed (the engine's promise: a model's result does not depend on its program's others)."""
    from tests.training.conftest import run_in_jax

    out = tmp_path / "ensemble.json"
    run_in_jax(
        "import json, numpy as np, pandas as pd\n"
        "from qmlrp.data.split import make_split\n"
        "from qmlrp.features.store import FeatureStore\n"
        "from qmlrp.models.config import ModelConfig\n"
        "from qmlrp.models.io import load_model\n"
        "from qmlrp.models.members import ensemble_files\n"
        "from qmlrp.targets import get_target\n"
        "from qmlrp.training.config import TrainConfig\n"
        "from qmlrp.training.equivariant_fold import fit_equivariant_fold\n"
        "from qmlrp.training.vector_fit import predict_vectors\n"
        "from qmlrp.training.vector_stage import write_vector_predictions\n"
        f"root = {str(small_data)!r}\n"
        f"tmp = {str(tmp_path)!r}\n"
        "store = FeatureStore.open(root + '/data/features')\n"
        "rng = np.random.default_rng(0)\n"
        "y = rng.normal(size=(len(store), 6))\n"
        "split = make_split(store, root + '/data/folds.parquet', 2, 0.2, 5)\n"
        "model = ModelConfig(depth=1, atom_width=8, pair_width=8, atom_hidden=8, pair_hidden=8, embedding_width=8,"
        " head_units=(8,))\n"
        "cfg = TrainConfig(epochs=2, batch_size=16, seed=7, schedule='plateau', xla_pair_bucket=512, batches='host',"
        " model=model)\n"
        "meta = {'target': 'beta_vector', 'fold': 2, 'architecture': {k: getattr(model, k) for k in"
        " model.__dataclass_fields__}}\n"
        "t = get_target('beta_vector')\n"
        "ens = fit_equivariant_fold(store, t, y, split, cfg, meta, tmp + '/m', tmp + '/r', write_vector_predictions,"
        " tmp + '/ck.npz', log=False, members=3)\n"
        "one = fit_equivariant_fold(store, t, y, split, cfg, meta, tmp + '/m1', tmp + '/r1', write_vector_predictions,"
        " tmp + '/ck1.npz', log=False)\n"
        "files = ensemble_files(tmp + '/m', 'beta_vector', 2)\n"
        "each = [predict_vectors(load_model(f), store, split.test) for f in files]\n"
        "written = pd.read_parquet(tmp + '/r/beta_vector/fold2/predictions.parquet')\n"
        "hist = pd.read_csv(tmp + '/r/beta_vector/fold2/history.csv')\n"
        "json.dump({'files': [str(f) for f in files], 'ens_files': [str(f) for f in ens.files],\n"
        "           'manifest': json.load(open(tmp + '/m/beta_vector/members/fold2/members.json')),\n"
        "           'mean_error': float(np.abs(np.stack(written.y_pred.map(np.asarray)) - np.mean(each, 0)).max()),\n"
        "           'spread': float(np.abs(each[0] - each[1]).max()),\n"
        "           'member0_vs_single': float(np.abs(ens.member_predictions[0] - one.y_pred).max()),\n"
        "           'scale': float(np.abs(one.y_pred).max()),\n"
        "           'seeds': [r.name for r in ens.results], 'history_members': sorted(set(hist.member)),\n"
        "           'single_manifest': __import__('os').path.exists(tmp + '/m1/beta_vector/members')},"
        f" open({str(out)!r}, 'w'))\n", tmp_path)
    got = json.loads(out.read_text())
    base = tmp_path / "m" / "beta_vector"
    assert got["files"] == got["ens_files"] == [str(base / "fold2.npz"), str(base / "members" / "fold2" / "member1.npz"),
                                                str(base / "members" / "fold2" / "member2.npz")]
    assert got["manifest"]["seeds"] == [7 + 2, 7 + 2 + 1000, 7 + 2 + 2000] and got["manifest"]["members"] == 3
    assert got["seeds"] == ["beta_vector/fold2", "beta_vector/fold2/member1", "beta_vector/fold2/member2"]
    assert got["history_members"] == [0, 1, 2]
    assert got["mean_error"] < 1e-9  # the predictions written are the members' mean
    assert got["spread"] > 1e-3  # the members differ (else the mean would be no test)
    assert got["member0_vs_single"] < 1e-3 * got["scale"]
    assert not got["single_manifest"]  # one network, no manifest asked for: nothing beside the fold's file


def test_ensemble_files_reads_the_manifest_and_refuses_a_corrupt_one(tmp_path):
    from qmlrp.errors import QmlrpError
    from qmlrp.models.members import ensemble_files, member_path, members_dir

    assert ensemble_files(tmp_path, "beta_vector", 4) == [tmp_path / "beta_vector" / "fold4.npz"]
    manifest = members_dir(tmp_path, "beta_vector", 4) / "members.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"files": ["fold4.npz", "member1.npz"]}))
    assert ensemble_files(tmp_path, "beta_vector", 4) == [member_path(tmp_path, "beta_vector", 4, 0),
                                                          member_path(tmp_path, "beta_vector", 4, 1)]
    manifest.write_text("{not json")
    with pytest.raises(QmlrpError, match=r"members\.json: not a members manifest"):
        ensemble_files(tmp_path, "beta_vector", 4)
