"""Known-answer tests of the Weave model: invariances, ragged == dense, overfitting, save/load, trace."""

from __future__ import annotations

import re
from dataclasses import asdict

import keras
import numpy as np
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.features.batch import GraphBatch
from qmlrp.models.config import ModelConfig
from qmlrp.models.dense import DenseGraphConvModel, dense_inputs
from qmlrp.models.gc import GraphConvModel, build_model
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.models.io import inference_function, load_model, save_model

SMALL = ModelConfig(head_units=(64,), embedding_width=32)
QM9_IDS = (1, 22, 133, 4000, 57518, 58099, 100000, 133885)  # CH4 ... 29-atom molecules


def randomize(model: GraphConvModel, seed: int = 0) -> GraphConvModel:
    """Random biases, target scaling and BatchNorm statistics, so no term is trivially zero."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        if var.path.endswith(("bias", "beta")):
            var.assign(rng.normal(0.0, 0.1, var.shape).astype("float32"))
        elif var.path.endswith("moving_mean"):
            var.assign(rng.normal(0.0, 0.5, var.shape).astype("float32"))
        elif var.path.endswith(("moving_variance", "gamma")):
            var.assign(rng.uniform(0.5, 2.0, var.shape).astype("float32"))
        elif "output/kernel" in var.path:
            var.assign(rng.normal(0.0, 0.05, var.shape).astype("float32"))
    model.head.target_scaling.set_statistics(75.0, 8.0)
    model.input_layer.pair_scaling.scale.assign(np.r_[np.ones(12), 0.4].astype("float32"))
    return model


@pytest.fixture(scope="module")
def model() -> GraphConvModel:
    keras.utils.set_random_seed(1)
    return randomize(build_model(ModelConfig()))


def predict(model: GraphConvModel, batch: GraphBatch) -> np.ndarray:
    return np.asarray(model(batch_to_inputs(batch), training=False)).reshape(-1)


def permuted(batch: GraphBatch, seed: int) -> tuple[GraphBatch, np.ndarray]:
    """Shuffle atoms within each molecule, the pair rows, and the order (i, j) inside each pair."""
    rng = np.random.default_rng(seed)
    counts = batch.atoms_per_molecule()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    new_of_old = np.concatenate([s + rng.permutation(n) for s, n in zip(starts, counts)])
    old_of_new = np.argsort(new_of_old)
    pair_order = rng.permutation(batch.n_pairs)
    pair_atoms = new_of_old[batch.pair_atoms[pair_order]]
    swap = rng.random(batch.n_pairs) < 0.5
    pair_atoms[swap] = pair_atoms[swap][:, ::-1]
    out = GraphBatch(
        atom_features=batch.atom_features[old_of_new],
        pair_features=batch.pair_features[pair_order],
        pair_atoms=pair_atoms.astype(np.int32),
        atom_molecule=batch.atom_molecule[old_of_new],
        pair_molecule=batch.pair_molecule[pair_order],
        ids=batch.ids,
    )
    return out, old_of_new


def test_output_shape_and_units(model):
    batch = random_batch([3, 18, 29, 1])
    y = predict(model, batch)
    assert y.shape == (4,) and np.all(np.isfinite(y))


def test_ragged_equals_dense_on_same_weights(model):
    batch = random_batch([1, 2, 5, 18, 29, 17, 9], seed=3)
    ragged = predict(model, batch)
    dense = np.asarray(DenseGraphConvModel(model)(dense_inputs(batch), training=False)).reshape(-1)
    np.testing.assert_allclose(dense, ragged, rtol=1e-5, atol=1e-4)
    # the training-mode forward (BatchNorm on batch statistics, masked over padding) agrees too
    ragged_t = np.asarray(model(batch_to_inputs(batch), training=True)).reshape(-1)
    dense_t = np.asarray(DenseGraphConvModel(model)(dense_inputs(batch), training=True)).reshape(-1)
    np.testing.assert_allclose(dense_t, ragged_t, rtol=1e-4, atol=1e-3)


def test_invariant_to_atom_and_pair_order(model):
    batch = random_batch([4, 18, 29, 11], seed=5)
    reference = predict(model, batch)
    for seed in range(3):
        shuffled, _ = permuted(batch, seed)
        np.testing.assert_allclose(predict(model, shuffled), reference, rtol=1e-5, atol=1e-4)


def test_molecules_do_not_interact(model):
    batch = random_batch([7, 12, 20], seed=9)
    together = predict(model, batch)
    first = GraphBatch(  # molecule 0 alone: its 7 atoms and 21 pairs come first
        atom_features=batch.atom_features[:7], pair_features=batch.pair_features[:21],
        pair_atoms=batch.pair_atoms[:21], atom_molecule=batch.atom_molecule[:7],
        pair_molecule=batch.pair_molecule[:21], ids=batch.ids[:1],
    )
    np.testing.assert_allclose(predict(model, first), together[:1], rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def qm9_graphs(qm9_record):
    from qmlrp.features.featurize import featurize_geometry

    records = [qm9_record(i) for i in QM9_IDS]
    return records, featurize_geometry


def _featurized_batch(records, featurize, transform):
    from qmlrp.features.pairs import make_batch

    graphs = []
    for rec in records:
        numbers, coords = transform(np.asarray(rec.atomic_numbers), np.asarray(rec.coordinates, float))
        graphs.append(featurize(numbers, coords, rec.smiles, rec.name))
    return make_batch(graphs, np.arange(len(graphs)))


def test_real_molecules_invariant_to_atom_order_rotation_translation(model, qm9_graphs):
    records, featurize = qm9_graphs
    assert max(len(r.atomic_numbers) for r in records) == 29
    reference = predict(model, _featurized_batch(records, featurize, lambda z, x: (z, x)))
    rng = np.random.default_rng(0)

    def shuffle(z, x):
        p = rng.permutation(len(z))
        return z[p], x[p]

    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))  # proper rotation: keeps R/S labels
    shift = rng.normal(0.0, 5.0, 3)

    def move(z, x):
        return z, x @ rotation.T + shift

    for transform in (shuffle, move):
        np.testing.assert_allclose(predict(model, _featurized_batch(records, featurize, transform)), reference,
                                   rtol=1e-4, atol=1e-3)


def test_overfits_a_tiny_set():
    keras.utils.set_random_seed(0)
    model = build_model(SMALL)
    batch = random_batch([5, 9, 12, 18, 22, 29, 14, 7, 16, 11, 25, 19], seed=11)
    inputs = batch_to_inputs(batch)
    y = np.random.default_rng(1).normal(0.0, 1.0, (batch.n_molecules, 1)).astype("float32")
    model.input_layer.adapt(batch.atom_features, batch.pair_features)
    # a learning rate decayed to 0: the weights settle, so the inference-mode BatchNorm statistics
    # (a moving average) catch up with them (with a constant rate the inference MAE wanders 0.02-0.09)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, 300)), loss="mae")
    start = float(np.mean(np.abs(np.asarray(model(inputs, training=False)) - y)))
    for _ in range(300):
        model.train_on_batch(inputs, y)
    end = float(np.mean(np.abs(np.asarray(model(inputs, training=False)) - y)))
    assert start > 0.5 and end < 0.01 * start, (start, end)


def test_save_load_roundtrip(tmp_path, model):
    batch = random_batch([6, 29, 3], seed=2)
    path = tmp_path / "alpha" / "fold0.npz"
    model.update_metadata(target="alpha", fold=0, architecture=asdict(ModelConfig()))
    save_model(model, path, half=False)
    loaded = load_model(path)
    assert isinstance(loaded, GraphConvModel) and loaded.metadata["target"] == "alpha"
    np.testing.assert_array_equal(predict(loaded, batch), predict(model, batch))
    np.testing.assert_allclose(inference_function(loaded)(batch_to_inputs(batch)), predict(model, batch), rtol=1e-6)


@pytest.mark.parametrize("name", ["fold0.keras", "model.pkl"])
def test_only_npz_model_files_are_accepted(tmp_path, model, name):
    """Models are saved and loaded only as .npz weights files; any other path is refused in one line."""
    path = tmp_path / name
    with pytest.raises(QmlrpError, match=rf"^{re.escape(str(path))}: models are saved and loaded only as \.npz"):
        save_model(model, path)
    assert not path.exists()
    path.write_bytes(b"PK\x03\x04 something Keras wrote")
    with pytest.raises(QmlrpError, match="only as .npz weights files$"):
        load_model(path)


def test_record_holds_every_layer_call(model):
    """The recorded forward pass: one record per layer call (every weighted layer appears), each
    record's output is its layer applied to its recorded inputs, and the flat trace view agrees."""
    from qmlrp.models.layers import Record

    batch = random_batch([5, 8], seed=4)
    inputs = batch_to_inputs(batch)
    rec = model.record(inputs)
    assert isinstance(rec, Record)
    np.testing.assert_allclose(np.asarray(rec.outputs).reshape(-1), predict(model, batch), rtol=1e-6)
    records = {r.path: r for r in rec.walk()[1:]}
    weighted = {"/".join(v.path.split("/")[1:-1]) for v in model.weights if v.path.startswith("weave_gc/")}
    recorded = {p.replace(".", "/") for p in records}
    assert weighted <= recorded | {"embedding/dense", "embedding/batch_norm"}, weighted - recorded
    assert {"graph_input.atom_scaling", "graph_input.pair_scaling", "weave0.pair_to_atom_sum",
            "head.target_scaling", "embedding", "readout"} <= set(records)
    relu = lambda z: np.maximum(np.asarray(z), 0.0)  # noqa: E731
    # every activation is the ReLU of its pre-activation, which is the layer's affine map of its input
    w0 = model.weave_modules[0]
    a2a = records["weave0.atom_to_atom"]
    x = np.asarray(a2a.inputs[0])
    np.testing.assert_allclose(x, batch.atom_features * np.asarray(model.input_layer.atom_scaling.scale), rtol=1e-6)
    z = x @ np.asarray(w0.atom_to_atom.kernel) + np.asarray(w0.atom_to_atom.bias)
    np.testing.assert_allclose(np.asarray(a2a.extras["z"]), z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(a2a.outputs), relu(z), rtol=1e-4, atol=1e-4)
    # A->P: dense layer on [A_i, A_j] and on [A_j, A_i], summed after the ReLU
    i, j = batch.pair_atoms[:, 0], batch.pair_atoms[:, 1]
    k, b = np.asarray(w0.atom_to_pair.kernel), np.asarray(w0.atom_to_pair.bias)
    z_ij = np.concatenate([x[i], x[j]], axis=1) @ k + b
    z_ji = np.concatenate([x[j], x[i]], axis=1) @ k + b
    a2p = records["weave0.atom_to_pair"]
    assert a2p.inputs[0] is a2a.inputs[0]  # the same tensor fed both layers: the walk can see the branch
    np.testing.assert_allclose(np.asarray(a2p.outputs), relu(z_ij) + relu(z_ji), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(a2p.extras["z_ij"]), z_ij, rtol=1e-4, atol=1e-4)
    # P->A: per-pair ReLU summed onto both atoms
    pairwise = np.asarray(records["weave0.pair_to_atom"].outputs)
    summed = np.zeros((batch.n_atoms, pairwise.shape[1]))
    np.add.at(summed, i, pairwise)
    np.add.at(summed, j, pairwise)
    np.testing.assert_allclose(np.asarray(records["weave0.pair_to_atom_sum"].outputs), summed, rtol=1e-4, atol=1e-4)
    # the readout sums memberships (one per atom and feature) per molecule
    readout = np.asarray(records["readout"].outputs)
    per_feature = readout.reshape(2, -1, 11).sum(-1)  # (molecules, features): the atom count
    np.testing.assert_allclose(per_feature, np.broadcast_to(np.bincount(batch.atom_molecule)[:, None], per_feature.shape),
                               rtol=1e-5)
    # the inference-mode BatchNorm folds into the per-atom linear layer
    kernel, bias = (np.asarray(v) for v in model.atom_embedding.folded())
    a = np.asarray(records["embedding"].inputs[0])
    np.testing.assert_allclose(a @ kernel + bias, np.asarray(records["embedding"].outputs), rtol=1e-4, atol=1e-3)
    # the flat view
    t = model.trace(inputs)
    np.testing.assert_array_equal(np.asarray(t["weave0.atom_to_pair.z_ji"]), np.asarray(a2p.extras["z_ji"]))
    np.testing.assert_array_equal(np.asarray(t["output"]), np.asarray(rec.outputs))


