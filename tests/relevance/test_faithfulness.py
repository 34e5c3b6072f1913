"""Perturbation machinery: atom deletion, type zeroing, AOPC, ordering against a known model."""

from __future__ import annotations

import numpy as np

from qmlrp.features.batch import GraphBatch
from qmlrp.models.inputs import random_batch
from qmlrp.relevance.faithfulness import aopc, atom_curve, faithfulness_table, remove_atoms, type_curve, zero_types


def _additive(batch: GraphBatch) -> np.ndarray:
    """A 'model' whose output is the sum of each molecule's atom features (ground truth known)."""
    return np.bincount(batch.atom_molecule, weights=batch.atom_features.sum(1), minlength=batch.n_molecules)


def test_remove_atoms_reindexes_pairs() -> None:
    batch = random_batch([3, 4], seed=0)
    keep = np.array([True, False, True, True, True, False, True])
    out = remove_atoms(batch, keep)
    assert out.n_atoms == 5 and out.atoms_per_molecule().tolist() == [2, 3]
    assert out.n_pairs == 1 + 3
    np.testing.assert_array_equal(out.pair_atoms, [[0, 1], [2, 3], [2, 4], [3, 4]])
    np.testing.assert_array_equal(out.atom_features, batch.atom_features[keep])
    assert (out.pair_molecule == out.atom_molecule[out.pair_atoms[:, 0]]).all()


def test_zero_types_only_touches_chosen_molecules() -> None:
    batch = random_batch([3, 4], seed=1)
    removed = np.zeros((2, 12), bool)
    removed[1, 0] = True   # atom type of molecule 1
    removed[0, 11] = True  # spatial distance of molecule 0
    out = zero_types(batch, removed)
    assert (out.atom_features[3:, :5] == 0).all() and (out.atom_features[:3, :5] == batch.atom_features[:3, :5]).all()
    m0 = batch.pair_molecule == 0
    assert (out.pair_features[m0, 12] == 0).all() and (out.pair_features[~m0, 12] == batch.pair_features[~m0, 12]).all()


def test_curves_and_aopc_rank_true_relevance_first() -> None:
    batch = random_batch([6, 8, 5, 9], seed=2)
    truth = batch.atom_features.sum(1)
    best = atom_curve(batch, truth, _additive, steps=4)
    worst = atom_curve(batch, -truth, _additive, steps=4)
    assert best.shape == (5, 4)
    assert (aopc(best) >= aopc(worst) - 1e-12).all() and aopc(best).mean() > aopc(worst).mean()
    np.testing.assert_allclose(aopc(np.array([[3.0, 3.0], [2.0, 1.0], [0.0, 1.0]])), [4 / 3, 4 / 3])
    types = type_curve(batch, np.tile(np.arange(12.0)[::-1], (4, 1)), _additive, steps=2)
    assert types.shape == (3, 4)


def test_faithfulness_table_contains_random_baseline() -> None:
    batch = random_batch([5, 7, 6], seed=3)
    attributions = {"truth": (batch.atom_features.copy(), np.zeros_like(batch.pair_features))}
    rows, curves = faithfulness_table(batch, attributions, _additive, atom_steps=3, type_steps=3, random_repeats=2)
    methods = {(r["method"], r["unit"]) for r in rows}
    assert methods == {("truth", "atoms"), ("truth", "types"), ("random", "atoms"), ("random", "types")}
    by = {(r["method"], r["unit"]): r["aopc"] for r in rows}
    assert by[("truth", "atoms")] > by[("random", "atoms")]
    assert curves["atoms/truth"].shape == (4,)


def test_gradient_times_input_works_in_the_models_dtype() -> None:
    """A float64 copy (as ModelLRP(dtype="float64") makes) used to raise TypeError (float32 coefficients)."""
    import keras

    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model
    from qmlrp.relevance.faithfulness import gradient_times_input
    from qmlrp.relevance.model_lrp import as_float64

    keras.utils.set_random_seed(3)
    model = build_model(ModelConfig(head_units=(16,), embedding_width=8, atom_width=8, pair_width=8,
                                    atom_hidden=8, pair_hidden=8), metadata={"n_outputs": 2})
    rng = np.random.default_rng(0)
    model.head.output_layer.kernels[0].assign(rng.normal(0, 0.3, (16, 2)).astype("float32"))
    batch = random_batch([5, 9], seed=2)
    a32, p32 = gradient_times_input(model, output=[1.0, -0.5])(batch)
    a64, p64 = gradient_times_input(as_float64(model), output=[1.0, -0.5])(batch)
    assert (a32.dtype, a64.dtype, p64.dtype) == (np.float32, np.float64, np.float64)
    assert a64.shape == (14, 21) and p64.shape == p32.shape and np.abs(a64).max() > 0
    np.testing.assert_allclose(a64, a32, rtol=1e-3, atol=1e-5 * np.abs(a64).max())
    np.testing.assert_allclose(p64, p32, rtol=1e-3, atol=1e-5 * np.abs(p64).max())
