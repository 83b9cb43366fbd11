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


# --------------------------------------------------------------------------------------
# single time point, model selection, recovery correction, uncertainty budget
# --------------------------------------------------------------------------------------


def test_stp_hanscheid_and_madsen_doses(tmp_path, patient):
    """One scan at 96 h: Hänscheid's dose is the dose rate (Gy/s) × 3600 × 2t/ln 2 in every
    voxel; Madsen's lesion voxels (population tumour T_eff, or --stp-teff) get e^{kt}/k,
    the other voxels (no population T_eff: 'Liver' matches liver) their own factor."""
    from mcdose.dosimetry import stp

    rs = write_rtstruct(tmp_path / "rs.dcm", patient.frame_uid)
    t = 96.0
    rate = _run(patient, tmp_path / "rate", labels=rs)
    han = _run(patient, tmp_path / "h", labels=rs, timepoints=[TimePoint(patient.spect, t)],
               stp="hanscheid", report_dir=tmp_path / "h" / "report")
    assert han.unit == "Gy" and "Hanscheid" in han.quantity
    np.testing.assert_allclose(han.dose, rate.dose * 3600 * 2 * t / math.log(2), rtol=1e-5)
    mad = _run(patient, tmp_path / "m", labels=rs, timepoints=[TimePoint(patient.spect, t)],
               stp="madsen", stp_teff=["tumour=120"])
    rows = {r["name"]: r for r in mad.organs}
    lesion_rate = {r["name"]: r for r in rate.organs}["Lesion"]["mean_Gy_s"]
    # the lesion's painted voxels: its own ROI (smallest ROI wins), T_eff 120 h
    assert rows["Lesion"]["stp_t_eff_h"] == 120.0
    assert rows["Lesion"]["mean_Gy"] == pytest.approx(
        lesion_rate * 3600 * stp.madsen_factor_h(t, 120.0), rel=1e-5)
    assert rows["Liver"]["stp_t_eff_h"] == stp.POPULATION_TEFF_H["liver"]
    assert mad.provenance["stp"]["method"] == "madsen"
    html = han.outputs["report_html"].read_text()
    assert "Hänscheid et al." in html and "6.2 %" in html
    with pytest.raises(InputError) as exc:
        _run(patient, tmp_path / "x", stp="hanscheid")
    assert_one_line(exc, "--stp", "--timepoint")


def _five_time_points(tmp_path, t_eff=50.0, t_up=None):
    hours = [4.0, 24.0, 48.0, 96.0, 168.0]
    ln2 = math.log(2)

    def k(h):
        return math.exp(-ln2 / t_eff * h) - (math.exp(-ln2 / t_up * h) if t_up else 0.0)

    first = None
    tps = []
    for i, h in enumerate(hours):
        f = k(h) / k(hours[0])
        p = write_patient(tmp_path / f"p{i}", background=BACKGROUND_BQ_ML * f,
                          lesion=2.0e6 * f, frame_uid=None if first is None
                          else first.frame_uid)
        first = first or p
        tps.append(TimePoint(p.spect, h))
    return first, tps


def test_auto_model_and_uncertainty_budget(tmp_path):
    """Five time points of uptake (3 h) and washout (40 h): every region's organ fit picks
    bi by AICc (mono cannot rise), with its weight; the budget's total is the quadrature
    sum of its terms, the calibration term is the given one."""
    first, tps = _five_time_points(tmp_path, t_eff=40.0, t_up=3.0)
    rs = write_rtstruct(tmp_path / "rs.dcm", first.frame_uid)
    res = _run(first, tmp_path / "out", labels=rs, timepoints=tps, integration="auto",
               fit_level="organ", calibration_uncertainty=0.05,
               report_dir=tmp_path / "out" / "report")
    for row in res.organs:
        assert row["model"] == "bi" and row["aicc_weight"] > 0.9, row["name"]
        terms = [row[f"u_{t}_percent"] for t in ("calibration", "volume", "fit", "recovery",
                                                  "mc")]
        assert terms[0] == pytest.approx(5.0) and terms[3] is None and terms[4] is None
        assert row["u_total_percent"] == pytest.approx(
            math.sqrt(sum(v * v for v in terms if v is not None)))
        assert row["u_total_Gy"] == pytest.approx(row["u_total_percent"] / 100
                                                  * row["mean_Gy"])
    # TIA of the body: bi closed form, with rounding of the stored SPECT values (0.5 %)
    le, lu = math.log(2) / 40.0, math.log(2) / 3.0
    patient_row = res.organs[-1]
    a4 = patient_row["activity_MBq_4h"] / (math.exp(-le * 4) - math.exp(-lu * 4))
    assert patient_row["tia_MBq_h"] == pytest.approx(a4 * (1 / le - 1 / lu), rel=5e-3)
    doc = json.loads(res.outputs["organs_json"].read_text())
    assert doc["unit_convention"].startswith("absorbed-dose rate in Gy/s")
    assert doc["time_activity"]["fits"]["Lesion"]["candidates"]["bi"]["weight"] > 0.9
    html = res.outputs["report_html"].read_text()
    assert "combined standard uncertainty" in html and "AICc weight" in html


def test_recovery_correction_of_lesions(tmp_path, patient):
    """The lesion's mean activity and dose are divided by RC(its volume); the liver is not
    corrected; RC's uncertainty is a budget term."""
    from mcdose.dosimetry.recovery import load_recovery_curve

    rs = write_rtstruct(tmp_path / "rs.dcm", patient.frame_uid)
    res = _run(patient, tmp_path / "out", labels=rs, recovery_correction=True)
    rows = {r["name"]: r for r in res.organs}
    lesion = rows["Lesion"]
    rc = load_recovery_curve()(lesion["volume_ml"])
    assert lesion["recovery_coefficient"] == pytest.approx(rc)
    assert lesion["mean_Gy_s_rc_corrected"] == pytest.approx(lesion["mean_Gy_s"] / rc)
    assert lesion["activity_MBq_rc_corrected"] == pytest.approx(lesion["activity_MBq"] / rc)
    assert lesion["u_recovery_percent"] > 0
    assert "recovery_coefficient" not in rows["Liver"]
    with pytest.raises(InputError) as exc:
        _run(patient, tmp_path / "x", recovery_correction=True)
    assert_one_line(exc, "--recovery-correction", "--labels")


def test_mc_statistics_term(tmp_path, patient):
    """--method mc: the MC term of a region is sqrt(Σ(σ_i D_i)²)/Σ D_i of its voxels."""
    from mcdose.dosimetry.uncertainty import mc_relative_uncertainty

    res = _run(patient, tmp_path / "out", method="mc", histories=20_000, seed=2)
    unc_img, _ = read_image(res.outputs["uncertainty"])
    body = res.dose > 0
    row = res.organs[-1]
    assert row["u_mc_percent"] == pytest.approx(
        100 * mc_relative_uncertainty(res.dose, unc_img, body), rel=1e-4)
    assert 0 < row["u_mc_percent"] < 5
