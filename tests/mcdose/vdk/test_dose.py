"""VDK dose: density correction, tissue classes, case files."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from mcdose.errors import CaseFileError, InputError
from mcdose.io.case import read_dataset, read_dataset_attrs
from mcdose.vdk import (
    DENSITY_FLOOR_G_CM3,
    Kernel,
    classify_tissue,
    default_kernel_sizes,
    density_correction,
    tissue_class_dose,
    vdk_case,
    vdk_dose,
    write_kernel,
)
from tests.helpers import assert_one_line, make_case


def _kernel(values=None, voxel=(4.0, 4.0, 4.0), density=1.04, material="soft_tissue",
            emissions="all"):  # fmt: skip
    if values is None:
        values = np.zeros((3, 3, 3), np.float32)
        values[1, 1, 1] = 2e-9
        values[1, 1, 0] = values[1, 1, 2] = 1e-10
    return Kernel(kernel=np.asarray(values, np.float32), voxel_mm=voxel, nuclide="Lu-177",
                  material=material, density_g_cm3=density, histories=1,
                  emissions=emissions)  # fmt: skip


def test_density_correction_is_kernel_density_over_local_density_with_a_floor():
    dose = np.ones((1, 1, 5), np.float32)
    rho = np.array([[[1.04, 0.52, 2.08, 0.0012, 0.0]]], np.float32)
    out = density_correction(dose, rho, 1.04)
    np.testing.assert_allclose(out[0, 0], [1.0, 2.0, 0.5, 1.04 / 0.05, 1.04 / 0.05], rtol=1e-6)
    assert DENSITY_FLOOR_G_CM3 == 0.05
    # in place
    density_correction(dose, rho, 1.04, out=dose)
    np.testing.assert_allclose(dose, out)
    with pytest.raises(InputError, match="floor"):
        density_correction(dose, rho, 1.04, floor_g_cm3=0.0)


def test_point_source_gives_the_kernel_times_activity_and_density_scaling():
    k = _kernel()
    activity = np.zeros((5, 5, 5), np.float32)
    activity[2, 2, 2] = 3.0  # MBq
    density = np.full(activity.shape, 1.04, np.float32)
    dose = vdk_dose(activity, density, k, spacing_mm=(4, 4, 4), backend="scipy")
    expected = np.zeros(activity.shape)
    expected[1:4, 1:4, 1:4] = k.kernel * 3e6  # Gy per decay × decays per second
    # FFT rounding: ~1e-7 of the maximum everywhere
    np.testing.assert_allclose(dose, expected, rtol=1e-5, atol=1e-6 * expected.max())
    density[2, 2, 3] = 0.26
    dose2 = vdk_dose(activity, density, k, backend="scipy")
    assert dose2[2, 2, 3] == pytest.approx(4 * dose[2, 2, 3], rel=1e-5)
    raw = vdk_dose(activity, density, k, backend="scipy", correct_density=False)
    np.testing.assert_allclose(raw, dose, rtol=1e-6, atol=1e-12)


def test_kernel_sets_are_summed():
    beta = _kernel(emissions="electrons")
    wide = np.zeros((5, 5, 5), np.float32)
    wide[0, 2, 2] = 1e-11
    gamma = _kernel(wide, emissions="photons")
    activity = np.zeros((7, 7, 7), np.float32)
    activity[3, 3, 3] = 1.0
    rho = np.full(activity.shape, 1.04, np.float32)
    both = vdk_dose(activity, rho, [beta, gamma], backend="scipy")
    assert both[3, 3, 3] == pytest.approx(2e-9 * 1e6, rel=1e-5)
    assert both[1, 3, 3] == pytest.approx(1e-11 * 1e6, rel=1e-4)


def test_voxel_size_mismatch_is_a_clear_error():
    activity = np.ones((4, 4, 4), np.float32)
    with pytest.raises(InputError) as exc:
        vdk_dose(activity, activity, _kernel(voxel=(0.98, 0.98, 3.0)), spacing_mm=(4, 4, 4))
    assert_one_line(exc, "0.98×0.98×3 mm", "4×4×4 mm")


def test_bad_maps_are_rejected():
    k = _kernel()
    with pytest.raises(InputError, match="one shape"):
        vdk_dose(np.ones((4, 4, 4)), np.ones((4, 4, 5)), k)
    with pytest.raises(InputError, match="non-negative"):
        vdk_dose(-np.ones((4, 4, 4)), np.ones((4, 4, 4)), k)
    with pytest.raises(InputError, match="different densities"):
        vdk_dose(np.ones((4, 4, 4)), np.ones((4, 4, 4)), [k, _kernel(density=0.26)])


def test_classify_tissue():
    rho = np.array([0.0012, 0.3, 0.95, 1.04, 1.1, 1.5, 1.9], np.float32).reshape(1, 1, -1)
    classes, names = classify_tissue(rho)
    assert names == ("lung", "soft_tissue", "bone")
    assert [names[c] for c in classes.ravel()] == [
        "lung", "lung", "soft_tissue", "soft_tissue", "soft_tissue", "bone", "bone"]


def test_tissue_classes_take_each_voxels_own_class():
    activity = np.zeros((3, 3, 9), np.float32)
    activity[1, 1, 4] = 1.0
    rho = np.full(activity.shape, 1.04, np.float32)
    rho[..., :4] = 0.26
    rho[..., 5:] = 1.92
    flat = np.ones((3, 3, 3), np.float32)
    sets = {
        "lung": _kernel(flat * 1e-9, density=0.26, material="lung"),
        "soft_tissue": _kernel(flat * 2e-9),
        "bone": _kernel(flat * 3e-9, density=1.92, material="cortical_bone"),
    }
    dose = tissue_class_dose(activity, rho, sets, backend="scipy")
    row = dose[1, 1] / 1e6
    np.testing.assert_allclose(row[3:6], [1e-9, 2e-9, 3e-9], rtol=1e-5)
    assert row[0] == 0.0
    # with one kernel set for every class, tissue classes reduce to the single kernel
    same = {c: _kernel() for c in ("lung", "soft_tissue", "bone")}
    np.testing.assert_allclose(tissue_class_dose(activity, rho, same, backend="scipy"),
                               vdk_dose(activity, rho, _kernel(), backend="scipy"),
                               rtol=1e-6)  # fmt: skip
    with pytest.raises(InputError, match="no kernel for tissue class"):
        tissue_class_dose(activity, rho, {"soft_tissue": _kernel()})


def test_default_kernel_sizes_reproduce_the_paper_and_the_spect_grid():
    assert default_kernel_sizes((0.98, 0.98, 3.0)) == {
        "electrons": (9, 9, 9), "photons": (99, 99, 99)}
    assert default_kernel_sizes((4.7952,) * 3)["photons"] == (51, 51, 51)
    lung = default_kernel_sizes((0.98, 0.98, 3.0), material="lung")  # β range 7 mm in lung
    assert lung["electrons"] == (17, 17, 9)
    small = default_kernel_sizes((4, 4, 4), shape=(3, 20, 20))
    assert small["photons"] == (39, 39, 5) and small["electrons"] == (9, 9, 5)


# -- case files -------------------------------------------------------------------------

KW = {"histories": 300, "device": "cpu", "backend": "scipy"}


def test_vdk_case_writes_dose_then_skips_then_forces(tmp_path):
    path = make_case(tmp_path, spect=True)
    result = vdk_case(path, **KW)
    assert result is not None and result.dataset == "dose/vdk"
    dose = read_dataset(path, "dose/vdk")
    np.testing.assert_array_equal(dose, result.dose_rate_Gy_s)
    assert dose.max() > 0
    attrs = read_dataset_attrs(path, "dose/vdk")
    assert attrs["method"] == "vdk" and attrs["nuclide"] == "Lu-177"
    assert attrs["source"] == "spect" and attrs["units"] == "Gy/s"
    assert attrs["software_version"] and json.loads(attrs["provenance"])
    assert json.loads(attrs["params"])["kernels"] == "single"
    assert vdk_case(path, **KW) is None  # same parameters: skipped
    assert vdk_case(path, **KW, force=True) is not None
    again = vdk_case(path, source="activity", **KW)  # other parameters: recomputed
    assert again is not None and read_dataset_attrs(path, "dose/vdk")["source"] == "activity"


def test_vdk_case_tissue_classes(tmp_path):
    path = make_case(tmp_path)
    result = vdk_case(path, source="activity", kernels="tissue", output="dose/vdk_tissue", **KW)
    assert set(result.kernels) == {"lung", "soft_tissue", "bone"}
    assert read_dataset(path, "dose/vdk_tissue").shape == (6, 8, 10)


def test_vdk_case_with_kernel_files(tmp_path):
    path = make_case(tmp_path, spacing_mm=(4.0, 4.0, 4.0))
    kfile = write_kernel(tmp_path / "k.h5", _kernel())
    result = vdk_case(path, source="activity", kernel_files=[kfile], backend="scipy")
    activity = read_dataset(path, "activity")
    density = read_dataset(path, "density")
    np.testing.assert_allclose(result.dose_rate_Gy_s,
                               vdk_dose(activity, density, _kernel(), backend="scipy"),
                               rtol=1e-6)  # fmt: skip
    assert json.loads(read_dataset_attrs(path, "dose/vdk")["params"])["kernel_keys"][
        "soft_tissue"][0].startswith("file:")


def test_vdk_case_reruns_when_its_source_is_recomputed(tmp_path):
    # dose/vdk records which SPECT it was computed from (mcdose.io.case.source_fingerprint):
    # a new SPECT makes it stale without any forcing
    from mcdose.io.case import source_fingerprint, write_datasets

    path = make_case(tmp_path, spacing_mm=(4.0, 4.0, 4.0), spect=True)
    kw = {"kernel_files": [write_kernel(tmp_path / "k.h5", _kernel())], "backend": "scipy"}
    first = vdk_case(path, **kw)
    assert first is not None and vdk_case(path, **kw) is None
    params = json.loads(read_dataset_attrs(path, "dose/vdk")["params"])
    assert params["source_fingerprint"] == source_fingerprint(path, "spect")
    write_datasets(path, {"dose/cnn": np.ones((6, 8, 10))})  # another dataset: no matter
    assert vdk_case(path, **kw) is None
    spect = read_dataset(path, "spect")
    write_datasets(path, {"spect": 2 * spect}, {"spect": {"params": {"counts": 2e6}}})
    second = vdk_case(path, **kw)
    assert second is not None
    np.testing.assert_allclose(second.dose_rate_Gy_s, 2 * first.dose_rate_Gy_s, rtol=1e-5)
    assert vdk_case(path, **kw) is None
    # recomputed with the same parameters (a later provenance time): redone as well
    write_datasets(path, {"spect": spect}, {"spect": {
        "params": {"counts": 2e6}, "provenance": {"created_utc": "2100-01-01T00:00:00+00:00"}}})
    third = vdk_case(path, **kw)
    assert third is not None
    np.testing.assert_allclose(third.dose_rate_Gy_s, first.dose_rate_Gy_s, rtol=1e-6)


def test_vdk_case_voxel_mismatch_names_both_sizes_and_writes_nothing(tmp_path):
    path = make_case(tmp_path)  # 2 x 2.5 x 3 mm
    kfile = write_kernel(tmp_path / "k.h5", _kernel())
    before = path.read_bytes()
    with pytest.raises(InputError) as exc:
        vdk_case(path, source="activity", kernel_files=[kfile])
    assert_one_line(exc, str(kfile), "4×4×4 mm", "2×2.5×3 mm")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"source": "pet"}, InputError, "source"),
        ({"kernels": "many"}, InputError, "kernels"),
        ({"output": "vdk"}, InputError, "dose/"),
        ({"source": "spect"}, InputError, "no 'spect' dataset"),
    ],
)
def test_vdk_case_bad_parameters(tmp_path, kwargs, error, message):
    path = make_case(tmp_path)
    with pytest.raises(error, match=message):
        vdk_case(path, **{**KW, **kwargs})


def test_vdk_case_missing_file(tmp_path):
    with pytest.raises(CaseFileError, match="does not exist"):
        vdk_case(tmp_path / "nope.h5")


@pytest.mark.parametrize(
    "config",
    [{"backend": "scipy", "max_bytes": 1},
     {"backend": "scipy", "precision": "float64"},
     pytest.param({"backend": "torch", "device": "cpu"},
                  marks=pytest.mark.skipif(not importlib.util.find_spec("torch"),
                                           reason="torch not installed")),
     pytest.param({"backend": "torch", "device": "cpu", "max_bytes": 1},
                  marks=pytest.mark.skipif(not importlib.util.find_spec("torch"),
                                           reason="torch not installed")),
     pytest.param({"backend": "cupy"}, marks=pytest.mark.gpu),
     pytest.param({"backend": "cupy", "max_bytes": 1}, marks=pytest.mark.gpu),
     pytest.param({"backend": "torch", "device": "cuda"}, marks=pytest.mark.gpu)],
)  # fmt: skip
def test_density_correction_on_every_backend_and_with_chunks(config):
    # the correction runs on the convolution's device, slab by slab when chunked
    rng = np.random.default_rng(3)
    activity = rng.random((11, 9, 10)).astype(np.float32)
    density = rng.choice([0.0012, 0.26, 1.04, 1.9], size=activity.shape).astype(np.float32)
    k = _kernel(np.abs(rng.normal(size=(5, 3, 5))).astype(np.float32) * 1e-9)
    ref = vdk_dose(activity, density, k, backend="scipy")
    out = vdk_dose(activity, density, k, **config)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6 * ref.max())
    sets = {"lung": _kernel(k.kernel, density=0.26, material="lung"), "soft_tissue": k,
            "bone": _kernel(k.kernel * 2, density=1.92, material="cortical_bone")}  # fmt: skip
    ref_t = tissue_class_dose(activity, density, sets, backend="scipy")
    out_t = tissue_class_dose(activity, density, sets, **config)
    np.testing.assert_allclose(out_t, ref_t, rtol=1e-5, atol=1e-6 * ref_t.max())
