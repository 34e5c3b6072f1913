"""Pictures: feature-type bar charts with error bars, perturbation curves, and atom relevance on
the 2D depiction of a molecule (RDKit similarity map, red = positive, blue = negative)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdDepictor  # noqa: E402
from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D  # noqa: E402

from qmlrp.relevance.summary import FEATURE_TYPES  # noqa: E402


def _atomic_write_figure(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def type_bars(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Bar chart, one bar per feature type, error bar = standard deviation over molecules.

    ``table`` has columns ``type, value, mean, std`` (``value`` in {signed, absolute}); one panel
    per value kind.
    """
    kinds = [k for k in ("signed", "absolute") if k in set(table["value"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        t = table[table["value"] == kind].set_index("type").reindex(list(FEATURE_TYPES))
        colours = ["#4c72b0"] * 8 + ["#dd8452"] * 4
        ax.bar(range(len(t)), t["mean"], yerr=t["std"], color=colours, capsize=3, error_kw={"lw": 0.8})
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(t)))
        ax.set_xticklabels(t.index, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(f"{kind} relevance (normalised)")
        ax.set_title(f"{title}: {kind}", fontsize=9)
    _atomic_write_figure(fig, Path(path))


def perturbation_curves(curves: Mapping[str, np.ndarray], title: str, path: str | Path) -> None:
    """Mean output drop ``f(x) - f(x_k)`` against the number of removed units, per method."""
    units = sorted({k.split("/")[0] for k in curves})
    fig, axes = plt.subplots(1, len(units), figsize=(5.5 * len(units), 3.8), squeeze=False)
    for ax, unit in zip(axes[0], units):
        for key, curve in curves.items():
            u, method = key.split("/", 1)
            if u == unit:
                ax.plot(np.arange(len(curve)), curve, marker="o", ms=3, label=method,
                        ls="--" if method == "random" else "-")
        ax.set_xlabel(f"{unit} removed (most relevant first)")
        ax.set_ylabel("mean output drop f(x) - f(x_k)")
        ax.set_title(f"{title}: {unit}", fontsize=9)
        ax.legend(fontsize=7)
    _atomic_write_figure(fig, Path(path))


def molecule_relevance_png(mol: Chem.Mol, atom_relevance: Sequence[float], path: str | Path,
                           size: int = 420) -> None:
    """Atom relevance drawn on the 2D depiction (explicit hydrogens kept, atoms in input order).

    Weights are scaled by the largest |relevance| of the molecule; RDKit's similarity map colours
    positive red and negative blue (Gaussian contours around each atom).
    """
    weights = np.asarray(atom_relevance, dtype=float)
    if weights.size != mol.GetNumAtoms():
        raise ValueError(f"{weights.size} relevances for {mol.GetNumAtoms()} atoms")
    scale = np.abs(weights).max()
    weights = weights / scale if scale > 0 else weights
    flat = Chem.Mol(mol)
    flat.RemoveAllConformers()
    rdDepictor.Compute2DCoords(flat)
    drawer = rdMolDraw2D.MolDraw2DCairo(size, size)
    SimilarityMaps.GetSimilarityMapFromWeights(flat, [float(w) for w in weights], draw2d=drawer,
                                               colorMap="bwr", contourLines=6, alpha=0.4)
    drawer.FinishDrawing()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    tmp.write_bytes(drawer.GetDrawingText())
    tmp.replace(path)
