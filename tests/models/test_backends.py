"""The model under both supported Keras backends (JAX, the default, and TensorFlow): same file,
same outputs, same LRP explanations -- one code path, run by each backend in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import keras
import numpy as np
import pytest

from qmlrp.models.config import ModelConfig
from qmlrp.models.gc import build_model
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.models.io import save_model

SCRIPT = """
import json, sys
import numpy as np
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.models.io import inference_function, load_model
model = load_model(sys.argv[1])
inputs = batch_to_inputs(random_batch([3, 17, 29, 8], seed=4))
trace = model.trace(inputs)
print(json.dumps({"call": np.asarray(model(inputs)).ravel().tolist(),
                  "padded": inference_function(model)(inputs).tolist(),
                  "trace": np.asarray(trace["output"]).ravel().tolist()}))
"""


LRP_SCRIPT = """
import json, sys
import keras
import numpy as np
from qmlrp.models.inputs import batch_to_inputs, random_batch
from qmlrp.models.io import inference_function, load_model
from qmlrp.relevance.faithfulness import gradient_times_input
from qmlrp.relevance.model_lrp import ModelLRP
from qmlrp.relevance.rules import stable_composites
model = load_model(sys.argv[1])
gxi = gradient_times_input(model)
batches = [random_batch([3, 17, 29, 8], seed=4), random_batch([12, 5, 21], seed=5)]
lrp = ModelLRP(model)
out = {"backend": keras.backend.backend(), "padded": [], "output": [], "absorbed": [], "atoms": [], "pairs": [], "gxi_atoms": [],
       "gxi_pairs": []}
for batch in batches:
    inputs = batch_to_inputs(batch)
    out["padded"] += inference_function(model)(inputs).tolist()
    e = lrp.explain_inputs(inputs, stable_composites(["eps"]))["eps"]
    out["output"] += e.output.tolist()
    out["absorbed"] += e.absorbed.tolist()
    out["atoms"] += e.atoms.ravel().tolist()
    out["pairs"] += e.pairs.ravel().tolist()
    ga, gp = gxi(batch)
    out["gxi_atoms"] += ga.ravel().tolist()
    out["gxi_pairs"] += gp.ravel().tolist()
    out.setdefault("atom_molecule", []).append(e.atom_molecule.tolist())
    out.setdefault("pair_molecule", []).append(e.pair_molecule.tolist())
print(json.dumps(out))
"""


def _saved_model(path):
    keras.utils.set_random_seed(3)
    model = build_model(ModelConfig(head_units=(32,), embedding_width=16))
    model.head.output_layer.kernels[0].assign(np.random.default_rng(0).normal(0, 0.1, (32, 1)).astype("float32"))
    model.head.target_scaling.set_statistics(4.0, 0.9)
    model.update_metadata(architecture=asdict(ModelConfig(head_units=(32,), embedding_width=16)))
    save_model(model, path, half=False)
    return model


def _run(script: str, backend: str, *args: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", script, *args], check=False, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_saved_model_gives_the_same_outputs_under_jax(tmp_path):
    pytest.importorskip("jax")
    path = tmp_path / "zpve" / "fold0.npz"
    model = _saved_model(path)
    expected = np.asarray(model(batch_to_inputs(random_batch([3, 17, 29, 8], seed=4)))).ravel()
    got = _run(SCRIPT, "jax", str(path))
    for key in ("call", "padded", "trace"):
        np.testing.assert_allclose(got[key], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_forward_pass_and_lrp_agree_between_tensorflow_and_jax(tmp_path):
    """The same file, molecules and rule under TensorFlow and JAX (each in its own process): the same
    predictions, the same conserving LRP explanation (the one walk, compiled by each backend) and the
    same gradient x input (the faithfulness baseline)."""
    pytest.importorskip("jax")
    pytest.importorskip("tensorflow")
    path = tmp_path / "zpve" / "fold0.npz"
    _saved_model(path)
    got = {backend: _run(LRP_SCRIPT, backend, str(path)) for backend in ("tensorflow", "jax")}
    tf, jx = got["tensorflow"], got["jax"]
    assert (tf["backend"], jx["backend"]) == ("tensorflow", "jax")
    np.testing.assert_allclose(jx["padded"], tf["padded"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jx["output"], tf["padded"], rtol=1e-5, atol=1e-5)
    for run in (tf, jx):  # conservation, per molecule: atoms + pairs + absorbed == output
        atom_molecule = np.concatenate([np.asarray(m) + k * 100 for k, m in enumerate(run["atom_molecule"])])
        pair_molecule = np.concatenate([np.asarray(m) + k * 100 for k, m in enumerate(run["pair_molecule"])])
        owners = np.unique(atom_molecule)
        atoms = np.asarray(run["atoms"]).reshape(atom_molecule.size, -1).sum(1)
        pairs = np.asarray(run["pairs"]).reshape(pair_molecule.size, -1).sum(1)
        total = np.array([atoms[atom_molecule == m].sum() + pairs[pair_molecule == m].sum() for m in owners])
        np.testing.assert_allclose(total + np.asarray(run["absorbed"]), run["output"], rtol=1e-4, atol=1e-5)
    for key in ("atoms", "pairs", "absorbed", "gxi_atoms", "gxi_pairs"):
        a, b = np.asarray(jx[key]), np.asarray(tf[key])
        assert np.abs(b).max() > 0, key
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max(), err_msg=key)
