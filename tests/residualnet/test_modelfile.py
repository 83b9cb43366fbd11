"""residualnet.modelfile: round trip, and one clear InputError per kind of bad file."""

from __future__ import annotations

import pytest
import torch

from mcdose.errors import InputError
from residualnet.model import ModelConfig, build_model
from residualnet.modelfile import (
    FORMAT,
    FORMAT_VERSION,
    load_model,
    model_record,
    same_nuclide,
    save_model,
)
from residualnet.normalization import Normalization

NORM = Normalization(spect_scale=640.0, dose_scale=1.2e5)
VOXEL = (0.98, 0.98, 3.0)


@pytest.fixture()
def saved(tiny_config, tmp_path):
    net = build_model(tiny_config, seed=2)
    path = save_model(tmp_path / "m.pt", net, NORM, voxel_mm=VOXEL, nuclide="Lu-177",
                      training={"epochs": 3}, seed=2)
    return net, path


def _one_line_error(path, **kw) -> str:
    with pytest.raises(InputError) as info:
        load_model(path, **kw)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip(saved, tiny_config):
    net, path = saved
    loaded = load_model(path, expected_voxel_mm=(0.98, 0.98, 3.0), expected_nuclide="177Lu")
    assert loaded.config == tiny_config
    assert loaded.normalization == NORM
    assert loaded.voxel_mm == VOXEL and loaded.nuclide == "Lu-177"
    assert loaded.training == {"epochs": 3}
    assert loaded.provenance["method"] == "residualnet" and loaded.provenance["seed"] == 2
    assert "software_version" in loaded.provenance and "torch" in loaded.provenance
    assert not loaded.net.training  # eval mode
    for (k, a), b in zip(net.state_dict().items(), loaded.net.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    record = torch.load(path, weights_only=True)
    assert record["format"] == FORMAT and record["format_version"] == FORMAT_VERSION
    assert record["parameters"] == loaded.parameters


def test_voxel_and_nuclide_mismatch(saved):
    _, path = saved
    # within 1 % per axis is accepted (0.9766 mm vs 0.98 mm)
    load_model(path, expected_voxel_mm=(0.9766, 0.9766, 3.0))
    assert "voxels of 0.98×0.98×3 mm" in _one_line_error(path, expected_voxel_mm=(2, 2, 2))
    assert "trained for Lu-177, the data is Y-90" in _one_line_error(path,
                                                                      expected_nuclide="Y-90")


def test_not_a_model_file(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert "not a PyTorch archive" in _one_line_error(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    assert "format None" in _one_line_error(plain)
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    assert "Python objects" in _one_line_error(module)
    assert "not found" in str(pytest.raises(InputError, load_model, tmp_path / "x.pt").value)
    assert "folder" in _one_line_error(tmp_path)


def test_incompatible_records(tiny_config, tmp_path):
    net = build_model(tiny_config, seed=0)
    record = model_record(net, NORM, voxel_mm=VOXEL, nuclide="Lu-177")

    def write(name, **changes):
        path = tmp_path / name
        torch.save({**record, **changes}, path)
        return path

    newer = write("newer.pt", format_version=FORMAT_VERSION + 1)
    assert "format version 2 is newer" in _one_line_error(newer)
    arch = write("arch.pt", architecture={**tiny_config.to_dict(), "unet_width": 8})
    assert "weights do not match the architecture" in _one_line_error(arch)
    unknown = write("unknown.pt", architecture={**tiny_config.to_dict(), "heads": 3})
    assert "unknown model architecture keys: heads" in _one_line_error(unknown)
    broken = {k: v for k, v in record.items() if k != "normalization"}
    torch.save(broken, tmp_path / "nonorm.pt")
    assert "lacks 'normalization'" in _one_line_error(tmp_path / "nonorm.pt")


def test_same_nuclide():
    assert same_nuclide("Lu-177", "lu177") and same_nuclide("177Lu", "LU-177")
    assert same_nuclide("Tc-99m", "99mTc") and not same_nuclide("Tc-99m", "Tc-99")
    assert not same_nuclide("Lu-177", "Y-90")
    assert ModelConfig() != ModelConfig(unet_width=8)
