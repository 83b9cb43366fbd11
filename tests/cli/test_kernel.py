"""Tests for ``mcdose kernel`` (parsing and composition; the physics is in tests/mcdose/vdk)."""

from __future__ import annotations

import numpy as np
import pytest
from mcdose_cli.main import main

from mcdose.vdk import read_kernel
from tests.helpers import assert_cli_error


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MCDOSE_NO_PROGRESS", "1")


def test_help_lists_the_options(capsys):
    assert main(["kernel", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--nuclide", "--voxel-mm", "--size", "--material", "--histories", "--out",
                   "--device", "--emissions", "--density"):  # fmt: skip
        assert option in out


def test_writes_an_anisotropic_kernel_and_reports_the_bookkeeping(tmp_path, capsys):
    out = tmp_path / "k.h5"
    args = ["kernel", "--nuclide", "lu177", "--voxel-mm", "2", "2", "3", "--size", "5",
            "--material", "soft_tissue", "--histories", "5e2", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "5×5×5 voxels of 2×2×3 mm" in text and "imbalance" in text and "escaped" in text
    k = read_kernel(out)
    assert k.voxel_mm == (2.0, 2.0, 3.0) and k.shape == (5, 5, 5) and k.histories == 500
    assert k.density_g_cm3 == 1.04 and k.kernel_photon is not None
    assert k.attrs["photon_histories"] == 5000
    # a second run reads the cache (and refuses to overwrite without --overwrite)
    assert main(args) == 2
    assert "--overwrite" in assert_cli_error(capsys.readouterr().err)
    assert main([*args, "--overwrite"]) == 0
    assert "from the kernel cache" in capsys.readouterr().out
    np.testing.assert_array_equal(read_kernel(out).kernel, k.kernel)


def test_comma_separated_voxel_and_per_axis_size(tmp_path, capsys):
    out = tmp_path / "k.h5"
    assert main(["kernel", "--nuclide", "Lu-177", "--voxel-mm", "0.98,0.98,3", "--size",
                 "7,7,3", "--emissions", "electrons", "--histories", "200", "--device", "cpu",
                 "--out", str(out)]) == 0  # fmt: skip
    k = read_kernel(out)
    assert k.shape == (3, 7, 7) and k.emissions == "electrons"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "8"], "odd"),
        (["--voxel-mm", "2", "3"], "1 or 3 numbers"),
        (["--voxel-mm", "abc"], "--voxel-mm"),
        (["--material", "unobtainium"], "unknown material"),
        (["--nuclide", "Lu-999"], "Lu-999"),
        (["--emissions", "alphas"], "--emissions"),
        (["--histories", "12.5"], "whole number"),
        (["--histories", "5"], "at least 10"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_file(tmp_path, capsys, args, needle):
    out = tmp_path / "k.h5"
    base = {"--nuclide": "Lu-177", "--voxel-mm": "4", "--size": "3", "--histories": "100",
            "--out": str(out), "--device": "cpu"}  # fmt: skip
    argv = ["kernel"]
    given = {args[i]: i for i in range(len(args)) if args[i].startswith("--")}
    for key, value in base.items():
        if key not in given:
            argv += [key, value]
    argv += args
    assert main(argv) == 2
    assert needle in assert_cli_error(capsys.readouterr().err)
    assert not out.exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_missing_output_folder(tmp_path, capsys):
    out = tmp_path / "missing" / "k.h5"
    assert main(["kernel", "--nuclide", "Lu-177", "--voxel-mm", "4", "--size", "3",
                 "--histories", "100", "--out", str(out)]) == 2  # fmt: skip
    assert "does not exist" in assert_cli_error(capsys.readouterr().err)
