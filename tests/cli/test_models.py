"""``mcdose models``: the shipped models and their cards."""

from __future__ import annotations

import json

import pytest
from mcdose_cli.main import main

torch = pytest.importorskip("torch")


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    import residualnet.shipped as shipped
    from residualnet.model import ModelConfig, build_model
    from residualnet.modelfile import save_model
    from residualnet.normalization import Normalization

    config = ModelConfig(pack_size=5, stem_channels=(4, 4), stem_kernels=((3, 3, 3), (3, 3, 3)),
                         unet_levels=2, unet_width=4)
    name = shipped.DEFAULT_MODEL
    save_model(tmp_path / f"{name}.pt", build_model(config, seed=0), Normalization(1.0, 1.0),
               voxel_mm=(4.0, 4.0, 4.0), nuclide="Lu-177")
    (tmp_path / f"{name}.json").write_text(json.dumps(
        {"nuclide": "Lu-177", "voxel_mm": [4, 4, 4], "evaluation": {"goals_met": "5 of 6"}}))
    (tmp_path / f"{name}.md").write_text("# Model card: tiny\n\nintended use: tests\n")
    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path)
    return tmp_path


def test_models_prints_each_model_and_its_card(models_dir, capsys):
    from residualnet.shipped import DEFAULT_MODEL

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith(f"{DEFAULT_MODEL} (default): Lu-177, 4×4×4 mm voxels")
    assert "external set: 5 of 6" in first and str(models_dir) in first
    assert "# Model card: tiny" in out and "intended use: tests" in out
    assert main(["models", "--brief"]) == 0
    assert "# Model card" not in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[DEFAULT_MODEL]["voxel_mm"] == [4, 4, 4]


def test_models_says_when_there_are_none(tmp_path, monkeypatch, capsys):
    import residualnet.shipped as shipped

    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path / "none")
    assert main(["models"]) == 0
    assert "no shipped models" in capsys.readouterr().out
