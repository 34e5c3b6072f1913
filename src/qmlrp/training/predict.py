"""``qmlrp predict``: ensemble predictions (mean +- sd over the fold models) for new molecules.

Inputs: XYZ files (one or several molecules each, plain or original QM9 format) and SDF files
(3D coordinates with all hydrogens; the SDF's bonds and charges serve as the bond-order template).
Each molecule outside the models' domain -- elements other than H, C, N, O, F, more than 29 atoms,
overlapping atoms or impossible coordinates, a charged, radical or disconnected structure, one RDKit
cannot perceive (or crashes on: perception runs in a forked child) -- and each malformed file gives
one error line; the other molecules are still predicted. Molecules inside that domain but outside
QM9's ranges (:mod:`qmlrp.features.domain`) are predicted with a warning line. Every fold model of
each target must be present (``train.folds`` of params.yaml) unless missing folds are allowed.

The frequencies model (a vector head of 81 outputs, cm^-1, output k trained on the k-th highest
mode) gives each molecule its 3N - 6 real modes (3N - 5 for a linear molecule, from the atom count
and the geometry: :func:`qmlrp.targets.spectra.is_linear`), highest first; the table lists them
below the scalar targets, ``--spectrum out.png`` draws them as a stick spectrum.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer

from qmlrp.data.molecule_files import Failure, MoleculeInput, read_molecules
from qmlrp.errors import QmlrpError
from qmlrp.features.user_inputs import Featurized, featurize_files
from qmlrp.targets import get_target

__all__ = ["Ensemble", "Failure", "Featurized", "MoleculeInput", "Prediction", "featurize_files", "predict_files",
           "read_molecules", "register"]


@dataclass
class Prediction:
    """One predicted molecule: ``values[target]`` holds mean, sd (None from a single model), units and n_models."""

    file: str
    name: str
    n_atoms: int
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warning_lines(self) -> list[str]:
        """``warning: FILE [MOLECULE]: outside the training domain: reason`` (one line each)."""
        return [f"warning: {self.file} [{self.name}]: outside QM9's training domain: {w}" for w in self.warnings]


class Ensemble:
    """The fold models of each target, loaded from ``models_dir/<target>/fold<k>.npz``.

    ``expected_folds``: the folds every target must have (None: no gaps in 0..the largest fold found).
    Missing folds raise QmlrpError unless ``allow_missing``; :attr:`missing` lists them either way.
    """

    def __init__(self, models_dir: str | Path, targets: Sequence[str] | None = None,
                 expected_folds: Sequence[int] | None = None, allow_missing: bool = False) -> None:
        from qmlrp.models.io import inference_function, load_model

        found, self.missing = locate_models(models_dir, targets, expected_folds, allow_missing)
        self.missing_text = describe_missing(self.missing, found)
        self.models = {t: [load_model(p) for _, p in paths] for t, paths in found.items()}
        self.forward = {t: [inference_function(m) for m in ms] for t, ms in self.models.items()}
        self.units = {t: get_target(t).units for t in self.models}

    @property
    def targets(self) -> list[str]:
        return list(self.models)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        """``{target: (mean, sd, n_models)}``, mean and sd (n,) -- (n, n_outputs) for a vector head;
        sd is the sample sd over the fold models."""
        out = {}
        for target, functions in self.forward.items():
            values = np.stack([f(inputs) for f in functions])  # (n_models, n_molecules[, n_outputs])
            values = get_target(target).kind.combine(values)  # with derived columns (beta_par of the vectors)
            sd = values.std(axis=0, ddof=1) if len(functions) > 1 else np.zeros(values.shape[1:])
            out[target] = (values.mean(axis=0), sd, len(functions))
        return out


def locate_models(models_dir: str | Path, targets: Sequence[str] | None = None,
                  expected_folds: Sequence[int] | None = None, allow_missing: bool = False
                  ) -> tuple[dict[str, list[tuple[int, Path]]], dict[str, list[int]]]:
    """``(found, missing)``: the fold models of each target and the expected folds that are absent.

    Raises QmlrpError when there are none, a target is unknown, or folds are missing and not allowed.
    """
    from qmlrp.models.io import find_models

    found = find_models(models_dir)
    if targets is not None:
        absent = [t for t in targets if t not in found]
        if absent:
            raise QmlrpError(f"{models_dir}: no models for {', '.join(absent)} (run `dvc repro train`)")
        found = {t: found[t] for t in targets}
    if not found:
        raise QmlrpError(f"{models_dir}: no models found (run `dvc repro` first)")
    for name in found:
        get_target(name)
    missing = missing_folds(found, expected_folds)
    if missing and not allow_missing:
        raise QmlrpError(f"{models_dir}: {describe_missing(missing, found)}; "
                         "pass --allow-missing-folds to predict with the others")
    return found, missing


def describe_published(found: dict[str, list[tuple[int, Path]]], models_dir: str | Path | None = None) -> str:
    """What an ensemble holds, e.g. ``alpha: 10 fold models (alpha; long/alpha has 3 of 10 folds, not used
    yet); omega1: 1 fold model (spectra/omega1; fold 0)``: with ``models_dir`` holding a manifest, the set
    of each target it chose and the better sets it passed over because they are not complete yet."""
    from qmlrp.models.published import published_sets

    chosen = (published_sets(models_dir) or {}) if models_dir is not None else {}
    parts = []
    for target, models in found.items():
        folds = [k for k, _ in models]
        which = [] if folds == list(range(10)) else [f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}"]
        if target in chosen:
            which.insert(0, chosen[target].name)
            which += list(chosen[target].passed_over)
        detail = f" ({'; '.join(which)})" if which else ""
        parts.append(f"{target}: {len(folds)} fold model{'s' if len(folds) > 1 else ''}{detail}")
    return "; ".join(parts)


def check_model_files(found: dict[str, list[tuple[int, Path]]]) -> None:
    """Read every ``.npz`` model of ``found`` without Keras (before featurizing forks): a corrupt one
    (bad architecture, shapes the file cannot hold, NaN weights) raises one-line QmlrpError naming it."""
    from qmlrp.models.config import read_model_file

    for paths in found.values():
        for _, path in paths:
            if path.suffix == ".npz":
                read_model_file(path)


def missing_folds(found: dict[str, list[tuple[int, Path]]], expected: Sequence[int] | None) -> dict[str, list[int]]:
    """``{target: [missing folds]}`` for targets that lack some of ``expected`` (None: gaps below the largest)."""
    out = {}
    for target, folds in found.items():
        have = {fold for fold, _ in folds}
        want = set(expected) if expected is not None else set(range(max(have) + 1))
        if want - have:
            out[target] = sorted(want - have)
    return out


def describe_missing(missing: dict[str, list[int]], found: dict[str, list[tuple[int, Path]]]) -> str:
    """``alpha: fold 3 missing (9 of 10 models)`` for each target with missing folds."""
    parts = []
    for target, folds in missing.items():
        n = len(found[target])
        parts.append(f"{target}: fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} missing "
                     f"({n} of {n + len(folds)} models)")
    return "; ".join(parts)


def predict_featurized(featurized: Sequence[Featurized], ensemble: Ensemble, batch_size: int = 64) -> list[Prediction]:
    """Predictions for featurized molecules, in order, ``batch_size`` molecules per forward pass."""
    from qmlrp.features.pairs import make_batch
    from qmlrp.models.inputs import batch_to_inputs

    predictions: list[Prediction] = []
    for start in range(0, len(featurized), batch_size):
        chunk = featurized[start : start + batch_size]
        from qmlrp.models.inputs import COORDINATES_KEY

        batch = make_batch([f.graph for f in chunk], np.arange(len(chunk)))
        inputs = batch_to_inputs(batch)
        inputs[COORDINATES_KEY] = np.concatenate([np.asarray(f.graph.coordinates, np.float32) for f in chunk])
        result = ensemble.predict(inputs)
        for k, item in enumerate(chunk):
            m = item.molecule
            row = Prediction(m.file, m.name, int(m.atomic_numbers.size), warnings=list(item.warnings))
            for target, (mean, sd, n_models) in result.items():  # the target's kind says what is reported
                row.values[target] = get_target(target).kind.report(mean[k], sd[k], m, ensemble.units[target],
                                                                    n_models)
            predictions.append(row)
    return predictions


def mode_list_targets(predictions: Sequence[Prediction], targets: Sequence[str]) -> list[str]:
    """The targets whose predictions are mode lists (the frequencies)."""
    return [t for t in targets if predictions and isinstance(predictions[0].values[t]["mean"], list)]


def format_modes(predictions: Sequence[Prediction], target: str) -> str:
    """One block per molecule: ``name: frequencies (cm^-1, 3N-6 = 9 modes, highest first, 10 models)``
    and the ``mean ± sd`` values (cm^-1, one decimal; the mean alone from one model), six per line."""
    lines = []
    for p in predictions:
        v = p.values[target]
        rule = "3N-5, linear" if v["linear"] else "3N-6"
        models = f"{v['n_models']} model{'s' if v['n_models'] != 1 else ''}"
        lines.append(f"{p.name}: {target} ({v['units']}, {rule} = {v['n_modes']} modes, highest first, {models})")
        cells = ([f"{m:7.1f}" for m in v["mean"]] if v["sd"] is None
                 else [f"{m:7.1f} ± {s:5.1f}" for m, s in zip(v["mean"], v["sd"])])
        lines += ["  " + "  ".join(cells[i:i + 6]) for i in range(0, len(cells), 6)]
    return "\n".join(lines)


def spectrum_png(predictions: Sequence[Prediction], target: str, path: Path) -> None:
    """Predicted stick spectra (unit sticks at the mean frequencies, one panel per molecule) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(predictions), 1)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.6 + 1.4 * n), dpi=120, squeeze=False)
    for ax, p in zip(axes[:, 0], predictions):
        v = p.values[target]
        models = f"{v['n_models']} model{'s' if v['n_models'] != 1 else ''}"
        ax.vlines(v["mean"], 0, 1, color="tab:orange", lw=1, label=f"predicted (mean of {models})")
        ax.set_xlim(0, 4000)
        ax.set_ylim(0, 1.15)
        ax.set_yticks([])
        ax.set_ylabel("unit sticks", fontsize=7)
        ax.set_title(f"{p.name}: {v['n_modes']} modes", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("wavenumber (cm$^{-1}$)")
    fig.suptitle("predicted harmonic vibrational spectrum (stick; QM9 B3LYP/6-31G(2df,p) level, no intensities)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def predict_files(
    paths: Sequence[str | Path], ensemble: Ensemble, batch_size: int = 64
) -> tuple[list[Prediction], list[Failure]]:
    """Featurize and predict every molecule of ``paths`` (in order); failures are collected."""
    featurized, failures = featurize_files(paths)
    return predict_featurized(featurized, ensemble, batch_size), failures


def format_table(predictions: Sequence[Prediction], targets: Sequence[str], units: dict[str, str]) -> str:
    """Fixed-width text table, one row per molecule: name, atoms, ``mean ± sd`` per target (the header
    says how many models), inside/outside QM9's ranges."""
    targets = [t for t in targets if t not in mode_list_targets(predictions, targets)]  # listed by format_modes
    n_models = {t: predictions[0].values[t]["n_models"] if predictions else 0 for t in targets}
    models = {t: f"{n} model{'s' if n != 1 else ''}" for t, n in n_models.items()}
    headers = ["molecule", "atoms"] + [f"{t} ({units[t]}, {models[t]})" for t in targets] + ["QM9 domain"]
    rows = [[p.name, str(p.n_atoms)] + [_pm(p.values[t]) for t in targets] + ["outside" if p.warnings else "inside"]
            for p in predictions]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _pm(value: dict[str, Any]) -> str:
    """``mean ± sd`` with digits to the sd's second significant figure; the mean alone (4 decimals)
    from a single model, which has no spread."""
    mean, sd = value["mean"], value["sd"]
    if sd is None:
        return f"{mean:.4f}"
    digits = max(1, 3 - int(np.floor(np.log10(abs(sd))))) if sd > 0 else 4
    digits = min(digits, 6)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def to_json(predictions: Sequence[Prediction], failures: Sequence[Failure]) -> dict[str, Any]:
    return {
        "molecules": [{"file": p.file, "name": p.name, "n_atoms": p.n_atoms, **p.values,
                       "in_training_domain": not p.warnings, "domain_warnings": list(p.warnings)}
                      for p in predictions],
        "errors": [{"file": f.file, "name": f.name, "reason": f.reason} for f in failures],
    }


def expected_folds(params: Path) -> tuple[int, ...] | None:
    """``train.folds`` of ``params`` (None when the file does not exist: then only gaps count as missing)."""
    from qmlrp.training.config import TrainConfig

    if not Path(params).exists():
        return None
    return tuple(TrainConfig.load(params).folds)


def register(app: typer.Typer) -> None:
    """Add ``qmlrp predict`` to the typer ``app``."""
    from qmlrp import paths
    from qmlrp.io import check_output_file, write_json

    @app.command("predict")
    def predict_command(
        ctx: typer.Context,
        files: list[Path] = typer.Argument(..., help="XYZ (one or more molecules each) or SDF files."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
        out: Path | None = typer.Option(None, "--out", help="Also write the JSON to this file."),
        models_dir: Path = typer.Option(None, "--models-dir", help="Folder of <target>/fold<k>.npz (default: models/, "
                                                                  "or the published full-QM9 ensemble when models/ has none)."),
        params: Path = typer.Option(Path("params.yaml"), "--params", help="Its train.folds are the expected models."),
        allow_missing_folds: bool = typer.Option(False, "--allow-missing-folds",
                                                 help="Predict even if some fold models are missing."),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Molecules per forward pass."),
        spectrum: Path | None = typer.Option(None, "--spectrum",
                                             help="Draw the predicted stick spectra (frequencies model) to this PNG."),
    ) -> None:
        """Predict every trained target (models/<target>/) as mean ± sd over its fold models: alpha
        (bohr^3), ZPVE (eV), omega1 and the harmonic frequencies (cm^-1), beta_parallel (a.u.).

        Molecules outside the models' domain get one error line each on stderr (exit status 1);
        the others are still predicted. Molecules outside QM9's ranges get a warning line.
        """
        verbose = bool((ctx.find_root().obj or {}).get("verbose"))
        if out is not None:
            check_output_file(out, "--out")
        if spectrum is not None:
            check_output_file(spectrum, "--spectrum")
        models_dir, published = paths.models_to_use(models_dir)
        folds = None if published else expected_folds(params)  # published: the folds trained so far
        found, _ = locate_models(models_dir, None, folds, allow_missing_folds)  # fail early, before any work
        if published:
            typer.echo(f"note: no models in {paths.MODELS}/: using the published full-QM9 ensemble "
                       f"({describe_published(found, models_dir)})", err=True)
        check_model_files(found)
        if spectrum is not None and "frequencies" not in found:
            raise QmlrpError(f"--spectrum: {models_dir} has no frequencies model (run `dvc repro train` for it)")
        featurized, failures = featurize_files(files, quiet=not verbose)  # forks: before TensorFlow loads
        ensemble = Ensemble(models_dir, expected_folds=folds, allow_missing=allow_missing_folds)
        if ensemble.missing:
            typer.echo(f"warning: {models_dir}: {ensemble.missing_text}; "
                       "predicting with the others", err=True)
        predictions = predict_featurized(featurized, ensemble, batch_size=batch_size)
        from qmlrp.training.autoencoder import flag_out_of_domain  # issue 11: reconstruction-error domain score

        flag_out_of_domain(predictions, featurized, models_dir)
        for failure in failures:
            typer.echo(failure.line(), err=True)
        for prediction in predictions:
            for line in prediction.warning_lines():
                typer.echo(line, err=True)
        payload = to_json(predictions, failures)
        if out is not None:
            write_json(payload, out)
        if as_json:
            typer.echo(json.dumps(payload, indent=2))
        elif predictions:
            typer.echo(format_table(predictions, ensemble.targets, ensemble.units))
            for target in mode_list_targets(predictions, ensemble.targets):
                typer.echo(format_modes(predictions, target))
        if spectrum is not None and predictions:
            spectrum_png(predictions, "frequencies", spectrum)
        if failures:
            sys.exit(1)
