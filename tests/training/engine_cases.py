"""Cases of the JAX training engine; run by ``test_engine.py`` in a process with KERAS_BACKEND=jax
(Keras picks its backend once per process, and the test session runs TensorFlow).

``QMLRP_SMALL_DATA`` points at the small QM9 sample (``data/{features,qm9.parquet,folds.parquet}``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"

from qmlrp.errors import QmlrpError  # noqa: E402
from qmlrp.features.store import FeatureStore  # noqa: E402
from qmlrp.training.config import TrainConfig  # noqa: E402
from qmlrp.training.engine import ModelRun, fit  # noqa: E402
from qmlrp.training.train import fold_run  # noqa: E402

DATA = Path(os.environ.get("QMLRP_SMALL_DATA", "")) / "data"
SMALL_MODEL = {"head_units": [64], "embedding_width": 16, "atom_width": 16, "pair_width": 16,
               "atom_hidden": 16, "pair_hidden": 16}


@pytest.fixture(scope="module")
def store() -> FeatureStore:
    return FeatureStore.open(DATA / "features")


def config(**values: object) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 8, "model": SMALL_MODEL, "batches": "host", "checkpoint_minutes": 0.0,
            "xla_atom_bucket": 32, "xla_pair_bucket": 256}
    return TrainConfig.from_params({**base, **values})


def run(store: FeatureStore, target: str, fold: int, cfg: TrainConfig) -> ModelRun:
    return fold_run(store, DATA / "qm9.parquet", DATA / "folds.parquet", target, fold, cfg)[0]


def weights(result) -> list[np.ndarray]:  # noqa: ANN001
    return [np.asarray(v.value) for v in result.model.weights]


def test_k_models_at_once_equal_separate_runs(store: FeatureStore) -> None:
    cfg = config()
    a, b = run(store, "alpha", 0, cfg), run(store, "zpve", 1, cfg)
    together = fit(store, [a, b], cfg, log=False)
    alone = [fit(store, [a], cfg, log=False)[0], fit(store, [b], cfg, log=False)[0]]
    # Padding to the larger batch of the two changes float summation order; Adam's normalised
    # step (lr * m / sqrt(v)) turns round-off in near-zero gradients into differences of up to
    # ~lr per step, so weights agree to a few lr, and the validation MAE to 1e-3.
    steps = cfg.epochs * -(-a.train.size // cfg.batch_size)
    for joint, single in zip(together, alone):
        np.testing.assert_allclose([r["val_mae"] for r in joint.history], [r["val_mae"] for r in single.history],
                                   rtol=1e-3)
        worst = max(float(np.max(np.abs(w1 - w2))) for w1, w2 in zip(weights(joint), weights(single)))
        assert worst < 2 * cfg.learning_rate * steps, worst
    assert together[0].history[0]["val_mae"] != together[1].history[0]["val_mae"]


def test_overfits_a_tiny_set(store: FeatureStore) -> None:
    # cosine decay to a small rate: the weights settle and the inference-mode BatchNorm statistics follow
    cfg = config(epochs=150, learning_rate=3e-3, early_stopping_patience=150, schedule="cosine", warmup_epochs=5.0,
                 min_learning_rate=1e-6, model={**SMALL_MODEL, "head_units": [128]})
    base = run(store, "alpha", 0, cfg)
    tiny = base.train[:16]
    result = fit(store, [replace(base, train=tiny, validation=tiny)], cfg, log=False)[0]
    sd = float(np.std(base.y[tiny]))
    assert result.best_val_mae < 0.05 * sd, (result.best_val_mae, sd)
    assert result.history[0]["val_mae"] > 5 * result.best_val_mae


def test_device_batches_give_the_host_result(store: FeatureStore) -> None:
    cfg = config(epochs=1)
    a = run(store, "zpve", 0, cfg)
    host = fit(store, [a], cfg, log=False, source="host")[0]
    device = fit(store, [a], cfg, log=False, source="device")[0]
    np.testing.assert_allclose(device.history[0]["val_mae"], host.history[0]["val_mae"], rtol=1e-3)
    steps = -(-a.train.size // cfg.batch_size)
    worst = max(float(np.max(np.abs(w1 - w2))) for w1, w2 in zip(weights(device), weights(host)))
    assert worst < 2 * cfg.learning_rate * steps, worst


def test_resumes_after_a_kill_with_nothing_finished_lost(store: FeatureStore, tmp_path: Path) -> None:
    cfg = config(epochs=3)
    a, b = run(store, "alpha", 0, cfg), run(store, "zpve", 0, replace(cfg, seed=7))
    reference = fit(store, [a, b], cfg, log=False)
    ckpt = tmp_path / "program.npz"

    def kill(k: int, row: dict) -> None:
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(store, [a, b], cfg, checkpoint=ckpt, on_epoch=kill, log=False)
    assert ckpt.exists()
    seen: list[int] = []
    resumed = fit(store, [a, b], cfg, checkpoint=ckpt, on_epoch=lambda k, row: seen.append(row["epoch"]), log=False)
    assert seen == [3, 3]  # epochs 1 and 2 came from the checkpoint
    # the killed process's two epochs of CPU are carried over (run.json adds them to its own)
    assert reference[0].cpu_seconds_before_resume == 0.0 and resumed[0].cpu_seconds_before_resume > 0.0
    for r1, r2 in zip(resumed, reference):
        assert [h["val_mae"] for h in r1.history] == pytest.approx([h["val_mae"] for h in r2.history], rel=1e-6)
        for w1, w2 in zip(weights(r1), weights(r2)):
            np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7)


def test_checkpoint_of_another_configuration_is_refused(store: FeatureStore, tmp_path: Path) -> None:
    cfg = config(epochs=1)
    a = run(store, "alpha", 0, cfg)
    fit(store, [a], cfg, checkpoint=tmp_path / "p.npz", log=False)
    with pytest.raises(QmlrpError, match="checkpoint of another configuration"):
        fit(store, [a], replace(cfg, learning_rate=0.01), checkpoint=tmp_path / "p.npz", log=False)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(QmlrpError, match="bad.npz: unreadable checkpoint"):
        fit(store, [a], cfg, checkpoint=tmp_path / "bad.npz", log=False)


def test_weights_file_is_compact_deterministic_and_reloads(store: FeatureStore, tmp_path: Path) -> None:
    from qmlrp.models.io import load_model, save_model
    from qmlrp.training.train import predict_positions

    cfg = config(epochs=1)
    a = run(store, "alpha", 0, cfg)
    model = fit(store, [a], cfg, log=False)[0].model
    save_model(model, tmp_path / "one.npz")
    save_model(model, tmp_path / "two.npz")
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    save_model(model, tmp_path / "full.npz", half=False)
    loaded, full = load_model(tmp_path / "one.npz"), load_model(tmp_path / "full.npz")
    positions = np.arange(len(store))
    y32 = predict_positions(model, store, positions, 16)
    np.testing.assert_allclose(predict_positions(full, store, positions, 16), y32, rtol=1e-6)
    half = predict_positions(loaded, store, positions, 16)
    assert np.max(np.abs(half - y32)) < 1e-2 * float(np.std(a.y)), np.max(np.abs(half - y32))
    assert loaded.metadata["target"] == "alpha"


def test_masked_loss_ignores_padding(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import qmlrp.training.engine as engine
    from qmlrp.targets.spectra import masked_mae
    from qmlrp.training.train import predict_positions

    cfg = config(epochs=2)
    a = run(store, "frequencies", 0, cfg)
    assert a.y.shape == (len(store), 81) and np.isnan(a.y).any()
    reference = fit(store, [a], cfg, log=False)[0]
    # the padding's label values: +-inf instead of NaN, and 1e6 (not 0) inside the compiled step
    marked = replace(a, y=np.where(np.isnan(a.y), np.where(np.arange(81) % 2 == 0, np.inf, -np.inf), a.y))
    original = engine.masked_labels

    def huge_padding(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, mask = original(y, w)
        return np.where(mask > 0, labels, np.float32(1e6)), mask

    monkeypatch.setattr(engine, "masked_labels", huge_padding)
    changed = fit(store, [marked], cfg, log=False)[0]
    assert [h["val_mae"] for h in changed.history] == [h["val_mae"] for h in reference.history]
    assert [h["loss"] for h in changed.history] == [h["loss"] for h in reference.history]
    for w1, w2 in zip(weights(changed), weights(reference)):
        np.testing.assert_array_equal(w1, w2)
    # the logged validation MAE is the MAE over real modes only
    pred = predict_positions(reference.model, store, a.validation, 16)
    assert pred.shape == (a.validation.size, 81)
    assert reference.best_val_mae == pytest.approx(masked_mae(pred, a.y[a.validation]), rel=1e-4)


def test_vector_model_overfits_a_tiny_set(store: FeatureStore) -> None:
    from qmlrp.targets.spectra import label_mad

    # one batch of all 16 molecules (BatchNorm's batch statistics then match its moving ones) and a
    # constant rate: 81 outputs need a steadier descent than one (measured: ~0.035 MAD at 150 epochs)
    cfg = config(epochs=150, batch_size=16, learning_rate=3e-3, lr_patience=150, early_stopping_patience=150,
                 model={**SMALL_MODEL, "head_units": [128]})
    base = run(store, "frequencies", 0, cfg)
    tiny = base.train[np.isfinite(base.y[base.train]).any(axis=1)][:16]
    result = fit(store, [replace(base, train=tiny, validation=tiny)], cfg, log=False)[0]
    mad = label_mad(base.y[tiny])  # the MAE of predicting each mode's mean
    assert result.best_val_mae < 0.1 * mad, (result.best_val_mae, mad)
    assert result.history[0]["val_mae"] > 5 * result.best_val_mae


def test_mixed_head_widths_train_as_one_program_per_width(store: FeatureStore) -> None:
    from qmlrp.training.engine import fit_grouped

    cfg = config(epochs=1)
    a, f = run(store, "alpha", 0, cfg), run(store, "frequencies", 1, cfg)
    with pytest.raises(QmlrpError, match="one program trains models of one head width, got alpha/fold0 1, "
                                         "frequencies/fold1 81"):
        fit(store, [a, f], cfg, log=False)
    seen: list[tuple[int, int]] = []
    grouped = fit_grouped(store, [f, a], cfg, log=False, on_epoch=lambda k, row: seen.append((k, row["epoch"])))
    assert [r.name for r in grouped] == ["frequencies/fold1", "alpha/fold0"] and sorted(seen) == [(0, 1), (1, 1)]
    assert grouped[0].model.head.n_outputs == 81 and grouped[1].model.head.n_outputs == 1
    alone = fit(store, [a], cfg, log=False)[0]
    assert grouped[1].history[0]["val_mae"] == alone.history[0]["val_mae"]  # the scalar program is unchanged
    for w1, w2 in zip(weights(grouped[1]), weights(alone)):
        np.testing.assert_array_equal(w1, w2)


def test_engine_refuses_other_backends_by_name() -> None:
    import keras

    assert keras.backend.backend() == "jax"


def test_step_compiler_options_are_probed_once_and_dropped_where_unknown() -> None:
    import jax

    from qmlrp.training.engine import CPU_STEP_OPTIONS, _xla_accepts, step_compiler_options

    assert jax.default_backend() == "cpu"
    assert step_compiler_options() == CPU_STEP_OPTIONS  # this jaxlib knows the memory-optimised schedule
    assert not _xla_accepts((("xla_cpu_no_such_option", True),))  # an unknown option: XLA's defaults instead
    assert not _xla_accepts((("xla_cpu_scheduler_type", "CPU_SCHEDULER_TYPE_NO_SUCH_ONE"),))


# -- the autoencoder (issue 20): the DAE and its fine-tuning train through the same loop ---------------
def test_autoencoder_overfits_a_tiny_set_through_the_engine(store: FeatureStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import qmlrp.training.engine as engine
    from qmlrp.training.autoencoder import AutoencoderParams, errors_of, train_autoencoder

    programs = []
    original = engine.train_program
    monkeypatch.setattr(engine, "train_program", lambda program, *a, **k: programs.append(program) or original(
        program, *a, **k))
    tiny = np.arange(8)
    model, losses = train_autoencoder(store, tiny, AutoencoderParams(noise_sd=0.0, epochs=150, batch_size=8,
                                                                     learning_rate=3e-3, seed=3))
    assert len(programs) == 1 and programs[0].models == [model]  # the DAE trained in the engine's loop
    assert len(losses) == 150 and losses[-1] < 0.02 * losses[0], (losses[0], losses[-1])
    error = errors_of(model, store, tiny)
    # The history is the MSE of the scaled vector: a wrong definition (a sum over the 5,887 entries, unscaled
    # features) would be off by orders of magnitude. At an MSE of ~1e-6 the last Adam step alone moves the
    # model's error by ~20 % (0.98e-6 against a history of 0.80e-6 on an AVX2 CPU), hence the wide tolerance.
    assert float(np.mean(error)) == pytest.approx(losses[-1], rel=0.5)


def test_autoencoder_resumes_from_its_checkpoint(store: FeatureStore, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted after two of three epochs and resumed: the weights of one uninterrupted run (input noise on:
    its random state is part of the checkpoint)."""
    import qmlrp.training.engine as engine
    from qmlrp.training.autoencoder import AutoencoderParams, train_autoencoder

    p = AutoencoderParams(noise_sd=0.5, epochs=3, batch_size=8, seed=5)
    train = np.arange(20)
    reference, ref_losses = train_autoencoder(store, train, p)
    calls = []
    original = engine._validate

    def interrupt(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_validate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(store, train, p, checkpoint=tmp_path / "dae.npz")
    monkeypatch.setattr(engine, "_validate", original)
    resumed, losses = train_autoencoder(store, train, p, checkpoint=tmp_path / "dae.npz")
    assert losses == ref_losses
    for a, b in zip(resumed.weights, reference.weights):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    noisy, _ = train_autoencoder(store, train, replace(p, seed=6))
    assert not np.array_equal(np.asarray(noisy.encoder1.kernel.value), np.asarray(reference.encoder1.kernel.value))


def test_finetuning_through_padded_labels_moves_only_the_autoencoder(store: FeatureStore, tmp_path: Path) -> None:
    import keras

    from qmlrp.models.autoencoder import AutoencoderConfig, TiedAutoencoder, save_autoencoder
    from qmlrp.stages.combined import finetune
    from qmlrp.training.autoencoder import AutoencoderParams, fit_scaling
    from tests.training.test_autoencoder import tiny_model

    keras.utils.set_random_seed(0)
    ae = TiedAutoencoder(AutoencoderConfig(), fit_scaling(store, np.arange(len(store))))
    weave = tiny_model(5, seed=3)
    before_weave = [np.asarray(v.value).copy() for v in weave.weights]
    y = np.random.default_rng(1).normal(3.0, 2.0, (len(store), 5))
    y[np.arange(5)[None, :] >= np.arange(len(store))[:, None] % 4] = np.nan  # 0-3 real outputs (0: unlabelled)
    save_autoencoder(ae, tmp_path / "dae.npz")
    tuned = finetune(tmp_path / "dae.npz", weave, store, np.arange(12), y,
                     AutoencoderParams(finetune_epochs=1, batch_size=4, finetune_learning_rate=0.01))
    before, after = ae.arrays(), tuned.arrays()
    assert all(np.all(np.isfinite(v)) for v in after.values())
    assert any(not np.allclose(before[k], after[k]) for k in before)
    for a, b in zip(weave.weights, before_weave):
        np.testing.assert_array_equal(np.asarray(a.value), b)
