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


# -- a key or section given twice (issue 21): refused with both lines, never the last one silently ---

from qmlrp.params import load_params  # noqa: E402


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  epochs: 1\n  seed: 3\n  epochs: 5\n", "key 'train.epochs' is given twice (lines 2 and 4); keep one"),
        ("split:\n  n_folds: 10\ntrain:\n  epochs: 1\nsplit:\n  seed: 2\n",
         "key 'split' is given twice (lines 1 and 5); keep one"),
        ("train:\n  model:\n    depth: 2\n    depth: 3\n", "key 'train.model.depth' is given twice (lines 3 and 4); keep one"),
        ("study:\n  runs:\n    - {target: alpha, target: zpve}\n",
         "key 'study.runs[0].target' is given twice (lines 3 and 3); keep one"),
    ],
)
def test_duplicate_keys_are_refused_with_both_lines(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(QmlrpError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: {message}"


def test_same_key_in_different_sections_and_merge_keys_are_fine(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("base: &b\n  epochs: 1\n  seed: 2\ntrain:\n  <<: *b\n  epochs: 3\nother:\n  epochs: 4\n")
    assert load_params(path) == {"base": {"epochs": 1, "seed": 2}, "train": {"epochs": 3, "seed": 2},
                                 "other": {"epochs": 4}}


def test_yaml_syntax_error_is_one_line(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train: {epochs: [1\n")
    with pytest.raises(QmlrpError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: cannot read the parameter file: while parsing a flow sequence")
    assert "\n" not in str(err.value)


# -- train.model: every field checked on construction, named in one line (issue 21) ----------------

from qmlrp.training.config import TrainConfig  # noqa: E402


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"depth": -1}, "params.yaml train.model.depth: must be at least 1, got -1"),
        ({"depth": 0}, "params.yaml train.model.depth: must be at least 1, got 0"),
        ({"atom_width": 0}, "params.yaml train.model.atom_width: must be at least 1, got 0"),
        ({"pair_width": -5}, "params.yaml train.model.pair_width: must be at least 1, got -5"),
        ({"atom_hidden": 0}, "params.yaml train.model.atom_hidden: must be at least 1, got 0"),
        ({"pair_hidden": 0}, "params.yaml train.model.pair_hidden: must be at least 1, got 0"),
        ({"embedding_width": 0}, "params.yaml train.model.embedding_width: must be at least 1, got 0"),
        ({"head_units": [2000, 0]}, "params.yaml train.model.head_units[1]: must be at least 1, got 0"),
        ({"dropout": 1.0}, "params.yaml train.model.dropout: must be in [0, 1), got 1.0"),
        ({"dropout": -0.1}, "params.yaml train.model.dropout: must be in [0, 1), got -0.1"),
        ({"batch_norm_momentum": 1.5}, "params.yaml train.model.batch_norm_momentum: must be in [0, 1), got 1.5"),
        ({"dropout": float("nan")}, "params.yaml train.model.dropout: must be in [0, 1), got nan"),
        ({"scaled_atom_features": ["charge"]}, "params.yaml train.model.scaled_atom_features: 'charge' is not a feature name"),
        ({"scaled_pair_features": ["gasteiger_charge"]},
         "params.yaml train.model.scaled_pair_features: 'gasteiger_charge' is not a feature name"),
        ({"atom_width": 10**9}, "params.yaml train.model: the model would have 3.8e+11 weights, more than the "
                                "100,000,000 allowed (check depth, the widths and head_units)"),
        ({"depth": 10**9}, "params.yaml train.model: the model would have 2.28e+13 weights, more than the "
                           "100,000,000 allowed (check depth, the widths and head_units)"),
        ({"depth": "2"}, "params.yaml train.model.depth: expected an integer, got '2'"),
    ],
)
def test_model_section_values_are_checked(model: dict, message: str) -> None:
    with pytest.raises(QmlrpError) as err:
        TrainConfig.from_params({"model": model})
    assert str(err.value) == message


def test_weight_count_is_the_built_models() -> None:
    """The closed form that guards against huge models counts exactly the weights build_model makes."""
    import numpy as np

    from qmlrp.models.config import ModelConfig
    from qmlrp.models.gc import build_model

    for config, n_outputs in [(ModelConfig(depth=3, atom_width=5, pair_width=6, atom_hidden=7, pair_hidden=8,
                                           embedding_width=9, head_units=(10, 4)), 3),
                              (ModelConfig(depth=1, atom_width=5, pair_width=6, atom_hidden=7, pair_hidden=8,
                                           embedding_width=9, head_units=()), 1)]:
        model = build_model(config, metadata={"n_outputs": n_outputs})
        assert config.weight_count(n_outputs) == sum(int(np.prod(w.shape)) for w in model.weights)
    assert ModelConfig().weight_count() == 2_851_977  # the paper's model
