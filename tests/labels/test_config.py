"""label_beta params: one frozen, typed dataclass; typos and wrong types stop before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from qmlrp.cli import main
from qmlrp.errors import QmlrpError
from qmlrp.labels.config import LabelBetaParams, load_label_beta_params
from tests.labels.molecules import molecule_table, stage_params

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_parse_and_defaults_are_stated_once() -> None:
    p = load_label_beta_params(REPO / "params.yaml")
    assert (p.method, p.xc, p.basis) == ("rks", "b3lyp5", "6-31g")
    assert p.max_atoms is None, "the default sample is uniform over all sizes"
    assert p.output_dir() == Path("labels/beta/rks-b3lyp5-6-31g")
    assert p.sanity.min_distance_angstrom == 0.5
    assert LabelBetaParams.from_mapping({}) == LabelBetaParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.basis = "sto-3g"  # type: ignore[misc]


def test_values_are_normalised(tmp_path: Path) -> None:
    p = LabelBetaParams.from_mapping(stage_params(tmp_path, method="rks", xc="b3lyp5",
                                                  basis="6-31G(2df,p)", conv_tol="1e-10"))
    assert p.level.basis == "6-31g(2df,p)" and p.level.conv_tol == 1e-10
    assert p.output_dir() == tmp_path / "labels" / "rks-b3lyp5-6-31g_2df_p_"
    jq = LabelBetaParams.from_mapping({"scheduler": "slurm",
                                       "jobqueue": {"jobs": 3, "job_extra_directives": ["-x"]}})
    assert jq.jobqueue.jobs == 3 and jq.jobqueue.job_extra_directives == ("-x",)


@pytest.mark.parametrize(("values", "message"), [
    ({"bais": "6-31g(2df,p)"}, r"params.yaml label_beta: unknown key 'bais' \(did you mean 'basis'\?\)"),
    ({"cout": 10}, r"params.yaml label_beta: unknown key 'cout' \(did you mean 'count'\?\)"),
    ({"count": "many"}, r"label_beta.count: 'many' is not int or NoneType"),
    ({"workers": 1.5}, r"label_beta.workers: expected an integer, got 1.5"),
    ({"conv_tol": "tight"}, r"label_beta.conv_tol: expected a number, got 'tight'"),
    ({"density_fit": "yes"}, r"label_beta.density_fit: expected true or false, got 'yes'"),
    ({"method": "ccsd"}, r"label_beta.method: 'ccsd' is not one of 'rks', 'rhf'"),
    ({"scheduler": "kubernetes"}, r"label_beta.scheduler: 'kubernetes' is not one of"),
    ({"scheduler": "address"}, r"scheduler 'address' needs 'address: tcp://host:port'"),
    ({"grid_level": 12}, r"grid_level must be 0..9, got 12"),
    ({"count": 0}, r"count must be >= 1"),
    ({"seed": -1}, r"seed must be >= 0"),
    ({"output": "x/{basis}"}, r"output may only use the placeholder \{level\}"),
    ({"jobqueue": {"core": 16}}, r"label_beta.jobqueue: unknown key 'core' \(did you mean 'cores'\?\)"),
    ({"sanity": {"min_distance": 0.4}}, r"label_beta.sanity: unknown key 'min_distance'"),
    ({"sanity": {"min_distance_angstrom": -1}}, r"sanity.min_distance_angstrom must be > 0"),
])
def test_bad_params_are_named(values: dict, message: str) -> None:
    with pytest.raises(QmlrpError, match=message):
        LabelBetaParams.from_mapping(values)


@pytest.mark.parametrize("typo", [{"bais": "6-31g(2df,p)"}, {"cout": 10}, {"count": "ten"}])
def test_cli_typo_is_one_line_and_does_no_work(tmp_path: Path, typo: dict,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    molecule_table(3).to_parquet(tmp_path / "qm9.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"label_beta": stage_params(tmp_path, **typo)}))
    with pytest.raises(SystemExit) as exc:
        main(["label-beta", "--params", str(params)])
    out, err = capsys.readouterr()
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: params.yaml label_beta")
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "labels").exists() and not (tmp_path / "metrics").exists()
