"""A folder's published.yaml: which set of fold models predict and explain use per target."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmlrp.errors import QmlrpError
from qmlrp.models.io import find_models, fold_model
from qmlrp.models.published import published_sets

MANIFEST = "folds: [0, 1, 2]\ntargets:\n  alpha: [long/alpha, alpha]\n  zpve: [zpve]\n"


def make_folder(root: Path, sets: dict[str, list[int]], manifest: str | None = MANIFEST) -> Path:
    """``root`` with empty ``<set>/fold<k>.npz`` files (only their names matter here) and the manifest."""
    for name, folds in sets.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in folds:
            (root / name / f"fold{k}.npz").write_bytes(b"")
    if manifest is not None:
        (root / "published.yaml").write_text(manifest)
    return root


def test_the_better_set_is_used_once_it_is_complete(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"alpha": [0, 1, 2], "long/alpha": [0, 1, 2], "zpve": [0, 1, 2]})
    chosen = published_sets(root)
    assert chosen["alpha"].name == "long/alpha" and chosen["alpha"].complete and chosen["alpha"].passed_over == ()
    assert find_models(root)["alpha"] == [(k, root / "long/alpha" / f"fold{k}.npz") for k in (0, 1, 2)]
    assert fold_model(root, "alpha", 2) == root / "long/alpha/fold2.npz"


def test_an_incomplete_better_set_waits_and_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"alpha": [0, 1, 2], "long/alpha": [0, 1], "zpve": [0, 1, 2]})
    chosen = published_sets(root)
    assert chosen["alpha"].name == "alpha" and chosen["alpha"].complete
    assert chosen["alpha"].passed_over == ("long/alpha has 2 of 3 folds, not used yet",)
    assert [k for k, _ in find_models(root)["alpha"]] == [0, 1, 2]
    assert fold_model(root, "alpha", 0) == root / "alpha/fold0.npz"


def test_while_none_is_complete_the_one_with_most_folds_is_used(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"alpha": [0], "long/alpha": [0, 2], "zpve": [1]})
    chosen = published_sets(root)
    assert (chosen["alpha"].name, chosen["alpha"].folds, chosen["alpha"].complete) == ("long/alpha", (0, 2), False)
    assert chosen["zpve"].folds == (1,)
    with pytest.raises(QmlrpError, match=r"published zpve set has folds 1, not fold 0"):
        fold_model(root, "zpve", 0)


def test_a_target_without_any_model_is_left_out(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"alpha": [0, 1, 2]})
    assert set(find_models(root)) == {"alpha"}
    with pytest.raises(QmlrpError, match="published zpve set has no models"):
        fold_model(root, "zpve", 0)


def test_without_a_manifest_every_target_folder_is_found(tmp_path: Path) -> None:
    root = make_folder(tmp_path, {"alpha": [0, 1], "long/alpha": [0]}, manifest=None)
    assert published_sets(root) is None
    assert find_models(root) == {"alpha": [(0, root / "alpha/fold0.npz"), (1, root / "alpha/fold1.npz")]}
    assert fold_model(root, "alpha", 5) == root / "alpha/fold5.npz"  # the loader names a missing file


@pytest.mark.parametrize("manifest, reason", [
    ("folds: [0, 1\n", "not readable YAML"),
    ("- alpha\n", "needs exactly the keys 'folds' and 'targets'"),
    ("folds: [0]\ntargets: {alpha: [alpha]}\nextra: 1\n", "needs exactly the keys"),
    ("folds: []\ntargets: {alpha: [alpha]}\n", "'folds' must be a non-empty list"),
    ("folds: [0, -1]\ntargets: {alpha: [alpha]}\n", "'folds' must be a non-empty list"),
    ("folds: [0]\ntargets: []\n", "'targets' must map each target"),
    ("folds: [0]\ntargets: {alpha: alpha}\n", "targets.alpha must be a non-empty list of folders"),
    ("folds: [0]\ntargets: {alpha: [../elsewhere]}\n", "is not a folder inside"),
    ("folds: [0]\ntargets: {alpha: [/abs/alpha]}\n", "is not a folder inside"),
])
def test_a_bad_manifest_is_one_line_naming_it(tmp_path: Path, manifest: str, reason: str) -> None:
    root = make_folder(tmp_path, {"alpha": [0]}, manifest=manifest)
    with pytest.raises(QmlrpError) as err:
        find_models(root)
    assert str(err.value).startswith(str(root / "published.yaml")) and reason in str(err.value)
    assert "\n" not in str(err.value)
