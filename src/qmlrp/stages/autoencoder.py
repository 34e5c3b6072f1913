"""Stage ``autoencoder`` (``qmlrp autoencoder``): the DAE trained on the training folds
(:mod:`qmlrp.training.autoencoder`), its reconstruction against PCA, the applicability domain, and the
combined models with LRP on the code (:mod:`qmlrp.stages.combined`).

Outputs: ``models/autoencoder/model.npz``, ``metrics/autoencoder.json``,
``metrics/autoencoder_combined.json``, ``plots/autoencoder/`` (see :mod:`qmlrp.training.autoencoder`).
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.training.autoencoder import (
    COMBINED_METRICS,
    METRICS,
    OUTSIDE_SMILES,
    PLOTS,
    AutoencoderParams,
    _num,
    auroc,
    distorted_store,
    embed_outside,
    errors_of,
    fit_pca,
    flat_of_graphs,
    fold_positions,
    reconstruction_scores,
    seeded_subset,
    train_autoencoder,
    write_reconstruction,
)


def run_stage(params_path: str | Path = "params.yaml", features: str | Path = "data/features",
              folds_path: str | Path = "data/folds.parquet", models_dir: str | Path = "models",
              table: str | Path = "data/qm9.parquet", beta_data: str | Path = "data/beta",
              metrics: Path = METRICS, combined_metrics: Path = COMBINED_METRICS, plots: Path = PLOTS,
              model_path: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Run the whole stage (module docstring) and return the metrics of ``metrics/autoencoder.json``
    (``beta_data``: the beta molecules' folder, for the combined beta model)."""
    p = AutoencoderParams.load(params_path)
    from qmlrp.features.store import FeatureStore
    from qmlrp.io import write_json

    models_dir = Path(models_dir)
    model_path = Path(model_path or models_dir / "autoencoder" / "model.npz")
    plots = Path(plots)
    store = FeatureStore.open(features)
    train, test = fold_positions(store, folds_path, p.fold)
    # RDKit embedding of the outside molecules before the Keras backend starts
    outside_names, outside_graphs = embed_outside(p.outside_smiles or OUTSIDE_SMILES, p.seed)

    from qmlrp.models.autoencoder import save_autoencoder

    t0 = time.time()
    model, losses = train_autoencoder(store, train, p)
    fit_seconds = time.time() - t0
    train_err = errors_of(model, store, train)
    model.metadata.update({"ood_threshold": float(np.percentile(train_err, p.ood_percentile)),
                           "ood_percentile": p.ood_percentile, "fold": p.fold, "train_molecules": int(train.size),
                           "epochs": p.epochs, "final_loss": losses[-1]})
    save_autoencoder(model, model_path)
    log(f"autoencoder: {train.size} training molecules, {p.epochs} epochs in {fit_seconds:.0f} s, "
        f"loss {losses[-1]:.4g}")

    pca = fit_pca(store, seeded_subset(train, p.pca_molecules, p.seed), model.scaling, p.pca_components)
    dae, lin = reconstruction_scores(model, pca, store, test)
    write_reconstruction(dae, lin, plots)

    domain = domain_scores(model, store, train_err, test, outside_names, outside_graphs, p, plots, log)
    result = {
        "fold": p.fold, "train_molecules": int(train.size), "test_molecules": int(test.size),
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()},
        "training": {"epochs": p.epochs, "final_loss": losses[-1], "fit_seconds": round(fit_seconds, 1)},
        "reconstruction": {t: {"entries": dae.counts[t], "dae_r2": _num(dae.r2[t]), "pca_r2": _num(lin.r2[t]),
                               "dae_mae": _num(dae.mae[t]), "pca_mae": _num(lin.mae[t])} for t in dae.r2},
        "domain": domain,
    }
    write_json(result, metrics)

    from qmlrp.stages.combined import run_combined  # not at import: the CLI loads this module

    combined = run_combined(p, store, train, test, model, model_path, models_dir, plots, Path(table), log,
                            beta_data=Path(beta_data))
    write_json(combined, combined_metrics)
    return result


def domain_scores(model: Any, store: Any, train_err: np.ndarray, test: np.ndarray, outside_names: list[str],
                  outside_graphs: list[Any], p: AutoencoderParams, plots: Path, log: Any) -> dict[str, Any]:
    """The applicability domain: reconstruction errors of held-out, distorted (``p.distortion_sd``, A) and
    outside molecules against the training folds' threshold; writes ``plots/domain.csv``; the AUROCs."""
    threshold = model.metadata["ood_threshold"]
    test_err = errors_of(model, store, test)
    dist_errs = {}
    for sd in p.distortion_sd:
        distorted = distorted_store(store, test, sd, p.seed)
        dist_errs[f"qm9_distorted_{sd:g}A"] = errors_of(model, distorted, np.arange(len(distorted)))
    dist_err = np.concatenate(list(dist_errs.values())) if dist_errs else np.zeros(0)
    if outside_graphs:
        flat, n = flat_of_graphs(outside_graphs)
        out_err = model.reconstruction_error(flat, n)
    else:
        out_err = np.zeros(0)
    with open(plots / "domain.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["set", "molecule", "reconstruction_error", "flagged"])
        sets = [("qm9_heldout", store.ids[test], test_err), *((k, store.ids[test], v) for k, v in dist_errs.items()),
                ("outside", outside_names, out_err)]
        for name, ids, errs in sets:
            for i, e in zip(ids, errs):
                w.writerow([name, i, f"{e:.6g}", int(e > threshold)])
    domain = {
        "score": "mean squared reconstruction error of the scaled 5887-vector",
        "threshold": threshold, "threshold_percentile_of_training": p.ood_percentile,
        "auroc_heldout_vs_distorted": {k: auroc(test_err, v) for k, v in dist_errs.items()},
        "auroc_heldout_vs_outside": auroc(test_err, out_err),
        "auroc_heldout_vs_all_outside": auroc(test_err, np.concatenate([dist_err, out_err])),
        "flagged_fraction": {"training": float(np.mean(train_err > threshold)),
                             "qm9_heldout": float(np.mean(test_err > threshold)),
                             **{k: float(np.mean(v > threshold)) for k, v in dist_errs.items()},
                             "outside": _num(float(np.mean(out_err > threshold))) if out_err.size else None},
        "median_error": {"training": float(np.median(train_err)), "qm9_heldout": float(np.median(test_err)),
                         **{k: float(np.median(v)) for k, v in dist_errs.items()},
                         "outside": float(np.median(out_err)) if out_err.size else None},
        "n": {"qm9_heldout": int(test.size), "outside": int(out_err.size)},
        "distortion_sd_angstrom": list(p.distortion_sd),
        "outside_molecules": outside_names,
    }
    dist_text = ", ".join(f"{k} {v:.3f}" for k, v in domain["auroc_heldout_vs_distorted"].items())
    log(f"autoencoder: AUROC held-out vs {dist_text}; vs outside {domain['auroc_heldout_vs_outside']:.3f}")
    return domain


def register(app: Any) -> None:
    """Add ``qmlrp autoencoder`` to the typer ``app``."""
    import typer

    @app.command("autoencoder")
    def autoencoder_command(
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file (section autoencoder)."),
    ) -> None:
        """Train the tied-weight denoising autoencoder on the MG; reconstruction vs PCA, combined
        models, LRP on the code, applicability domain."""
        run_stage(params, log=typer.echo)