def test_old_model_files_load_with_the_same_weights(tmp_path, model):
    """Variable order and paths are what saved files and the JAX engine rely on."""
    paths = [v.path for v in model.weights]
    assert paths[:2] == ["atom_scaling/scale", "pair_scaling/scale"] and paths[-2:] == ["target_scaling/mean",
                                                                                           "target_scaling/std"]
    assert paths[2:5] == ["weave_gc/weave0/atom_to_atom/kernel_0", "weave_gc/weave0/atom_to_atom/bias",
                          "weave_gc/weave0/pair_to_atom/kernel_0"]
    assert model.head.target_scaling.mean.shape == (1,)


def test_vector_head(model):
    """A head with several outputs: one mean and sd per output, outputs (n_molecules, n_outputs)."""
    from qmlrp.models.head import RegressionHead

    head = RegressionHead((8,), n_outputs=3, name="head")
    head.build((None, 5))
    head.output_layer.kernels[0].assign(np.random.default_rng(0).normal(size=(8, 3)).astype("float32"))
    head.target_scaling.set_statistics([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
    x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    z = np.asarray(head(x, scaled=False))
    np.testing.assert_allclose(np.asarray(head(x)), z * [0.5, 1.0, 2.0] + [1.0, 2.0, 3.0], rtol=1e-6)
    assert head.get_config()["n_outputs"] == 3


def test_histogram_has_no_underflow_in_the_tails(model):
    h = keras.ops.convert_to_tensor(np.array([[-1e4, -40.0, -6.0, 0.0, 6.0, 40.0, 1e4]], "float32"))
    m = np.asarray(model.readout.memberships(h))
    assert np.all(np.isfinite(m))
    np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-6)
    assert m[0, 0].argmax() == 0 and m[0, -1].argmax() == 10


def test_histogram_is_each_molecules_sum_of_memberships_feature_major_with_their_gradient():
    """Known answer for the readout (column f * 11 + k = sum over the molecule's atoms of membership k of
    feature f, each membership a softmax over the 11 Gaussians written out in numpy) and for its
    hand-written gradient (against the same sum differentiated by TensorFlow's autodiff)."""
    import tensorflow as tf

    from qmlrp.models.readout import GAUSSIAN_MEMBERSHIPS, GaussianHistogram

    rng = np.random.default_rng(4)
    h = rng.normal(size=(7, 5)).astype("float32") * 1.5
    atom_molecule = np.array([0, 0, 0, 1, 1, 3, 3], "int32")  # molecule 2 has no atoms
    mu, sd = (np.array(v, "float64") for v in zip(*GAUSSIAN_MEMBERSHIPS))
    logits = -((h[..., None] - mu) ** 2) / (2 * sd**2)  # (atoms, features, 11)
    m = np.exp(logits - logits.max(-1, keepdims=True))
    m /= m.sum(-1, keepdims=True)
    expected = np.stack([m[atom_molecule == k].sum(0).reshape(-1) for k in range(4)])  # (4, 5 * 11)
    layer = GaussianHistogram()
    out = np.asarray(layer(h, atom_molecule, n_molecules=4))
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=1e-6)
    assert np.all(out[2] == 0.0)

    upstream = tf.constant(rng.normal(size=(4, 55)).astype("float32"))
    x = tf.Variable(h)
    with tf.GradientTape(persistent=True) as tape:
        hand = tf.reduce_sum(layer(x, atom_molecule, n_molecules=4) * upstream)
        z = -tf.square(x[..., None] - tf.constant(mu, tf.float32)) / tf.constant(2 * sd**2, tf.float32)
        auto = tf.reduce_sum(tf.math.unsorted_segment_sum(tf.reshape(tf.nn.softmax(z, -1), (7, 55)),
                                                           atom_molecule, 4) * upstream)
    np.testing.assert_allclose(tape.gradient(hand, x).numpy(), tape.gradient(auto, x).numpy(), rtol=1e-4, atol=1e-5)


