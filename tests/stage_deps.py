"""The source files a DVC stage's code can import, derived from the code itself (static, from the AST).

A stage runs ``python pipeline/<x>.py``, which hands its arguments to ``qmlrp.cli.main([command, ...])``.
What runs is then (1) what ``qmlrp.cli`` and the one module that registers ``command``
(``qmlrp.cli.COMMANDS``) load at import time -- their module-level imports, followed to their own
module-level imports -- and (2) the body of that typer command (``@app.command("command")``), with
every module it imports, followed through every import those modules hold, at module level or inside
functions (the package imports lazily, so a function-level import is as much a dependency as a
module-level one). Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``.

The result over-approximates what one run imports (a lazy import on a branch the stage never takes
still counts) and never under-approximates it, short of ``importlib`` by name -- which ``src/qmlrp``
does not use (:func:`dynamic_imports` checks). A stage whose DVC deps cover it reruns whenever code it
can execute changes.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


@dataclass
class ModuleImports:
    """The qmlrp modules one file imports: at module level, and per function (by name)."""

    top: set[str] = field(default_factory=set)
    everywhere: set[str] = field(default_factory=set)
    commands: dict[str, set[str]] = field(default_factory=dict)  # typer command name -> its body's imports
    outside_commands: set[str] = field(default_factory=set)  # everywhere but inside a command's body


def module_name(path: Path) -> str:
    rel = path.resolve().relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def module_files() -> dict[str, Path]:
    """Every module of ``src/qmlrp`` by dotted name."""
    return {module_name(p): p for p in sorted((SRC / "qmlrp").rglob("*.py"))}


def _is_package(name: str) -> bool:
    return module_files()[name].name == "__init__.py"


def _resolve(node: ast.Import | ast.ImportFrom, current: str) -> set[str]:
    """The qmlrp modules one import statement loads (the named module, and ``from m import sub`` submodules)."""
    files = module_files()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
        found = set()
        for n in names:
            while n and n not in files:  # `import qmlrp.x.y` of a module; trim attribute tails defensively
                n = n.rpartition(".")[0]
            if n.startswith("qmlrp"):
                found.add(n)
        return found
    if node.level:  # relative: from the current module's package
        package = current if _is_package(current) else current.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if not base.startswith("qmlrp") or base not in files:
        return set()
    found = {base}
    for alias in node.names:
        if f"{base}.{alias.name}" in files:
            found.add(f"{base}.{alias.name}")
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _body_imports(node: ast.AST, current: str) -> set[str]:
    """Every import under ``node``, outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found |= _resolve(child, current)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for branch in child.orelse:
                found |= _body_imports(ast.Module(body=[branch], type_ignores=[]), current)
        else:
            found |= _body_imports(child, current)
    return found


def _command_name(decorator: ast.expr) -> str | None:
    """``@app.command("name")`` -> ``name``."""
    if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "command" and decorator.args
            and isinstance(decorator.args[0], ast.Constant) and isinstance(decorator.args[0].value, str)):
        return decorator.args[0].value
    return None


