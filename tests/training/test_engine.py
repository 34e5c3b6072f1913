"""The multi-model training engine (JAX), run in its own process: see ``engine_cases.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

CASES = Path(__file__).with_name("engine_cases.py")
NAMES = [
    "test_k_models_at_once_equal_separate_runs",
    "test_overfits_a_tiny_set",
    "test_device_batches_give_the_host_result",
    "test_resumes_after_a_kill_with_nothing_finished_lost",
    "test_checkpoint_of_another_configuration_is_refused",
    "test_weights_file_is_compact_deterministic_and_reloads",
    "test_masked_loss_ignores_padding",
    "test_vector_model_overfits_a_tiny_set",
    "test_mixed_head_widths_train_as_one_program_per_width",
    "test_engine_refuses_other_backends_by_name",
    "test_step_compiler_options_are_probed_once_and_dropped_where_unknown",
    "test_autoencoder_overfits_a_tiny_set_through_the_engine",
    "test_autoencoder_resumes_from_its_checkpoint",
    "test_finetuning_through_padded_labels_moves_only_the_autoencoder",
]


@pytest.fixture(scope="session")
def engine_report(small_data, tmp_path_factory) -> dict[str, str]:
    """Run every case once under KERAS_BACKEND=jax; ``{case name: "" if passed else its failure}``."""
    pytest.importorskip("jax", reason="the training engine needs JAX (pip install -e '.[test]')")
    report = tmp_path_factory.mktemp("engine") / "report.xml"
    env = {**os.environ, "KERAS_BACKEND": "jax", "QMLRP_SMALL_DATA": str(small_data)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES),
                           f"--junitxml={report}", "-o", "addopts="], env=env, capture_output=True, text=True,
                          timeout=1800)
    if not report.exists():
        pytest.fail(f"engine cases did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    outcome = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problems = [c for c in case if c.tag in ("failure", "error", "skipped")]
        outcome[case.get("name")] = "" if not problems else (problems[0].get("message") or "") + (problems[0].text or "")
    return outcome


@pytest.mark.parametrize("name", NAMES)
def test_engine_case(engine_report: dict[str, str], name: str) -> None:
    assert name in engine_report, f"{name} did not run"
    assert engine_report[name] == "", engine_report[name][-4000:]


def test_every_case_is_listed() -> None:
    text = CASES.read_text()
    assert sorted(NAMES) == sorted(line.split("(")[0][4:] for line in text.splitlines() if line.startswith("def test_"))
