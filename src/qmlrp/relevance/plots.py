"""Pictures: feature-type bar charts with error bars, perturbation curves, and per-molecule
figures (atom relevance on atoms, pair relevance on bonds, a signed colour scale in the target's
units with a colour bar, title with id, target, rule, predicted and reference value)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdDepictor  # noqa: E402

from qmlrp.relevance.summary import FEATURE_TYPES  # noqa: E402

if TYPE_CHECKING:
    from qmlrp.relevance.compare import Comparison


def _atomic_write_figure(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


BAR_LABELS: dict[str, str] = {
    "signed": "signed relevance, dataset-normalised\n(centred on the mean over types and molecules)",
    "absolute": "|relevance|, dataset-normalised\n(centred: below 0 = less than the average type)",
    "share": "share of the molecule's |relevance|\n(plain: >= 0, the 12 types sum to 1)",
}


def type_bars(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Bar chart, one bar per feature type, error bar = standard deviation over molecules.

    ``table`` has columns ``type, value, mean, std`` (``value`` in {signed, absolute, share}); one
    panel per value kind, each labelled with what its numbers are.
    """
    kinds = [k for k in ("signed", "absolute", "share") if k in set(table["value"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.0 * len(kinds), 4.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        t = table[table["value"] == kind].set_index("type").reindex(list(FEATURE_TYPES))
        colours = ["#4c72b0"] * 8 + ["#dd8452"] * 4
        ax.bar(range(len(t)), t["mean"], yerr=t["std"], color=colours, capsize=3, error_kw={"lw": 0.8})
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(t)))
        ax.set_xticklabels(t.index, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(BAR_LABELS.get(kind, kind), fontsize=8)
        ax.set_title(f"{title}: {kind} (mean +/- sd over molecules)", fontsize=9)
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


def fold_profile_figure(profiles: Mapping[str, Mapping[int, np.ndarray]], comparison: Comparison,
                        deltas: Mapping[int, float], rule: str, path: str | Path) -> None:
    """Left: the subject's, similar's and control's mean share per feature type over the folds (error bars:
    sd over the retrained models); right: delta of Spearman's rho per fold (> 0 supports the hypothesis)."""
    keys = (comparison.subject, comparison.similar, comparison.control)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(FEATURE_TYPES))
    for j, k in enumerate(keys):
        stack = np.stack(list(profiles[k].values()))
        sd = stack.std(0, ddof=1) if len(stack) > 1 else None
        left.bar(x + (j - 1) * 0.27, stack.mean(0), 0.27, yerr=sd, capsize=2, label=f"{k} ({len(stack)} folds)")
    left.set_xticks(x, FEATURE_TYPES, rotation=35, ha="right")
    left.set_ylabel("mean share of |relevance| per molecule (dimensionless)")
    left.set_title(f"{comparison.subject}: closer to {comparison.similar} than to {comparison.control}? (LRP {rule}; "
                   f"error bars: sd over retrained models)", fontsize=9)
    left.legend(fontsize=8)
    folds = sorted(deltas)
    values = np.array([deltas[f] for f in folds])
    right.plot(folds, values, "o")
    right.axhline(0.0, color="grey", lw=0.8)
    right.set_xlabel("fold (retrained model)")
    right.set_ylabel("delta Spearman rho (with similar - with control)")
    right.set_title(f"delta {values.mean():+.2f}, mean over {len(folds)} folds\n"
                    f"(min {values.min():+.2f}, max {values.max():+.2f}; > 0 supports)", fontsize=9)
    _atomic_write_figure(fig, Path(path))


@dataclass
class MoleculePicture:
    """What one per-molecule figure shows (values in the target's units unless stated).

    Attributes:
        title: first title line, e.g. ``QM9 133 (CC(=O)C)``.
        target: target name (``alpha``); units: its units (``bohr^3``).
        rule: the rule / composite, as :meth:`~qmlrp.relevance.rules.Composite.describe` writes it.
        predicted: the explained output; reference: the reference value or None.
        atom_relevance: (n_atoms,) relevance of each atom's own features.
        pair_relevance: (n_pairs,) relevance of each pair's features; pair_atoms (n_pairs, 2).
        inputs: relevance that reached the inputs (sum of atoms and pairs).
        absorbed_mean: the target mean's share; absorbed_other: biases and stabilisers.
        conservation_error: |inputs + absorbed - predicted|.
        empty: no input got any relevance.
    """

    title: str
    target: str
    units: str
    rule: str
    predicted: float
    reference: float | None
    atom_relevance: np.ndarray
    pair_relevance: np.ndarray
    pair_atoms: np.ndarray
    inputs: float
    absorbed_mean: float
    absorbed_other: float
    conservation_error: float
    empty: bool = False

    def scale(self) -> float:
        """Largest |relevance| drawn (atoms or bonded pairs): the colour scale's half-range."""
        values = np.concatenate([np.abs(self.atom_relevance), np.abs(self.pair_relevance)])
        return float(values.max()) if values.size else 0.0


def _depiction(mol: Chem.Mol) -> np.ndarray:
    """(n_atoms, 2) 2D depiction coordinates (explicit hydrogens kept, input atom order)."""
    flat = Chem.Mol(mol)
    flat.RemoveAllConformers()
    rdDepictor.Compute2DCoords(flat)
    return np.asarray(flat.GetConformer().GetPositions())[:, :2]


def molecule_figure(mol: Chem.Mol, picture: MoleculePicture, path: str | Path, scale: float | None = None) -> float:
    """Per-molecule figure: atom relevance on the atoms, pair relevance on the bonds.

    Colours: one signed diverging scale (red positive, blue negative, white 0) from ``-scale`` to
    ``+scale`` in the target's units, with a colour bar; ``scale=None`` uses this molecule's
    largest |relevance| (pass one value for several molecules to compare them). Atoms are
    labelled with their element and index (input order). Non-bonded pairs are not drawn; their
    total is printed under the picture, with the split of the prediction into the inputs' share,
    the target mean's and the biases'/stabilisers'. Returns the scale used.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    p = picture
    if p.atom_relevance.size != mol.GetNumAtoms():
        raise ValueError(f"{p.atom_relevance.size} atom relevances for {mol.GetNumAtoms()} atoms")
    xy = _depiction(mol)
    pair_index = {(int(min(i, j)), int(max(i, j))): k for k, (i, j) in enumerate(p.pair_atoms)}
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    bond_values = np.array([p.pair_relevance[pair_index[(min(i, j), max(i, j))]] for i, j in bonds]) if bonds else np.zeros(0)
    bonded = {pair_index[(min(i, j), max(i, j))] for i, j in bonds}
    non_bonded = float(sum(v for k, v in enumerate(p.pair_relevance) if k not in bonded))
    drawn = np.concatenate([np.abs(p.atom_relevance), np.abs(bond_values)])
    vmax = float(scale) if scale else (float(drawn.max()) if drawn.size and drawn.max() > 0 else 1.0)
    norm = Normalize(-vmax, vmax)
    cmap = plt.get_cmap("RdBu_r")

    fig, ax = plt.subplots(figsize=(6.4, 6.2))
    if bonds:
        segments = [[xy[i], xy[j]] for i, j in bonds]
        ax.add_collection(LineCollection(segments, colors="black", linewidths=9.0, zorder=1))
        ax.add_collection(LineCollection(segments, colors=cmap(norm(bond_values)), linewidths=7.0, zorder=2))
    ax.scatter(xy[:, 0], xy[:, 1], s=520, c=p.atom_relevance, cmap=cmap, norm=norm, edgecolors="black",
               linewidths=1.0, zorder=3)
    for k, atom in enumerate(mol.GetAtoms()):
        dark = abs(p.atom_relevance[k]) > 0.6 * vmax
        ax.text(xy[k, 0], xy[k, 1], f"{atom.GetSymbol()}{k}", ha="center", va="center", fontsize=7, zorder=4,
                color="white" if dark else "black")
    pad = 0.9
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.axis("off")
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(f"relevance ({p.units}); red raises, blue lowers the prediction")
    reference = "n/a" if p.reference is None else f"{p.reference:.4g} {p.units}"
    share = p.inputs / p.predicted if p.predicted else float("nan")
    ax.set_title(f"{p.title}\n{p.target}: predicted {p.predicted:.4g} {p.units}, reference {reference}\n"
                 f"rule: {p.rule}", fontsize=9)
    lines = [f"reached the inputs: {p.inputs:.4g} {p.units} ({share:.0%} of the prediction); "
             f"target mean {p.absorbed_mean:.4g}; biases and stabilisers {p.absorbed_other:.4g}",
             f"atoms: own features; bonds: pair features; non-bonded pairs (not drawn): {non_bonded:.3g} {p.units}; "
             f"conservation error {p.conservation_error:.1e}",
             "colour scale: " + ("shared by the molecules drawn" if scale else "this molecule") + f", +/-{vmax:.3g} {p.units}"]
    if p.empty:
        lines.insert(0, "EMPTY EXPLANATION: no input received relevance (no positive contribution at the output)")
    fig.text(0.02, 0.02, "\n".join(lines), fontsize=7, color="darkred" if p.empty else "black", va="bottom")
    fig.subplots_adjust(bottom=0.12, top=0.88)
    _atomic_write_figure(fig, Path(path))
    return vmax
