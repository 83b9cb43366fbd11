"""Tests of ``mcdose dose``: orientation through DICOM in and out, and every bad input.

Each bad input must give exit status 2, one stderr line ``mcdose: error: ...`` naming the
file or parameter, and leave the output folder empty.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from mcdose_cli.main import main

from mcdose.io.case import Geometry
from mcdose.io.images import write_image
from tests.helpers import assert_cli_error
from tests.mcdose.dosimetry.synthetic import (
    CT_GEOMETRY,
    CT_SHAPE,
    LESION_LPS,
    SPECT_GEOMETRY,
    SPECT_SHAPE,
    activity_bq_ml,
    ct_hu,
    label_array,
    write_patient,
)

KERNEL_HISTORIES = "20000"


@pytest.fixture(scope="module")
def _cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mcdose-cache")


@pytest.fixture(autouse=True)
def _kernel_cache(_cache_dir, monkeypatch):
    """VDK kernels go to a module folder, not the user's cache."""
    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(_cache_dir))


def _rtdose_max_position(path):
    """LPS position of the RT Dose maximum, from the DICOM attributes alone."""
    ds = pydicom.dcmread(path)
    dose = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    f, r, c = np.unravel_index(int(np.argmax(dose)), dose.shape)
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    dr, dc = (float(v) for v in ds.PixelSpacing)
    offset = float(ds.GridFrameOffsetVector[f])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    return ipp + offset * np.cross(row, col) + c * dc * row + r * dr * col


@pytest.mark.parametrize("swapped,grid", [(False, "spect"), (True, "spect"), (False, "ct")],
                         ids=["axial", "swapped-axes", "ct-grid"])
