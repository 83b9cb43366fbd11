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


def _ship_tiny(folder, voxel_mm=(4.0, 4.0, 4.0)):
    """A tiny model as the install's shipped default (model file + card) in ``folder``."""
    import json

    from residualnet.shipped import DEFAULT_MODEL

    folder.mkdir(exist_ok=True)
    path = _tiny_model(folder / f"{DEFAULT_MODEL}.pt", voxel_mm)
    (folder / f"{DEFAULT_MODEL}.json").write_text(json.dumps(
        {"name": DEFAULT_MODEL, "nuclide": "Lu-177", "voxel_mm": list(voxel_mm)}))
    return path


def test_no_model_means_the_shipped_one_refused_for_another_nuclide(tmp_path, monkeypatch):
    import residualnet.shipped as shipped

    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path / "none")
    with pytest.raises(InputError) as exc:
        load_cnn_model(None, voxel_mm=(4.0, 4.0, 6.0), nuclide="Lu-177")
    assert_one_line(exc, "no shipped residual-CNN model", "--model")
    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path / "models")
    path = _ship_tiny(tmp_path / "models")
    # any voxel size: the shipped model is run on its own grid
    model = load_cnn_model(None, voxel_mm=(4.0, 4.0, 6.0), nuclide="lu177")
    assert model.shipped == shipped.DEFAULT_MODEL and model.path == path
    with pytest.raises(InputError) as exc:
        load_cnn_model(None, voxel_mm=(4.0, 4.0, 4.0), nuclide="Y-90")
    assert_one_line(exc, str(path), "Lu-177", "Y-90")


def test_model_grid_covers_the_same_box():
    from mcdose.dosimetry.methods import model_grid

    g = Geometry((4.7952, 4.7952, 6.0), (-10.0, 20.0, 30.0))
    target, shape = model_grid(g, (10, 21, 20), (4.0, 4.0, 4.0))
    assert shape == (15, 26, 24)  # ceil(60/4), ceil(100.7/4), ceil(95.9/4)
    # the first corner is kept: origin − half a voxel is the same point
    np.testing.assert_allclose(np.asarray(target.origin_mm) - 2.0,
                               np.asarray(g.origin_mm) - np.asarray(g.spacing_mm) / 2)
    assert target.spacing_mm == (4.0, 4.0, 4.0) and target.direction == g.direction


def test_shipped_model_on_another_grid_resamples_and_keeps_the_dose(tmp_path, monkeypatch):
    """Uniform block on 4×4×6 mm voxels, a (tiny, untrained: returns its VDK) shipped model
    for 4 mm: run on the 4 mm grid and brought back, the interior dose rate is still the
    closed form's (electrons 147.92 keV per decay deposited locally, ICRP-107, plus a few %
    of photons), the output is on the input grid and zero outside the body, and the
    resampling is stated."""
    import residualnet.shipped as shipped

    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path / "models")
    _ship_tiny(tmp_path / "models")
    geometry = Geometry((4.0, 4.0, 6.0), (-30.0, -30.0, -30.0))
    shape = (12, 16, 16)
    rho = np.full(shape, 0.0012, np.float32)
    rho[2:-2, 2:-2, 2:-2] = 1.04
    act = np.zeros(shape, np.float32)
    act[2:-2, 2:-2, 2:-2] = 0.01  # MBq per 96 mm³ voxel
    body = rho > 0.5
    model = load_cnn_model(None, voxel_mm=geometry.spacing_mm, nuclide="Lu-177")
    cnn = compute_dose_rate("cnn", act, rho, geometry, body=body, model=model,
                            kernel_histories=5 * KERNEL_HISTORIES)
    assert cnn.dose_rate_Gy_s.shape == shape
    resampling = cnn.info["resampling"]
    assert resampling["model_grid_voxel_mm"] == [4.0, 4.0, 4.0]
    assert resampling["dose_grid_voxel_mm"] == [4.0, 4.0, 6.0]
    assert "resampled" in resampling["note"] and cnn.info["model_shipped"]
    interior = (slice(4, -4), slice(5, -5), slice(5, -5))  # ≥ 12 mm from the faces
    electrons = 0.01e6 * 147.92e-3 * MEV_J / (1.04e-3 * geometry.voxel_volume_cm3)
    ratio = cnn.dose_rate_Gy_s[interior].astype(np.float64).mean() / electrons
    assert 1.0 < ratio < 1.10, ratio
    assert float(np.abs(cnn.dose_rate_Gy_s[~body]).max()) == 0.0
    # a user's model file is still refused on a grid it was not trained for
    user = load_cnn_model(_tiny_model(tmp_path / "u.pt", (4.0, 4.0, 4.0)),
                          voxel_mm=(4.0, 4.0, 4.0), nuclide="Lu-177")
    with pytest.raises(InputError) as exc:
        compute_dose_rate("cnn", act, rho, geometry, body=body, model=user,
                          kernel_histories=5 * KERNEL_HISTORIES)
    assert_one_line(exc, "voxels", "dose grid")


def test_unknown_method_refused():
    rho, act = _block()
    with pytest.raises(InputError) as exc:
        compute_dose_rate("fft", act, rho, GEOMETRY)
    assert_one_line(exc, "--method")
