"""The one params convention: frozen dataclasses, unknown keys and wrong types rejected by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from qmlrp.errors import QmlrpError
from qmlrp.params import parse_section


@dataclass(frozen=True)
class Inner:
    width: int = 4
    units: tuple[int, ...] = (8,)


@dataclass(frozen=True)
class Section:
    limit: int | None = 2000
    rate: float = 1e-3
    mode: Literal["fail", "skip"] = "fail"
    flag: bool = False
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_normalisation() -> None:
    s = parse_section(Section, "demo", {"limit": None, "rate": "1e-4", "inner": {"units": [3, 2]}})
    assert s == Section(limit=None, rate=1e-4, inner=Inner(units=(3, 2)))
    assert parse_section(Section, "demo", {}) == Section()
    assert parse_section(Section, "demo", {"rate": 1}).rate == 1.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"limt": 5}, r"params.yaml demo: unknown key 'limt' \(did you mean 'limit'\?\)"),
        ({"rate": "fast"}, r"params.yaml demo.rate: expected a number, got 'fast'"),
        ({"limit": "all"}, r"params.yaml demo.limit: 'all' is not int or NoneType"),
        ({"limit": 2.5}, r"params.yaml demo.limit"),
        ({"mode": "ignore"}, r"params.yaml demo.mode: 'ignore' is not one of 'fail', 'skip'"),
        ({"flag": "yes please"}, r"params.yaml demo.flag: expected true or false"),
        ({"inner": {"widht": 3}}, r"params.yaml demo.inner: unknown key 'widht' \(did you mean 'width'\?\)"),
        ({"inner": {"units": [1, "a"]}}, r"params.yaml demo.inner.units\[1\]: expected an integer"),
        ({"name": 3}, r"params.yaml demo.name: expected a string"),
    ],
)
def test_bad_values_are_named(values: dict, message: str) -> None:
    with pytest.raises(QmlrpError, match=message):
        parse_section(Section, "demo", values)
