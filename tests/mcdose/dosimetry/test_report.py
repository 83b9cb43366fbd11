"""Tests of mcdose.dosimetry.report: organ table numbers, CSV/JSON, pictures, HTML."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mcdose.dosimetry import report as rep
from mcdose.dosimetry.labels import Region
from mcdose.io.case import Geometry

GEOMETRY = Geometry((2.0, 2.0, 2.5))  # 10 mm³ = 0.01 ml voxels


def _case():
    dose = np.arange(1000, dtype=np.float32).reshape(10, 10, 10) / 100.0  # 0 ... 9.99 Gy
    density = np.full(dose.shape, 1.05, np.float32)
    mask = np.zeros(dose.shape, bool)
    mask[:5] = True  # 500 voxels, doses 0 ... 4.99
    return dose, density, [Region(7, "liver", mask)], np.ones(dose.shape, bool)


def test_organ_table_numbers():
    dose, density, regions, body = _case()
    rows = rep.organ_table(dose, regions, density, GEOMETRY, unit="Gy", thresholds=(1.0, 4.5),
                           body=body, extra={7: {"tia_MBq_h": 3.0}})
    liver, patient = rows
    assert liver["name"] == "liver" and liver["label"] == 7 and patient["name"] == "patient"
    assert liver["voxels"] == 500
    assert liver["volume_ml"] == pytest.approx(5.0)
    assert liver["mass_g"] == pytest.approx(5.25, rel=1e-6)
    assert liver["mean_Gy"] == pytest.approx(2.495, rel=1e-6)
    assert liver["max_Gy"] == pytest.approx(4.99, rel=1e-6)
    # D_x: (100 - x)-th percentile of the 500 doses 0.00 ... 4.99
    assert liver["D50_Gy"] == pytest.approx(np.percentile(dose[:5], 50))
    assert liver["D2_Gy"] == pytest.approx(np.percentile(dose[:5], 98))
    assert liver["D98_Gy"] == pytest.approx(np.percentile(dose[:5], 2))
    assert liver["V1Gy_percent"] == pytest.approx(80.0)
    assert liver["V4.5Gy_percent"] == pytest.approx(10.0)
    assert liver["tia_MBq_h"] == 3.0
    assert rep.dose_columns("Gy/h", (2,)) == ["mean_Gy_h", "max_Gy_h", "D2_Gy_h", "D50_Gy_h",
                                              "D98_Gy_h", "V2Gy_h_percent"]


def test_csv_json_and_html(tmp_path):
    dose, density, regions, body = _case()
    regions[0].name = "<liver>"
    rows = rep.organ_table(dose, regions, density, GEOMETRY, unit="Gy", body=body,
                           extra={"patient": {"effective_half_life_h": float("inf")}})
    rep.write_table_csv(tmp_path / "o.csv", rows)
    back = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert [r["name"] for r in back] == ["<liver>", "patient"]
    assert float(back[0]["mean_Gy"]) == pytest.approx(rows[0]["mean_Gy"], rel=1e-5)
    rep.write_table_json(tmp_path / "o.json", {"organs": rows, "x": np.float32(2.5)})
    doc = json.loads((tmp_path / "o.json").read_text())  # strict JSON
    assert doc["organs"][1]["effective_half_life_h"] is None and doc["x"] == 2.5
    dvh = rep.plot_dvh(dose, [(r.name, r.mask) for r in regions], "Gy")
    slices, centre = rep.plot_slices(dose, density, GEOMETRY, "Gy",
                                     labels=regions[0].mask.astype(np.int32))
    assert dvh[:8] == slices[:8] == b"\x89PNG\r\n\x1a\n"
    assert centre == (9, 9, 9)
    html = rep.render_html(quantity="absorbed dose", summary="s", rows=rows, slices_png=slices,
                           dvh_png=dvh, provenance={"a": {"b": 1.5}, "c": [1, 2]})
    assert "&lt;liver&gt;" in html and "<liver>" not in html  # escaped
    assert html.count("data:image/png;base64,") == 2 and "a.b" in html


def test_headline_rows_show_dose_uncertainty_and_model():
    rows = [{"name": "lesion", "mean_Gy": 2.0, "mean_Gy_rc_corrected": 4.0, "u_total_Gy": 0.8,
             "u_total_percent": 20.0, "u_volume_percent": 15.0, "recovery_coefficient": 0.5,
             "model": "bi", "aicc_weight": 0.93},
            {"name": "patient", "mean_Gy": 0.1, "u_total_Gy": 0.01, "u_total_percent": 10.0}]
    head = rep.headline_rows(rows, "Gy")
    assert head[0]["mean dose (Gy)"] == "4 ± 0.8" and head[0]["RC"] == "0.500"
    assert head[0]["model"] == "bi" and head[0]["AICc weight"] == "0.930"
    assert head[0]["uncorrected mean (Gy)"] == "2" and head[1]["model"] == ""
    assert head[0]["u volume (%)"] == "15.00" and head[0]["u mc (%)"] == ""
