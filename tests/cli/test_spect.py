"""Tests for ``mcdose spect`` (parsing and composition; the physics is in tests/mcdose)."""

from __future__ import annotations

import numpy as np
import pytest
from mcdose_cli.main import main

from tests.helpers import assert_cli_error


@pytest.fixture
def case_file(tmp_path):
    from mcdose.io.case import Geometry, create_case

    density = np.ones((8, 16, 16), np.float32)
    activity = np.zeros_like(density)
    activity[3:5, 6:10, 7:11] = 1e-3
    path = tmp_path / "case.h5"
    create_case(
        path, geometry=Geometry((4.0, 4.0, 5.0)), nuclide="Lu-177", density=density,
        activity=activity,
    )  # fmt: skip
    return path


def test_help_lists_the_options(capsys):
    assert main(["spect", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--counts", "--seed", "--iterations", "--subsets", "--views", "--backend"):
        assert option in out


def test_missing_case_file_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert main(["spect", str(missing), "--backend", "gaussian"]) == 2
    assert_cli_error(capsys.readouterr().err, str(missing))
    assert not missing.exists()


def test_bad_option_value_exits_2(case_file, capsys):
    assert main(["spect", str(case_file), "--subsets", "8", "--views", "4"]) == 2
    assert_cli_error(capsys.readouterr().err)


def test_writes_spect_then_skips(case_file, capsys):
    from mcdose.io.case import read_dataset

    args = ["spect", str(case_file), "--counts", "1e5", "--seed", "3", "--backend", "gaussian"]
    assert main(args) == 0
    assert "spect written (gaussian" in capsys.readouterr().out
    spect = read_dataset(case_file, "spect")
    assert spect.sum() == pytest.approx(read_dataset(case_file, "activity").sum(), rel=1e-5)
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
