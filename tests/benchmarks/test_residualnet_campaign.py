"""benchmarks/residualnet_campaign.py: the CNN accuracy campaign, shrunk to seconds."""

import json

import pytest

from benchmarks import residualnet_campaign as campaign

TINY_MODEL = {"pack_size": 5, "stem_kernels": ((3, 3, 3), (1, 3, 3)), "stem_channels": (4, 4),
              "unet_width": 4, "unet_levels": 2}  # fmt: skip


def test_campaign_writes_the_table_with_the_machine_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setitem(campaign.MODELS, "light", TINY_MODEL)
    out = tmp_path / "results"
    argv = ["--work", str(tmp_path / "work"), "--cases", "4", "--preset", "tiny",
            "--histories", "3000", "--seed", "2", "--spect-backend", "gaussian",
            "--kernel-histories", "20000", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", "--out", str(out), "--machine", "testbox"]  # fmt: skip
    assert campaign.main(argv) == 0
    files = sorted(p.name for p in out.iterdir())
    stem = [f for f in files if f.endswith(".json")][0][: -len(".json")]
    assert stem.endswith("-testbox-residualnet-tiny-mse-4cases")
    record = json.loads((out / f"{stem}.json").read_text())
    assert record["machine"]["cpu"] and "libraries" in record["machine"]
    assert record["dataset"]["cases_per_split"]["test"] >= 1
    assert record["dataset"]["parameters"]["histories"] == 3000
    assert record["training"]["epochs_run"] == 1
    # the kept epoch's standing against the goals on the validation cases
    assert {g["region"] for g in record["training"]["best_validation_goals"]} >= {"liver"}
    evaluation = record["evaluation"]
    # the test cases got MC on the SPECT, so the table has all three methods
    assert evaluation["methods"] == ["vdk", "mc_spect", "cnn"]
    assert any(g["goal"] == "CNN NRMSE < MC-on-SPECT NRMSE" for g in evaluation["goals"])
    markdown = (out / f"{stem}.md").read_text()
    assert "testbox" in markdown and "MC-on-SPECT" in markdown and "| tumour (" in markdown
    # rerunning skips the finished work and gives the same table
    first = record["evaluation"]["summary"]
    assert campaign.main(argv) == 0
    again = json.loads((out / f"{stem}.json").read_text())
    assert again["evaluation"]["summary"] == first
    assert again["seconds"]["dataset"] == record["seconds"]["dataset"] > 0  # from the manifest
    assert again["seconds"]["mc_spect_test"] == record["seconds"]["mc_spect_test"] > 0

    # an external test set: new phantoms, all in test, with MC on the SPECT; the model and the
    # campaign's own results are reused, not retrained
    ext = argv + ["--external-cases", "3", "--external-seed", "20"]
    assert campaign.main(ext) == 0
    external = json.loads((out / f"{stem}-external3.json").read_text())
    assert external["training"]["history"] == record["training"]["history"]  # same model
    assert external["evaluation"]["summary"] != first
    assert external["external_test"]["parameters"]["seed"] == 20
    assert external["evaluation"]["methods"] == ["vdk", "mc_spect", "cnn"]
    manifest = json.loads((tmp_path / "work" / "external" / "manifest.json").read_text())
    assert [c["split"] for c in manifest["cases"]] == ["test"] * 3
    assert "external test set: 3 new" in (out / f"{stem}-external3.md").read_text()


def test_external_seeds_must_not_overlap_the_campaign(tmp_path):
    argv = ["--work", str(tmp_path), "--cases", "4", "--seed", "2", "--external-cases", "3"]
    with pytest.raises(SystemExit, match="overlap the campaign's 2…5"):
        campaign.main(argv + ["--external-seed", "0"])
    with pytest.raises(SystemExit, match="overlap"):
        campaign.main(argv + ["--external-seed", "5"])
    campaign._check_external(campaign.build_parser().parse_args(argv + ["--external-seed", "6"]))
    assert not any(tmp_path.iterdir())  # nothing built on a refused command


def test_result_stem_names_the_case_count_unless_it_is_the_default():
    assert campaign.result_stem("2026-11-22", "cpu-2c", "small", "medium-mse", 48) == \
        "2026-11-22-cpu-2c-residualnet-small-medium-mse"
    assert campaign.result_stem("2026-11-22", "cpu-2c", "small", "medium-mse", 96) == \
        "2026-11-22-cpu-2c-residualnet-small-medium-mse-96cases"


def test_best_epoch_text_says_how_the_epoch_was_chosen():
    from types import SimpleNamespace

    from residualnet.validation import GoalScore

    result = SimpleNamespace(best_epoch=7, best_loss=0.0123, best_score=GoalScore(2, 13, 0.5614))
    assert campaign.best_epoch_text(result, "loss") == \
        "best validation loss 0.0123 at epoch 7"
    assert campaign.best_epoch_text(result, "goals") == (
        "best epoch 7 by the validation goals (2 of 13 missed, mean ratio to threshold 0.561; "
        "validation loss 0.0123)")


def test_model_presets_and_run_tags():
    from residualnet.model import ModelConfig, build_model, count_parameters

    counts = {name: count_parameters(build_model(ModelConfig(**kw)))
              for name, kw in campaign.MODELS.items()}
    # the paper model's size (shared/REFERENCES.md: "about 1.1 M parameters"); the medium
    # model keeps the paper's U-Net behind the light stem
    assert 1.0e6 < counts["paper"] < 1.2e6 and 1.0e6 < counts["medium"] < counts["paper"]
    assert counts["light"] < 1e5
    # the light model's files keep the first campaign's names; others carry the model
    assert campaign.run_tag("light", "mse") == "mse"
    assert campaign.run_tag("medium", "organ") == "medium-organ"
    assert campaign.run_tag("light", "poisson-mde", 0.01, 0.999) == "poisson-mde-w0.01-ema0.999"
    assert campaign.run_tag("medium", "mde", None, 0.99) == "medium-mde-ema0.99"
    assert campaign.run_tag("medium", "poisson-mde", None, 0.0, 4.0, 1) == \
        "medium-poisson-mde-lw4-lv1"
    assert campaign.run_tag("medium", "poisson-mde", None, 0.0, 4.0, 1, "goals") == \
        "medium-poisson-mde-lw4-lv1-sg"
    assert campaign.run_tag("medium", "poisson-mde", None, 0.999, 2.0, 1, "goals", 0.01) == \
        "medium-poisson-mde-lw2-lv1-nrmse0.01-ema0.999-sg"
    assert campaign.run_tag("medium", "poisson-mde", None, 0.0, 2.0, 1, "goals", 0.01, 0.01) \
        == "medium-poisson-mde-lw2-lv1-nrmse0.01-nf0.01-sg"
    assert campaign.run_tag("medium", "poisson-mde", None, 0.0, 2.0, 1, "goals", 0.02, 0.05,
                            "vdk") == "medium-poisson-mde-lw2-lv1-nrmse0.02-nrvdk-sg"
