"""Which fold models a folder publishes per target: its ``published.yaml``, when it has one.

A published ensemble can hold more than one set of models of a target (the full study: α after 12
epochs in ``alpha/`` and after 72 in ``long/alpha/``). The manifest names, per target, its candidate
folders best first (relative to the manifest's folder) and the folds a complete set holds::

    folds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    targets:
      alpha: [long/alpha, alpha]
      zpve: [zpve]

The first candidate that holds every fold is used; while none is complete, the one with the most
fold models (the first of equals). A folder without a manifest publishes ``<target>/fold<k>.npz``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from qmlrp.errors import QmlrpError

MANIFEST = "published.yaml"
FOLD_FILE = re.compile(r"^fold(\d+)\.npz$")


@dataclass(frozen=True)
class PublishedSet:
    """One target's chosen set: ``folder`` (absolute), ``name`` (relative to the manifest), ``folds``
    it holds (sorted), ``complete`` (every fold the manifest asks for) and ``passed_over`` (better
    candidates that were incomplete, e.g. ``['long/alpha has 3 of 10 folds, not used yet']``)."""

    target: str
    folder: Path
    name: str
    folds: tuple[int, ...]
    complete: bool
    passed_over: tuple[str, ...]


def fold_files(folder: Path) -> dict[int, Path]:
    """``{fold: path}`` of the ``fold<k>.npz`` files directly in ``folder`` (empty if it is absent)."""
    if not folder.is_dir():
        return {}
    found = {int(m.group(1)): p for p in folder.iterdir() if (m := FOLD_FILE.match(p.name))}
    return dict(sorted(found.items()))


def read_manifest(root: Path) -> tuple[list[int], dict[str, list[str]]] | None:
    """``(folds, {target: [candidate folder, ...]})`` of ``root/published.yaml``; None without one.

    Raises QmlrpError (one line naming the file) for a manifest that is not of that form or names a
    folder outside ``root``."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise QmlrpError(f"{path}: not readable YAML ({type(err).__name__})") from None
    if not isinstance(raw, dict) or set(raw) != {"folds", "targets"}:
        raise QmlrpError(f"{path}: needs exactly the keys 'folds' and 'targets'")
    folds, targets = raw["folds"], raw["targets"]
    if not (isinstance(folds, list) and folds and all(isinstance(k, int) and k >= 0 for k in folds)):
        raise QmlrpError(f"{path}: 'folds' must be a non-empty list of fold numbers")
    if not (isinstance(targets, dict) and targets):
        raise QmlrpError(f"{path}: 'targets' must map each target to a list of folders")
    for target, folders in targets.items():
        if not (isinstance(folders, list) and folders and all(isinstance(f, str) and f for f in folders)):
            raise QmlrpError(f"{path}: targets.{target} must be a non-empty list of folders")
        for folder in folders:
            if Path(folder).is_absolute() or ".." in Path(folder).parts:
                raise QmlrpError(f"{path}: targets.{target}: {folder!r} is not a folder inside {Path(root)}")
    return sorted(set(folds)), {str(t): list(f) for t, f in targets.items()}


def choose(root: Path, target: str, candidates: list[str], folds: list[int]) -> PublishedSet | None:
    """The set of ``target`` to use among ``candidates`` (see the module); None if none has a model."""
    held = {name: fold_files(Path(root) / name) for name in candidates}
    complete = [name for name in candidates if set(folds) <= set(held[name])]
    best = complete[0] if complete else max(candidates, key=lambda name: len(held[name]))
    if not held[best]:
        return None
    passed = tuple(f"{name} has {len(set(held[name]) & set(folds))} of {len(folds)} folds, not used yet"
                   for name in candidates[:candidates.index(best)] if held[name])
    return PublishedSet(target, Path(root) / best, best, tuple(held[best]), bool(complete), passed)


def published_sets(root: str | Path) -> dict[str, PublishedSet] | None:
    """``{target: PublishedSet}`` chosen by ``root/published.yaml``; None when ``root`` has no manifest."""
    manifest = read_manifest(Path(root))
    if manifest is None:
        return None
    folds, targets = manifest
    chosen = {t: choose(Path(root), t, names, folds) for t, names in targets.items()}
    return {t: s for t, s in chosen.items() if s is not None}
