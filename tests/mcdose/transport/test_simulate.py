"""Dose-level validation of the Monte Carlo engine (CPU driver)."""

import json

import numpy as np
import pytest

from mcdose.errors import DeviceError, InputError
from mcdose.physics.constants import KEV_TO_J
from mcdose.transport import simulate_case, simulate_dose

# ICRP Publication 107 via shared/REFERENCES.md: Lu-177 electrons per decay (keV)
LU177_ELECTRONS_KEV = 147.92
LU177_PHOTONS_KEV = 35.10


def _heterogeneous_phantom(n=10):
    density = np.full((n, n, n), 1.04, np.float32)
    density[:, :, : n // 3] = 0.26  # lung
    density[:, :, -2:] = 1.85  # bone
    density[0] = 0.0012  # air
    activity = np.zeros_like(density)
    activity[2:8, 2:8, 2:8] = 1.0
    activity[4, 4, 1] = 5.0  # a hot spot in lung
    return density, activity


@pytest.mark.parametrize("nuclide", ["Lu-177", "Y-90", "F-18", "I-131"])
def test_energy_is_conserved_to_one_part_per_million(nuclide):
    # Every run must account for all emitted energy: emitted = deposited + escaped
    # (issue 3 validation: 1e-6 relative).  Y-90 exercises bremsstrahlung, F-18 positron
    # annihilation photons, I-131 high-energy photons and many lines.
    density, activity = _heterogeneous_phantom()
    r = simulate_dose(density, activity, (5.0, 5.0, 5.0), nuclide=nuclide, histories=4000,
                      seed=3, device="cpu")  # fmt: skip
    b = r.energy_balance
    assert b["relative_imbalance"] < 1e-6, b
    assert b["stack_overflow"] == 0.0
    # the sampled emission matches the nuclide's tabulated total (loose: ~1 % statistics)
    assert abs(b["emitted"] - b["expected_emitted"]) < 0.05 * b["expected_emitted"], b
    if nuclide == "Y-90":
        assert b["bremsstrahlung"] > 0


def _interior_mean(dose, rel, margin):
    sl = (slice(margin, -margin),) * 3
    d = dose[sl].astype(np.float64)
    sigma = np.sqrt(np.sum((d * rel[sl]) ** 2)) / d.size
    return d.mean(), sigma


def _uniform_block(n, density_value, spacing_mm, histories, emissions, seed=5):
    density = np.full((n, n, n), density_value, np.float32)
    activity = np.ones_like(density)
    return simulate_dose(
        density, activity, (spacing_mm,) * 3, histories=histories, seed=seed, device="cpu",
        materials=np.zeros(density.shape, np.uint8), material_names=("water",),
        emissions=emissions,
    )  # fmt: skip


def test_uniform_water_block_electron_dose_equals_closed_form():
    # Uniform Lu-177 in water, electrons only: every voxel farther than the maximum beta
    # range (1.8 mm) from the surface absorbs the electron energy of its own decays, so the
    # dose per decay is E_e / (n_voxels * rho * V) with E_e = 147.92 keV (ICRP 107,
    # shared/REFERENCES.md).  Tolerance: 4 sigma + 0.1 % (the spectrum-based beta mean
    # exceeds the branch mean by 0.05 %).
    n, spacing = 10, 5.0
    r = _uniform_block(n, 1.0, spacing, 100_000, "electrons")
    mean, sigma = _interior_mean(r.dose_per_decay_Gy, r.relative_uncertainty, 1)
    mass_kg = 1.0 * (spacing / 10) ** 3 * 1e-3
    expected = LU177_ELECTRONS_KEV * KEV_TO_J / (n**3 * mass_kg)
    assert abs(mean - expected) < 4 * sigma + 1e-3 * expected, (mean, expected, sigma)


def test_uniform_water_block_all_emissions_adds_a_partial_photon_dose():
    # With photons the interior dose lies between the electron-only closed form and the
    # fully absorbed total (183.0 keV); in a 5 cm cube most photon energy escapes
    # (mean free path of 208 keV photons 7.4 cm, shared/PHYSICS.md).
    n, spacing = 10, 5.0
    r = _uniform_block(n, 1.0, spacing, 100_000, "all")
    mean, sigma = _interior_mean(r.dose_per_decay_Gy, r.relative_uncertainty, 1)
    unit = KEV_TO_J / (n**3 * 1.0 * (spacing / 10) ** 3 * 1e-3)
    photon_part = mean / unit - LU177_ELECTRONS_KEV
    assert 0.5 < photon_part < 0.5 * LU177_PHOTONS_KEV, photon_part
    b = r.energy_balance
    assert b["escaped"] > 0.5 * LU177_PHOTONS_KEV


def test_electron_dose_scales_as_inverse_density():
    # Same geometry and material at half the density: the electrons still deposit all their
    # energy in their voxel's neighbourhood, in half the mass -> twice the dose (issue 3).
    full = _uniform_block(8, 1.0, 6.0, 60_000, "electrons", seed=1)
    half = _uniform_block(8, 0.5, 6.0, 60_000, "electrons", seed=2)
    m1, s1 = _interior_mean(full.dose_per_decay_Gy, full.relative_uncertainty, 1)
    m2, s2 = _interior_mean(half.dose_per_decay_Gy, half.relative_uncertainty, 1)
    ratio = m2 / m1
    sigma = ratio * np.hypot(s1 / m1, s2 / m2)
    assert abs(ratio - 2.0) < 4 * sigma + 2e-3, (ratio, sigma)


def test_same_seed_same_dose_for_any_thread_count_and_different_seed_differs():
    density, activity = _heterogeneous_phantom(8)
    kwargs = dict(histories=3000, device="cpu", batches=4)
    a = simulate_dose(density, activity, (4.0, 4.0, 4.0), seed=9, threads=1, **kwargs)
    b = simulate_dose(density, activity, (4.0, 4.0, 4.0), seed=9, threads=2, **kwargs)
    c = simulate_dose(density, activity, (4.0, 4.0, 4.0), seed=10, threads=2, **kwargs)
    np.testing.assert_array_equal(a.dose_rate_Gy_s, b.dose_rate_Gy_s)
    np.testing.assert_array_equal(a.relative_uncertainty, b.relative_uncertainty)
    assert not np.array_equal(a.dose_rate_Gy_s, c.dose_rate_Gy_s)


def test_batch_uncertainty_agrees_with_the_spread_between_seeds():
    # The batch standard error must describe the actual seed-to-seed scatter: over 12
    # independent runs, the ratio of observed std to reported sigma in well-sampled voxels
    # is 1 within ~20 % (the std of a 12-sample std is ~21 %; averaged over voxels, less).
    density = np.full((6, 6, 6), 1.0, np.float32)
    activity = np.ones_like(density)
    runs = [
        simulate_dose(density, activity, (4.0, 4.0, 4.0), histories=6000, seed=s,
                      device="cpu", batches=10)  # fmt: skip
        for s in range(12)
    ]
    doses = np.stack([r.dose_rate_Gy_s for r in runs])
    reported = np.mean([r.relative_uncertainty for r in runs], axis=0) * doses.mean(axis=0)
    observed = doses.std(axis=0, ddof=1)
    ratio = np.median(observed / reported)
    assert 0.8 < ratio < 1.2, ratio


def test_dose_rate_is_dose_per_decay_times_activity():
    density, activity = _heterogeneous_phantom(6)
    r = simulate_dose(density, activity * 3.0, (4.0,) * 3, histories=1000, device="cpu")
    total_bq = float(activity.sum() * 3.0) * 1e6
    np.testing.assert_allclose(r.dose_rate_Gy_s, r.dose_per_decay_Gy * total_bq, rtol=1e-5)
    assert r.attrs["method"] == "mc" and r.attrs["nuclide"] == "Lu-177"
    assert r.attrs["histories"] == 1000 and "software_version" in r.attrs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d, a: (d, a[:-1]), "does not match"),
        (lambda d, a: (-d, a), "negative"),
        (lambda d, a: (d, a * 0), "zero everywhere"),
        (lambda d, a: (d, np.where(a > 0, np.nan, a)), "non-finite"),
    ],
)
def test_bad_input_is_one_clear_error(change, message):
    density, activity = _heterogeneous_phantom(6)
    d, a = change(density, activity)
    with pytest.raises(InputError, match=message):
        simulate_dose(d, a, (4.0,) * 3, histories=100, device="cpu")


