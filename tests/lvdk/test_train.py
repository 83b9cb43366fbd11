"""Tests of lvdk.train's data: the kernel part a model learns."""

from __future__ import annotations

import numpy as np
import pytest

from lvdk.train import load_patches
from mcdose.dataset.kernel_patches import PatchConfig, build_kernel_patches, read_kernel_patches
from mcdose.errors import InputError
from mcdose.nuclides import load_nuclide

KEV_TO_J = 1.602176634e-16


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("patches") / "p.h5"
    cfg = PatchConfig(size=3, voxel_mm=12.0, pad=1, electron_histories=200,
                      photon_histories=200, patches_per_chunk=2, chunks=1,
                      synthetic_fraction=0.5, preset="tiny", seed=5)  # fmt: skip
    build_kernel_patches(path, cfg, device="cpu", threads=1)
    return path


@pytest.mark.parametrize("part", ["total", "electron"])
def test_fractions_are_the_parts_energy_over_its_emission(patch_file, part):
    # "total": the MC kernel over the energy emitted per decay; "electron": the electron
    # emissions' kernel over the electron energy per decay (Lu-177: 183.08 − 35.10 keV,
    # ICRP 107); each row of fractions, escape included, sums to one
    raw = read_kernel_patches(patch_file)
    data = load_patches(patch_file, depth=1, part=part)
    nuc = load_nuclide("Lu-177")
    key = "kernel" if part == "total" else "kernel_electron"
    emitted = nuc.total_energy_per_decay_keV
    if part == "electron":
        emitted -= nuc.photon_energy_per_decay_keV
    assert data.part == part and data.emitted_keV == pytest.approx(emitted)
    np.testing.assert_array_equal(data.kernel, raw[key])
    mass = raw["density"].astype(np.float64) * 1.2**3 * 1e-3
    f = (raw[key] * mass / KEV_TO_J / emitted).reshape(len(mass), -1)
    np.testing.assert_allclose(data.fractions[:, :-1], f, rtol=1e-5)
    np.testing.assert_allclose(data.fractions.sum(axis=1), 1.0, atol=1e-5)
    assert data.subset(np.array([True, False])).part == part


def test_unknown_part_is_refused(patch_file):
    with pytest.raises(InputError, match="kernel part must be one of total, electron"):
        load_patches(patch_file, depth=1, part="photon")
