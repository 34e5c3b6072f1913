"""The model under another Keras backend (JAX, as on the GPU machines): same file, same outputs."""

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


@pytest.mark.integration
def test_saved_model_gives_the_same_outputs_under_jax(tmp_path):
    pytest.importorskip("jax")
    keras.utils.set_random_seed(3)
    model = build_model(ModelConfig(head_units=(32,), embedding_width=16))
    model.head.output_layer.kernels[0].assign(np.random.default_rng(0).normal(0, 0.1, (32, 1)).astype("float32"))
    model.head.target_scaling.set_statistics(4.0, 0.9)
    model.update_metadata(architecture=asdict(ModelConfig(head_units=(32,), embedding_width=16)))
    path = tmp_path / "zpve" / "fold0.npz"
    save_model(model, path, half=False)
    expected = np.asarray(model(batch_to_inputs(random_batch([3, 17, 29, 8], seed=4)))).ravel()
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("call", "padded", "trace"):
        np.testing.assert_allclose(got[key], expected, rtol=1e-5, atol=1e-5)
