"""Tests of mcdose.dosimetry.pipeline.run_dosimetry on synthetic DICOM patients."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pydicom
import pytest

from mcdose.dosimetry import run_dosimetry
from mcdose.dosimetry.pipeline import TimePoint
from mcdose.errors import InputError
from mcdose.io.images import read_image, write_image
from tests.helpers import assert_one_line
from tests.mcdose.dosimetry.synthetic import (
    BACKGROUND_BQ_ML,
    CT_GEOMETRY,
    KERNEL_HISTORIES,
    LESION_INDEX,
    SPECT_GEOMETRY,
    SPECT_SHAPE,
    activity_bq_ml,
    ct_hu,
    write_patient,
    write_rtstruct,
)

#: Lu-177 half-life (ICRP-107: 6.647 d), h
T_LU = 6.647 * 24
MEV_J = 1.602176634e-13


def _run(patient, out_dir, **kwargs):
    out_dir.mkdir(exist_ok=True)
    kwargs.setdefault("method", "vdk")
    kwargs.setdefault("kernel_histories", KERNEL_HISTORIES)
    if "timepoints" not in kwargs:
        kwargs.setdefault("spect", patient.spect)
    return run_dosimetry(ct=patient.ct, out=out_dir / "dose.nii.gz", **kwargs)


def test_single_time_point_outputs(tmp_path, patient):
    rs = write_rtstruct(tmp_path / "rs.dcm", patient.frame_uid)
    res = _run(patient, tmp_path / "out", labels=rs, report_dir=tmp_path / "out" / "report",
               dvh_thresholds=(0.001 / 3600, 0.01 / 3600))
    assert res.unit == "Gy/s"
    names = [row["name"] for row in res.organs]
    assert names == ["Liver", "Lesion", "patient"]
    for key in ("dose", "rtdose", "sidecar", "report_html", "organs_csv", "organs_json",
                "dvh_png"):
        assert res.outputs[key].is_file(), key
    # the NIfTI holds the returned dose on the SPECT grid
    dose, g = read_image(res.outputs["dose"])
    np.testing.assert_array_equal(dose, res.dose)
    assert g.allclose(SPECT_GEOMETRY, atol_mm=1e-3)
    # units: background dose rate deep in soft tissue ≈ electrons' local deposition
    # (147.92 keV per decay, ICRP-107) plus a few percent of photons
    conc_mbq_ml = BACKGROUND_BQ_ML * 1e-6
    electrons_gy_s = conc_mbq_ml * 1e6 * 147.92e-3 * MEV_J / 1.04e-3
    assert 1.0 < res.dose[8, 16, 6] / electrons_gy_s < 1.12
    # organ table: CSV and JSON agree with the returned rows; lesion is the hottest
    rows = list(csv.DictReader(open(res.outputs["organs_csv"])))
    assert [r["name"] for r in rows] == names
    doc = json.loads(res.outputs["organs_json"].read_text())
    assert doc["unit"] == "Gy/s" and doc["organs"][1]["name"] == "Lesion"
    lesion, liver = res.organs[1], res.organs[0]
    assert lesion["max_Gy_s"] == pytest.approx(float(res.dose.max()))
    assert lesion["mean_Gy_s"] > liver["mean_Gy_s"] > 0
    assert liver["D98_Gy_s"] <= liver["D50_Gy_s"] <= liver["D2_Gy_s"] <= liver["max_Gy_s"]
    assert liver[f"V{0.001 / 3600:g}Gy_s_percent"] == pytest.approx(100.0)
    assert liver["mass_g"] == pytest.approx(liver["volume_ml"] * 1.0665, rel=0.02)
    html = res.outputs["report_html"].read_text()
    assert html.count("data:image/png;base64,") == 2 and "Lesion" in html
    # RT Dose joins the CT's study and frame of reference
    ds = pydicom.dcmread(res.outputs["rtdose"])
    ct0 = pydicom.dcmread(sorted(patient.ct.iterdir())[0], stop_before_pixels=True)
    assert ds.FrameOfReferenceUID == ct0.FrameOfReferenceUID == patient.frame_uid
    assert ds.StudyInstanceUID == ct0.StudyInstanceUID
    rt = ds.pixel_array * float(ds.DoseGridScaling)
    assert rt.max() == pytest.approx(float(res.dose.max()), rel=1e-6)
    side = json.loads(res.outputs["sidecar"].read_text())
    assert side["unit"] == "Gy/s" and side["provenance"]["method"] == "vdk"


def test_time_integration_is_linear_in_the_dose_rate(tmp_path):
    """Three aligned time points decaying with T_eff = 50 h everywhere: the dose (Gy) is the
    dose rate at the first scan (Gy/s) × 3600 s/h × e^{λ t1} / λ, for voxel and organ fits."""
    t_eff = 50.0
    lam = math.log(2) / t_eff
    hours = [4.0, 24.0, 72.0]
    first = write_patient(tmp_path / "p")
    tps = [TimePoint(first.spect, hours[0])]
    for i, h in enumerate(hours[1:], start=1):
        factor = math.exp(-lam * (h - hours[0]))
        p = write_patient(tmp_path / f"p{i}", background=BACKGROUND_BQ_ML * factor,
                          lesion=2.0e6 * factor, frame_uid=first.frame_uid)
        tps.append(TimePoint(p.spect, h))
    rate = _run(first, tmp_path / "rate")
    for level in ("voxel", "organ"):
        res = _run(first, tmp_path / level, timepoints=tps, fit_level=level,
                   integration="mono")
        assert res.unit == "Gy"
        expected = rate.dose * 3600.0 * math.exp(lam * hours[0]) / lam
        body = rate.dose > 0
        # stored values are rounded to integers × 50 Bq/ml: 0.2 % on the background
        np.testing.assert_allclose(res.dose[body], expected[body], rtol=5e-3)
    row = res.organs[-1]
    assert row["name"] == "patient"
    assert row["effective_half_life_h"] == pytest.approx(t_eff, rel=1e-2)


def test_later_time_point_registered_by_its_ct(tmp_path):
    """The second session's patient lies 8 mm to the left and 6 mm lower (its own frame of
    reference); registering its CT to the first brings the SPECT back."""
    shift = (8.0, 0.0, -6.0)
    hours = [24.0, 96.0]
    factor = 0.5
    first = write_patient(tmp_path / "p0")
    moved = write_patient(tmp_path / "p1", hu_shift_mm=shift, background=BACKGROUND_BQ_ML
                          * factor, lesion=2.0e6 * factor)
    aligned = write_patient(tmp_path / "p2", background=BACKGROUND_BQ_ML * factor,
                            lesion=2.0e6 * factor, frame_uid=first.frame_uid)
    ref = _run(first, tmp_path / "ref", integration="trapezoid",
               timepoints=[TimePoint(first.spect, hours[0]), TimePoint(aligned.spect, hours[1])])
    reg = _run(first, tmp_path / "reg", integration="trapezoid",
               timepoints=[TimePoint(first.spect, hours[0]),
                           TimePoint(moved.spect, hours[1], moved.ct)])
    info = reg.provenance["time_points"][1]["registration"]
    np.testing.assert_allclose(info["translation_mm"], shift, atol=1.0)
    assert reg.organs[-1]["mean_Gy"] == pytest.approx(ref.organs[-1]["mean_Gy"], rel=0.02)
    assert np.unravel_index(np.argmax(reg.dose), reg.dose.shape) == LESION_INDEX


def test_mc_method_and_nifti_counts_inputs(tmp_path):
    """NIfTI CT and a SPECT in counts: no RT Dose (the CT is not DICOM), MC uncertainty."""
    hu_path = write_image(tmp_path / "ct.nii.gz", ct_hu().astype(np.float32), CT_GEOMETRY)
    counts = activity_bq_ml(SPECT_GEOMETRY, SPECT_SHAPE) * 1e-6 * 0.096  # MBq per voxel
    counts *= 10.0 * 600.0  # × K (cps/MBq) × T (s)
    sp_path = write_image(tmp_path / "spect.nii.gz", counts.astype(np.float32), SPECT_GEOMETRY)
    out = tmp_path / "out"
    out.mkdir()
    res = run_dosimetry(ct=hu_path, spect=sp_path, out=out / "d.nii.gz", method="mc",
                        histories=20_000, seed=3, spect_units="counts",
                        calibration_cps_per_mbq=10.0, frame_duration_s=600.0)
    assert "rtdose" not in res.outputs and res.outputs["uncertainty"].is_file()
    assert sorted(p.name for p in out.iterdir()) == ["d.json", "d.nii.gz",
                                                     "d_uncertainty.nii.gz"]
    assert res.provenance["time_points"][0]["total_MBq_in_body"] == pytest.approx(
        counts.sum() / 6000.0, rel=1e-3)
    assert np.unravel_index(np.argmax(res.dose), res.dose.shape) == LESION_INDEX


def test_failure_leaves_no_output(tmp_path, patient, monkeypatch):
    from mcdose.dosimetry import report

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "render_html", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        _run(patient, out, report_dir=out / "report")
    assert list(out.iterdir()) == []


def test_existing_outputs_need_overwrite(tmp_path, patient):
    out = tmp_path / "out"
    _run(patient, out, report_dir=out / "report")
    before = (out / "dose.nii.gz").stat().st_mtime_ns
    with pytest.raises(InputError) as exc:
        _run(patient, out, report_dir=out / "report")
    assert_one_line(exc, "dose.nii.gz", "--overwrite")
    assert (out / "dose.nii.gz").stat().st_mtime_ns == before
    res = _run(patient, out, report_dir=out / "report", overwrite=True, grid="ct")
    assert res.dose.shape == (24, 40, 40)
    assert sorted(p.name for p in (out / "report").iterdir()) == [
        "dvh.png", "organs.csv", "organs.json", "report.html"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_single_timepoint_undoes_admin_decay_correction(tmp_path, patient):
    """One --timepoint is a dose-rate run; an image decay-corrected to administration
    (DecayCorrection ADMIN) scanned one half-life later gives half the dose rate."""
    admin = tmp_path / "admin.dcm"
    ds = pydicom.dcmread(patient.spect)
    ds.DecayCorrection = "ADMIN"
    ds.save_as(admin)
    plain = _run(patient, tmp_path / "plain")
    res = _run(patient, tmp_path / "admin", timepoints=[TimePoint(admin, T_LU)])
    assert res.unit == "Gy/s"
    np.testing.assert_allclose(res.dose, 0.5 * plain.dose, rtol=2e-3, atol=1e-12)
    with pytest.raises(InputError) as exc:
        _run(patient, tmp_path / "admin2", spect=admin)
    assert_one_line(exc, "ADMIN", "--timepoint")


def test_dicom_acquisition_times_must_agree_with_the_order(tmp_path):
    first = write_patient(tmp_path / "p0")
    later = write_patient(tmp_path / "p1", frame_uid=first.frame_uid)
    for path, time in ((first.spect, "120000"), (later.spect, "090000")):
        ds = pydicom.dcmread(path)
        ds.AcquisitionDate, ds.AcquisitionTime = "20240102", time
        ds.save_as(path)
    with pytest.raises(InputError) as exc:
        _run(first, tmp_path / "out",
             timepoints=[TimePoint(first.spect, 4.0), TimePoint(later.spect, 24.0)])
    assert_one_line(exc, "out of order", str(later.spect), "DICOM")
    assert not (tmp_path / "out" / "dose.nii.gz").exists()


def test_overwrite_drops_stale_siblings(tmp_path, patient):
    out = tmp_path / "out"
    _run(patient, out, method="mc", histories=2000)
    assert (out / "dose_uncertainty.nii.gz").is_file()
    _run(patient, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["dose.json", "dose.nii.gz",
                                                     "dose_rtdose.dcm"]
