"""Folds: seeded, uniform, a partition of the ids."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.data.split import assign_folds
from qmlrp.errors import QmlrpError


def test_folds_are_uniform_partition_and_seeded():
    ids = np.arange(1, 1004) * 3
    folds = assign_folds(ids, 10, seed=5)
    sizes = np.bincount(folds, minlength=10)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(ids)
    np.testing.assert_array_equal(folds, assign_folds(ids, 10, seed=5))
    assert not np.array_equal(folds, assign_folds(ids, 10, seed=6))
    shuffled = np.random.default_rng(0).permutation(len(ids))
    np.testing.assert_array_equal(assign_folds(ids[shuffled], 10, seed=5), folds[shuffled])  # order-free


def test_folds_are_unbiased():
    """Mean id per fold is the overall mean within sampling error (not blocks of consecutive ids)."""
    ids = np.arange(100_000)
    folds = assign_folds(ids, 10, seed=0)
    means = np.array([ids[folds == k].mean() for k in range(10)])
    assert np.all(np.abs(means - ids.mean()) < 5 * ids.std() / np.sqrt(10_000))


def test_too_few_molecules():
    with pytest.raises(QmlrpError):
        assign_folds(np.arange(5), 10, 0)
