"""Tests of ``mcdose build-dataset OUT_DIR --cases N [...]``."""

from __future__ import annotations

import json

import pytest
from mcdose_cli.main import main

from mcdose.io.case import validate_case
from tests.helpers import assert_cli_error

FAST = ["--preset", "tiny", "--histories", "2e3", "--spect-backend", "gaussian",
        "--kernel-histories", "2000", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("mcdose-cache")))
        yield


def test_help(capsys):
    assert main(["build-dataset", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--cases", "--preset", "--histories", "--mc-spect", "--workers",
                   "--scheduler", "--device", "--counts", "--split"):
        assert option in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
        (["--histories", "1.5"], "whole number"),
        (["--preset", "huge"], "huge"),
        (["--counts", "0"], "--counts"),
        (["--split", "0.5", "-0.1", "0.6"], "--split"),
        (["--split", "0", "0", "0"], "split fractions"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "ds"
    assert main(["build-dataset", str(out), "--cases", "1", *args]) == 2
    assert_cli_error(capsys.readouterr().err, needle)
    assert not out.exists()


def test_missing_cases(tmp_path, capsys):
    assert main(["build-dataset", str(tmp_path / "ds")]) == 2
    assert_cli_error(capsys.readouterr().err, "--cases")


def test_failed_case_exits_1_and_a_rerun_completes(tmp_path, capsys):
    out = tmp_path / "ds"
    # a case file from another phantom seed where case_0001 should go: that case fails
    assert main(["phantom", str(out), "--count", "1", "--seed", "7", "--preset", "tiny"]) == 0
    (out / "case_0000.h5").rename(out / "case_0001.h5")
    capsys.readouterr()
    assert main(["build-dataset", str(out), "--cases", "2", *FAST]) == 1
    captured = capsys.readouterr()
    assert_cli_error(captured.err, "1 of 2 case(s) failed", "case_0001.h5", "rerun")
    assert "1/2 case(s) complete" in captured.out and "case_0000" in captured.out
    validate_case(out / "case_0000.h5", require=("spect", "dose/mc", "dose/vdk"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["file"] for e in manifest["cases"]] == ["case_0000.h5"]
    assert [e["file"] for e in manifest["incomplete"]] == ["case_0001.h5"]

    (out / "case_0001.h5").unlink()
    assert main(["build-dataset", str(out), "--cases", "2", *FAST]) == 0
    captured = capsys.readouterr()
    assert "2/2 case(s) complete" in captured.out and captured.err.strip() == ""
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["file"] for e in manifest["cases"]] == ["case_0000.h5", "case_0001.h5"]
    assert manifest["parameters"]["histories"] == 2000
    assert manifest["parameters"]["vdk_options"] == {"histories": 2000}


def test_split_0_0_1_holds_every_case_out(tmp_path, capsys):
    out = tmp_path / "external"
    assert main(["build-dataset", str(out), "--cases", "3", "--split", "0", "0", "1",
                 *FAST]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["split"] for c in manifest["cases"]] == ["test"] * 3
    assert manifest["parameters"]["split_fractions"] == [0.0, 0.0, 1.0]
