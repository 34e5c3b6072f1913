"""``qmlrp predict``: ensemble predictions (mean +- sd over the fold models) for new molecules.

Inputs: XYZ files (one or several molecules each, plain or original QM9 format) and SDF files
(3D coordinates with all hydrogens; the SDF's bonds and charges serve as the bond-order template).
Each molecule outside the models' domain -- elements other than H, C, N, O, F, more than 29 atoms,
a net charge or an odd electron count, a structure RDKit cannot perceive -- and each malformed file
gives one error line; the other molecules are still predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qmlrp.errors import InputError, QmlrpError
from qmlrp.training.config import get_target

SDF_SUFFIXES = (".sdf", ".mol", ".sd")
XYZ_SUFFIXES = (".xyz",)


@dataclass
class MoleculeInput:
    """One molecule to predict: atomic numbers (n,), coordinates (n, 3) Angstrom, optional SMILES."""

    file: str
    name: str
    atomic_numbers: np.ndarray
    coordinates: np.ndarray
    smiles: str | None = None


@dataclass
class Prediction:
    file: str
    name: str
    n_atoms: int
    values: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Failure:
    file: str
    name: str
    reason: str

    def line(self) -> str:
        """``error: FILE [MOLECULE]: reason`` (one line)."""
        where = f"{self.file} [{self.name}]" if self.name else self.file
        return f"error: {where}: {self.reason}"


def read_sdf(path: Path) -> tuple[list[MoleculeInput], list[Failure]]:
    """Molecules of an SDF file; records RDKit cannot parse become failures."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecules: list[MoleculeInput] = []
    failures: list[Failure] = []
    try:
        supplier = Chem.ForwardSDMolSupplier(str(path), removeHs=False, sanitize=True)
        records = list(supplier)
    except OSError as err:
        raise InputError(str(path), f"cannot read ({err.__class__.__name__})") from None
    if not records:
        raise InputError(str(path), "no molecules found")
    for k, mol in enumerate(records, start=1):
        default = f"{path.stem}#{k}" if len(records) > 1 else path.stem
        if mol is None:
            failures.append(Failure(str(path), default, f"record {k}: RDKit cannot parse the structure"))
            continue
        name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") and mol.GetProp("_Name").strip() else default
        if mol.GetNumConformers() == 0:
            failures.append(Failure(str(path), name, "no coordinates"))
            continue
        coords = np.asarray(mol.GetConformer().GetPositions(), dtype=float)
        if not mol.GetConformer().Is3D() or np.allclose(coords[:, 2], 0.0):
            failures.append(Failure(str(path), name, "coordinates are not 3D"))
            continue
        if any(atom.GetTotalNumHs(includeNeighbors=False) for atom in mol.GetAtoms()):
            failures.append(Failure(str(path), name, "implicit hydrogens: all atoms need 3D coordinates"))
            continue
        numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
        molecules.append(MoleculeInput(str(path), name, numbers, coords, Chem.MolToSmiles(mol)))
    return molecules, failures


def read_molecules(path: str | Path) -> tuple[list[MoleculeInput], list[Failure]]:
    """Molecules of one file (by suffix); a malformed or unsupported file is one failure."""
    from qmlrp.data.xyz import read_xyz

    path = Path(path)
    try:
        if not path.is_file():
            raise InputError(str(path), "no such file")
        suffix = path.suffix.lower()
        if suffix in XYZ_SUFFIXES:
            records = read_xyz(path)
            return [MoleculeInput(str(path), r.name, np.asarray(r.atomic_numbers), np.asarray(r.coordinates, float), r.smiles)
                    for r in records], []
        if suffix in SDF_SUFFIXES:
            return read_sdf(path)
        raise InputError(str(path), f"unsupported file type {suffix or '(none)'}; expected .xyz or .sdf")
    except InputError as err:
        return [], [Failure(str(path), "", err.reason if err.where == str(path) else str(err))]