def test_lesion_lands_at_its_patient_coordinate(tmp_path, capsys, swapped, grid):
    """A hot voxel centred at a known LPS point in the SPECT: the dose maximum is there, in
    the NIfTI (SimpleITK physical coordinates) and in the RT Dose (its own attributes)."""
    patient = write_patient(tmp_path / "patient", swapped=swapped)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["dose", "--spect", str(patient.spect), "--ct", str(patient.ct),
                 "--method", "vdk", "--grid", grid, "--kernel-histories", KERNEL_HISTORIES,
                 "--out", str(out / "dose.nii.gz")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Gy/s" in captured.out
    image = sitk.ReadImage(str(out / "dose.nii.gz"))
    # the unit convention is in the header (NIfTI descrip) and in the RT Dose comment
    assert image.GetMetaData("descrip").endswith("Gy/s")
    assert "Gy/s" in str(pydicom.dcmread(out / "dose_rtdose.dcm").DoseComment)
    arr = sitk.GetArrayFromImage(image)
    k, j, i = np.unravel_index(int(np.argmax(arr)), arr.shape)
    nifti_max = np.array(image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
    rt_max = _rtdose_max_position(out / "dose_rtdose.dcm")
    voxel = np.array(image.GetSpacing())
    # the SPECT voxel centre on the SPECT grid; the nearest CT voxel on the CT grid
    for found in (nifti_max, rt_max):
        err = np.abs(found - np.asarray(LESION_LPS))
        assert np.all(err <= voxel / 2 + 1e-3), (found, LESION_LPS)
    np.testing.assert_allclose(nifti_max, rt_max, atol=1e-3)
    ds = pydicom.dcmread(out / "dose_rtdose.dcm")
    assert ds.FrameOfReferenceUID == patient.frame_uid


def test_mc_with_report_and_labels(tmp_path, capsys):
    patient = write_patient(tmp_path / "patient")
    labels = write_image(tmp_path / "labels.nii.gz", label_array(), CT_GEOMETRY)
    names = tmp_path / "names.csv"
    names.write_text("1,liver\n2,lesion_1_liver\n3,lung_left\n")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["dose", "--spect", str(patient.spect), "--ct", str(patient.ct),
                 "--method", "mc", "--histories", "20000", "--labels", str(labels),
                 "--label-names", str(names), "--dvh-thresholds", "0.001,0.01",
                 "--report", str(out / "report"), "--out", str(out / "d.nii.gz")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "lesion_1_liver" in captured.out and "report_html" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "d.json", "d.nii.gz", "d_rtdose.dcm", "d_uncertainty.nii.gz", "report"]


# --------------------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written
# --------------------------------------------------------------------------------------


def _tiny_model(path, voxel_mm):
    pytest.importorskip("torch")
    from residualnet.model import ModelConfig, build_model
    from residualnet.modelfile import save_model
    from residualnet.normalization import Normalization

    config = ModelConfig(pack_size=5, stem_channels=(4, 4), stem_kernels=((3, 3, 3), (3, 3, 3)),
                         unet_levels=2, unet_width=4)
    return save_model(path, build_model(config, seed=0), Normalization(1.0, 1.0),
                      voxel_mm=voxel_mm, nuclide="Lu-177")


def _case(name, tmp_path):
    """(extra args replacing/adding to the defaults, words the error must contain)."""
    p = write_patient(tmp_path / "patient")
    args = {"--spect": str(p.spect), "--ct": str(p.ct), "--method": "vdk"}
    extra: list[str] = []
    if name == "no-overlap":
        from tests.helpers import write_ct_series

        far = Geometry(CT_GEOMETRY.spacing_mm, (400.0, 12.7, -250.5))
        folder, _ = write_ct_series(tmp_path / "far_ct", ct_hu(), far, frame_uid=p.frame_uid)
        args["--ct"] = str(folder)
        needles = ["do not overlap", str(p.spect)]
    elif name == "frames-differ":
        q = write_patient(tmp_path / "other", spect_frame_uid="1.2.826.0.1.99")
        args["--spect"] = str(q.spect)
        args["--ct"] = str(q.ct)
        needles = ["different DICOM frames of reference", str(q.spect)]
    elif name == "missing-spacing":
        ds = pydicom.dcmread(p.spect)
        del ds.PixelSpacing
        ds.save_as(p.spect)
        needles = ["PixelSpacing", str(p.spect)]
    elif name == "non-finite":
        values = activity_bq_ml(SPECT_GEOMETRY, SPECT_SHAPE).astype(np.float32)
        values[3, 3, 3] = np.nan
        path = write_image(tmp_path / "nan.nii.gz", values, SPECT_GEOMETRY)
        args["--spect"] = str(path)
        needles = ["non-finite", str(path)]
    elif name == "negative":
        values = activity_bq_ml(SPECT_GEOMETRY, SPECT_SHAPE).astype(np.float32)
        values[3, 3, 3] = -100.0
        path = write_image(tmp_path / "neg.nii.gz", values, SPECT_GEOMETRY)
        args["--spect"] = str(path)
        needles = ["negative activity", str(path)]
    elif name == "hu-range":
        hu = ct_hu().astype(np.float32) + 30000.0  # not HU
        path = write_image(tmp_path / "ct.nii.gz", hu, CT_GEOMETRY)
        args["--ct"] = str(path)
        needles = ["far outside the Hounsfield range", str(path)]
    elif name == "unknown-nuclide":
        extra += ["--nuclide", "Lu-999"]
        needles = ["unknown nuclide", "Lu-999"]
    elif name == "empty-labels":
        path = write_image(tmp_path / "l.nii.gz", np.zeros(CT_SHAPE, np.int16), CT_GEOMETRY)
        extra += ["--labels", str(path)]
        needles = ["empty", str(path)]
    elif name == "mismatched-labels":
        g = Geometry(CT_GEOMETRY.spacing_mm, (-41.3, 12.7, -200.5))
        path = write_image(tmp_path / "l.nii.gz", label_array(), g)
        extra += ["--labels", str(path)]
        needles = ["matches neither", str(path)]
    elif name == "model-voxel-size":
        model = _tiny_model(tmp_path / "m.pt", (4.7952, 4.7952, 4.7952))
        args["--method"] = "cnn"
        extra += ["--model", str(model)]
        needles = ["model trained for voxels", str(model)]
    elif name == "timepoints-out-of-order":
        q = write_patient(tmp_path / "later", frame_uid=p.frame_uid)
        del args["--spect"]
        extra += ["--timepoint", f"{p.spect}:48", "--timepoint", f"{q.spect}:24"]
        needles = ["out of order", "spect.dcm"]
    elif name == "timepoint-format":
        del args["--spect"]
        extra += ["--timepoint", str(p.spect)]
        needles = ["--timepoint", "SPECT:HOURS"]
    elif name == "timepoint-ct-hours":
        del args["--spect"]
        extra += ["--timepoint", f"{p.spect}:4", "--timepoint", f"{p.spect}:24",
                  "--timepoint-ct", f"48:{p.ct}"]
        needles = ["--timepoint-ct", "48"]
    elif name == "cnn-shipped-other-nuclide":
        pytest.importorskip("torch")
        from residualnet.shipped import shipped_model

        # a NIfTI SPECT (no DICOM nuclide to contradict --nuclide); no --model: the
        # shipped model, trained for Lu-177
        path = write_image(tmp_path / "spect.nii.gz",
                           activity_bq_ml(SPECT_GEOMETRY, SPECT_SHAPE).astype(np.float32),
                           SPECT_GEOMETRY)
        args["--spect"] = str(path)
        args["--method"] = "cnn"
        extra += ["--nuclide", "Y-90"]
        needles = ["model trained for Lu-177", "Y-90", str(shipped_model().path)]
    elif name == "spect-and-timepoint":
        extra += ["--timepoint", f"{p.spect}:24"]
        needles = ["--spect", "--timepoint"]
    elif name == "counts-contradict-header":
        extra += ["--spect-units", "counts", "--calibration-cps-per-mbq", "10",
                  "--frame-duration-s", "600"]
        needles = ["BQML", "drop --spect-units counts", str(p.spect)]
    elif name == "counts-without-calibration":
        extra += ["--spect-units", "counts"]
        needles = ["--calibration-cps-per-mbq"]
    else:  # pragma: no cover
        raise AssertionError(name)
    argv = ["dose"]
    for key, value in args.items():
        argv += [key, value]
    return argv + extra + ["--kernel-histories", KERNEL_HISTORIES], needles


BAD = ["no-overlap", "frames-differ", "missing-spacing", "non-finite", "negative", "hu-range",
       "unknown-nuclide", "empty-labels", "mismatched-labels", "model-voxel-size",
       "timepoints-out-of-order", "timepoint-format", "timepoint-ct-hours",
       "cnn-shipped-other-nuclide", "spect-and-timepoint",
       "counts-contradict-header", "counts-without-calibration"]


@pytest.mark.parametrize("name", BAD)
def test_bad_input(tmp_path, capsys, name):
    argv, needles = _case(name, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    code = main(argv + ["--out", str(out / "dose.nii.gz"), "--report", str(out / "report")])
    err = capsys.readouterr().err
    assert code == 2
    assert_cli_error(err, *needles)
    assert list(out.iterdir()) == []


def test_help():
    assert main(["dose", "--help"]) == 0


def test_stp_with_recovery_and_budget(tmp_path, capsys):
    """--stp madsen on one --timepoint, recovery correction, calibration uncertainty: the
    summary shows mean ± combined uncertainty in Gy and the lesion's RC."""
    patient = write_patient(tmp_path / "patient")
    labels = write_image(tmp_path / "labels.nii.gz", label_array(), CT_GEOMETRY)
    names = tmp_path / "names.csv"
    names.write_text("1,liver\n2,lesion_1_liver\n3,lung_left\n")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["dose", "--timepoint", f"{patient.spect}:96", "--ct", str(patient.ct),
                 "--method", "vdk", "--kernel-histories", KERNEL_HISTORIES, "--labels",
                 str(labels), "--label-names", str(names), "--stp", "madsen",
                 "--stp-teff", "kidney=45", "--recovery-correction",
                 "--calibration-uncertainty", "0.05", "--out", str(out / "d.nii.gz")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "(Gy) by vdk" in captured.out and "±" in captured.out and "RC 0." in captured.out
    image = sitk.ReadImage(str(out / "d.nii.gz"))
    assert image.GetMetaData("descrip").endswith(" Gy")


@pytest.mark.parametrize("extra,needles", [
    (["--stp", "hanscheid"], ["--stp", "--timepoint"]),
    (["--stp-teff", "kidney=50"], ["--stp-teff", "madsen"]),
    (["--calibration-uncertainty", "5"], ["--calibration-uncertainty"]),
    (["--recovery-correction"], ["--recovery-correction", "--labels"]),
])
def test_bad_clinical_options(tmp_path, capsys, extra, needles):
    patient = write_patient(tmp_path / "patient")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["dose", "--spect", str(patient.spect), "--ct", str(patient.ct), "--method",
                 "vdk", "--out", str(out / "d.nii.gz")] + extra)
    assert code == 2
    assert_cli_error(capsys.readouterr().err, *needles)
    assert list(out.iterdir()) == []


def test_cnn_without_model_runs_the_shipped_model_resampled_and_says_so(tmp_path, capsys):
    """The synthetic patient's SPECT grid has 4×4×6 mm voxels; the shipped model is for 4 mm:
    the dose comes back on the SPECT grid, and the output and the report's provenance state
    the resampling."""
    pytest.importorskip("torch")
    import json

    from residualnet.shipped import shipped_model

    p = write_patient(tmp_path / "patient")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["dose", "--spect", str(p.spect), "--ct", str(p.ct), "--method", "cnn",
                 "--kernel-histories", KERNEL_HISTORIES, "--out", str(out / "d.nii.gz"),
                 "--report", str(out / "report"), "--device", "cpu"])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, captured.err
    assert "resampled" in printed and "4×4×6 mm" in printed and "4×4×4 mm" in printed
    image = sitk.ReadImage(str(out / "d.nii.gz"))
    assert image.GetSpacing() == pytest.approx(SPECT_GEOMETRY.spacing_mm)
    assert image.GetSize()[::-1] == SPECT_SHAPE
    dose = sitk.GetArrayFromImage(image)
    assert np.isfinite(dose).all() and dose.max() > 0
    sidecar = json.loads((out / "d.json").read_text())
    engine = sidecar.get("engine") or sidecar.get("provenance", {}).get("engine")
    assert engine["model"] == str(shipped_model().path)
    assert engine["resampling"]["model_grid_voxel_mm"] == [4.0, 4.0, 4.0]
    assert (out / "report" / "report.html").exists()
