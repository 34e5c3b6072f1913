"""Reading ``params.yaml``: one section per pipeline stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qmlrp.errors import QmlrpError

DEFAULT_PARAMS = Path("params.yaml")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of the YAML document gives the same key twice."""

    def __init__(self, key: str, first_line: int, second_line: int) -> None:
        self.key, self.first_line, self.second_line = key, first_line, second_line
        super().__init__(f"key '{key}' is given twice (lines {first_line} and {second_line}); keep one")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently): :class:`DuplicateKeyError` names the key's dotted path and both lines."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._check_unique_keys(node, "", set())
        return self.construct_document(node)

    def _check_unique_keys(self, node: yaml.Node, where: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias to a node already checked
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):  # a complex key: left to the constructor
                    continue
                key = self.construct_object(key_node)
                path = f"{where}.{key}" if where else str(key)
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise DuplicateKeyError(path, lines[key], line)
                lines[key] = line
                self._check_unique_keys(value_node, path, seen)
        elif isinstance(node, yaml.SequenceNode):
            for k, item in enumerate(node.value):
                self._check_unique_keys(item, f"{where}[{k}]", seen)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (:class:`UniqueKeyLoader`); a duplicated key, a syntax error or
    an unreadable file raises one-line QmlrpError naming ``path``."""
    try:
        with path.open() as fh:
            return yaml.load(fh, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as err:
        raise QmlrpError(f"{path}: {err}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())
        raise QmlrpError(f"{path}: cannot read the parameter file: {reason}") from None


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the whole parameter file as a dict (a key given twice anywhere in it is refused)."""
    path = Path(path)
    if not path.exists():
        raise QmlrpError(f"{path}: parameter file not found (run from the repository root)")
    data = read_yaml(path) or {}
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


# -- one convention for every section: a frozen dataclass, checked before any work -------------

import dataclasses
import difflib
import re
import types
import typing

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(where: str, tp: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (and normalised: lists -> tuples,
    numeric strings such as YAML 1.1's ``1e-3`` -> float); QmlrpError naming ``where`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(where, option, value)
            except QmlrpError as err:
                errors.append(str(err))
        raise QmlrpError(f"{where}: {value!r} is not {' or '.join(_describe(a) for a in args)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise QmlrpError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise QmlrpError(f"{where}: expected a mapping, got {value!r}")
        return parse_section(tp, where.removeprefix("params.yaml "), value)  # it adds the prefix again
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise QmlrpError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(f"{where}[{k}]", item, v) for k, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise QmlrpError(f"{where}: expected a mapping, got {value!r}")
        if len(args) == 2:
            return {_coerce(where, args[0], k): _coerce(f"{where}.{k}", args[1], v) for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise QmlrpError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise QmlrpError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        raise QmlrpError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise QmlrpError(f"{where}: expected a string, got {value!r}")
    return value


T = typing.TypeVar("T")


class FieldError(ValueError):
    """Raised by a section dataclass's ``__post_init__`` for a value of the right type but out of
    range: :func:`parse_section` reports it as ``params.yaml <section>.<key>: <reason>``."""

    def __init__(self, key: str, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


def parse_section(cls: type[T], section: str, values: dict[str, Any] | None) -> T:
    """A frozen dataclass ``cls`` from a params mapping: unknown keys (with the likely intended
    key) and wrong types raise QmlrpError naming ``params.yaml <section>.<key>``; missing keys
    take the dataclass defaults, which are the only place a default is stated."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise QmlrpError(f"params.yaml {section}: unknown key{'s' if len(hints) > 1 else ''} {', '.join(hints)}")
    hints_of = typing.get_type_hints(cls)
    checked = {key: _coerce(f"params.yaml {section}.{key}", hints_of[key], value) for key, value in values.items()}
    try:
        return cls(**checked)
    except FieldError as err:
        raise QmlrpError(f"params.yaml {section}.{err.key}: {err.reason}") from None
    except (TypeError, ValueError) as err:
        raise QmlrpError(f"params.yaml {section}: {err}") from None