def test_bad_run_parameters():
    density, activity = _heterogeneous_phantom(6)
    with pytest.raises(InputError, match="batches"):
        simulate_dose(density, activity, (4.0,) * 3, histories=100, batches=1)
    with pytest.raises(InputError, match="device"):
        simulate_dose(density, activity, (4.0,) * 3, histories=100, device="tpu")
    with pytest.raises(InputError, match="spacing"):
        simulate_dose(density, activity, (4.0, 0.0, 4.0), histories=100)


def test_cuda_request_without_gpu_is_a_device_error(monkeypatch):
    import mcdose.transport.devices as devices

    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    density, activity = _heterogeneous_phantom(6)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        simulate_dose(density, activity, (4.0,) * 3, histories=100, device="cuda")


def test_simulate_case_writes_dose_and_uncertainty_then_skips(tmp_path):
    from mcdose.io.case import read_case_info, read_dataset, read_dataset_attrs
    from tests.helpers import make_case

    path = make_case(tmp_path, shape=(6, 8, 10), spect=True)
    result = simulate_case(path, histories=2000, seed=4, device="cpu")
    assert result is not None
    info = read_case_info(path)
    assert {"dose/mc", "dose/mc_uncertainty"} <= set(info.datasets)
    attrs = read_dataset_attrs(path, "dose/mc")
    assert attrs["method"] == "mc" and attrs["histories"] == 2000 and attrs["seed"] == 4
    assert json.loads(attrs["energy_balance_keV_per_decay"])["relative_imbalance"] < 1e-6
    np.testing.assert_array_equal(read_dataset(path, "dose/mc"), result.dose_rate_Gy_s)
    # same parameters: skipped, file untouched
    before = path.stat().st_mtime_ns
    assert simulate_case(path, histories=2000, seed=4, device="cpu") is None
    assert path.stat().st_mtime_ns == before
    # from the SPECT
    assert simulate_case(path, source="spect", histories=1000, device="cpu") is not None
    assert "dose/mc_spect" in read_case_info(path).datasets


