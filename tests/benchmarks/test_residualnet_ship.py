"""benchmarks/residualnet_ship.py: a campaign's model shipped with its card (tiny campaign)."""

import json

import torch

from benchmarks import residualnet_campaign as campaign
from benchmarks import residualnet_ship as ship

TINY_MODEL = {"pack_size": 5, "stem_kernels": ((3, 3, 3), (1, 3, 3)), "stem_channels": (4, 4),
              "unet_width": 4, "unet_levels": 2}  # fmt: skip


def test_ship_writes_the_model_and_a_card_with_the_external_table(tmp_path, monkeypatch):
    monkeypatch.setitem(campaign.MODELS, "light", TINY_MODEL)
    out = tmp_path / "results"
    work = tmp_path / "work"
    argv = ["--work", str(work), "--cases", "4", "--preset", "tiny", "--histories", "3000",
            "--seed", "2", "--spect-backend", "gaussian", "--kernel-histories", "20000",
            "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--out", str(out),
            "--machine", "testbox", "--external-cases", "2", "--external-seed", "900"]
    assert campaign.main(argv) == 0
    stem = next(p.stem for p in out.glob("*-4cases.json"))
    models = tmp_path / "models"
    assert ship.main(["--model", str(work / "model-mse.pt"), "--results",
                      str(out / f"{stem}.json"), "--external",
                      str(out / f"{stem}-external2.json"), "--name", "tiny-v0",
                      "--out", str(models), "--commit", "abc123", "--note", "a test"]) == 0
    record = torch.load(models / "tiny-v0.pt", weights_only=True)  # weights only
    assert record["format"] == "residualnet-model"
    card = json.loads((models / "tiny-v0.json").read_text())
    from residualnet.shipped import file_sha256, shipped_models

    assert card["sha256"] == file_sha256(models / "tiny-v0.pt")
    assert card["voxel_mm"] == [12.0, 12.0, 12.0] and card["nuclide"] == "Lu-177"
    assert card["commit"] == "abc123" and card["notes"] == ["a test"]
    data = card["training_data"]
    assert data["cases"] == 4 and data["decays_per_case"] == 3000
    assert data["phantom_seeds"] == "2–5"  # the campaign's seed + index
    evaluation = card["evaluation"]
    assert evaluation["cases"] == 2 and "phantom seeds 900–901" in evaluation["set"]
    goals = [g for g in evaluation["goals"] if not g.get("extra")]
    assert evaluation["goals_met"] == f"{sum(g['passed'] for g in goals)} of {len(goals)}"
    assert all("ratio_ci95" in g for g in goals)
    assert card["compute"]["training_s"] > 0 and card["compute"]["external_dataset_s"] > 0
    text = (models / "tiny-v0.md").read_text()
    assert "layout of Table I" in text and "layout of Table II" in text
    assert "| healthy liver |" in text and "## What `mcdose dose` does outside them" in text
    # residualnet.shipped reads it as a shipped model
    (found,) = shipped_models(models)
    assert found.name == "tiny-v0" and found.card_markdown == text
