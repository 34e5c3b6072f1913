"""Feature store round trip, dense/flat views, resumable featurize stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qmlrp.data.ingest import ingest
from qmlrp.features import featurize as featurize_module
from qmlrp.features.dense import flatten, to_dense
from qmlrp.features.featurize import featurize_table
from qmlrp.features.layout import flat_length
from qmlrp.features.pairs import make_batch
from qmlrp.features.store import FeatureStore, write_store

INDICES = [1, 3, 50, 67, 214, 271, 662, 2720]


@pytest.fixture(scope="module")
def graphs(qm9_graph):
    return [qm9_graph(k)[1] for k in INDICES]


def test_store_round_trip(tmp_path, graphs):
    write_store(tmp_path / "features", np.array(INDICES), graphs, ["template"] * len(graphs))
    store = FeatureStore.open(tmp_path / "features")
    assert len(store) == len(INDICES)
    positions = np.array([6, 0, 3])
    got = store.batch(positions)
    want = make_batch([graphs[p] for p in positions], np.array(INDICES)[positions])
    for name in ("atom_features", "pair_features", "pair_atoms", "atom_molecule", "pair_molecule", "ids"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert store.positions([214, 1]).tolist() == [4, 0]


def test_dense_and_flat_views(graphs):
    batch = make_batch(graphs, np.array(INDICES))
    atoms, pairs, mask = to_dense(batch)
    assert atoms.shape == (8, 29, 21) and pairs.shape == (8, 29, 29, 13)
    assert mask.sum() == batch.n_atoms
    np.testing.assert_array_equal(pairs, pairs.transpose(0, 2, 1, 3))
    assert np.all(pairs[:, np.arange(29), np.arange(29)] == 0)
    flat = flatten(batch)
    assert flat.shape == (8, flat_length()) == (8, 5887)
    # methane: 5 real atoms -> atom block rows 5..28 zero; 10 real pairs among the 406
    assert np.all(flat[0, 5 * 21: 29 * 21] == 0)
    assert np.count_nonzero(flat[0, 29 * 21:].reshape(406, 13).any(axis=1)) == 10
    np.testing.assert_array_equal(flat[0, :21], batch.atom_features[0])


def test_featurize_stage_resumes_after_interruption(tmp_path, monkeypatch):
    table = tmp_path / "qm9.parquet"
    ingest("qm9pack", table, tmp_path / "rejects.csv", tmp_path / "ingest.json", limit=40, seed=1)
    calls: list[int] = []
    original = featurize_module._run_chunk

    def flaky(task):
        calls.append(task[0].index)
        if task[0].index == 2 and len(calls) < 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while chunk 2 was running
        return original(task)

    monkeypatch.setattr(featurize_module, "_run_chunk", flaky)
    args = (table, tmp_path / "features", tmp_path / "failures.csv", tmp_path / "featurize.json")
    kwargs = dict(workers=1, chunk_size=10, scratch_root=tmp_path / "scratch")
    with pytest.raises(KeyboardInterrupt):
        featurize_table(*args, **kwargs)
    assert calls == [0, 1, 2]
    result = featurize_table(*args, **kwargs)
    assert calls == [0, 1, 2, 2, 3]  # chunks 0 and 1 were not redone
    assert result["n_featurized"] + result["n_failed"] == 40
    store = FeatureStore.open(tmp_path / "features")
    ids = pd.read_parquet(table).id.to_numpy()
    failed = pd.read_csv(tmp_path / "failures.csv").id.to_numpy()
    assert sorted(store.ids.tolist() + failed.tolist()) == sorted(ids.tolist())
    assert np.isfinite(store.atom_features).all()  # no NaN Gasteiger charge survives featurization
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").iterdir())