def test_dense_variant_trains_the_shared_weights():
    keras.utils.set_random_seed(0)
    model = build_model(SMALL)
    dense = DenseGraphConvModel(model)
    batch = random_batch([4, 6], seed=1)
    before = predict(model, batch)
    dense.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae", run_eagerly=True)  # one step: no tracing
    dense.train_on_batch(dense_inputs(batch), np.ones((2, 1), "float32"))
    assert not np.allclose(predict(model, batch), before)


def test_padded_batches_give_the_same_outputs(model):
    from qmlrp.models.inputs import pad_inputs

    batch = random_batch([5, 18, 29, 1, 12], seed=6)
    inputs = batch_to_inputs(batch)
    y = np.arange(5, dtype="float32").reshape(-1, 1)
    padded, y_pad, weight = pad_inputs(inputs, y, molecule_slots=9, atom_multiple=64, pair_multiple=256)
    assert padded["atom_features"].shape[0] % 64 == 0 and padded["pair_features"].shape[0] % 256 == 0
    assert padded["atom_features"].shape[0] > batch.n_atoms and padded["molecule_atoms"].shape == (9,)
    np.testing.assert_array_equal(weight, [1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(y_pad[:5], y)
    for training in (False, True):  # the atom mask keeps padding out of the BatchNorm statistics
        ragged = np.asarray(model(inputs, training=training)).reshape(-1)
        out = np.asarray(model(padded, training=training)).reshape(-1)
        np.testing.assert_allclose(out[:5], ragged, rtol=1e-5, atol=1e-4)
    unmasked = {k: v for k, v in padded.items() if k != "atom_mask"}
    assert not np.allclose(np.asarray(model(unmasked, training=True)).reshape(-1)[:5], ragged, atol=1e-3)
