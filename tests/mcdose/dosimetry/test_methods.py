"""Tests of mcdose.dosimetry.methods: VDK, CNN and MC on the same uniform soft-tissue block.

In the interior of a uniform soft-tissue block with uniform activity, far from its edges
compared with the β range (≤ 1.8 mm for Lu-177), all engines must give the same dose rate:
the β and electron energy (147.9 keV per decay, ICRP-107) is absorbed locally and the photon
part (35.1 keV per decay) adds the same small contribution to both (the VDK kernel models
photon transport in soft tissue by Monte Carlo too).
"""

from __future__ import annotations

import numpy as np
import pytest

from mcdose.dosimetry.methods import compute_dose_rate, load_cnn_model
from mcdose.errors import InputError
from mcdose.io.case import Geometry
from tests.helpers import assert_one_line
from tests.mcdose.dosimetry.synthetic import KERNEL_HISTORIES

torch = pytest.importorskip("torch")

GEOMETRY = Geometry((4.0, 4.0, 4.0), (-30.0, -30.0, -30.0))
SHAPE = (16, 16, 16)
INTERIOR = (slice(5, -5),) * 3  # ≥ 3 voxels (12 mm) from the block's faces
MEV_J = 1.602176634e-13


def _block():
    rho = np.full(SHAPE, 0.0012, np.float32)
    rho[2:-2, 2:-2, 2:-2] = 1.04
    act = np.zeros(SHAPE, np.float32)
    act[2:-2, 2:-2, 2:-2] = 0.01  # MBq per voxel
    return rho, act


def _tiny_model(path, voxel_mm, nuclide="Lu-177"):
    from residualnet.model import ModelConfig, build_model
    from residualnet.modelfile import save_model
    from residualnet.normalization import Normalization

    config = ModelConfig(pack_size=5, stem_channels=(4, 4), stem_kernels=((3, 3, 3), (3, 3, 3)),
                         unet_levels=2, unet_width=4)
    net = build_model(config, seed=0)
    return save_model(path, net, Normalization(spect_scale=1.0, dose_scale=1.0),
                      voxel_mm=voxel_mm, nuclide=nuclide)


def test_vdk_mc_cnn_agree_in_uniform_soft_tissue(tmp_path):
    """Interior mean dose rates: VDK vs MC within 3 σ (MC) + 1 %; CNN (untrained: its
    output layer starts at zero, so it must return the VDK exactly) equal to VDK.

    Also the closed form: electrons alone deposit 147.92 keV per decay (ICRP-107, see
    REFERENCES.md); with photons the dose is a few percent higher.
    """
    rho, act = _block()
    body = rho > 0.5
    vdk = compute_dose_rate("vdk", act, rho, GEOMETRY, kernel_histories=5 * KERNEL_HISTORIES)
    mc = compute_dose_rate("mc", act, rho, GEOMETRY, histories=400_000, seed=11, device="cpu")
    model = load_cnn_model(_tiny_model(tmp_path / "m.pt", GEOMETRY.spacing_mm),
                           voxel_mm=GEOMETRY.spacing_mm, nuclide="Lu-177")
    cnn = compute_dose_rate("cnn", act, rho, GEOMETRY, body=body, model=model,
                            kernel_histories=5 * KERNEL_HISTORIES)
    v = vdk.dose_rate_Gy_s[INTERIOR].astype(np.float64)
    m = mc.dose_rate_Gy_s[INTERIOR].astype(np.float64)
    sigma = np.sqrt(np.sum((mc.relative_uncertainty[INTERIOR] * m) ** 2)) / m.size
    k = 3.0
    assert abs(v.mean() - m.mean()) <= k * sigma + 0.01 * m.mean(), (v.mean(), m.mean(), sigma)
    np.testing.assert_allclose(cnn.dose_rate_Gy_s[body], vdk.dose_rate_Gy_s[body], rtol=1e-5)
    assert cnn.dose_rate_Gy_s[~body].max() == 0
    electrons = 0.01e6 * 147.92e-3 * MEV_J / (1.04e-3 * GEOMETRY.voxel_volume_cm3)
    assert 1.0 < m.mean() / electrons < 1.10
    assert mc.info["histories"] == 400_000 and vdk.info["kernel"]["mode"] == "single"


def test_cnn_model_refused_for_other_voxel_size_or_nuclide(tmp_path):
    path = _tiny_model(tmp_path / "m.pt", (4.7952, 4.7952, 4.7952))
    with pytest.raises(InputError) as exc:
        load_cnn_model(path, voxel_mm=(4.0, 4.0, 6.0), nuclide="Lu-177")
    assert_one_line(exc, str(path), "voxels")
    other = _tiny_model(tmp_path / "y.pt", (4.0, 4.0, 6.0), nuclide="Y-90")
    with pytest.raises(InputError) as exc:
        load_cnn_model(other, voxel_mm=(4.0, 4.0, 6.0), nuclide="Lu-177")
    assert_one_line(exc, str(other), "Y-90")
    with pytest.raises(InputError) as exc:
        load_cnn_model(None, voxel_mm=(4.0, 4.0, 6.0), nuclide="Lu-177")
    assert_one_line(exc, "--model")


def test_unknown_method_refused():
    rho, act = _block()
    with pytest.raises(InputError) as exc:
        compute_dose_rate("fft", act, rho, GEOMETRY)
    assert_one_line(exc, "--method")
