"""Tests of ``mcdose phantom OUT_DIR --count N [--seed S] [--preset ...]``."""

from __future__ import annotations

import numpy as np
import pytest
from mcdose_cli.main import main

from mcdose.io.case import Geometry, read_dataset, validate_case
from mcdose.io.images import write_image
from mcdose.phantoms import read_phantom_params
from tests.helpers import assert_cli_error


def test_writes_cases_with_recorded_seeds(tmp_path, capsys):
    out = tmp_path / "cases"
    assert main(["phantom", str(out), "--count", "2", "--seed", "5", "--preset", "tiny"]) == 0
    stdout = capsys.readouterr().out
    assert "wrote 2 case(s)" in stdout and "MBq" in stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == ["case_0000.h5", "case_0001.h5"]
    for i, name in enumerate(files):
        validate_case(out / name, require=("density", "activity", "labels"))
        params = read_phantom_params(out / name)
        assert params["seed"] == 5 + i and params["preset"] == "tiny"
    # a second run keeps the matching files, a different seed is refused
    before = read_dataset(out / "case_0000.h5", "density")
    assert main(["phantom", str(out), "--count", "2", "--seed", "5", "--preset", "tiny"]) == 0
    assert "kept 2 existing" in capsys.readouterr().out
    np.testing.assert_array_equal(read_dataset(out / "case_0000.h5", "density"), before)
    assert main(["phantom", str(out), "--count", "1", "--seed", "9", "--preset", "tiny"]) == 2
    assert_cli_error(capsys.readouterr().err, "case_0000.h5", "--overwrite")
    assert main(["phantom", str(out), "--seed", "9", "--preset", "tiny", "--overwrite"]) == 0
    assert read_phantom_params(out / "case_0000.h5")["seed"] == 9


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--count", "0"], "--count"),
        (["--count", "-3"], "--count"),
        (["--preset", "huge"], "huge"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, args, needle):
    out = tmp_path / "cases"
    assert main(["phantom", str(out), *args]) == 2
    assert_cli_error(capsys.readouterr().err, needle)
    assert not out.exists() or not any(out.iterdir())


def test_from_ct_needs_both(tmp_path, capsys):
    ct = tmp_path / "ct.nii.gz"
    write_image(ct, np.zeros((4, 8, 8), np.float32), Geometry((4.0, 4.0, 4.0)))
    assert main(["phantom", str(tmp_path / "out"), "--from-ct", str(ct)]) == 2
    assert_cli_error(capsys.readouterr().err, "--from-activity")
    assert not (tmp_path / "out").exists()


def test_from_ct_and_activity(tmp_path, capsys):
    geo = Geometry((4.0, 4.0, 4.0))
    hu = np.full((6, 10, 10), -1000.0, np.float32)
    hu[:, 2:8, 2:8] = 40.0
    conc = np.zeros_like(hu)
    conc[:, 4:6, 4:6] = 1e5  # Bq/mL
    write_image(tmp_path / "ct.nii.gz", hu, geo)
    write_image(tmp_path / "pet.nii.gz", conc, geo)
    out = tmp_path / "out"
    args = ["phantom", str(out), "--from-ct", str(tmp_path / "ct.nii.gz"),
            "--from-activity", str(tmp_path / "pet.nii.gz")]
    assert main(args) == 0
    assert "case_0000.h5" in capsys.readouterr().out
    act = read_dataset(out / "case_0000.h5", "activity")
    assert act.sum() == pytest.approx(conc.sum() * 1e-6 * 0.064, rel=1e-5)
    assert main([*args, "--count", "2"]) == 2
    assert_cli_error(capsys.readouterr().err, "--count")
