"""``mcdose dose --method lvdk`` end to end on a tiny 4 mm NIfTI SPECT/CT (shipped model)."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from mcdose.io.case import Geometry
from mcdose.io.images import read_image, write_image


def test_dose_method_lvdk(tmp_path, monkeypatch):
    from mcdose_cli.main import cli

    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(tmp_path / "cache"))
    g = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0))
    ct = np.full((8, 10, 12), 40.0, np.float32)
    ct[:, :, 8:] = -800.0  # lung
    spect = np.zeros_like(ct)
    spect[3:5, 4:6, 4:7] = 1e5  # Bq/ml
    write_image(tmp_path / "ct.nii.gz", ct, g)
    write_image(tmp_path / "spect.nii.gz", spect, g)
    out = tmp_path / "dose.nii.gz"
    res = CliRunner().invoke(cli, ["dose", "--spect", str(tmp_path / "spect.nii.gz"), "--ct",
                                   str(tmp_path / "ct.nii.gz"), "--method", "lvdk",
                                   "--kernel-histories", "1000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    dose, geom = read_image(out)
    assert dose.shape == ct.shape and np.all(np.isfinite(dose))
    hot = dose[3:5, 4:6, 4:7].mean()
    assert hot > 0 and hot > 10 * dose[:, :, 10:].mean()  # falls off into the lung


def test_dose_method_lvdk_refuses_another_voxel_size(tmp_path, monkeypatch):
    from mcdose_cli.main import main

    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(tmp_path / "cache"))
    g = Geometry((4.0, 4.0, 6.0), (0.0, 0.0, 0.0))
    write_image(tmp_path / "ct.nii.gz", np.full((4, 5, 6), 40.0, np.float32), g)
    write_image(tmp_path / "spect.nii.gz", np.ones((4, 5, 6), np.float32), g)
    code = main(["dose", "--spect", str(tmp_path / "spect.nii.gz"), "--ct",
                 str(tmp_path / "ct.nii.gz"), "--method", "lvdk", "--kernel-histories", "1000",
                 "--out", str(tmp_path / "d.nii.gz")])
    assert code == 2
    assert not (tmp_path / "d.nii.gz").exists()
