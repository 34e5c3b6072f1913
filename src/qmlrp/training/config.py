"""Parameters of the ``train`` and ``evaluate`` stages and where they write (no Keras import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qmlrp.errors import QmlrpError
from qmlrp.models.config import ModelConfig
from qmlrp.params import parse_section, stage_params
from qmlrp.targets import get_target

RESULTS = Path("results")
"""Per-run test predictions, learning history and summary: ``results/<target>/fold<k>/``."""
DVCLIVE = Path("dvclive")
"""dvclive logs, one directory per run: ``dvclive/<target>/fold<k>/``."""
METRICS_FILE = Path("metrics/evaluate.json")
PLOTS = Path("plots/evaluate")
LOSSES = ("mae", "mse", "huber")


@dataclass(frozen=True)
class TrainConfig:
    """``params.yaml`` section ``train`` (see :mod:`qmlrp.training.engine` for the loop).

    ``learning_rate`` is Adam's (peak, for ``cosine``); ``schedule`` is ``plateau`` (halve on a
    validation plateau) or ``cosine`` (``warmup_epochs`` of linear warm-up, then cosine decay to
    ``min_learning_rate`` at ``epochs``); ``ema_decay`` keeps an exponential moving average of the
    weights (per step) and validates/saves it instead; ``batches`` is ``host`` (ragged batches
    built on the CPU), ``device`` (the whole store on the accelerator) or ``auto`` (device on a
    GPU); ``checkpoint_minutes`` is how often a resumable checkpoint is written.
    """

    targets: tuple[str, ...] = ("alpha", "zpve")
    folds: tuple[int, ...] = tuple(range(10))
    seed: int = 20171010
    validation_fraction: float = 0.1
    max_train_molecules: int | None = None
    batch_size: int = 64
    epochs: int = 100
    loss: Literal["mae", "mse", "huber"] = "mae"
    learning_rate: float = 1e-3
    schedule: Literal["plateau", "cosine"] = "plateau"
    warmup_epochs: float = 1.0
    lr_factor: float = 0.5
    lr_patience: int = 5
    min_learning_rate: float = 1e-5
    ema_decay: float | None = None
    early_stopping_patience: int = 12
    time_limit_minutes: float | None = None
    scaling_sample: int = 5000
    batches: Literal["host", "device", "auto"] = "auto"
    checkpoint_minutes: float = 10.0
    xla_atom_bucket: int = 64
    xla_pair_bucket: int = 1024
    model: ModelConfig = field(default_factory=ModelConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any], section: str = "train") -> TrainConfig:
        config = parse_section(cls, section, params)
        if config.epochs < 1 or config.batch_size < 1:
            raise QmlrpError(f"params.yaml {section}: epochs and batch_size must be positive")
        if not 0.0 < config.validation_fraction < 1.0:
            raise QmlrpError(f"params.yaml {section}.validation_fraction: must be in (0, 1)")
        if config.ema_decay is not None and not 0.0 < config.ema_decay < 1.0:
            raise QmlrpError(f"params.yaml {section}.ema_decay: must be in (0, 1) or null")
        for name in config.targets:
            get_target(name)
        return config

    @classmethod
    def load(cls, params_path: str | Path) -> TrainConfig:
        return cls.from_params(stage_params("train", params_path))


@dataclass(frozen=True)
class EvaluateConfig:
    """``params.yaml`` section ``evaluate``.

    Attributes:
        thresholds: target -> largest passing mean test MAE, in the target's units.
        mad_thresholds: target -> largest passing MAE / MAD of the test labels (a bar relative to
            the labels' spread, e.g. beta: 0.3).
        also: targets evaluated besides ``train.targets`` (trained by their own stage, e.g. beta by
            ``train_beta``), over the same folds.
    """

    thresholds: dict[str, float]
    mad_thresholds: dict[str, float] = field(default_factory=dict)
    also: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> EvaluateConfig:
        from qmlrp.params import reject_unknown_keys

        reject_unknown_keys("evaluate", dict(params), {"thresholds", "mad_thresholds", "also"})
        thresholds = params.get("thresholds")
        if not isinstance(thresholds, dict) or not thresholds:
            raise QmlrpError("params.yaml evaluate.thresholds: expected a mapping target -> MAE threshold")
        mad_thresholds = params.get("mad_thresholds") or {}
        if not isinstance(mad_thresholds, dict):
            raise QmlrpError("params.yaml evaluate.mad_thresholds: expected a mapping target -> largest MAE/MAD")
        also = params.get("also") or []
        if not isinstance(also, list):
            raise QmlrpError("params.yaml evaluate.also: expected a list of targets")
        for name in [*thresholds, *mad_thresholds, *also]:
            get_target(name)
        try:
            return cls(thresholds={k: float(v) for k, v in thresholds.items()},
                       mad_thresholds={k: float(v) for k, v in mad_thresholds.items()}, also=tuple(also))
        except (TypeError, ValueError):
            raise QmlrpError("params.yaml evaluate: thresholds must be numbers") from None

    @classmethod
    def load(cls, params_path: str | Path) -> EvaluateConfig:
        return cls.from_params(stage_params("evaluate", params_path))
