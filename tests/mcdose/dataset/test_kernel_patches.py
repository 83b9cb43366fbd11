"""Tests of mcdose.dataset.kernel_patches: the MC training data of the learned kernels."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mcdose.dataset.kernel_patches import (
    PatchConfig,
    build_kernel_patches,
    chunk_specs,
    read_kernel_patches,
    simulate_patch,
    synthetic_region,
)
from mcdose.errors import InputError
from mcdose.nuclides import load_nuclide

KEV_TO_J = 1.602176634e-16


def tiny(**kw) -> PatchConfig:
    base = dict(size=3, voxel_mm=12.0, pad=1, electron_histories=200, photon_histories=200,
                patches_per_chunk=2, chunks=2, synthetic_fraction=0.5, preset="tiny", seed=5)
    base.update(kw)
    return PatchConfig(**base)


def test_resume_gives_the_same_file_as_one_run(tmp_path):
    a = tmp_path / "a.h5"
    first = build_kernel_patches(a, tiny(chunks=1), device="cpu", threads=1)
    assert first["written"] == [0]
    second = build_kernel_patches(a, tiny(chunks=2), device="cpu", threads=1)
    assert second["skipped"] == [0] and second["written"] == [1]
    again = build_kernel_patches(a, tiny(chunks=2), device="cpu", threads=1)
    assert again["written"] == [] and again["patches"] == 4
    b = tmp_path / "b.h5"
    build_kernel_patches(b, tiny(chunks=2), device="cpu", threads=1)
    da, db = read_kernel_patches(a), read_kernel_patches(b)
    for key in ("density", "kernel", "uncertainty", "kind"):
        np.testing.assert_array_equal(da[key], db[key])
    assert da["kernel"].shape == (4, 3, 3, 3)
    assert [i["kind"] for i in da["info"]] == ["phantom", "synthetic"] * 2


def test_other_parameters_refuse_to_resume(tmp_path):
    p = tmp_path / "p.h5"
    build_kernel_patches(p, tiny(chunks=1), device="cpu", threads=1)
    with pytest.raises(InputError, match="other parameters.*electron_histories"):
        build_kernel_patches(p, tiny(chunks=1, electron_histories=300), device="cpu")
    with h5py.File(p, "r") as f:  # the refused run added nothing
        assert list(f["chunks"]) == ["00000"]


def test_energy_fraction_is_kernel_times_mass_and_below_one(tmp_path):
    p = tmp_path / "p.h5"
    build_kernel_patches(p, tiny(chunks=1), device="cpu", threads=1)
    d = read_kernel_patches(p)
    emitted = load_nuclide("Lu-177").total_energy_per_decay_keV
    mass = d["density"].astype(np.float64) * 1.2**3 * 1e-3
    frac = (d["kernel"] * mass).reshape(len(mass), -1).sum(1) / KEV_TO_J / emitted
    np.testing.assert_allclose(frac, d["energy_fraction"], rtol=1e-5)
    # at 12 mm voxels most of the β energy stays in the box; photons leave: 0.5 < f < 1
    assert np.all(frac < 1.0) and np.all(frac > 0.5)
    np.testing.assert_allclose(d["kernel"], d["kernel_electron"] + d["kernel_photon"],
                               rtol=1e-5)


def test_chunks_are_deterministic_and_sample_interfaces():
    cfg = tiny(size=3, pad=1, patches_per_chunk=6, synthetic_fraction=0.0, interface_weight=50)
    a, b = chunk_specs(cfg, 3), chunk_specs(cfg, 3)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
    assert chunk_specs(cfg, 4)[0][1]["mc_seed"] != a[0][1]["mc_seed"]
    # with weight 50, nearly every drawn phantom voxel has lung, bone or air nearby
    tagged = sum(bool(info["neighbourhood"]) for _, info in a)
    assert tagged >= 5


def test_synthetic_regions_hold_the_inclusion():
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(40):
        rho, info = synthetic_region(rng, 11)
        kinds.add(info["pattern"])
        assert rho.shape == (11, 11, 11) and rho.dtype == np.float32 and rho.min() > 0
        if info["pattern"] != "homogeneous" and info["material"] == "lung":
            assert rho.min() < 0.5
    assert kinds == {"homogeneous", "slab", "sphere"}


def test_homogeneous_patch_reproduces_the_soft_tissue_kernel():
    """A homogeneous 1.04 g/cm³ patch without surroundings is make_kernel's simulation: the
    two agree within k = 4 combined standard errors in the source voxel and its neighbours."""
    from mcdose.vdk import make_kernel

    cfg = PatchConfig(size=5, voxel_mm=4.0, pad=0, electron_histories=20_000,
                      photon_histories=20_000)
    region = np.full((5, 5, 5), 1.04, np.float32)
    r = simulate_patch(region, cfg, seed=100, device="cpu", threads=1)
    k = make_kernel("Lu-177", 4.0, 5, histories=20_000, photon_histories=20_000, seed=300,
                    device="cpu", symmetric=False)
    for idx in [(2, 2, 2), (2, 2, 3), (2, 3, 2), (1, 2, 2)]:
        a, ua = r["kernel"][idx], r["uncertainty"][idx]
        b, ub = k.kernel[idx], k.uncertainty[idx]
        sigma = np.hypot(a * ua, b * ub)
        assert abs(a - b) <= 4 * sigma, (idx, a, b, sigma)


def test_bad_config_is_refused():
    with pytest.raises(InputError, match="odd"):
        PatchConfig(size=4)
    with pytest.raises(InputError, match="electron_histories"):
        PatchConfig(electron_histories=3)
