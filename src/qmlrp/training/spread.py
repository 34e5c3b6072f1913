"""Stage ``seed_spread``: how much the small default's metrics move from run to run.

The 20 models of ``train`` (targets x folds) are trained again with each seed of
``seed_spread.seeds`` (initial weights, batch order, validation split) -- one program on a GPU,
one model after the other on a CPU; with
the main run's ``results/`` this gives the 10-fold mean test MAE for 1 + len(seeds) seeds.
``metrics/seed_spread.json`` holds, per target, the mean MAE of each seed and their sd: read a
``dvc metrics diff`` of ``evaluate.json`` against that sd (a change smaller than ~2 sd is noise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.io import write_json
from qmlrp.params import parse_section, stage_params
from qmlrp.paths import FEATURES, FOLDS, QM9_TABLE
from qmlrp.training.config import RESULTS, TrainConfig

SPREAD_METRICS = Path("metrics/seed_spread.json")


@dataclass(frozen=True)
class SpreadConfig:
    """``params.yaml`` section ``seed_spread``: the extra seeds (the main run's is ``train.seed``) and
    the targets retrained with them (default: all of ``train.targets``)."""

    seeds: tuple[int, ...] = (1, 2)
    targets: tuple[str, ...] | None = None


def run_seed_spread(params_path: str | Path = "params.yaml", results_dir: str | Path = RESULTS,
                    metrics_file: str | Path = SPREAD_METRICS) -> dict[str, Any]:
    """Train the extra seeds' models, combine with the main run; write and return the metrics."""
    from qmlrp.training.engine import fit, fit_grouped
    from qmlrp.targets.spectra import masked_mae
    from qmlrp.training.train import fold_run, predict_positions

    config = TrainConfig.load(params_path)
    spread = parse_section(SpreadConfig, "seed_spread", stage_params("seed_spread", params_path))
    if config.seed in spread.seeds:
        raise QmlrpError(f"params.yaml seed_spread.seeds: {config.seed} is train.seed (the main run) already")
    targets = config.targets if spread.targets is None else spread.targets
    unknown = [t for t in targets if t not in config.targets]
    if unknown:
        raise QmlrpError(f"params.yaml seed_spread.targets: {', '.join(unknown)} not in train.targets")
    store = FeatureStore.open(FEATURES)
    planned = []
    for seed in spread.seeds:
        seeded = replace(config, seed=int(seed))
        for target in targets:
            for fold in config.folds:
                run, split = fold_run(store, QM9_TABLE, FOLDS, target, fold, seeded, tag=f"seed{seed}")
                planned.append((seed, target, fold, run, split))
    # One model at a time: on a CPU a vmapped program of 40 small models costs ~3x more per model
    # than 40 single-model programs (XLA's batched gathers and scatters); on a GPU, pass them all.
    import jax

    runs = [p[3] for p in planned]
    if jax.default_backend() == "cpu":
        results = [fit(store, [run], config, log=False)[0] for run in runs]
    else:
        results = fit_grouped(store, runs, config)
    mae: dict[str, dict[int, list[float]]] = {t: {} for t in targets}
    for (seed, target, fold, run, split), result in zip(planned, results):
        pred = predict_positions(result.model, store, split.test, 256)
        mae[target].setdefault(seed, []).append(masked_mae(pred, run.y[split.test]))
    for target in targets:
        main = []
        for fold in config.folds:
            run_file = Path(results_dir) / target / f"fold{fold}" / "run.json"
            if not run_file.exists():
                raise QmlrpError(f"{run_file}: not found (run `dvc repro train` first)")
            main.append(float(json.loads(run_file.read_text())["test_mae"]))
        mae[target] = {config.seed: main, **mae[target]}
    metrics: dict[str, Any] = {}
    for target, by_seed in mae.items():
        means = {str(seed): float(np.mean(values)) for seed, values in by_seed.items()}
        per_fold = np.array(list(by_seed.values()))  # (seeds, folds)
        metrics[target] = {
            "seeds": [int(s) for s in by_seed],
            "mae_mean_per_seed": means,
            "sd_of_mean_across_seeds": float(np.std(list(means.values()), ddof=1)),
            "median_per_fold_sd_across_seeds": float(np.median(np.std(per_fold, axis=0, ddof=1))),
        }
    write_json(metrics, metrics_file)
    return metrics
