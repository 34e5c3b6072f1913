"""The full study as one program: every (target, fold) of ``train`` plus a schedule comparison.

``params.yaml`` sections: ``train`` (targets, folds, hyper-parameters; as for the per-fold stage)
and ``study``:

* ``compare_targets`` x ``compare_schedules``: extra models on ``compare_fold`` trained with another
  learning-rate schedule in the same program (their curves go to ``plots/schedules/<target>.csv``
  beside the main runs'; no model file is kept for them);
* ``checkpoint``: the resumable program state (kill the stage and rerun it: it resumes).

Runs of different head widths (scalar targets, the 81 frequencies) are one program per width
(:func:`qmlrp.training.engine.fit_grouped`; the frequencies' checkpoint is ``<checkpoint>-n81.npz``).
Writes what :func:`qmlrp.training.train.write_run` writes for each main run, and
``results/compare/<target>-fold<k>-<schedule>/{history.csv,predictions.csv,run.json}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qmlrp.features.store import FeatureStore
from qmlrp.io import write_csv
from qmlrp.params import parse_section, stage_params
from qmlrp.paths import FEATURES, FOLDS, MODELS, QM9_TABLE
from qmlrp.training.config import DVCLIVE, RESULTS, TrainConfig
from qmlrp.training.schedule import SCHEDULES

SCHEDULE_PLOTS = Path("plots/schedules")


@dataclass(frozen=True)
class StudyConfig:
    """``params.yaml`` section ``study`` (see the module docstring)."""

    compare_targets: tuple[str, ...] = ()
    compare_schedules: tuple[str, ...] = ()
    compare_fold: int = 0
    checkpoint: str = "scratch/program.npz"

    @classmethod
    def load(cls, params_path: str | Path) -> StudyConfig:
        config = parse_section(cls, "study", stage_params("study", params_path))
        for name in config.compare_schedules:
            if name not in SCHEDULES:
                raise ValueError(f"params.yaml study.compare_schedules: {name!r} is not one of {', '.join(SCHEDULES)}")
        return config


def run_study(params_path: str | Path = "params.yaml") -> list[dict[str, Any]]:
    """Train the study's program; write models, results, curves; return one summary per model."""
    from qmlrp.models.io import model_path
    from qmlrp.training.engine import fit_grouped
    from qmlrp.training.train import _live_logger, fold_run, hardware, write_run

    config = TrainConfig.load(params_path)
    study = StudyConfig.load(params_path)
    t0 = time.perf_counter()
    store = FeatureStore.open(FEATURES)
    main = [(t, f, None) for t in config.targets for f in config.folds]
    extra = [(t, study.compare_fold, s) for t in study.compare_targets for s in study.compare_schedules]
    planned = []
    for target, fold, schedule in main + extra:
        run, split = fold_run(store, QM9_TABLE, FOLDS, target, fold, config, tag=schedule or "")
        if schedule is not None:
            run = type(run)(**{**run.__dict__, "schedule": schedule})
        planned.append((target, fold, schedule, run, split))
    runs = [p[3] for p in planned]
    on_epoch, lives = _live_logger(DVCLIVE, runs)
    results = fit_grouped(store, runs, config, checkpoint=study.checkpoint, on_epoch=on_epoch)
    where = hardware()
    summaries, curves = [], {}
    for (target, fold, schedule, run, split), result in zip(planned, results):
        label = f"{target}-fold{fold}-{schedule or config.schedule}"
        if schedule is None:
            model_file, run_dir = model_path(MODELS, target, fold), Path(RESULTS) / target / f"fold{fold}"
        else:
            model_file, run_dir = Path("scratch") / "compare" / f"{label}.npz", Path(RESULTS) / "compare" / label
        summary = write_run(result, run, split, store, config if schedule is None else
                            type(config)(**{**config.__dict__, "schedule": schedule}), model_file, run_dir,
                            {"run": run.name, "models_in_program": len(runs), "hardware": where,
                             "total_seconds": round(time.perf_counter() - t0, 1)})
        summaries.append(summary)
        if fold == study.compare_fold and target in study.compare_targets:
            curves.setdefault(target, {})[label] = [row["val_mae"] for row in result.history]
    for target, by_label in curves.items():
        n = max(len(v) for v in by_label.values())
        frame = pd.DataFrame({"epoch": range(1, n + 1)})
        for label, values in by_label.items():
            frame[label] = values + [float("nan")] * (n - len(values))
        write_csv(frame, SCHEDULE_PLOTS / f"{target}.csv")
    for live, summary in zip(lives, summaries):
        if live is not None:
            live.summary.update({"test_mae": summary["test_mae"], "best_epoch": summary["best_epoch"]})
            live.end()
    return summaries
