"""Tests of ``mcdose evaluate DATASET_DIR --model MODEL --out REPORT_DIR`` (tiny, CPU)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from mcdose_cli.main import main  # noqa: E402

from residualnet.model import ModelConfig, build_model  # noqa: E402
from residualnet.modelfile import save_model  # noqa: E402
from residualnet.normalization import Normalization  # noqa: E402
from residualnet.synthetic import make_synthetic_dataset  # noqa: E402
from tests.helpers import assert_cli_error  # noqa: E402

TINY = ModelConfig(pack_size=5, stem_channels=(4, 4), stem_kernels=((3, 3, 3), (3, 3, 3)),
                   unet_levels=2, unet_width=4)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    dataset = make_synthetic_dataset(root / "ds", 3, shape=(10, 16, 16))
    model = save_model(root / "m.pt", build_model(TINY, seed=0), Normalization(600.0, 1e5),
                       voxel_mm=(4, 4, 4), nuclide="Lu-177")
    return dataset, model


def test_evaluate_writes_report_and_prints_table(setup, tmp_path, capsys):
    dataset, model = setup
    out = tmp_path / "report"
    assert main(["evaluate", str(dataset), "--model", str(model), "--out", str(out),
                 "--device", "cpu", "--figures", "1"]) == 0
    text = capsys.readouterr().out
    assert "MDE (%)" in text and "NRMSE (%)" in text and "healthy_liver" in text
    assert "goals met" in text
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and len(report["cases"]) == 1
    assert (out / "report.md").exists() and list(out.glob("*.png"))


@pytest.mark.parametrize(
    ("model_arg", "message"),
    [("{tmp}/none.pt", "model file not found"), ("{ds}/manifest.json", "not a residualnet model")],
)
def test_bad_model_is_one_line(setup, tmp_path, capsys, model_arg, message):
    dataset, _ = setup
    argv = ["evaluate", str(dataset), "--model", model_arg.format(tmp=tmp_path, ds=dataset),
            "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert_cli_error(capsys.readouterr().err, message)
    assert not (tmp_path / "r").exists()


def test_missing_option(setup, capsys):
    dataset, _ = setup
    assert main(["evaluate", str(dataset), "--out", "x"]) == 2
    assert "--model" in capsys.readouterr().err