class Ensemble:
    """The fold models of each target, loaded from ``models_dir/<target>/fold<k>.keras``."""

    def __init__(self, models_dir: str | Path, targets: Sequence[str] | None = None) -> None:
        from qmlrp.models.io import find_models, inference_function, load_model

        found = find_models(models_dir)
        if targets is not None:
            missing = [t for t in targets if t not in found]
            if missing:
                raise QmlrpError(f"{models_dir}: no models for {', '.join(missing)} (run `dvc repro train`)")
            found = {t: found[t] for t in targets}
        if not found:
            raise QmlrpError(f"{models_dir}: no models found (run `dvc repro` first)")
        for name in found:
            get_target(name)
        self.models = {t: [load_model(p) for _, p in paths] for t, paths in found.items()}
        self.forward = {t: [inference_function(m) for m in ms] for t, ms in self.models.items()}
        self.units = {t: get_target(t).units for t in self.models}

    @property
    def targets(self) -> list[str]:
        return list(self.models)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        """``{target: (mean (n,), sd (n,), n_models)}``; sd is the sample sd over the fold models."""
        out = {}
        for target, functions in self.forward.items():
            values = np.stack([f(inputs) for f in functions])  # (n_models, n_molecules)
            sd = values.std(axis=0, ddof=1) if len(functions) > 1 else np.zeros(values.shape[1])
            out[target] = (values.mean(axis=0), sd, len(functions))
        return out


def predict_files(
    paths: Sequence[str | Path], ensemble: Ensemble, batch_size: int = 64
) -> tuple[list[Prediction], list[Failure]]:
    """Featurize and predict every molecule of ``paths`` (in order); failures are collected."""
    from qmlrp.features.featurize import featurize_geometry
    from qmlrp.features.pairs import make_batch
    from qmlrp.models.inputs import batch_to_inputs

    predictions: list[Prediction] = []
    failures: list[Failure] = []
    graphs, kept = [], []
    for path in paths:
        molecules, bad = read_molecules(path)
        failures.extend(bad)
        for molecule in molecules:
            try:
                graph = featurize_geometry(molecule.atomic_numbers, molecule.coordinates, molecule.smiles, molecule.name)
            except InputError as err:
                failures.append(Failure(molecule.file, molecule.name, err.reason))
                continue
            except (ValueError, RuntimeError) as err:  # RDKit errors outside the featurizer's checks
                failures.append(Failure(molecule.file, molecule.name, f"cannot featurize ({str(err).splitlines()[0]})"))
                continue
            graphs.append(graph)
            kept.append(molecule)
    for start in range(0, len(graphs), batch_size):
        chunk = graphs[start : start + batch_size]
        batch = make_batch(chunk, np.arange(len(chunk)))
        result = ensemble.predict(batch_to_inputs(batch))
        for k, molecule in enumerate(kept[start : start + batch_size]):
            row = Prediction(molecule.file, molecule.name, int(molecule.atomic_numbers.size))
            for target, (mean, sd, n_models) in result.items():
                row.values[target] = {"mean": float(mean[k]), "sd": float(sd[k]), "units": ensemble.units[target],
                                      "n_models": n_models}
            predictions.append(row)
    return predictions, failures


def format_table(predictions: Sequence[Prediction], targets: Sequence[str], units: dict[str, str]) -> str:
    """Fixed-width text table, one row per molecule: name, atoms, ``mean ± sd`` per target."""
    headers = ["molecule", "atoms"] + [f"{t} ({units[t]})" for t in targets]
    rows = [[p.name, str(p.n_atoms)] + [_pm(p.values[t]) for t in targets] for p in predictions]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _pm(value: dict[str, Any]) -> str:
    mean, sd = value["mean"], value["sd"]
    digits = max(1, 3 - int(np.floor(np.log10(abs(sd))))) if sd > 0 else 4
    digits = min(digits, 6)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def to_json(predictions: Sequence[Prediction], failures: Sequence[Failure]) -> dict[str, Any]:
    return {
        "molecules": [{"file": p.file, "name": p.name, "n_atoms": p.n_atoms, **p.values} for p in predictions],
        "errors": [{"file": f.file, "name": f.name, "reason": f.reason} for f in failures],
    }
