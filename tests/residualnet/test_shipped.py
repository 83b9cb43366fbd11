"""residualnet.shipped: the model that ships with mcdose (the actual file) and the listing."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

from mcdose.errors import InputError
from residualnet.modelfile import load_model, save_model
from residualnet.normalization import Normalization
from residualnet.shipped import (
    DEFAULT_MODEL,
    MODELS_DIR,
    file_sha256,
    shipped_model,
    shipped_models,
)
from tests.helpers import assert_one_line

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_model_loads_weights_only_and_matches_its_card():
    shipped = shipped_model()
    assert shipped.name == DEFAULT_MODEL and shipped.path.parent == MODELS_DIR
    record = torch.load(shipped.path, map_location="cpu", weights_only=True)
    assert record["format"] == "residualnet-model"
    assert shipped.path.stat().st_size < 10e6  # a few MB
    card = shipped.card
    assert card["sha256"] == file_sha256(shipped.path)  # the card describes this file
    model = load_model(shipped.path, expected_voxel_mm=(4.0, 4.0, 4.0),
                       expected_nuclide="Lu-177")
    assert model.voxel_mm == (4.0, 4.0, 4.0) and model.nuclide == "Lu-177"
    assert tuple(card["voxel_mm"]) == model.voxel_mm and card["nuclide"] == model.nuclide
    assert card["parameters"] == model.parameters and card["architecture"] == \
        model.config.to_dict()
    # trained, not the zero-initialised output layer of a fresh network
    assert float(model.net.state_dict()["unet.outc.weight"].abs().sum()) > 0.0
    # the card says how it was made and how it does
    for key in ("training_data", "recipe", "compute", "evaluation", "intended_use", "limits",
                "outside_limits", "commit"):
        assert card[key], key
    goals = [g for g in card["evaluation"]["goals"] if not g.get("extra")]
    met = sum(g["passed"] for g in goals)
    assert card["evaluation"]["goals_met"] == f"{met} of {len(goals)}"
    assert all("ratio_ci95" in g for g in goals)  # bootstrap intervals
    text = shipped.card_markdown
    assert "Table I" in text and "Table II" in text and "Intended use" in text
    assert card["evaluation"]["goals_met"] in text


def test_package_data_ships_the_models_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = config["tool"]["setuptools"]["package-data"]["residualnet"]
    assert {"models/*.pt", "models/*.json", "models/*.md"} <= set(data)


def _tiny(path):
    from residualnet.model import ModelConfig, build_model

    config = ModelConfig(pack_size=5, stem_channels=(4, 4), stem_kernels=((3, 3, 3), (3, 3, 3)),
                         unet_levels=2, unet_width=4)
    return save_model(path, build_model(config, seed=0), Normalization(1.0, 1.0),
                      voxel_mm=(4.0, 4.0, 4.0), nuclide="Lu-177")


def test_listing_needs_model_and_card_and_names_what_is_there(tmp_path):
    _tiny(tmp_path / "a.pt")
    (tmp_path / "a.json").write_text(json.dumps({"nuclide": "Lu-177", "voxel_mm": [4, 4, 4],
                                                 "evaluation": {"goals_met": "3 of 4"}}))
    (tmp_path / "a.md").write_text("# card a\n")
    (tmp_path / "b.json").write_text("{}")  # a card without its model file is not listed
    _tiny(tmp_path / "c.pt")  # nor a model file without a card
    found = shipped_models(tmp_path)
    assert [m.name for m in found] == ["a"]
    assert found[0].card_markdown == "# card a\n" and found[0].voxel_mm == (4.0, 4.0, 4.0)
    assert "a: Lu-177, 4×4×4 mm voxels, external set: 3 of 4" in found[0].summary()
    with pytest.raises(InputError) as exc:
        shipped_model("b", tmp_path)
    assert_one_line(exc, "'b'", "shipped: a", "--model")
    assert shipped_models(tmp_path / "missing") == []
