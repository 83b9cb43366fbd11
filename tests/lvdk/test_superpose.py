"""Tests of lvdk.superpose: superposition of learned kernels and the photon tail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvdk.model import KernelNet, ModelConfig
from lvdk.modelfile import LoadedKernelModel
from lvdk.superpose import lvdk_dose, photon_tail_kernel, superpose_kernels
from lvdk.train import predict_patches
from mcdose.errors import InputError
from mcdose.vdk import Kernel

KEV_TO_J = 1.602176634e-16
EMITTED = 183.0


def _model(seed: int = 0, size: int = 5) -> LoadedKernelModel:
    torch.manual_seed(seed)
    net = KernelNet(ModelConfig(size=size, channels=4, depth=2))
    with torch.no_grad():
        for p in (net.prior, net.source_head.weight, net.target_weight):
            p.normal_(0.0, 0.5)
    return LoadedKernelModel(net.eval(), 4.0, "Lu-177", EMITTED)


def _maps(seed: int = 0, shape=(10, 11, 12)):
    rng = np.random.default_rng(seed)
    rho = rng.uniform(0.9, 1.1, shape).astype(np.float32)
    rho[:, :, 7:] = rng.uniform(0.2, 0.3, (shape[0], shape[1], shape[2] - 7))  # lung
    act = np.zeros(shape, np.float32)
    act[3:7, 4:7, 4:8] = rng.uniform(0.5, 2.0, (4, 3, 4))
    return rho, act


def test_energy_of_interior_sources_is_conserved():
    """Σ deposited = Σ A·1e6·E_emit·(1 − f_esc) when every kernel box is inside the grid."""
    m = _model()
    rho, act = _maps()
    e, info = superpose_kernels(act, rho, m, device="cpu", chunk_sources=7)
    expected = act.sum(dtype=np.float64) * 1e6 * EMITTED * (1 - info["escape_fraction_mean"])
    assert e.sum() == pytest.approx(expected, rel=1e-9)
    assert e.min() >= 0


def test_one_source_gives_the_patch_prediction():
    m = _model(2)
    rho, _ = _maps(1)
    act = np.zeros_like(rho)
    z, y, x = 5, 5, 6
    act[z, y, x] = 1.0
    e, _ = superpose_kernels(act, rho, m, device="cpu")
    h, d = 2, 2
    padded = np.pad(rho, h + d, constant_values=0.0012)
    ctx = padded[z : z + 2 * (h + d) + 1, y : y + 2 * (h + d) + 1, x : x + 2 * (h + d) + 1]
    f = predict_patches(m.net, ctx[None])[0, :-1].reshape(5, 5, 5)
    box = e[z - h : z + h + 1, y - h : y + h + 1, x - h : x + h + 1] / (1e6 * EMITTED)
    np.testing.assert_allclose(box, f, rtol=1e-5, atol=1e-12)
    assert e.sum() == pytest.approx(box.sum() * 1e6 * EMITTED, rel=1e-9)  # nothing outside


def test_superposition_is_linear_and_chunking_invariant():
    m = _model(3)
    rho, act = _maps(2)
    a2 = np.zeros_like(act)
    a2[5, 2, 9] = 3.0
    e1, _ = superpose_kernels(act, rho, m, device="cpu", chunk_sources=5)
    e2, _ = superpose_kernels(a2, rho, m, device="cpu")
    e12, _ = superpose_kernels(act + a2, rho, m, device="cpu", chunk_sources=1000,
                               feature_slab=3)
    np.testing.assert_allclose(e12, e1 + e2, rtol=1e-6, atol=1e-6 * e12.max())


def test_photon_tail_zeroes_the_box_and_adds_linearly():
    k = np.ones((9, 9, 9), np.float32)
    tail = photon_tail_kernel(k, 5)
    assert tail[2:7, 2:7, 2:7].sum() == 0 and tail.sum() == 9**3 - 5**3
    m = _model()
    rho, act = _maps()
    photon = Kernel(kernel=np.full((9, 9, 9), 1e-14, np.float32), voxel_mm=(4.0,) * 3,
                    nuclide="Lu-177", material="soft_tissue", density_g_cm3=1.04,
                    histories=10, emissions="photons")
    dose, info = lvdk_dose(act, rho, (4.0, 4.0, 4.0), model=m, photon_kernel=photon,
                           photon_correction="none", device="cpu")
    e, _ = superpose_kernels(act, rho, m, device="cpu")
    short = e * KEV_TO_J / (rho.astype(np.float64) * 0.064 * 1e-3)
    from scipy.signal import fftconvolve

    tail_dose = fftconvolve(act.astype(np.float64) * 1e6, photon_tail_kernel(photon.kernel, 5),
                            mode="same")
    np.testing.assert_allclose(dose, short + tail_dose, rtol=2e-4, atol=1e-6 * dose.max())
    assert info["photon_correction"] == "none"
    # tissue classes: the lung voxels (x >= 7) take the lung kernel's tail × 0.26/ρ
    lung = Kernel(kernel=np.full((9, 9, 9), 3e-14, np.float32), voxel_mm=(4.0,) * 3,
                  nuclide="Lu-177", material="lung", density_g_cm3=0.26, histories=10,
                  emissions="photons")
    dose_t, _ = lvdk_dose(act, rho, (4.0,) * 3, model=m, device="cpu",
                          photon_kernel={"soft_tissue": photon, "lung": lung})
    lung_tail = fftconvolve(act.astype(np.float64) * 1e6, photon_tail_kernel(lung.kernel, 5),
                            mode="same") * 0.26 / rho
    sel = np.s_[:, :, 7:]
    np.testing.assert_allclose(dose_t[sel], (short + lung_tail)[sel], rtol=2e-4,
                               atol=1e-6 * dose_t.max())


def test_electron_part_model_adds_the_whole_photon_kernel():
    # a model of the electrons' part leaves all photons to the photon kernel: nothing of it
    # is cut out of the box (a total-kernel model's box already holds the near photons)
    m = _model()
    m.part = "electron"
    rho, act = _maps()
    photon = Kernel(kernel=np.full((9, 9, 9), 1e-14, np.float32), voxel_mm=(4.0,) * 3,
                    nuclide="Lu-177", material="soft_tissue", density_g_cm3=1.04,
                    histories=10, emissions="photons")
    dose, info = lvdk_dose(act, rho, (4.0, 4.0, 4.0), model=m, photon_kernel=photon,
                           photon_correction="none", device="cpu")
    e, _ = superpose_kernels(act, rho, m, device="cpu")
    short = e * KEV_TO_J / (rho.astype(np.float64) * 0.064 * 1e-3)
    from scipy.signal import fftconvolve

    whole = fftconvolve(act.astype(np.float64) * 1e6, photon.kernel, mode="same")
    np.testing.assert_allclose(dose, short + whole, rtol=2e-4, atol=1e-6 * dose.max())
    assert info["kernel_part"] == "electron"
    assert np.array_equal(photon_tail_kernel(photon.kernel, 0), photon.kernel)


def test_grid_must_match_the_model():
    m = _model()
    rho, act = _maps()
    with pytest.raises(InputError, match="4 mm cubic"):
        lvdk_dose(act, rho, (4.0, 4.0, 3.0), model=m, device="cpu")
    with pytest.raises(InputError, match="Y-90"):
        lvdk_dose(act, rho, (4.0, 4.0, 4.0), model=m, nuclide="Y-90", device="cpu")
    with pytest.raises(InputError, match="photon_correction"):
        lvdk_dose(act, rho, (4.0,) * 3, model=m, photon_correction="x", device="cpu")
