"""Tests of lvdk.model: energy fractions that conserve energy by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvdk.model import KernelNet, ModelConfig
from lvdk.train import fractions_to_kernel, iou

KEV_TO_J = 1.602176634e-16


def _random_net(seed: int = 0) -> KernelNet:
    torch.manual_seed(seed)
    net = KernelNet(ModelConfig(size=5, channels=4, depth=2))
    with torch.no_grad():  # non-trivial heads (they start at zero)
        for p in (net.prior, net.source_head.weight, net.target_weight):
            p.normal_(0.0, 0.5)
    return net.eval()


def test_fractions_sum_to_one_and_kernel_energy_is_bounded():
    net = _random_net()
    rho = torch.rand(6, 9, 9, 9) * 2.0 + 0.001  # air to bone
    with torch.no_grad():
        log_f = net(rho)
    assert log_f.shape == (6, 5**3 + 1)
    torch.testing.assert_close(torch.exp(log_f).sum(1), torch.ones(6, dtype=log_f.dtype))
    emitted, voxel = 183.0, 4.0
    k = fractions_to_kernel(log_f, rho[:, 2:7, 2:7, 2:7], emitted, voxel)
    mass = rho[:, 2:7, 2:7, 2:7] * (voxel / 10) ** 3 * 1e-3
    energy_keV = (k * mass).sum((1, 2, 3)) / KEV_TO_J
    assert torch.all(energy_keV <= emitted * (1 + 1e-5))
    esc = torch.exp(log_f[:, -1])
    torch.testing.assert_close(energy_keV / emitted, 1 - esc, rtol=1e-4, atol=1e-6)


def test_wrong_patch_size_is_refused():
    net = _random_net()
    with pytest.raises(ValueError, match="9"):
        net(torch.ones(1, 7, 7, 7))


def test_iou_is_one_for_equal_and_sigma_min_over_max():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    b = torch.tensor([[2.0, 2.0, 1.0]])
    assert float(iou(a, a)) == pytest.approx(1.0)
    assert float(iou(a, b)) == pytest.approx((1 + 2 + 1) / (2 + 2 + 3))


def test_features_are_translation_equivariant():
    """The trunk is convolutional: features of a shifted volume are the shifted features
    (what lets the superposition compute them once per voxel)."""
    net = _random_net(1)
    rho = torch.from_numpy(np.random.default_rng(0).uniform(0.2, 1.9, (1, 12, 12, 12))).float()
    with torch.no_grad():
        f = net.features(rho)
        g = net.features(rho[:, 1:, :, 2:])
    torch.testing.assert_close(f[:, :, 1:, :, 2:], g)
