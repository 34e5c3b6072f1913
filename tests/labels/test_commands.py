"""CLI: qmlrp label-beta / dalton-write / dalton-read (through the commands' own entry point)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qmlrp.cli import main

DALTON = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "dalton"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def tiny_table(path: Path) -> None:
    pd.DataFrame({
        "id": [1, 2, 3],
        "smiles": ["O", "F", "N"],
        "n_atoms": [3, 2, 4],
        "atomic_numbers": [[8, 1, 1], [9, 1], [7, 1, 1, 1]],
        "coordinates": [[0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, -0.469],
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.917],
                        [0.0, 0.0, 0.0, 0.0, 0.94, 0.38, 0.81, -0.47, 0.38, -0.81, -0.47, 0.38]],
    }).to_parquet(path)


def write_params(tmp: Path, **over) -> Path:
    p = {"method": "rhf", "basis": "sto-3g", "input": str(tmp / "qm9.parquet"),
         "output": str(tmp / "labels" / "{level}"), "metrics": str(tmp / "m.json"),
         "count": 3, "seed": 0, "shard_size": 2, "workers": 1, "progress": False}
    p.update(over)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump({"label_beta": p}))
    return path


def test_label_beta_command(tmp_path: Path, capsys) -> None:
    tiny_table(tmp_path / "qm9.parquet")
    code, out, err = run(["label-beta", "--params", str(write_params(tmp_path))], capsys)
    assert code == 0, err
    assert "label-beta: 3/3 labelled, 0 failed" in out
    df = pd.read_parquet(tmp_path / "labels" / "rhf-hf-sto-3g")
    assert sorted(df["id"]) == [1, 2, 3]


def test_label_beta_user_errors_are_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = run(["label-beta", "--params", str(write_params(tmp_path))], capsys)
    assert code == 2 and err.count("\n") == 1 and "ingest" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"label_beta": {"method": "ccsd"}}))
    code, _, err = run(["label-beta", "--params", str(bad)], capsys)
    assert err == "error: params.yaml label_beta.method: 'ccsd' is not one of 'rks', 'rhf'\n"
    assert code == 2


def test_dalton_write_command(tmp_path: Path, capsys) -> None:
    tiny_table(tmp_path / "qm9.parquet")
    params = write_params(tmp_path, method="rks", xc="b3lyp5", basis="6-31g(2df,p)")
    code, out, err = run(["dalton-write", "--table", str(tmp_path / "qm9.parquet"), "--ids", "3,1",
                          "-o", str(tmp_path / "dal"), "--params", str(params)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "dal").glob("*.mol")) == ["qm9_000001.mol",
                                                                         "qm9_000003.mol"]
    assert " B3LYP" in (tmp_path / "dal" / "qm9_000001.dal").read_text().splitlines()
    code, _, err = run(["dalton-write", "--table", str(tmp_path / "qm9.parquet"), "--ids", "99",
                        "-o", str(tmp_path / "dal2"), "--params", str(params)], capsys)
    assert code == 2 and "99" in err


def test_dalton_read_command(tmp_path: Path, capsys) -> None:
    qlop = DALTON / "dft_qr_qlop.out"
    if not qlop.exists():
        pytest.skip(f"DALTON fixture {qlop} not available (../shared is absent)")
    out_path = tmp_path / "dalton_labels.parquet"
    code, out, err = run(["dalton-read", str(qlop), "-o", str(out_path)], capsys)
    assert code == 0, err
    df = pd.read_parquet(out_path)
    assert len(df) == 1 and df["source"][0] == "dalton" and df["xc"][0] == "b3lyp5"
    beta = np.asarray(df["beta_au"][0]).reshape(3, 3, 3)
    assert beta[1, 0, 0] == pytest.approx(-21.38482, abs=1e-5)
    # four fixtures are four different levels: refused, as one line
    code, _, err = run(["dalton-read", str(DALTON), "-o", str(tmp_path / "all.parquet")], capsys)
    assert code == 2 and "never mix" in err and err.count("\n") == 1


def test_label_beta_overrides(tmp_path: Path, capsys) -> None:
    tiny_table(tmp_path / "qm9.parquet")
    params = write_params(tmp_path)
    code, out, err = run(["label-beta", "--params", str(params), "--set", "count=1",
                          "-S", f"output={tmp_path / 'other'}/{{level}}"], capsys)
    assert code == 0, err
    assert "label-beta: 1/1 labelled" in out
    assert len(pd.read_parquet(tmp_path / "other" / "rhf-hf-sto-3g")) == 1
    code, _, err = run(["label-beta", "--params", str(params), "-S", "cout=2"], capsys)
    assert code == 2 and err == ("error: params.yaml label_beta: unknown key 'cout' "
                                 "(did you mean 'count'?)\n")
    code, _, err = run(["label-beta", "--params", str(params), "-S", "sanity.min_distance=1"],
                       capsys)
    assert code == 2 and "label_beta.sanity: unknown key 'min_distance'" in err
    code, _, err = run(["label-beta", "--params", str(params), "-S", "count"], capsys)
    assert code == 2 and err == "error: --set: expected KEY=VALUE, got 'count'\n"


@pytest.mark.parametrize(("content", "extra", "message"), [
    ("label_beta: [1, 2]\n", [], "error: params.yaml label_beta: expected a mapping, got [1, 2]\n"),
    ("label_beta: {a: [1\n", [], "cannot read the parameter file: while parsing a flow sequence"),
    ("train: {}\n", [], "no section 'label_beta'"),
    (None, ["-S", "output=afile/{level}"],
     "error: params.yaml label_beta.output: cannot create folder afile/rhf-hf-sto-3g: Not a directory\n"),
    (None, ["-S", "metrics=."], "error: params.yaml label_beta.metrics: . is a folder\n"),
])
def test_label_beta_bad_files_are_one_line(tmp_path: Path, capsys, monkeypatch, content, extra,
                                           message) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_table(tmp_path / "qm9.parquet")
    (tmp_path / "afile").write_text("")
    params = write_params(tmp_path)
    if content is not None:
        params.write_text(content)
    code, out, err = run(["label-beta", "--params", str(params), *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err
    assert not (tmp_path / "labels").exists()