def test_simulate_case_reruns_when_its_source_is_recomputed(tmp_path):
    # the stage parameters hold the source's fingerprint (mcdose.io.case.source_fingerprint),
    # so dose/mc_spect computed from an older SPECT is not taken for done
    from mcdose.io.case import (
        read_dataset,
        read_dataset_attrs,
        source_fingerprint,
        write_datasets,
    )
    from tests.helpers import make_case

    path = make_case(tmp_path, spect=True)
    kw = dict(source="spect", histories=200, seed=2, device="cpu", batches=2)
    assert simulate_case(path, **kw) is not None
    assert simulate_case(path, **kw) is None
    params = json.loads(read_dataset_attrs(path, "dose/mc_spect")["params"])
    assert params["source_fingerprint"] == source_fingerprint(path, "spect")
    write_datasets(path, {"spect": read_dataset(path, "spect")},
                   {"spect": {"params": {"counts": 1e6}}})  # a new SPECT
    assert simulate_case(path, **kw) is not None
    assert simulate_case(path, **kw) is None
    # the MC on the true activity does not depend on the SPECT
    assert simulate_case(path, **{**kw, "source": "activity"}) is not None
    write_datasets(path, {"spect": read_dataset(path, "spect")})
    assert simulate_case(path, **{**kw, "source": "activity"}) is None


