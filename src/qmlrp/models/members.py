"""Where a fold's seed ensemble lives: member 0 is the fold's model file (``models/<target>/fold<k>.npz``,
the one ``predict`` and the published sets use); members 1.. and the ``members.json`` that lists them are in
``models/<target>/members/fold<k>/``."""

from __future__ import annotations

import json
from pathlib import Path

from qmlrp.errors import QmlrpError
from qmlrp.models.io import model_path


def members_dir(models_dir: str | Path, target: str, fold: int) -> Path:
    """``models_dir/<target>/members/fold<k>``: a seed ensemble's members 1.. (``member<s>.npz``) and its
    ``members.json`` (member 0 is :func:`model_path`)."""
    return Path(models_dir) / target / "members" / f"fold{int(fold)}"


def member_path(models_dir: str | Path, target: str, fold: int, member: int) -> Path:
    """Member 0: :func:`model_path`; member s > 0: ``members_dir/member<s>.npz``."""
    if int(member) == 0:
        return model_path(models_dir, target, fold)
    return members_dir(models_dir, target, fold) / f"member{int(member)}.npz"


def ensemble_files(models_dir: str | Path, target: str, fold: int) -> list[Path]:
    """The model files of ``fold``'s seed ensemble, member 0 first, as its ``members.json`` lists them;
    ``[model_path]`` for a single network (no manifest). A manifest that cannot be read raises QmlrpError."""
    first = model_path(models_dir, target, fold)
    manifest = members_dir(models_dir, target, fold) / "members.json"
    if not manifest.exists():
        return [first]
    try:
        names = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise QmlrpError(f"{manifest}: not a members manifest ({error}); rerun `dvc repro train_{target}`") from None
    return [first, *(manifest.parent / str(name) for name in names[1:])]
