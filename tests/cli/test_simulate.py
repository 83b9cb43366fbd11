"""Tests for ``mcdose simulate``."""

import numpy as np
import pytest
from mcdose_cli.main import main

from mcdose.io.case import Geometry, read_case_info, read_dataset_attrs
from mcdose.io.images import read_image, write_image
from tests.helpers import assert_cli_error, make_case


def test_simulate_case_writes_dose_and_reports(tmp_path, capsys):
    path = make_case(tmp_path)
    assert main(["simulate", str(path), "--histories", "2000", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "decays/s" in out and "imbalance" in out
    assert "dose/mc" in read_case_info(path).datasets
    assert read_dataset_attrs(path, "dose/mc")["histories"] == 2000
    # rerun: skipped
    assert main(["simulate", str(path), "--histories", "2000", "--device", "cpu"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_simulate_images_writes_dose_and_uncertainty(tmp_path, capsys):
    geometry = Geometry((4.0, 4.0, 4.0), origin_mm=(-10.0, 5.0, 2.0))
    density = np.full((6, 7, 8), 1.0, np.float32)
    activity = np.zeros_like(density)
    activity[2:4, 2:5, 3:6] = 1000.0  # Bq/ml
    write_image(tmp_path / "rho.nii.gz", density, geometry)
    write_image(tmp_path / "act.nrrd", activity, geometry)
    code = main([
        "simulate", "--density", str(tmp_path / "rho.nii.gz"),
        "--activity", str(tmp_path / "act.nrrd"), "--activity-units", "Bq/ml",
        "--out", str(tmp_path / "dose.nii.gz"), "--histories", "2000", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    dose, g = read_image(tmp_path / "dose.nii.gz")
    unc, _ = read_image(tmp_path / "dose_uncertainty.nii.gz")
    assert g.allclose(geometry) and dose.shape == density.shape
    assert dose[3, 3, 4] > 0 and np.all(unc >= 0)
    # 1000 Bq/ml * 0.064 ml * 18 voxels -> total activity 1.152 MBq: dose rate is finite, small
    assert 0 < dose.max() < 1e-5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate"], "no CASE files"),
        (["simulate", "missing.h5"], "not found"),
        (["simulate", "--density", "d.nii.gz"], "needs --activity, --out"),
        (["simulate", "x.h5", "--out", "o.nii.gz"], "not both"),
        (["simulate", "--histories", "1", "x.h5"], "histories"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert_cli_error(capsys.readouterr().err, message)


def test_mismatched_image_grids_fail_without_output(tmp_path, capsys):
    write_image(tmp_path / "rho.nii.gz", np.ones((4, 4, 4), np.float32), Geometry((4.0,) * 3))
    write_image(tmp_path / "act.nii.gz", np.ones((4, 4, 5), np.float32), Geometry((4.0,) * 3))
    code = main(["simulate", "--density", str(tmp_path / "rho.nii.gz"), "--activity",
                 str(tmp_path / "act.nii.gz"), "--out", str(tmp_path / "dose.nii.gz")])  # fmt: skip
    assert code == 2
    assert "does not match the density grid" in capsys.readouterr().err
    assert not (tmp_path / "dose.nii.gz").exists()
    assert not (tmp_path / "dose_uncertainty.nii.gz").exists()