def test_simulate_case_interrupted_leaves_the_case_unchanged(tmp_path, monkeypatch):
    import mcdose.transport.case as case_module
    from tests.helpers import make_case

    path = make_case(tmp_path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(case_module, "simulate_dose", interrupted)
    with pytest.raises(KeyboardInterrupt):
        case_module.simulate_case(path, histories=100, device="cpu")
    assert path.read_bytes() == before


def test_fano_condition_dose_is_uniform_across_density_jumps():
    # Fano's theorem (U. Fano, Radiat. Res. 1 (1954) 237): in a medium of one composition
    # whose density varies, a source uniform per unit *mass* gives a uniform fluence and so a
    # uniform dose.  Stacked water slabs at 1.0 / 0.25 / 1.0 / 0.5 g/cm3 (mm-scale layers,
    # comparable to the Lu-177 beta range), electrons only: the dose per voxel must be the
    # same everywhere away from the outer faces, within 4 sigma.  This checks the transport
    # of electron steps across voxel boundaries of different density (issue 3: interfaces).
    n = 12
    density = np.ones((n, n, n), np.float32)
    density[:, :, 3:5] = 0.25
    density[:, :, 7:9] = 0.5
    activity = density.copy()  # uniform per unit mass
    r = simulate_dose(
        density, activity, (1.0, 1.0, 1.0), histories=200_000, seed=12, device="cpu",
        materials=np.zeros(density.shape, np.uint8), material_names=("water",),
        emissions="electrons",
    )  # fmt: skip
    # average over y and z (interior) to a profile along x, then compare each slab to the mean
    inner = slice(3, -3)
    dose = r.dose_per_decay_Gy[inner, inner, 2:-2].astype(np.float64)
    rel = r.relative_uncertainty[inner, inner, 2:-2]
    profile = dose.mean(axis=(0, 1))
    sigma = np.sqrt(((dose * rel) ** 2).sum(axis=(0, 1))) / (dose.shape[0] * dose.shape[1])
    mean = profile.mean()
    assert np.all(np.abs(profile - mean) < 4 * sigma + 0.01 * mean), (profile / mean, sigma / mean)


def test_boundary_limited_steps_do_not_change_the_voxel_kernel():
    # Letting a step grow to the nearest voxel face (PRESTA-II-style boundary crossing) is
    # exact for voxel tallies in principle; check it on the most sensitive case, the beta
    # point-source kernel at 1 mm voxels (energy shared between the source voxel and its
    # neighbours by electrons crossing faces): per-voxel doses agree within 4 sigma.
    from mcdose.transport import TransportOptions

    n = 7
    density = np.ones((n, n, n), np.float32)
    activity = np.zeros_like(density)
    activity[n // 2, n // 2, n // 2] = 1.0
    common = dict(
        histories=100_000, device="cpu", emissions="electrons",
        materials=np.zeros(density.shape, np.uint8), material_names=("water",),
    )  # fmt: skip
    fast = simulate_dose(density, activity, (1.0,) * 3, seed=1,
                         options=TransportOptions(boundary_steps=True), **common)  # fmt: skip
    slow = simulate_dose(density, activity, (1.0,) * 3, seed=2,
                         options=TransportOptions(boundary_steps=False), **common)  # fmt: skip
    a, b = fast.dose_per_decay_Gy.astype(float), slow.dose_per_decay_Gy.astype(float)
    sigma = np.hypot(a * fast.relative_uncertainty, b * slow.relative_uncertainty)
    good = (fast.relative_uncertainty < 0.1) & (slow.relative_uncertainty < 0.1)
    assert good.sum() >= 7  # the source voxel and its face neighbours at least
    assert np.all(np.abs(a - b)[good] < 4 * sigma[good] + 1e-3 * a.max()), (
        (a - b)[good] / sigma[good]
    )
    # the source voxel keeps most of the energy (beta range << 1 mm) in both
    c = n // 2
    assert a[c, c, c] > 0.5 * a.sum()


def test_interrupted_run_resumes_from_checkpoint_with_identical_result(tmp_path, monkeypatch):
    # A run killed after 2 of 4 batches resumes from the checkpoint and gives exactly the
    # dose of an uninterrupted run (same seed): nothing is lost when a run is interrupted.
    from mcdose.transport.cpu import CpuBackend

    density, activity = _heterogeneous_phantom(6)
    kwargs = dict(histories=2000, seed=8, device="cpu", batches=4)
    reference = simulate_dose(density, activity, (4.0,) * 3, **kwargs)
    ckpt = tmp_path / "run.ckpt.npz"
    original_run = CpuBackend.run
    calls = {"n": 0}

    def flaky_run(self, first, last, seed):
        if 1000 <= first < 2000:  # batch 3 of 4 (the warm-up uses indices >= 2000)
            raise KeyboardInterrupt
        calls["n"] += 1
        return original_run(self, first, last, seed)

    monkeypatch.setattr(CpuBackend, "run", flaky_run)
    with pytest.raises(KeyboardInterrupt):
        simulate_dose(density, activity, (4.0,) * 3, checkpoint=ckpt,
                      checkpoint_interval_s=0.0, **kwargs)  # fmt: skip
    assert ckpt.exists()
    monkeypatch.setattr(CpuBackend, "run", original_run)
    resumed = simulate_dose(density, activity, (4.0,) * 3, checkpoint=ckpt, **kwargs)
    assert resumed.attrs["resumed_batches"] == 2
    assert resumed.run_histories == 1000
    np.testing.assert_array_equal(resumed.dose_rate_Gy_s, reference.dose_rate_Gy_s)
    np.testing.assert_array_equal(resumed.relative_uncertainty, reference.relative_uncertainty)
    # a checkpoint of another run is ignored
    other = simulate_dose(density, activity, (4.0,) * 3, checkpoint=ckpt,
                          **{**kwargs, "seed": 9})  # fmt: skip
    assert other.attrs["resumed_batches"] == 0
