"""benchmarks/residualnet_compare.py: campaign results side by side."""

import json

import pytest

from benchmarks import residualnet_compare as compare


def _stats(mean):
    return {"mean": mean, "min": mean, "max": mean, "n": 2}


def _record(cnn_mde, cases=("case_0001", "case_0002"), bootstrap=True):
    """A campaign result with one region, two methods and two goals."""
    summary = {"spleen": {"vdk": {"mde": _stats(0.10), "nrmse": _stats(0.30)},
                          "cnn": {"mde": _stats(cnn_mde), "nrmse": _stats(0.20)}}}
    goals = [
        {"goal": "CNN MDE < VDK MDE", "region": "spleen", "cnn": cnn_mde, "reference": 0.10,
         "passed": cnn_mde < 0.10},
        {"goal": "CNN MDE <= 0.5 x VDK MDE", "region": "tumour_per_case", "cnn": 0.01,
         "reference": 0.05, "passed": True, "extra": True},
    ]
    if bootstrap:
        for g in goals:
            ratio = g["cnn"] / g["reference"]
            g.update(ratio=ratio, ratio_ci95=[0.5 * ratio, 1.5 * ratio],
                     met_fraction=0.5 if ratio > 0.5 else 1.0)
    return {"evaluation": {"methods": ["vdk", "cnn"], "summary": summary, "goals": goals},
            "cases": [{"case": c} for c in cases]}


def _write(path, record):
    path.write_text(json.dumps(record))
    return path


def test_table_has_each_runs_goals_bootstrap_and_means(tmp_path):
    a = _write(tmp_path / "2026-11-21-cpu-2c-residualnet-small-medium-a.json", _record(0.02))
    b = _write(tmp_path / "2026-11-21-cpu-2c-residualnet-small-medium-b.json",
               _record(0.12, bootstrap=False))
    out = tmp_path / "page.md"
    assert compare.main([str(a), str(b), "--out", str(out)]) == 0
    page = out.read_text()
    assert "| goal | `medium-a` | `medium-b` |" in page
    # ratio 0.2, CI 0.1–0.3, met in all draws; the run without a bootstrap gives the ratio
    assert "| spleen: CNN MDE < VDK MDE | 0.20 (0.10–0.30) 100 % | 1.20 ✗ |" in page
    assert "*(extra)*" in page
    assert "| goals met | **1** of 1 | **0** of 1 |" in page  # the extra goal is not counted
    assert "| spleen | 10.0 | 2.0 | 12.0 |" in page  # MDE: VDK, run a, run b
    assert "| spleen | 30.0 | 20.0 | 20.0 |" in page  # NRMSE
    assert "Signed mean-dose deviation" not in page  # results written before it


def test_signed_mean_deviation_table_when_the_results_carry_it(tmp_path):
    records = [_record(0.02), _record(0.05)]
    for record, cnn in zip(records, (-0.02, 0.05), strict=True):
        summary = record["evaluation"]["summary"]["spleen"]
        summary["vdk"]["mean_deviation"] = _stats(-0.10)
        summary["cnn"]["mean_deviation"] = _stats(cnn)
    runs = [compare.load_run(_write(tmp_path / f"x-residualnet-small-{n}.json", r))
            for n, r in zip(("a", "b"), records, strict=True)]
    page = compare.compare(runs)
    assert "## Signed mean-dose deviation" in page
    assert "| spleen | -10.0 | -2.0 | +5.0 |" in page


def test_refuses_runs_on_different_cases_and_foreign_files(tmp_path, capsys):
    a = _write(tmp_path / "a.json", _record(0.02))
    b = _write(tmp_path / "b.json", _record(0.02, cases=("case_0009",)))
    out = tmp_path / "page.md"
    assert compare.main([str(a), str(b), "--out", str(out)]) == 2
    assert "other test cases" in capsys.readouterr().err and not out.exists()
    c = _write(tmp_path / "c.json", {"benchmark": "mc"})
    assert compare.main([str(c)]) == 2
    assert "not a residualnet campaign result" in capsys.readouterr().err
    with pytest.raises(compare.InputError, match="no result files"):
        compare.compare([])


def test_shared_tail_of_the_names_is_dropped_and_the_noise_floor_shown(tmp_path):
    with_floor = _record(0.02)
    with_floor["evaluation"]["truth_noise_floor"] = {"spleen": _stats(0.25)}
    a = _write(tmp_path / "x-residualnet-small-lw2-external48.json", with_floor)
    b = _write(tmp_path / "x-residualnet-small-lw4-external48.json", _record(0.05))
    page = compare.compare([compare.load_run(a), compare.load_run(b)])
    assert "| goal | `lw2` | `lw4` |" in page
    assert "| region | VDK | truth noise | `lw2` | `lw4` |" in page
    assert "| spleen | 30.0 | 25.0 | 20.0 | 20.0 |" in page
    assert compare._short_names(["a-b", "c-b", "b"]) == ["a-b", "c-b", "b"]  # never empty
    assert compare._short_names(["only-one"]) == ["only-one"]


def test_run_name_is_what_follows_the_preset():
    from pathlib import Path

    assert compare.run_name(Path("x/2026-11-21-cpu-2c-residualnet-small-medium-lw2-sg-external48"
                                 ".json")) == "medium-lw2-sg-external48"
    assert compare.run_name(Path("other.json")) == "other"


def test_runs_are_rescored_from_their_per_case_metrics(tmp_path):
    """A file whose recorded goals predate the lesion scoring of issue 24 is scored anew:
    the ≥ 20 mm halving appears and the all-lesion halving is no longer counted."""
    def region(volume_ml, vdk, cnn):
        return {"volume_ml": volume_ml, "vdk": {"mde": vdk, "nrmse": vdk},
                "cnn": {"mde": cnn, "nrmse": cnn}}

    record = _record(0.02)
    record["cases"] = [{"case": "case_0001", "regions": {
        "spleen": region(150.0, 0.10, 0.02),
        "tumour/lesion_1_liver": region(30.0, 0.30, 0.10),
        "tumour_per_case": region(30.0, 0.30, 0.10)}}]
    path = _write(tmp_path / "x-residualnet-small-a.json", record)
    rescored = compare.load_run(path)["evaluation"]
    regions = {(g["region"], g.get("extra", False)) for g in rescored["goals"]}
    assert ("tumour_20mm", False) in regions and ("tumour", True) in regions
    assert rescored["summary"]["tumour_20mm"]["cnn"]["mde"]["mean"] == 0.10
    as_recorded = compare.load_run(path, rescore=False)["evaluation"]
    assert as_recorded["goals"] == record["evaluation"]["goals"]
