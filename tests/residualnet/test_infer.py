"""residualnet.infer: non-negative dose, zero outside the body, streaming = per-pack forward."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mcdose.errors import InputError
from mcdose.io.case import read_dataset
from residualnet.data import pack_indices
from residualnet.infer import fuse_batch_norm, predict_case, predict_case_file
from residualnet.model import build_model
from residualnet.modelfile import load_model, save_model
from residualnet.normalization import Normalization


@pytest.fixture(scope="module")
def trained_like(tiny_config):
    """A network whose residual is not zero and whose batch norm has statistics."""
    net = build_model(tiny_config, seed=5)
    with torch.no_grad():
        torch.nn.init.normal_(net.unet.outc.weight, std=0.5)
        torch.nn.init.constant_(net.unet.outc.bias, -0.05)  # pushes some voxels below zero
        net.train()(torch.rand(4, 2, tiny_config.pack_size, 24, 24) * 2,
                    torch.zeros(4, 1, 24, 24))
    return net.eval()


@pytest.fixture(scope="module")
def case(tiny_dataset):
    path = sorted(tiny_dataset.glob("*.h5"))[3]
    arrays = {n: read_dataset(path, n) for n in ("spect", "density", "dose/vdk", "labels")}
    return path, arrays


def _reference(net, norm, a, clamp=True):
    """Dose from the per-pack forward, one slice at a time (no streaming tricks)."""
    spect, density, vdk, labels = a["spect"], a["density"], a["dose/vdk"], a["labels"]
    total = float(spect.astype(np.float64).sum())
    out = np.zeros(spect.shape, np.float32)
    p = net.config.pack_size
    with torch.no_grad():
        for z in range(spect.shape[0]):
            idx = pack_indices(z, spect.shape[0], p)
            x = np.stack([spect[idx] * norm.spect_factor(total), density[idx]])[None]
            v = (vdk[z] * norm.dose_factor(total))[None, None]
            y = net(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(v.astype(np.float32)))
            dose = y[0, 0].numpy() * total / norm.dose_scale
            out[z] = np.maximum(dose, 0) * (labels[z] != 0) if clamp else dose
    return out


def test_prediction_matches_reference_and_is_physical(trained_like, case):
    _, a = case
    norm = Normalization(spect_scale=600.0, dose_scale=1.1e5)
    ref = _reference(trained_like, norm, a)
    assert ref.max() > 0
    for fuse in (False, True):
        for batch in (1, 5, 32):
            got = predict_case(trained_like, a["spect"], a["density"], a["dose/vdk"],
                               labels=a["labels"], normalization=norm, device="cpu",
                               batch_slices=batch, crop_to_body=False, fuse=fuse)
            assert got.dtype == np.float32 and got.shape == a["spect"].shape
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * ref.max())
    cropped = predict_case(trained_like, a["spect"], a["density"], a["dose/vdk"],
                           labels=a["labels"], normalization=norm, device="cpu")
    for dose in (ref, cropped):
        assert dose.min() >= 0.0
        assert np.all(dose[a["labels"] == 0] == 0.0)
    # the unclamped output is negative in places, inside the body too: the clamp does work
    raw = _reference(trained_like, norm, a, clamp=False)
    assert raw[a["labels"] != 0].min() < 0


def test_body_from_mask_or_density(trained_like, case):
    _, a = case
    norm = Normalization(600.0, 1.1e5)
    mask = np.zeros(a["spect"].shape, dtype=bool)
    mask[4:8, 6:18, 6:18] = True
    got = predict_case(trained_like, a["spect"], a["density"], a["dose/vdk"], mask,
                       normalization=norm, device="cpu")
    assert np.all(got[~mask] == 0) and got[mask].max() > 0
    by_density = predict_case(trained_like, a["spect"], a["density"], a["dose/vdk"],
                              normalization=norm, device="cpu", crop_to_body=False)
    assert np.all(by_density[a["density"] <= 0.05] == 0)


def test_streams_from_case_file(trained_like, case, tmp_path):
    path, a = case
    norm = Normalization(600.0, 1.1e5)
    model_path = save_model(tmp_path / "m.pt", trained_like, norm, voxel_mm=(4, 4, 4),
                            nuclide="Lu-177")
    model = load_model(model_path)
    from_arrays = predict_case(model, a["spect"], a["density"], a["dose/vdk"],
                               labels=a["labels"], device="cpu")
    from_file = predict_case_file(model, path, device="cpu")
    np.testing.assert_array_equal(from_file, from_arrays)
    with h5py.File(path, "r") as f:
        out = np.full(a["spect"].shape, 7.0, np.float32)
        predict_case(model, f["spect"], f["density"], f["dose/vdk"], labels=f["labels"],
                     device="cpu", out=out)
    np.testing.assert_array_equal(out, from_arrays)


def test_input_errors(trained_like, case):
    _, a = case
    norm = Normalization(600.0, 1.1e5)
    with pytest.raises(InputError, match="shape"):
        predict_case(trained_like, a["spect"], a["density"][:-1], a["dose/vdk"],
                     normalization=norm)
    with pytest.raises(InputError, match="SPECT"):
        predict_case(trained_like, np.zeros_like(a["spect"]), a["density"], a["dose/vdk"],
                     normalization=norm, device="cpu")
    with pytest.raises(InputError, match="normalisation"):
        predict_case(trained_like, a["spect"], a["density"], a["dose/vdk"])


def test_fused_network_is_equivalent(trained_like):
    fused = fuse_batch_norm(trained_like)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 2, trained_like.config.pack_size, 24, 24)
    v = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(fused(x, v), trained_like(x, v), rtol=1e-4, atol=1e-5)
