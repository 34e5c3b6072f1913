"""Parameters of the ``train`` and ``evaluate`` stages and where they write (no Keras import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmlrp.errors import QmlrpError
from qmlrp.models.config import ModelConfig
from qmlrp.params import reject_unknown_keys, stage_params

RESULTS = Path("results")
"""Per-run test predictions, learning history and summary: ``results/<target>/fold<k>/``."""
DVCLIVE = Path("dvclive")
"""dvclive logs, one directory per run: ``dvclive/<target>/fold<k>/``."""
METRICS_FILE = Path("metrics/evaluate.json")
PLOTS = Path("plots/evaluate")
LOSSES = ("mae", "mse", "huber")


@dataclass(frozen=True)
class Target:
    """A regression target: short name, column of ``data/qm9.parquet``, units."""

    name: str
    column: str
    units: str


TARGETS: dict[str, Target] = {
    "alpha": Target("alpha", "alpha_bohr3", "bohr^3"),
    "zpve": Target("zpve", "zpve_ev", "eV"),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise QmlrpError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


@dataclass(frozen=True)
class TrainConfig:
    """``params.yaml`` section ``train`` (see the module docstring for the choices)."""

    targets: tuple[str, ...] = ("alpha", "zpve")
    folds: tuple[int, ...] = tuple(range(10))
    seed: int = 20171010
    validation_fraction: float = 0.1
    max_train_molecules: int | None = None
    batch_size: int = 64
    epochs: int = 100
    loss: str = "mae"
    learning_rate: float = 1e-3
    lr_factor: float = 0.5
    lr_patience: int = 5
    min_learning_rate: float = 1e-5
    early_stopping_patience: int = 12
    time_limit_minutes: float | None = None
    scaling_sample: int = 5000
    xla: bool | str = "auto"
    xla_min_molecules: int = 20000
    xla_atom_bucket: int = 64
    xla_pair_bucket: int = 1024
    model: ModelConfig = field(default_factory=ModelConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        reject_unknown_keys("train", params, set(cls.__dataclass_fields__))
        values = dict(params)
        try:
            values["model"] = ModelConfig.from_params(dict(values.get("model") or {}))
        except (TypeError, ValueError) as err:
            raise QmlrpError(f"params.yaml train.model: {err}") from None
        for key in ("targets", "folds"):
            if key in values:
                values[key] = tuple(values[key])
        config = cls(**values)
        if config.loss not in LOSSES:
            raise QmlrpError(f"params.yaml train.loss: {config.loss!r} is not one of {', '.join(LOSSES)}")
        if config.epochs < 1 or config.batch_size < 1:
            raise QmlrpError("params.yaml train: epochs and batch_size must be positive")
        for name in config.targets:
            get_target(name)
        if config.xla not in (True, False, "auto"):
            raise QmlrpError(f"params.yaml train.xla: {config.xla!r} is not true, false or auto")
        return config

    def use_xla(self, n_train: int) -> bool:
        """XLA on bucket-padded batches: always (true), never (false), or for large runs (auto)."""
        return self.xla is True or (self.xla == "auto" and n_train >= self.xla_min_molecules)

    @classmethod
    def load(cls, params_path: str | Path) -> TrainConfig:
        return cls.from_params(stage_params("train", params_path))


@dataclass(frozen=True)
class EvaluateConfig:
    """``params.yaml`` section ``evaluate``: MAE thresholds in the targets' units."""

    thresholds: dict[str, float]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> EvaluateConfig:
        thresholds = params.get("thresholds")
        if not isinstance(thresholds, dict) or not thresholds:
            raise QmlrpError("params.yaml evaluate.thresholds: expected a mapping target -> MAE threshold")
        for name in thresholds:
            get_target(name)
        return cls(thresholds={k: float(v) for k, v in thresholds.items()})

    @classmethod
    def load(cls, params_path: str | Path) -> EvaluateConfig:
        return cls.from_params(stage_params("evaluate", params_path))
