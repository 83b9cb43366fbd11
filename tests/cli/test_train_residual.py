"""Tests of ``mcdose train-residual DATASET_DIR --out MODEL [--epochs E]`` (tiny, CPU)."""

from __future__ import annotations

import csv

import pytest

torch = pytest.importorskip("torch")

from mcdose_cli.main import main  # noqa: E402

from residualnet.modelfile import load_model  # noqa: E402
from residualnet.synthetic import make_synthetic_dataset  # noqa: E402
from tests.helpers import assert_cli_error  # noqa: E402

#: smallest network the CLI options allow with the paper's stem kernels (pack of 9)
TINY = ["--pack-size", "9", "--stem-channels", "2", "--width", "4", "--levels", "2",
        "--batch-size", "8", "--workers", "0", "--device", "cpu", "--max-batches", "2"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("ds"), 3, shape=(10, 16, 16))


def test_train_and_resume(dataset, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["train-residual", str(dataset), "--out", str(out), "--epochs", "1", *TINY]) == 0
    text = capsys.readouterr().out
    assert "epoch 1/1" in text and f"model {out}" in text and "parameters" in text
    assert "goals missed" in text  # the validation case's standing against the goals
    for suffix in (".ckpt", ".log.csv", ".loss.png"):
        assert out.with_suffix(suffix).exists()
    model = load_model(out, expected_voxel_mm=(4, 4, 4), expected_nuclide="Lu-177")
    assert model.config.pack_size == 9 and model.config.unet_width == 4

    # a second run without --resume refuses to overwrite
    assert main(["train-residual", str(dataset), "--out", str(out), *TINY]) == 2
    assert_cli_error(capsys.readouterr().err, "--resume")

    assert main(["train-residual", str(dataset), "--out", str(out), "--epochs", "2", "--resume",
                 *TINY]) == 0
    assert "epoch 2/2" in capsys.readouterr().out
    rows = list(csv.DictReader(out.with_suffix(".log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]


def test_region_weight_and_weight_average_reach_the_model_file(dataset, tmp_path):
    out = tmp_path / "model.pt"
    assert main(["train-residual", str(dataset), "--out", str(out), "--epochs", "1",
                 "--loss", "poisson-mde", "--region-weight", "0.01", "--region-floor", "0.02",
                 "--ema", "0.9", "--lesion-weight", "4", "--lesion-min-voxels", "1",
                 "--nrmse-weight", "0.02", "--nrmse-floor", "0.03", "--nrmse-reference", "vdk",
                 "--select-by", "goals", *TINY]) == 0
    config = load_model(out).training["config"]
    assert (config["loss"], config["organ_weight"]) == ("poisson-mde", 0.01)
    assert (config["organ_floor"], config["ema_decay"]) == (0.02, 0.9)
    assert (config["lesion_weight"], config["lesion_min_voxels"]) == (4.0, 1)
    assert (config["nrmse_weight"], config["nrmse_floor"]) == (0.02, 0.03)
    assert config["nrmse_reference"] == "vdk"
    assert config["select_by"] == "goals"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/dataset"], "dataset folder not found"),
        (["{ds}", "--pack-size", "7"], "too small"),
        (["{ds}", "--out", "{tmp}/missing/model.pt"], "output folder does not exist"),
        (["{ds}", "--resume"], "checkpoint"),
        (["{ds}", "--ema", "1"], "--ema"),
        (["{ds}", "--lesion-min-voxels", "0"], "--lesion-min-voxels"),
        (["{ds}", "--select-by", "dice"], "--select-by"),
        (["{ds}", "--nrmse-weight", "0.01"], "needs a region loss"),
        (["{ds}", "--loss", "mde", "--nrmse-floor", "0"], "--nrmse-floor"),
        (["{ds}", "--loss", "mde", "--nrmse-reference", "spect"], "--nrmse-reference"),
    ],
)
def test_bad_input_is_one_line(dataset, tmp_path, capsys, args, message):
    argv = ["train-residual"] + [a.format(ds=dataset, tmp=tmp_path) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "m.pt")]
    assert main(argv) == 2
    assert_cli_error(capsys.readouterr().err, message)
    assert not (tmp_path / "m.pt").exists()


def test_help(capsys):
    assert main(["train-residual", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--epochs" in out and "--batch-size" in out
