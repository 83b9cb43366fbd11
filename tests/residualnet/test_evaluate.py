"""residualnet.evaluate: report contents against direct metric calls, files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.io.case import read_dataset, read_label_names
from mcdose.metrics import mde, mean_deviation, nrmse, standard_regions
from residualnet.evaluate import evaluate, format_summary_table
from residualnet.model import build_model
from residualnet.modelfile import save_model
from residualnet.normalization import Normalization


@pytest.fixture(scope="module")
def model_path(tiny_config, tmp_path_factory):
    net = build_model(tiny_config, seed=0)  # untrained: CNN = VDK inside the body
    return save_model(tmp_path_factory.mktemp("model") / "m.pt", net,
                      Normalization(600.0, 1.1e5), voxel_mm=(4, 4, 4), nuclide="Lu-177")


def test_report(tiny_dataset, model_path, tmp_path):
    out = tmp_path / "report"
    report = evaluate(tiny_dataset, model_path, out, device="cpu", figures=1)
    for name in ("report.json", "report.md", "slices_case_0003.png", "dvh_case_0003.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "report.json").read_text())["summary"] == report["summary"]
    assert report["methods"] == ["vdk", "mc_spect", "cnn"]
    assert [c["case"] for c in report["cases"]] == ["case_0003"]

    # per-region values equal direct metric calls on the case's arrays
    case = tiny_dataset / "case_0003.h5"
    truth, vdk = read_dataset(case, "dose/mc"), read_dataset(case, "dose/vdk")
    regions = standard_regions(read_label_names(case), read_dataset(case, "labels"))
    entry = report["cases"][0]["regions"]
    lesions = np.logical_or.reduce([m for n, m in regions.items() if n.startswith("tumour/")])
    regions["tumour_per_case"] = lesions  # all lesions of the case as one region
    assert set(entry) == set(regions)
    for name, mask in regions.items():
        assert entry[name]["vdk"]["mde"] == pytest.approx(mde(vdk, truth, mask))
        assert entry[name]["vdk"]["nrmse"] == pytest.approx(nrmse(vdk, truth, mask))
        assert entry[name]["vdk"]["mean_deviation"] == pytest.approx(
            mean_deviation(vdk, truth, mask))
    # the untrained network returns the VDK inside the body (zero-initialised residual)
    assert entry["liver"]["cnn"]["mde"] == pytest.approx(entry["liver"]["vdk"]["mde"], rel=1e-5)
    # tumour row: mean and range over the lesions
    lesions = [entry[n]["vdk"]["mde"] for n in entry if n.startswith("tumour/")]
    tumour = report["summary"]["tumour"]["vdk"]["mde"]
    assert tumour["n"] == len(lesions) == 2
    assert tumour["mean"] == pytest.approx(np.mean(lesions))
    assert tumour["min"] == pytest.approx(min(lesions))
    per_case = report["summary"]["tumour_per_case"]["vdk"]["mde"]
    assert per_case["n"] == 1
    assert per_case["mean"] == pytest.approx(mde(vdk, truth, regions["tumour_per_case"]))
    # goals are evaluated and reported
    assert any(g["goal"] == "CNN MDE <= 0.5 x VDK MDE" for g in report["goals"])
    # one test case: every bootstrap draw is that case, so the interval is the point
    assert report["bootstrap"]["over"] == "cases"
    for g in report["goals"]:
        assert g["ratio_ci95"] == pytest.approx([g["ratio"]] * 2)
    markdown = (out / "report.md").read_text()
    assert "95 % CI" in markdown
    assert "cf. paper Table I" in markdown and "13.7 / 13.2 / 5.5" in markdown
    signed = report["summary"]["liver"]["vdk"]["mean_deviation"]["mean"]
    assert abs(signed) == pytest.approx(report["summary"]["liver"]["vdk"]["mde"]["mean"])
    assert "## Signed mean-dose deviation (%)" in markdown
    assert f"| liver | {100 * signed:+.1f} (" in markdown
    table = format_summary_table(report)
    assert table.splitlines()[1].split() == ["region", "VDK", "MC-SPECT", "CNN", "VDK",
                                             "MC-SPECT", "CNN"]
    assert "kidney_left" in table
    assert entry["liver"]["volume_ml"] == pytest.approx(regions["liver"].sum() * 0.064)


def test_lesion_goals_are_scored_per_case_by_size_and_the_all_lesion_halving_is_extra():
    from residualnet.evaluate import (
        LARGE_LESION_ML,
        LESION_SIZE_CLASSES,
        _markdown,
        accuracy_goals,
        counted_goals,
        summarize,
    )

    assert LARGE_LESION_ML == pytest.approx(4.18879, rel=1e-5)  # sphere of 20 mm diameter
    assert LESION_SIZE_CLASSES["tumour_lt10mm"][1] == pytest.approx(0.523599, rel=1e-5)

    def region(volume_ml, vdk, cnn, mcs=None):
        out = {"volume_ml": volume_ml, "vdk": {"mde": vdk, "nrmse": vdk},
               "cnn": {"mde": cnn, "nrmse": cnn}}
        if mcs is not None:
            out["mc_spect"] = {"mde": mcs, "nrmse": mcs}
        return out

    cases = [{"case": "a", "shape": [1, 1, 1], "inference_seconds": 0.1, "regions": {
        "liver": region(1500.0, 0.04, 0.02),
        "tumour/lesion_1_liver": region(30.0, 0.10, 0.04),
        "tumour/lesion_2_body": region(0.3, 0.60, 0.50),
        "tumour/lesion_3_liver": region(1.0, 0.35, 0.30),
        "tumour_per_case": region(31.3, 0.12, 0.05),
    }}]  # fmt: skip
    summary = summarize(cases, ["vdk", "cnn"])
    assert summary["tumour"]["cnn"]["mde"]["n"] == 3
    assert summary["tumour"]["cnn"]["mde"]["mean"] == pytest.approx(0.28)
    # every lesion in exactly one of the three size rows; < 20 mm is the union of two
    assert summary["tumour_20mm"]["cnn"]["mde"] == {"mean": 0.04, "min": 0.04, "max": 0.04,
                                                    "n": 1}
    assert summary["tumour_10_20mm"]["cnn"]["mde"]["mean"] == pytest.approx(0.30)
    assert summary["tumour_lt10mm"]["vdk"]["mde"]["mean"] == pytest.approx(0.60)
    assert summary["tumour_lt20mm"]["cnn"]["mde"]["mean"] == pytest.approx(0.40)
    goals = accuracy_goals(summary)
    by_region = {(g["region"], g["goal"]): g for g in goals}
    # counted: per case and ≥ 20 mm halvings, < 20 mm better than VDK (no MC-on-SPECT here)
    per_case = by_region[("tumour_per_case", "CNN MDE <= 0.5 x VDK MDE")]
    assert per_case["passed"] and per_case["reference"] == pytest.approx(0.06)
    large = by_region[("tumour_20mm", "CNN MDE <= 0.5 x VDK MDE")]
    assert large["passed"] and large["reference"] == pytest.approx(0.05)  # 0.04 <= 0.05
    small = by_region[("tumour_lt20mm", "CNN MDE < VDK MDE")]
    assert small["passed"] and small["reference"] == pytest.approx(0.475)
    # the halving over all lesions is reported, not counted: 0.28 > 0.5 × 0.35
    halving = by_region[("tumour", "CNN MDE <= 0.5 x VDK MDE")]
    assert halving["extra"] and not halving["passed"]
    assert halving["reference"] == pytest.approx(0.175)
    counted = counted_goals({"goals": goals})
    assert halving not in counted
    assert len(counted) == 4 + 3  # liver and tumour: MDE and NRMSE < VDK; 3 lesion goals
    assert all(g["passed"] for g in counted)

    # with MC-on-SPECT, below 20 mm the CNN must beat the better of VDK and MC-on-SPECT:
    # 0.40 against min(0.475, 0.38) fails, and the NRMSE goals against MC-on-SPECT appear
    for name, value in (("tumour/lesion_1_liver", 0.09), ("tumour/lesion_2_body", 0.46),
                        ("tumour/lesion_3_liver", 0.30), ("liver", 0.03),
                        ("tumour_per_case", 0.11)):
        cases[0]["regions"][name]["mc_spect"] = {"mde": value, "nrmse": value}
    goals = accuracy_goals(summarize(cases, ["vdk", "mc_spect", "cnn"]))
    small = next(g for g in goals if g["region"] == "tumour_lt20mm")
    assert small["goal"] == "CNN MDE < VDK and MC-on-SPECT MDE"
    assert small["references"] == ["vdk", "mc_spect"]
    assert not small["passed"] and small["reference"] == pytest.approx(0.38)
    assert len(counted_goals({"goals": goals})) == 6 + 3  # + NRMSE < MC-on-SPECT, 2 rows
    report = {"methods": ["vdk", "cnn"], "model": "m.pt", "model_parameters": 1,
              "dataset": "d", "split": "test", "cases": cases, "summary": summary,
              "goals": goals, "device": "cpu", "figures": []}
    text = _markdown(report)
    assert "| tumour ≥ 20 mm (1) | 10.0 (10.0–10.0) | 4.0 (4.0–4.0) | — |" in text
    assert "| tumour < 20 mm (2) | 47.5 (35.0–60.0) | 40.0 (30.0–50.0) | — |" in text
    assert "| tumour (3) | 35.0 (10.0–60.0) | 28.0 (4.0–50.0) | 13.7 / 13.2 / 5.5 |" in text
    assert "(extra, not counted)" in text


def test_goal_uncertainty_of_a_goal_against_two_methods_uses_the_lower_per_draw():
    from residualnet.evaluate import accuracy_goals, goal_uncertainty, summarize

    def case(name, vdk, mcs, cnn):
        return {"case": name, "regions": {"tumour/lesion_1_liver": {
            "volume_ml": 1.0, "vdk": {"mde": vdk, "nrmse": vdk},
            "mc_spect": {"mde": mcs, "nrmse": mcs}, "cnn": {"mde": cnn, "nrmse": cnn}}}}

    # case a: MC-on-SPECT the lower reference, case b: VDK; per draw the lower sum counts
    cases = [case("a", 0.50, 0.40, 0.30), case("b", 0.20, 0.60, 0.30)]
    goals = accuracy_goals(summarize(cases, ["vdk", "mc_spect", "cnn"]))
    goal_uncertainty(cases, goals, resamples=4000, seed=1)
    small = next(g for g in goals if g["region"] == "tumour_lt20mm")
    # means: CNN 0.30, VDK 0.35, MC-on-SPECT 0.50 -> ratio 0.30 / 0.35
    assert small["ratio"] == pytest.approx(0.30 / 0.35)
    # draws aa: 0.30 / 0.40; ab: 0.30 / 0.35; bb: 0.30 / 0.20 (not met, 1/4 of the draws)
    assert small["ratio_ci95"] == pytest.approx([0.75, 1.5])
    sigma = (0.75 * 0.25 / 4000) ** 0.5
    assert abs(small["met_fraction"] - 0.75) < 4 * sigma  # k = 4


def test_errors_before_writing(tiny_dataset, tiny_config, tmp_path):
    other = save_model(tmp_path / "other.pt", build_model(tiny_config),
                       Normalization(1.0, 1.0), voxel_mm=(2, 2, 2), nuclide="Lu-177")
    with pytest.raises(InputError, match="voxels of 2×2×2 mm"):
        evaluate(tiny_dataset, other, tmp_path / "r1", device="cpu")
    assert not (tmp_path / "r1").exists()
    with pytest.raises(InputError, match="no cases in split 'dev'"):
        evaluate(tiny_dataset, other, tmp_path / "r2", split="dev")
    assert not (tmp_path / "r2").exists()


def test_goal_uncertainty_is_a_bootstrap_over_cases():
    from residualnet.evaluate import accuracy_goals, goal_uncertainty, summarize

    def case(name, lesion_cnn):
        def region(vdk, cnn):
            return {"volume_ml": 30.0, "vdk": {"mde": vdk, "nrmse": vdk},
                    "cnn": {"mde": cnn, "nrmse": cnn}}

        return {"case": name, "regions": {"liver": region(0.04, 0.01),
                                          "tumour/lesion_1_liver": region(0.20, lesion_cnn)}}

    # identical cases: every draw gives the point estimate
    same = [case("a", 0.08), case("b", 0.08)]
    goals = accuracy_goals(summarize(same, ["vdk", "cnn"]))
    goal_uncertainty(same, goals, resamples=50)
    halving = next(g for g in goals if g["comparison"] == "<=")
    assert halving["ratio"] == pytest.approx(0.8)  # 0.08 / (0.5 × 0.20)
    for g in goals:
        assert g["ratio_ci95"] == pytest.approx([g["ratio"]] * 2) and g["met_fraction"] == 1.0

    # two cases, lesion ratios 0.4 and 1.5 to the halving threshold: draws aa, ab, bb give
    # 0.4, 0.95, 1.5 with probabilities 1/4, 1/2, 1/4, so the goal is met in 3/4 of them
    mixed = [case("a", 0.04), case("b", 0.15)]
    goals = accuracy_goals(summarize(mixed, ["vdk", "cnn"]))
    goal_uncertainty(mixed, goals, resamples=4000, seed=3)
    halving = next(g for g in goals if g["comparison"] == "<=")
    assert halving["passed"] and halving["ratio"] == pytest.approx(0.95)
    assert halving["ratio_ci95"] == pytest.approx([0.4, 1.5])
    sigma = (0.75 * 0.25 / 4000) ** 0.5
    assert abs(halving["met_fraction"] - 0.75) < 4 * sigma
    again = accuracy_goals(summarize(mixed, ["vdk", "cnn"]))
    goal_uncertainty(mixed, again, resamples=4000, seed=3)
    assert again == goals  # a fixed seed reproduces the draws


def test_truth_noise_floor_from_the_mc_uncertainty(tiny_dataset, model_path, tmp_path):
    import shutil

    import h5py

    from residualnet.evaluate import truth_nrmse_floor

    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, dataset)
    case = dataset / "case_0003.h5"
    truth = read_dataset(case, "dose/mc")
    # 10 % everywhere, 30 % in the upper half: the floor is 0.1 where only the first applies
    relative = np.full(truth.shape, 0.1, dtype=np.float32)
    relative[: truth.shape[0] // 2] = 0.3
    with h5py.File(case, "a") as f:
        f.create_dataset("dose/mc_uncertainty", data=relative).attrs["units"] = "1"
    report = evaluate(dataset, model_path, tmp_path / "report", device="cpu", figures=0)
    regions = standard_regions(read_label_names(case), read_dataset(case, "labels"))
    entry = report["cases"][0]["regions"]
    for name, mask in regions.items():
        d = truth[mask].astype(np.float64)
        s = relative[mask] * d
        expected = np.sqrt(np.sum(s * s) / np.sum(d * d))
        assert entry[name]["truth_nrmse_floor"] == pytest.approx(expected, rel=1e-5)
        assert 0.1 - 1e-6 <= entry[name]["truth_nrmse_floor"] <= 0.3 + 1e-6
    lower = np.zeros(truth.shape, bool)
    lower[truth.shape[0] // 2:] = True
    assert truth_nrmse_floor(truth, relative * truth, lower & (truth > 0)) == \
        pytest.approx(0.1, rel=1e-6)
    assert np.isnan(truth_nrmse_floor(truth, relative * truth, np.zeros(truth.shape, bool)))
    floors = report["truth_noise_floor"]
    assert floors["liver"]["mean"] == pytest.approx(entry["liver"]["truth_nrmse_floor"])
    assert floors["tumour"]["n"] == 2  # over lesions
    assert "truth noise" in (tmp_path / "report" / "report.md").read_text()
    # without dose/mc_uncertainty there is no floor (the synthetic cases have none)
    plain = evaluate(tiny_dataset, model_path, tmp_path / "plain", device="cpu", figures=0)
    assert plain["truth_noise_floor"] == {}
    assert "truth noise" not in (tmp_path / "plain" / "report.md").read_text()
