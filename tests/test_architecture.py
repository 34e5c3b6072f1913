"""The package's shape: imports point only downward through the layers, and no function is over 80 lines.

Layers, lowest first: errors -> the shared utilities (params, paths, io, figures, cluster) -> data ->
features -> labels -> targets -> models -> training | relevance (side by side, neither imports the
other) -> stages -> the CLI. Every ``import`` and ``from ... import`` is counted, also those inside
functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "qmlrp"
LAYER = {"errors": -1, "params": 0, "paths": 0, "io": 0, "figures": 0, "cluster": 0, "data": 1, "features": 2,
         "labels": 3, "targets": 4, "models": 5, "training": 6, "relevance": 6, "stages": 7, "cli": 8, "__main__": 9}
MAX_FUNCTION_LINES = 80


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: ``qmlrp.training.engine`` -> ``training``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported qmlrp module)`` of every import statement in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("qmlrp")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "qmlrp":
                found += [(node.lineno, f"qmlrp.{a.name}") for a in node.names]
            elif target.startswith("qmlrp."):
                found.append((node.lineno, target))
    return found


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units <= set(LAYER), sorted(units - set(LAYER))


def test_imports_point_only_downward() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _unit(_module_name(path))
        if here == "__init__":
            continue
        for line, target in imports(path):
            there = _unit(target)
            if there != here and there != "__init__" and LAYER[there] >= LAYER[here]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {target} ({here} -> {there})")
    assert not wrong, "\n".join(wrong)


def test_the_import_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an upward and a relative import are found and resolved."""
    global PACKAGE
    saved = PACKAGE
    try:
        PACKAGE = tmp_path / "qmlrp"
        (PACKAGE / "data").mkdir(parents=True)
        bad = PACKAGE / "data" / "bad.py"
        bad.write_text("def f():\n    from qmlrp.training.engine import fit\n    from ..models import io\n")
        assert imports(bad) == [(2, "qmlrp.training.engine"), (3, "qmlrp.models")]
        assert LAYER[_unit(imports(bad)[0][1])] > LAYER["data"]
    finally:
        PACKAGE = saved


def test_no_function_is_over_80_lines() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)
