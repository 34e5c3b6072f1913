"""Host batches from the precomputed pair table equal, bit for bit, those built on the fly
(``FeatureStore.batch`` -> ``batch_to_inputs`` -> ``pad_to`` -> stack), as ``HostBatches`` made them."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.features.pair_table import PairTable
from qmlrp.features.store import FeatureStore
from qmlrp.models.inputs import COORDINATES_KEY, batch_to_inputs
from qmlrp.training.batches import HostBatches, _round_up, pad_to


def on_the_fly(source: HostBatches, chunks: list[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The former ``HostBatches.inputs``: every batch expanded from the store and padded per model."""
    store = source.store
    atoms = _round_up(max([int(store.n_atoms[c].sum()) for c in chunks] + [0]) + 1, source.atom_bucket)
    pairs = _round_up(max([int((store.n_atoms[c] * (store.n_atoms[c] - 1) // 2).sum()) for c in chunks] + [1]),
                      source.pair_bucket)
    padded = []
    for k, chunk in enumerate(chunks):
        inputs = batch_to_inputs(store.batch(chunk))
        if source.coordinates:
            inputs[COORDINATES_KEY] = store.atom_coordinates(chunk)
        padded.append(pad_to(inputs, source.targets[k][chunk], source.batch_size + 1, atoms, pairs))
    stacked = {key: np.stack([p[0][key] for p in padded]) for key in padded[0][0]}
    return stacked, np.stack([p[1] for p in padded]), np.stack([p[2] for p in padded])


@pytest.fixture(scope="module")
def store(small_data) -> FeatureStore:
    return FeatureStore.open(small_data / "data" / "features")


@pytest.mark.parametrize("coordinates", [False, True])
def test_host_batches_equal_on_the_fly(store: FeatureStore, coordinates: bool) -> None:
    rng = np.random.default_rng(3)
    n = len(store)
    targets = [rng.normal(size=n), rng.normal(size=n), np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))]
    source = HostBatches(store, targets, batch_size=16, atom_bucket=32, pair_bucket=256, coordinates=coordinates)
    for trial in range(30):
        sizes = rng.integers(0, 17, size=3)
        sizes[trial % 3] = 0 if trial % 5 == 0 else sizes[trial % 3]  # some models sit a step out
        chunks = [rng.permutation(n)[:s].astype(np.int64) for s in sizes]
        new, old = source.inputs(chunks), on_the_fly(source, chunks)
        assert list(new[0]) == list(old[0])
        for key in old[0]:
            assert new[0][key].dtype == old[0][key].dtype and new[0][key].shape == old[0][key].shape, key
            np.testing.assert_array_equal(new[0][key], old[0][key], err_msg=key)
        for a, b in zip(new[1:], old[1:]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_pair_table_equals_store_batch(store: FeatureStore) -> None:
    table = PairTable(store, chunk=7)  # chunk boundaries inside the store
    positions = np.random.default_rng(0).permutation(len(store))
    features = np.zeros((int(table.n_pairs.sum()), 13), np.float32)
    pair_atoms = np.zeros((features.shape[0], 2), np.int32)
    written = table.fill(positions, store.n_atoms[positions], features, pair_atoms)
    batch = store.batch(positions)
    assert written == batch.pair_features.shape[0]
    np.testing.assert_array_equal(features, batch.pair_features)
    np.testing.assert_array_equal(pair_atoms, batch.pair_atoms)
    assert table.nbytes < 8 * features.shape[0] + 10_000
    assert PairTable.of(store) is PairTable.of(store)  # one table per store object
