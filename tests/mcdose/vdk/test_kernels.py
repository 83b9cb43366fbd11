"""Voxel dose kernels: generation by Monte Carlo, bookkeeping, symmetrisation, kernel files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.physics.constants import KEV_TO_J
from mcdose.vdk import combine_kernels, make_kernel, read_kernel, symmetrize, write_kernel
from mcdose.vdk.kernels import symmetry_group
from tests.helpers import assert_one_line

# ICRP Publication 107 via shared/REFERENCES.md: Lu-177 energy per decay (keV)
LU177_ELECTRONS_KEV = 147.92
LU177_PHOTONS_KEV = 35.10
# Spread of the energy emitted per decay (keV), bounds used for the k·σ tolerances: the β
# spectrum (mean 133 keV, endpoint 498 keV) has a standard deviation below 100 keV; the
# photon lines (11 % × 208 keV, 6.4 % × 113 keV, ...) give sqrt(E[x²]) ≈ 75 keV < 80 keV.
SIGMA_ELECTRON_KEV = 100.0
SIGMA_PHOTON_KEV = 80.0


def test_bookkeeping_kernel_times_mass_plus_escaped_equals_emitted(small_kernel):
    # Σ kernel·mass + escaped = emitted is the engine's own tally: exact to float rounding
    # (the kernel is stored in float32: 1e-6 relative).
    k = small_kernel
    report = k.energy_report()
    assert set(report) == {"electrons", "photons", "all"}
    for part, r in report.items():
        assert r["imbalance"] < 1e-6, (part, r)
        assert r["deposited"] == pytest.approx(k.deposited_keV(part), rel=1e-6)
    mass = k.density_g_cm3 * 0.4**3 * 1e-3  # kg of a 4 mm voxel
    total = k.kernel.astype(np.float64).sum() * mass / KEV_TO_J
    assert total == pytest.approx(report["all"]["deposited"], rel=1e-6)
    # the parts add up to the kernel
    np.testing.assert_allclose(k.kernel_electron + k.kernel_photon, k.kernel, rtol=1e-6)


def test_emitted_energy_agrees_with_icrp107_within_statistics(small_kernel):
    # k = 4 standard errors of the sampled mean energy per decay (20 000 electron and
    # 200 000 photon decays: photons get 10× by default)
    n_e = small_kernel.histories
    n_p = small_kernel.attrs["photon_histories"]
    assert (n_e, n_p) == (20_000, 200_000)
    r = small_kernel.energy_report()
    assert abs(r["electrons"]["emitted"] - LU177_ELECTRONS_KEV) < 4 * SIGMA_ELECTRON_KEV / n_e**0.5
    assert abs(r["photons"]["emitted"] - LU177_PHOTONS_KEV) < 4 * SIGMA_PHOTON_KEV / n_p**0.5
    # electrons stay in a 20 mm cube (max β range 1.8 mm) except bremsstrahlung; most
    # photon energy escapes it (mean free path 7.4 cm)
    assert r["electrons"]["deposited_fraction"] > 0.998
    assert 0.02 < r["photons"]["deposited_fraction"] < 0.3


def test_paper_pair_and_spect_sized_kernels_can_be_made():
    # Li et al. 2022: β kernel 9×9×9 and photon kernel 99×99×99 at 0.98×0.98×3 mm, soft
    # tissue 1.04 g/cm³; and a SPECT-sized 51³ kernel at 4.7952 mm (few histories: shape,
    # attributes and bookkeeping only)
    beta = make_kernel("Lu-177", (0.98, 0.98, 3.0), 9, emissions="electrons", histories=2000,
                       seed=1, device="cpu")  # fmt: skip
    gamma = make_kernel("Lu-177", (0.98, 0.98, 3.0), 99, emissions="photons", histories=1000,
                        seed=2, device="cpu")  # fmt: skip
    spect = make_kernel("lu177", 4.7952, 51, emissions="photons", histories=500, seed=3,
                        device="cpu")  # fmt: skip
    assert beta.shape == (9, 9, 9) and gamma.shape == (99, 99, 99)
    assert spect.shape == (51, 51, 51)
    assert beta.density_g_cm3 == 1.04 and beta.material == "soft_tissue"
    assert beta.attrs["symmetry_images"] == 16  # x <-> y exchange for 0.98 x 0.98 x 3 mm
    assert spect.attrs["symmetry_images"] == 48
    for k in (beta, gamma, spect):
        (r,) = k.energy_report().values()
        assert r["imbalance"] < 1e-6
    # the photon kernel is 97 x 97 x 297 mm of tissue: most photon energy escapes it
    assert gamma.energy_report()["photons"]["escaped"] > 0.5 * LU177_PHOTONS_KEV
    assert beta.kernel_electron is None and beta.kernel_photon is None
    assert gamma.histories == 1000  # a photon-only kernel simulates what it is asked


def test_anisotropic_voxels_and_per_axis_sizes():
    k = make_kernel("Lu-177", (2.0, 3.0, 4.0), (7, 5, 3), emissions="electrons",
                    histories=4000, seed=4, device="cpu")  # fmt: skip
    assert k.shape == (3, 5, 7) and k.size == (7, 5, 3)
    assert k.attrs["symmetry_images"] == 8
    c = k.kernel
    # octant symmetry exactly; the source voxel holds most of the β energy
    np.testing.assert_array_equal(c, c[::-1, ::-1, ::-1])
    assert np.argmax(c) == np.ravel_multi_index((1, 2, 3), c.shape)
    # larger voxel extent along x (2 mm) than z (4 mm): more leaks to x neighbours
    assert c[1, 2, 4] > c[2, 2, 3]


def test_symmetry_group_sizes():
    assert len(symmetry_group((5, 5, 5), (4, 4, 4))) == 48
    assert len(symmetry_group((9, 9, 9), (0.98, 0.98, 3))) == 16
    assert len(symmetry_group((5, 5, 3), (4, 4, 4))) == 16  # z differs in size
    assert len(symmetry_group((5, 5, 5), (1, 2, 3))) == 8
    assert len(symmetry_group((5, 5, 5), (4, 4, 4), permutations=False)) == 8


def test_symmetrize_preserves_the_sum_and_propagates_uncertainty():
    rng = np.random.default_rng(0)
    k = rng.uniform(0.5, 1.5, (5, 5, 5))
    u = np.full(k.shape, 0.1)
    sym, rel = symmetrize(k, (4, 4, 4), u)
    assert sym.sum() == pytest.approx(k.sum(), rel=1e-13)
    np.testing.assert_allclose(sym, np.transpose(sym, (2, 0, 1)), rtol=1e-14)
    # A constant kernel with 10 % noise per voxel: the average over an orbit of n distinct
    # voxels has σ / sqrt(n); n = (distinct orderings of |offsets|) × 2^(non-zero offsets).
    ones, rel1 = symmetrize(np.ones((7, 7, 7)), (4, 4, 4), np.full((7, 7, 7), 0.1))
    centre = 3
    for offset, n in [((0, 0, 0), 1), ((1, 0, 0), 6), ((1, 1, 1), 8), ((1, 2, 0), 24),
                      ((1, 2, -2), 24), ((1, 2, 3), 48), ((-3, 1, 2), 48)]:  # fmt: skip
        idx = tuple(centre + o for o in offset)
        assert rel1[idx] == pytest.approx(0.1 / np.sqrt(n)), (offset, n)
    np.testing.assert_allclose(ones, 1.0)


def test_symmetrisation_cuts_the_noise_and_its_uncertainty_is_honest():
    # Two independent kernels (seeds 1, 2): the spread between them measures the noise.
    # 0.5 mm voxels, so that the β tracks (≤ 1.8 mm) spread over the 7³ kernel.
    def pair(symmetric):
        return [make_kernel("Lu-177", 0.5, 7, emissions="electrons", histories=3000, seed=s,
                            device="cpu", symmetric=symmetric) for s in (1, 2)]  # fmt: skip

    raw, sym = pair(False), pair(True)
    shell = np.ones((7, 7, 7), bool)
    shell[3, 3, 3] = False  # the neighbours, where the noise is
    d_raw = (raw[0].kernel - raw[1].kernel)[shell]
    d_sym = (sym[0].kernel - sym[1].kernel)[shell]
    # orbits of 6 to 48 voxels: the RMS difference drops by sqrt(6) ... sqrt(48); measured 4
    assert np.sqrt(np.mean(d_sym**2)) < 0.4 * np.sqrt(np.mean(d_raw**2))
    # the sum (total deposited energy) is unchanged by symmetrisation
    for a, b in zip(raw, sym, strict=True):
        assert b.kernel.sum(dtype=np.float64) == pytest.approx(
            a.kernel.sum(dtype=np.float64), rel=1e-6
        )
    # reported uncertainties describe the seed-to-seed spread: mean chi² per voxel ≈ 1
    # (accepting 0.4 … 2.5 for the few-batch variance estimates)
    for ks in (raw, sym):
        k0, k1 = ks
        s2 = (k0.kernel * k0.uncertainty) ** 2 + (k1.kernel * k1.uncertainty) ** 2
        near = shell & (s2 > 0)
        chi2 = np.mean((k0.kernel - k1.kernel)[near] ** 2 / s2[near])
        assert 0.4 < chi2 < 2.5, chi2


def test_kernel_file_round_trip(tmp_path, small_kernel):
    path = write_kernel(tmp_path / "k.h5", small_kernel)
    k = read_kernel(path)
    np.testing.assert_array_equal(k.kernel, small_kernel.kernel)
    np.testing.assert_array_equal(k.kernel_photon, small_kernel.kernel_photon)
    np.testing.assert_array_equal(k.uncertainty, small_kernel.uncertainty)
    assert (k.nuclide, k.material, k.density_g_cm3, k.voxel_mm, k.histories, k.emissions) == (
        "Lu-177", "soft_tissue", 1.04, (4.0, 4.0, 4.0), 20_000, "all")
    assert k.attrs["photon_histories"] == 200_000
    for part, values in small_kernel.energy_report().items():
        assert k.energy_report()[part] == pytest.approx(values)
    with h5py.File(path) as f:  # the contract's names and units
        assert f["kernel"].attrs["units"] == "Gy per decay"
        assert f.attrs["schema"] == "mcdose-kernel"
        assert list(f.attrs["voxel_mm"]) == [4.0, 4.0, 4.0]


def _write_h5(path, kernel=None, **attrs):
    base = {"nuclide": "Lu-177", "material": "soft_tissue", "density_g_cm3": 1.04,
            "voxel_mm": np.array([4.0, 4.0, 4.0]), "histories": 10}  # fmt: skip
    base.update(attrs)
    with h5py.File(path, "w") as f:
        f.create_dataset("kernel", data=np.ones((3, 3, 3), np.float32) if kernel is None
                         else kernel)  # fmt: skip
        for key, value in base.items():
            if value is not None:
                f.attrs[key] = value
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_text("not hdf5"), p)[1], "not a readable HDF5"),
        (lambda p: (h5py.File(p, "w").close(), p)[1], "no dataset 'kernel'"),
        (lambda p: _write_h5(p, np.ones((4, 3, 3), np.float32)), "odd sizes"),
        (lambda p: _write_h5(p, -np.ones((3, 3, 3), np.float32)), "negative"),
        (lambda p: _write_h5(p, np.full((3, 3, 3), np.nan, np.float32)), "non-finite"),
        (lambda p: _write_h5(p, voxel_mm=None), "'voxel_mm' is missing"),
        (lambda p: _write_h5(p, voxel_mm=np.array([4.0, -1.0, 4.0])), "voxel_mm"),
        (lambda p: _write_h5(p, voxel_mm=np.array([4.0, 4.0])), "voxel_mm"),
        (lambda p: _write_h5(p, density_g_cm3=0.0), "density_g_cm3"),
        (lambda p: _write_h5(p, histories=-3), "histories"),
        (lambda p: _write_h5(p, nuclide="Xx-999"), "nuclide"),
        (lambda p: _write_h5(p, emissions="neutrons"), "emissions"),
    ],
)
def test_bad_kernel_files_are_one_line_errors(tmp_path, make, message):
    path = make(tmp_path / "k.h5")
    with pytest.raises(InputError) as exc:
        read_kernel(path)
    assert message in str(exc.value) and str(path) in str(exc.value)
    assert_one_line(str(exc.value))


def test_optional_dataset_of_wrong_shape_is_rejected(tmp_path):
    path = _write_h5(tmp_path / "k.h5")
    with h5py.File(path, "a") as f:
        f.create_dataset("uncertainty", data=np.zeros((5, 5, 5), np.float32))
    with pytest.raises(InputError, match="'uncertainty' has shape"):
        read_kernel(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, "odd"),
        ({"size": (5, 5)}, "1 or 3"),
        ({"voxel_mm": (1.0, 0.0, 1.0)}, "positive"),
        ({"material": "unobtainium"}, "unknown material"),
        ({"nuclide": "Lu-999"}, "Lu-999"),
        ({"emissions": "alphas"}, "emissions"),
        ({"density_g_cm3": -1.0}, "density"),
        ({"histories": 3}, "histories"),
    ],
)
def test_bad_kernel_parameters(kwargs, message):
    args = {"nuclide": "Lu-177", "voxel_mm": 4.0, "size": 3, "histories": 100}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        make_kernel(args.pop("nuclide"), args.pop("voxel_mm"), args.pop("size"), **args,
                    device="cpu")  # fmt: skip


def test_combine_kernels_centres_and_sums():
    a = np.zeros((3, 3, 3))
    a[1, 1, 1] = 1.0
    b = np.ones((5, 1, 5))
    c = combine_kernels([a, b])
    assert c.shape == (5, 3, 5)
    assert c[2, 1, 2] == 2.0 and c.sum() == 26.0
    with pytest.raises(InputError):
        combine_kernels([np.ones((2, 3, 3))])
