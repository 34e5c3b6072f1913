"""Reading ``params.yaml``: one section per pipeline stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qmlrp.errors import QmlrpError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the whole parameter file as a dict."""
    path = Path(path)
    if not path.exists():
        raise QmlrpError(f"{path}: parameter file not found (run from the repository root)")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise QmlrpError(f"{path}: expected a mapping of stage sections")
    return data


def stage_params(stage: str, path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the section of ``params.yaml`` that belongs to ``stage``."""
    params = load_params(path)
    if stage not in params:
        raise QmlrpError(f"{path}: no section '{stage}'")
    return dict(params[stage])


def reject_unknown_keys(section: str, params: dict[str, Any], allowed: set[str]) -> None:
    """Raise QmlrpError naming the keys of ``params`` that ``section`` does not know (typos)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise QmlrpError(f"params.yaml {section}: unknown keys {unknown}")
