"""Tests of lvdk.modelfile: model files round-trip and bad files are refused in one line."""

from __future__ import annotations

import pytest
import torch

from lvdk.model import KernelNet, ModelConfig
from lvdk.modelfile import load_kernel_model, save_kernel_model
from mcdose.errors import InputError


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    net = KernelNet(ModelConfig(size=5, channels=4, depth=2))
    with torch.no_grad():
        net.prior.normal_()
    p = save_kernel_model(tmp_path / "m.pt", net, voxel_mm=4.0, nuclide="Lu-177",
                          emitted_keV=183.0, training={"loss": "mse"})
    m = load_kernel_model(p)
    assert m.voxel_mm == 4.0 and m.nuclide == "Lu-177" and m.size == 5
    assert m.record["training"]["loss"] == "mse"
    assert m.part == "total"  # the default: whole kernels
    e = load_kernel_model(save_kernel_model(tmp_path / "e.pt", net, voxel_mm=4.0,
                                            nuclide="Lu-177", emitted_keV=148.0,
                                            part="electron"))  # fmt: skip
    assert e.part == "electron" and e.emitted_keV == 148.0
    x = torch.rand(2, 9, 9, 9) + 0.5
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.net(x), net(x))


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_kernel_model(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    with pytest.raises(InputError, match="not a readable lvdk model"):
        load_kernel_model(bad)
    odd = tmp_path / "odd.pt"
    net = KernelNet(ModelConfig(size=5, channels=4, depth=2))
    save_kernel_model(odd, net, voxel_mm=4.0, nuclide="Lu-177", emitted_keV=1.0,
                      part="positrons")
    with pytest.raises(InputError, match="unknown kernel part"):
        load_kernel_model(odd)
    other = tmp_path / "other.pt"
    torch.save({"format": "residualnet-model"}, other)
    with pytest.raises(InputError, match="not an lvdk model"):
        load_kernel_model(other)
