"""Training settings of a target whose molecules are not the ingest sample (e.g. beta on ``data/beta``).

Such a dataset can be far smaller than QM9's: with ~200 labelled molecules an epoch is three batches,
and the ``train`` section's 10 epochs of the small default are 30 Adam steps. ``params.yaml`` section
``train_<dataset>`` (e.g. ``train_beta``) overrides ``train`` keys for that dataset's targets; every
other choice stays the ``train`` section's. Unknown keys are rejected with the usual did-you-mean line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qmlrp.params import load_params, reject_unknown_keys
from qmlrp.training.config import TrainConfig
from qmlrp.targets import get_target


def section_name(target_name: str) -> str | None:
    """``train_<dataset>`` for a target outside the ingest sample, else None."""
    dataset = get_target(target_name).dataset
    return None if dataset == "qm9" else f"train_{dataset}"


def target_config(target_name: str, params_path: str | Path = "params.yaml") -> TrainConfig:
    """The ``train`` section with the target's dataset section (if any) laid over it."""
    params = load_params(params_path)
    train: dict[str, Any] = dict(params.get("train") or {})
    name = section_name(target_name)
    if name is None or not params.get(name):
        return TrainConfig.from_params(train)
    overrides = dict(params[name])
    reject_unknown_keys(name, overrides, set(TrainConfig.__dataclass_fields__) - {"targets", "model"})
    return TrainConfig.from_params({**train, **overrides}, section=name)
