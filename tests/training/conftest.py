"""A tiny QM9 pipeline in a temporary folder: ingest -> featurize -> split -> train (2 folds x 2 targets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
N_MOLECULES = 60
FOLDS = [0, 1]


def small_params(root: Path, **train: object) -> Path:
    """The repository's params.yaml with the train section shrunk for tests (targets alpha, zpve
    unless ``train`` says otherwise)."""
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update({"targets": ["alpha", "zpve"], "folds": FOLDS, "epochs": 2, "batch_size": 16, **train})
    params["evaluate"]["also"] = []  # beta is trained on data/beta by its own stage
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """``data/{qm9.parquet, features/, folds.parquet}`` for a seeded sample of 60 molecules."""
    from qmlrp.data.ingest import ingest
    from qmlrp.data.split import split
    from qmlrp.features.featurize import featurize_table

    root = tmp_path_factory.mktemp("small")
    data = root / "data"
    ingest(source="qm9pack", output=data / "qm9.parquet", rejects=data / "rejects.csv", metrics=root / "ingest.json",
           limit=N_MOLECULES, seed=1, on_error="fail")
    featurize_table(data / "qm9.parquet", data / "features", data / "failures.csv", root / "featurize.json",
                    workers=1, chunk_size=N_MOLECULES, scratch_root=root / "scratch")
    split(data / "features", data / "folds.parquet", root / "split.json", n_folds=10, seed=1)
    return root


def run_in_jax(code: str, cwd: Path, timeout: int = 1200) -> None:
    """Run ``code`` in a fresh Python process whose Keras runs on JAX (the training engine's
    backend); fail with the end of its stderr unless it exits 0."""
    import os
    import subprocess
    import sys

    script = "from qmlrp.training.backend import use_jax_backend; use_jax_backend()\n" + code
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "KERAS_BACKEND": "jax"},
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]


def train_program_in_jax(targets: tuple[str, ...], params: Path, data: Path, out: Path, live: bool) -> None:
    """``train_program`` of ``targets`` x ``FOLDS`` on ``data`` (features, table, folds) into
    ``out/{models,results[,dvclive]}``, in a JAX process."""
    live_dir = repr(str(out / "dvclive")) if live else "None"
    run_in_jax(
        "from qmlrp.training.config import TrainConfig\n"
        "from qmlrp.training.train import train_program\n"
        f"train_program([(t, f) for t in {targets!r} for f in {FOLDS!r}], TrainConfig.load({str(params)!r}),"
        f" features={str(data / 'features')!r}, table={str(data / 'qm9.parquet')!r},"
        f" folds_path={str(data / 'folds.parquet')!r}, models_dir={str(out / 'models')!r},"
        f" results_dir={str(out / 'results')!r}, live_dir={live_dir}, log=False)\n", out)


@pytest.fixture(scope="session")
def trained(small_data) -> dict:
    """Train alpha and zpve on folds 0 and 1 (2 epochs each) as one program, in a process running
    Keras on JAX (the training engine's backend); returns the run summaries."""
    import json

    train_program_in_jax(("alpha", "zpve"), small_params(small_data), small_data / "data", small_data, live=True)
    return {(t, f): json.loads((small_data / "results" / t / f"fold{f}" / "run.json").read_text())
            for t in ("alpha", "zpve") for f in FOLDS}


FREQUENCY_MODEL = {"head_units": [64], "embedding_width": 16, "atom_width": 16, "pair_width": 16,
                   "atom_hidden": 16, "pair_hidden": 16}


@pytest.fixture(scope="session")
def trained_frequencies(small_data) -> Path:
    """``frequencies`` and ``omega1`` on folds 0 and 1 (2 epochs, a small model) trained as the stage
    does (one program per head width), in a JAX process, into ``freq/{models,results}``; returns
    the ``freq`` folder."""
    root = small_data / "freq"
    root.mkdir(exist_ok=True)
    params = small_params(root, targets=["frequencies", "omega1"], model=FREQUENCY_MODEL)
    train_program_in_jax(("frequencies", "omega1"), params, small_data / "data", root, live=False)
    return root
