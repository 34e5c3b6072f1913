"""Learning-rate schedules, evaluated on the host once per step for each model of a program.

A schedule is a small state machine per model: ``rate(step, epoch_fraction)`` gives the learning
rate of the next optimiser step and ``end_epoch(val_mae)`` sees each epoch's validation MAE (only
reduce-on-plateau uses it). Rates are fed to the compiled step as a (K,) array, so changing them
never recompiles.

* ``plateau`` -- Keras' ReduceLROnPlateau: multiply by ``lr_factor`` when the validation MAE has
  not improved by more than 1e-4 (absolute) for ``lr_patience`` epochs, floor ``min_learning_rate``.
* ``cosine`` -- linear warm-up from ``learning_rate / 25`` over ``warmup_epochs``, then cosine decay
  to ``min_learning_rate`` at ``epochs`` (Loshchilov & Hutter 2017, with the warm-up of Goyal et al.
  2017 for large batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("plateau", "cosine")


@dataclass
class PlateauSchedule:
    """Reduce-on-plateau of the validation MAE (state per model)."""

    learning_rate: float
    factor: float
    patience: int
    min_learning_rate: float
    min_delta: float = 1e-4
    best: float = math.inf
    wait: int = 0

    def rate(self, step: int, epoch: float) -> float:
        return self.learning_rate

    def end_epoch(self, val_mae: float) -> None:
        if val_mae < self.best - self.min_delta:
            self.best, self.wait = val_mae, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.learning_rate = max(self.learning_rate * self.factor, self.min_learning_rate)
            self.wait = 0

    def state(self) -> dict[str, float]:
        return {"learning_rate": self.learning_rate, "best": self.best, "wait": self.wait}

    def restore(self, state: dict[str, float]) -> None:
        self.learning_rate, self.best, self.wait = float(state["learning_rate"]), float(state["best"]), int(state["wait"])


@dataclass
class CosineSchedule:
    """Linear warm-up, then cosine decay to ``min_learning_rate`` at ``epochs`` (stateless)."""

    learning_rate: float
    epochs: int
    warmup_epochs: float
    min_learning_rate: float

    def rate(self, step: int, epoch: float) -> float:
        if epoch < self.warmup_epochs:
            start = self.learning_rate / 25.0
            return start + (self.learning_rate - start) * epoch / self.warmup_epochs
        span = max(self.epochs - self.warmup_epochs, 1e-9)
        progress = min(max((epoch - self.warmup_epochs) / span, 0.0), 1.0)
        return self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (1.0 + math.cos(math.pi * progress))

    def end_epoch(self, val_mae: float) -> None:
        """Cosine ignores the validation curve."""

    def state(self) -> dict[str, float]:
        return {}

    def restore(self, state: dict[str, float]) -> None:
        """Nothing to restore: the rate is a function of the epoch."""


def make_schedule(name: str, learning_rate: float, epochs: int, warmup_epochs: float, factor: float,
                  patience: int, min_learning_rate: float) -> PlateauSchedule | CosineSchedule:
    """The schedule ``name`` (one of :data:`SCHEDULES`)."""
    if name == "plateau":
        return PlateauSchedule(learning_rate, factor, patience, min_learning_rate)
    if name == "cosine":
        return CosineSchedule(learning_rate, epochs, warmup_epochs, min_learning_rate)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