@cache
def imports_of(name: str) -> ModuleImports:
    """What module ``name`` imports (see :class:`ModuleImports`)."""
    tree = ast.parse(module_files()[name].read_text())
    found = ModuleImports()

    def visit(node: ast.AST, in_function: bool, in_command: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                modules = _resolve(child, name)
                found.everywhere |= modules
                if not in_function:
                    found.top |= modules
                if not in_command:
                    found.outside_commands |= modules
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for branch in child.orelse:  # annotations only: never imported at run time
                    visit(ast.Module(body=[branch], type_ignores=[]), in_function, in_command)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                commands = [c for c in map(_command_name, child.decorator_list) if c]
                for command in commands:
                    found.commands[command] = _body_imports(child, name)
                visit(child, True, in_command or bool(commands))
            else:
                visit(child, in_function, in_command)

    visit(tree, False, False)
    return found


def _with_packages(modules: set[str]) -> set[str]:
    out = set(modules)
    for m in modules:
        parts = m.split(".")
        out |= {".".join(parts[:k]) for k in range(1, len(parts))}
    return out


def _closure(start: set[str], everywhere: bool) -> set[str]:
    seen: set[str] = set()
    todo = list(_with_packages(start))
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        found = imports_of(m)
        todo.extend(_with_packages(found.everywhere if everywhere else found.top) - seen)
    return seen


@cache
def cli_commands() -> dict[str, str]:
    """``qmlrp.cli.COMMANDS`` read from its source: sub-command -> the module that registers it."""
    for node in ast.parse(module_files()["qmlrp.cli"].read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "COMMANDS":
            return ast.literal_eval(node.value)
    raise LookupError("qmlrp.cli: no COMMANDS table")


def command_modules(command: str) -> set[str]:
    """The modules the CLI command ``command`` can import (module docstring): the CLI and the one module
    that registers the command, as loaded at start-up, and everything the command's body can reach."""
    module = cli_commands()[command]
    body = imports_of(module).commands.get(command)
    if body is None:
        raise LookupError(f"command {command!r}: not registered in {module}")
    # the body may call any function of its module: their imports count, other commands' bodies do not
    return (_closure({"qmlrp.cli", module}, everywhere=False)
            | _closure(body | imports_of(module).outside_commands, everywhere=True))


def stage_command(script: Path) -> str:
    """The CLI command a ``pipeline/<x>.py`` script runs (``main(["command", *sys.argv[1:]])``)."""
    for node in ast.walk(ast.parse(script.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "main"
                and node.args and isinstance(node.args[0], ast.List) and node.args[0].elts
                and isinstance(node.args[0].elts[0], ast.Constant)):
            return node.args[0].elts[0].value
    raise LookupError(f"{script}: no main([command, ...]) call")


def stage_source_files(script: Path) -> set[str]:
    """Repository-relative paths of the source files a stage running ``script`` depends on."""
    files = module_files()
    return {files[m].relative_to(REPO).as_posix() for m in command_modules(stage_command(script))}


def covered(path: str, deps: list[str]) -> bool:
    """Is ``path`` listed in ``deps``, or inside a listed folder?"""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def dynamic_imports() -> list[str]:
    """Places in ``src/qmlrp`` that import by name at run time (``importlib``, ``__import__``); the CLI's
    ``build_app`` is read through ``COMMANDS`` (:func:`cli_commands`)."""
    hits = []
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("import_module", "__import__"):
                    hits.append(f"{name}:{node.lineno}")
    return hits


def compressed(paths: set[str]) -> list[str]:
    """``paths`` with each folder of ``src/qmlrp`` whose every module is in the set listed as the folder."""
    out: set[str] = set(paths)
    for folder in sorted({p.parent for p in module_files().values()}, key=lambda f: len(f.parts)):
        rel = folder.relative_to(REPO).as_posix()
        inside = {p.relative_to(REPO).as_posix() for p in folder.rglob("*.py")}
        if folder != SRC / "qmlrp" and inside <= paths and not covered(rel, sorted(out - inside)):
            out = (out - inside) | {rel}
    return sorted(out)


def derived_deps(script: Path, prefix: str = "") -> list[str]:
    """The ``src/`` deps a stage running ``script`` should list (folders where complete), with ``prefix``."""
    return [prefix + p for p in compressed(stage_source_files(script))]


def write_deps(dvc_yaml: Path) -> None:
    """Rewrite the ``src/`` deps of every stage of ``dvc_yaml`` that lists any to the derived list (after the
    stage's ``pipeline/`` script), keeping every other line: ``python -m tests.stage_deps dvc.yaml
    studies/qm9-2k/dvc.yaml studies/qm9-full/dvc.yaml``. A stage that lists no source file keeps none (the
    full study's training stages: one code version trains them over days)."""
    import re

    import yaml

    stages = {name: stage for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items()
              if any(isinstance(d, str) and re.match(r"^(\.\./)*src/", d) for d in stage.get("deps", []))}
    lines, out, stage = dvc_yaml.read_text().splitlines(), [], None
    for line in lines:
        head = re.match(r"^  ([A-Za-z_][\w-]*):\s*(#.*)?$", line)
        if head:
            stage = head.group(1)
        dep = re.match(r"^(\s+)- ((?:\.\./)*)(src/qmlrp\S*)", line)
        if dep and stage in stages:
            continue
        out.append(line)
        script = re.match(r"^(\s+)- ((?:\.\./)*)(pipeline/\S+\.py)\s*(#.*)?$", line)
        if script and stage in stages and "deps" in stages[stage]:
            indent, prefix = script.group(1), script.group(2)
            out.extend(f"{indent}- {d}" for d in derived_deps(REPO / script.group(3), prefix))
    dvc_yaml.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        write_deps(Path(name))
        print(f"{name}: src deps rewritten from the stages' imports")
