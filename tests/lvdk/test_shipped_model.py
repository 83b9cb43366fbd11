"""The shipped model (package data) against fresh Monte Carlo kernels of homogeneous media.

The reference is mcdose's own MC (the training data's generator, a new seed): a unit source
uniform in the centre voxel of a homogeneous 13³ region of 4 mm voxels.  Tolerance per voxel:
k = 3 MC standard errors plus 3 % (the model's learned error, measured 0.4 % in the source
voxel and 1–2.5 % in its face neighbours); the energy absorbed in the 9³ box within 0.02 of
the emitted energy (measured 0.001–0.013).
"""

from __future__ import annotations

import numpy as np
import pytest

from lvdk.modelfile import default_model_path, load_kernel_model
from lvdk.train import predict_patches
from mcdose.dataset.kernel_patches import PatchConfig, simulate_patch

KEV_TO_J = 1.602176634e-16
K_SIGMA = 3.0


def test_shipped_model_loads_for_lu177_at_4mm():
    m = load_kernel_model()
    assert m.path == default_model_path()
    assert m.voxel_mm == 4.0 and m.nuclide == "Lu-177" and m.size == 9
    assert m.record["training"]["held_out"]["iou"]["mean"] >= 0.95


@pytest.mark.parametrize("rho", [1.04, 0.26])
def test_homogeneous_patch_reproduces_the_mc_kernel(rho):
    m = load_kernel_model()
    cfg = PatchConfig(size=9, voxel_mm=4.0, pad=2, electron_histories=20_000,
                      photon_histories=50_000)
    region = np.full((13, 13, 13), rho, np.float32)
    r = simulate_patch(region, cfg, seed=4242, device="cpu", threads=1)
    f = predict_patches(m.net, region[None])[0]
    k = f[:-1].reshape(9, 9, 9) * m.emitted_keV * KEV_TO_J / (rho * 0.064e-3)
    for idx in [(4, 4, 4), (4, 4, 5), (3, 4, 4)]:
        mc, u = r["kernel"][idx], r["uncertainty"][idx]
        assert abs(k[idx] - mc) <= K_SIGMA * u * mc + 0.03 * mc, (idx, k[idx], mc, u)
    assert abs(f[:-1].sum() - r["energy_fraction"]) < 0.02
