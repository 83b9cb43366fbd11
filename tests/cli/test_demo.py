"""``mcdose demo``: the whole pipeline, shrunk to seconds (tiny phantoms, Gaussian SPECT)."""

import json

from mcdose_cli.demo import DemoConfig, run_demo
from mcdose_cli.main import main

from tests.helpers import assert_cli_error


def test_demo_runs_end_to_end_and_resumes(tmp_path):
    config = DemoConfig(cases=4, preset="tiny", histories=3000, epochs=1, seed=2,
                        device="cpu", spect_backend="gaussian", kernel_histories=20_000,
                        model={"pack_size": 5, "stem_kernels": ((3, 3, 3), (1, 3, 3)),
                               "stem_channels": (4, 4), "unet_width": 4, "unet_levels": 2},
                        batch_size=8, workers=1)  # fmt: skip
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", config, echo=lines.append, progress=False)
    for path in (result.model_path, result.report_html, result.patient_dose,
                 result.evaluation_dir / "report.json"):  # fmt: skip
        assert path.exists(), path
    report = json.loads((result.evaluation_dir / "report.json").read_text())
    assert {"vdk", "cnn"} <= set(report["methods"])
    assert "MDE" in result.summary_table and "NRMSE" in result.summary_table
    assert lines[-1].startswith("patient report:")  # the last line says where the report is
    # 12 mm tiny cases: the shipped 4 mm model is not evaluated on them (the demo's own
    # model is), but it runs the patient step, resampled to its grid and back
    from residualnet.shipped import shipped_model

    assert result.evaluated_model == str(result.model_path)
    assert result.patient_model == str(shipped_model().path)
    assert any("resampled" in line and "4×4×4 mm" in line for line in lines)
    # a rerun skips every finished step and gives the same table
    again = run_demo(tmp_path / "demo", config, echo=lambda s: None, progress=False)
    assert again.summary_table == result.summary_table
    assert again.seconds["dataset"] < result.seconds["dataset"]


def test_demo_needs_out(capsys):
    assert main(["demo"]) == 2
    assert_cli_error(capsys.readouterr().err, "--out")
