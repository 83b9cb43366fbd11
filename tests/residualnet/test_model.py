"""residualnet.model: shapes, parameter count, the zero-initialised residual, slab inference."""

from __future__ import annotations

import pytest
import torch

from mcdose.errors import InputError
from residualnet.model import ModelConfig, ResidualDoseNet, build_model, count_parameters


def test_paper_config_parameter_count():
    # Li et al. 2022: "about 1.1 M parameters"; our paper configuration (stem 8-8-8 channels,
    # kernels 5×7×7, 3×7×7, 3×7×7; U-Net 4 levels, 16 filters, bilinear) has exactly:
    config = ModelConfig()
    assert (config.pack_size, config.unet_levels, config.unet_width) == (11, 4, 16)
    assert config.stem_kernels == ((5, 7, 7), (3, 7, 7), (3, 7, 7))
    assert config.depth_out == 3
    net = ResidualDoseNet(config)
    assert count_parameters(net) == 1_106_737
    assert abs(count_parameters(net) - 1.1e6) < 0.05e6


def test_forward_shape_and_zero_initial_residual(tiny_config):
    net = build_model(tiny_config, seed=0).eval()
    packs = torch.randn(3, 2, tiny_config.pack_size, 20, 28)  # not multiples of 4
    vdk = torch.rand(3, 1, 20, 28)
    with torch.no_grad():
        out = net(packs, vdk)
    assert out.shape == (3, 1, 20, 28)
    # the last 1×1 conv starts at zero: the untrained network returns the VDK
    assert torch.equal(out, vdk)
    with pytest.raises(ValueError, match="slices"):
        net(torch.randn(1, 2, tiny_config.pack_size + 2, 8, 8), torch.zeros(1, 1, 8, 8))


def test_seeded_build_is_reproducible(tiny_config):
    a, b = build_model(tiny_config, seed=3), build_model(tiny_config, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("paper", [False, True])
def test_forward_slab_equals_packs(tiny_config, paper):
    config = ModelConfig() if paper else tiny_config
    net = build_model(config, seed=1)
    with torch.no_grad():
        torch.nn.init.normal_(net.unet.outc.weight, std=0.1)
        net.train()(torch.randn(2, 2, config.pack_size, 16, 16), torch.zeros(2, 1, 16, 16))
    net.eval()
    n, p = 3, config.pack_size
    slab = torch.randn(1, 2, n + p - 1, 16, 16)
    vdk = torch.randn(n, 1, 16, 16)
    packs = torch.stack([slab[0, :, i : i + p] for i in range(n)])
    with torch.no_grad():
        expected = net(packs, vdk)
        got = net.forward_slab(slab, vdk)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_config_validation_and_round_trip(tiny_config):
    assert ModelConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(InputError, match="odd"):
        ModelConfig(pack_size=10)
    with pytest.raises(InputError, match="too small"):
        ModelConfig(pack_size=7)  # the paper stem removes 8 slices
    with pytest.raises(InputError, match="unknown"):
        ModelConfig.from_dict({**tiny_config.to_dict(), "dropout": 0.1})
