"""Tests for ``mcdose vdk`` (parsing and composition; the physics is in tests/mcdose/vdk)."""

from __future__ import annotations

import numpy as np
import pytest
from mcdose_cli.main import main

from mcdose.io.case import read_dataset, read_dataset_attrs
from mcdose.vdk import Kernel, write_kernel
from tests.helpers import assert_cli_error, make_case


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MCDOSE_NO_PROGRESS", "1")


def _kernel_file(path, voxel=(4.0, 4.0, 4.0)):
    k = np.zeros((3, 3, 3), np.float32)
    k[1, 1, 1] = 1e-9
    return write_kernel(path, Kernel(kernel=k, voxel_mm=voxel, nuclide="Lu-177",
                                     material="soft_tissue", density_g_cm3=1.04,
                                     histories=1))  # fmt: skip


def test_help_lists_the_options(capsys):
    assert main(["vdk", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--source", "--kernels", "--kernel", "--histories", "--backend", "--device",
                   "--force"):  # fmt: skip
        assert option in out


def test_two_cases_then_skipped(tmp_path, capsys):
    a = make_case(tmp_path, name="a.h5", spect=True)
    b = make_case(tmp_path, name="b.h5", spect=True, seed=1)
    args = ["vdk", str(a), str(b), "--histories", "200", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("wrote dose/vdk") == 2 and "scipy/cpu" in out
    assert read_dataset(a, "dose/vdk").max() > 0
    assert read_dataset_attrs(b, "dose/vdk")["source"] == "spect"
    assert main(args) == 0
    assert capsys.readouterr().out.count("up to date, skipped") == 2


def test_tissue_kernels_from_activity(tmp_path, capsys):
    case = make_case(tmp_path)
    assert main(["vdk", str(case), "--source", "activity", "--kernels", "tissue",
                 "--histories", "200", "--device", "cpu"]) == 0  # fmt: skip
    assert "tissue kernels" in capsys.readouterr().out
    assert read_dataset_attrs(case, "dose/vdk")["kernels"] == "tissue"


def test_kernel_file_of_the_right_voxel(tmp_path, capsys):
    case = make_case(tmp_path, spacing_mm=(4.0, 4.0, 4.0))
    kfile = _kernel_file(tmp_path / "k.h5")
    assert main(["vdk", str(case), "--source", "activity", "--kernel", str(kfile)]) == 0
    activity = read_dataset(case, "activity")
    dose = read_dataset(case, "dose/vdk")
    density = read_dataset(case, "density")
    # a point kernel: dose = A · 1e6 · 1e-9 · 1.04/max(ρ, 0.05)
    expected = activity * 1e-3 * 1.04 / np.maximum(density, 0.05)
    # FFT rounding (1e-7 of the maximum), amplified up to 20.8x in air voxels
    np.testing.assert_allclose(dose, expected, rtol=1e-5, atol=1e-5 * expected.max())


def test_kernel_voxel_mismatch_is_one_line_and_leaves_the_case(tmp_path, capsys):
    case = make_case(tmp_path)  # 2 × 2.5 × 3 mm
    kfile = _kernel_file(tmp_path / "k.h5")
    before = case.read_bytes()
    assert main(["vdk", str(case), "--source", "activity", "--kernel", str(kfile)]) == 2
    err = assert_cli_error(capsys.readouterr().err)
    assert "4×4×4 mm" in err and "2×2.5×3 mm" in err
    assert case.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--source", "pet"], "--source"),
        (["--kernels", "tissue", "--kernel", "k.h5"], "--kernel"),
        (["--backend", "fftw"], "--backend"),
        (["--source", "spect"], "no 'spect' dataset"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, extra, needle):
    case = make_case(tmp_path)
    assert main(["vdk", str(case), "--histories", "100", "--device", "cpu", *extra]) == 2
    assert needle in assert_cli_error(capsys.readouterr().err)


def test_missing_case(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert main(["vdk", str(missing)]) == 2
    assert str(missing) in assert_cli_error(capsys.readouterr().err)
