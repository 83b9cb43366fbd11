"""Tests for :mod:`mcdose.spect` (simulated SPECT: grid maps, CDR, OSEM, fallback, stage).

Runs are tiny (about 30×30×24 SPECT voxels, 32 views, 4 iterations × 4 subsets) so the whole
file takes seconds on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from mcdose.errors import CaseFileError, InputError
from mcdose.spect import (
    PAPER_COUNT_LEVELS,
    SpectProtocol,
    choose_count_level,
    simulate_spect,
    spect_case,
)
from mcdose.spect import simulate as simulate_module
from mcdose.spect.grid import (
    attenuation_map_per_cm,
    interpolate_to_case,
    make_spect_grid,
    rebin_mean,
    rebin_sum,
)

try:
    from mcdose.spect import _pytomography as ptglue
except ImportError:  # pragma: no cover - pytomography / torch not installed
    ptglue = None

needs_pytomography = pytest.mark.skipif(ptglue is None, reason="needs pytomography and torch")

SPACING = (3.0, 3.0, 4.0)  # (x, y, z) mm: anisotropic on purpose
SHAPE = (24, 50, 50)  # (z, y, x)
FAST = SpectProtocol(views=32, iterations=4, subsets=4)


def _geometry(spacing=SPACING):
    return SimpleNamespace(
        spacing_mm=spacing, origin_mm=(-10.0, 5.0, 20.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
    )


def _coords(shape=SHAPE, spacing=SPACING):
    """Voxel-centre coordinates (mm) relative to the volume centre, as (z, y, x) arrays."""
    axes = [
        (np.arange(n) - (n - 1) / 2.0) * s
        for n, s in zip(shape, (spacing[2], spacing[1], spacing[0]), strict=True)
    ]
    return np.meshgrid(*axes, indexing="ij")


def _sphere(centre_xyz, radius_mm):
    z, y, x = _coords()
    cx, cy, cz = centre_xyz
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius_mm**2


def _body():
    z, y, x = _coords()
    return x**2 + y**2 <= 70.0**2


def _density():
    return np.where(_body(), 1.0, 0.0012).astype(np.float32)


SMALL = ((35.0, -20.0, 15.0), 7.0)  # centre (x, y, z) mm, radius mm
LARGE = ((-25.0, 25.0, -5.0), 18.0)


def _two_spheres():
    """Warm cylinder (1 kBq/voxel) with a small and a large hot sphere (10:1)."""
    act = np.where(_body(), 1e-3, 0.0)
    for centre, radius in (SMALL, LARGE):
        act[_sphere(centre, radius)] = 1e-2
    return act.astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: on shared CI cores two threads were up to 3× slower (docs/spect.md)."""
    if ptglue is None:
        yield
        return
    with ptglue.torch_threads(1):
        yield


@pytest.fixture(scope="module")
def two_sphere_run():
    act = _two_spheres()
    spect, info = simulate_spect(
        act, _density(), _geometry(), counts=3e7, seed=11, protocol=FAST,
        backend="pytomography",
    )  # fmt: skip
    return act, spect, info


# ----------------------------------------------------------------------------------------
# protocol and count levels
# ----------------------------------------------------------------------------------------


def test_protocol_defaults_follow_the_paper_and_mird26():
    p = SpectProtocol()
    # Li et al. (DblurDoseNet): 128 views, OSEM 16 × 4; MIRD 26: 4.7952 mm, 208.4 keV.
    assert (p.views, p.iterations, p.subsets) == (128, 16, 4)
    assert p.pixel_mm == pytest.approx(4.7952)
    assert p.energy_keV == pytest.approx(208.4)
    assert p.attenuation and p.psf and p.scatter == "none"
    # MIRD 26: system FWHM at 10 cm about 9–13 mm for ME/MEGP collimators.
    assert 9.0 <= float(p.fwhm_mm(100.0)) <= 13.0
    assert np.all(np.diff(p.fwhm_mm(np.linspace(0, 400, 9))) > 0)


def test_cdr_defaults_derive_from_the_siemens_me_hole_geometry():
    """SIMIND SY-ME (as shipped with PyTomography): D = 2.94 mm, L = 40.64 mm."""
    import xraydb

    mu_lead_per_mm = xraydb.material_mu("Pb", 208.4e3, 11.35) / 10.0
    l_eff = 40.64 - 2.0 / mu_lead_per_mm
    p = SpectProtocol()
    assert p.collimator_fwhm_at_face_mm == pytest.approx(2.94)
    assert p.collimator_fwhm_slope == pytest.approx(2.94 / l_eff, rel=1e-3)
    # intrinsic 3.9 mm at 140 keV scaled by E^-1/2 (PyTomography's convention)
    assert p.intrinsic_fwhm_mm == pytest.approx(3.9 * (208.4 / 140.0) ** -0.5, rel=1e-3)


def test_protocol_json_round_trip_and_validation():
    p = SpectProtocol(views=60, matrix=64, orbit_radius_mm=250.0, psf=False)
    assert SpectProtocol.from_json(p.to_json()) == p
    assert json.loads(p.to_json())["views"] == 60
    for bad in (
        {"views": 0},
        {"views": 2.5},
        {"subsets": 8, "views": 4},
        {"pixel_mm": -1.0},
        {"scatter": "tew"},
        {"matrix": 0},
    ):
        with pytest.raises(InputError):
            SpectProtocol(**bad)
    with pytest.raises(InputError, match="unknown SpectProtocol field"):
        SpectProtocol.from_dict({"views": 8, "colour": "red"})


def test_choose_count_level_is_reproducible_and_covers_the_paper_levels():
    assert PAPER_COUNT_LEVELS == (1.9e7, 5.5e6, 4.4e6, 3.0e6)
    picks = [choose_count_level(seed) for seed in range(200)]
    assert picks == [choose_count_level(seed) for seed in range(200)]
    assert set(picks) == set(PAPER_COUNT_LEVELS)
    assert choose_count_level(3, levels=(1e5,)) == 1e5
    with pytest.raises(InputError):
        choose_count_level(-1)


# ----------------------------------------------------------------------------------------
# grids
# ----------------------------------------------------------------------------------------


def test_spect_grid_of_the_paper_case_is_105x105x82():
    # Paper grid 512×512×130 at 0.98×0.98×3 mm → 501.8 × 390 mm at 4.7952 mm.
    grid = make_spect_grid((130, 512, 512), (0.98, 0.98, 3.0), 4.7952)
    assert grid.shape == (82, 105, 105)
    with pytest.raises(InputError, match="does not cover"):
        make_spect_grid((130, 512, 512), (0.98, 0.98, 3.0), 4.7952, matrix=100)
    assert make_spect_grid((130, 512, 512), (0.98, 0.98, 3.0), 4.7952, matrix=128).shape == (
        82, 128, 128,
    )  # fmt: skip


def test_rebin_sum_preserves_totals_and_interpolation_reproduces_linear_fields():
    rng = np.random.default_rng(0)
    case = rng.random((7, 11, 13)).astype(np.float32)
    spacing = (1.3, 2.1, 3.7)
    grid = make_spect_grid(case.shape, spacing, 4.7952)
    assert rebin_sum(case, spacing, grid).sum() == pytest.approx(case.sum(), rel=1e-5)
    # constant density: the mean is the constant where a SPECT voxel lies inside the case
    ones = np.ones(case.shape, np.float32)
    mean = rebin_mean(ones, spacing, grid)
    assert mean.max() == pytest.approx(1.0, abs=1e-6) and mean.min() >= 0
    # linear in x: trilinear interpolation is exact between the SPECT voxel centres
    _, _, nx = grid.shape
    field = np.broadcast_to(np.arange(nx, dtype=np.float32), grid.shape)
    back = interpolate_to_case(field, grid, case.shape, spacing)
    x_mm = np.arange(case.shape[2]) * spacing[0]
    u = (x_mm - grid.offset_mm[0]) / grid.pixel_mm
    inside = (u >= 0) & (u <= nx - 1)
    np.testing.assert_allclose(back[3, 5, inside], u[inside], atol=1e-5)


def test_attenuation_map_at_the_photopeak():
    mu = attenuation_map_per_cm(np.array([0.0, 1.0, 1.92]), 208.4)
    # NIST XCOM water at 208 keV: μ ≈ 0.135 cm⁻¹ (REFERENCES.md); cortical bone μ/ρ is
    # about 5 % below water (Compton, lower Z/A).
    assert mu[0] == 0.0
    assert mu[1] == pytest.approx(0.1351, rel=2e-3)
    assert mu[2] / 1.92 == pytest.approx(0.1287, rel=5e-3)


@needs_pytomography
def test_cdr_transform_matches_pytomography_psf_transform():
    """Our batched-matrix CDR equals PyTomography's grouped-conv SPECTPSFTransform."""
    import torch
    from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta, SPECTPSFMeta
    from pytomography.transforms.SPECT import SPECTPSFTransform

    p = SpectProtocol(views=4)
    dr = [0.47952] * 3
    obj_meta = SPECTObjectMeta(dr, (20, 20, 12))
    proj_meta = SPECTProjMeta((20, 12), dr[:2], np.arange(4) * 90.0, radii=np.full(4, 15.0))

    def sigma_cm(d_cm, *_):
        return p.sigma_mm(d_cm * 10.0) / 10.0

    ours = ptglue.GaussianCDRTransform(p, 15.0)
    ours.configure(obj_meta, proj_meta)
    theirs = SPECTPSFTransform(SPECTPSFMeta((0.0,), sigma_fit=sigma_cm, min_sigmas=4))
    theirs.configure(obj_meta, proj_meta)
    x = torch.rand(obj_meta.padded_shape, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(
        ours.forward(x, 0).numpy(), theirs.forward(x, 0).numpy(), rtol=1e-4, atol=1e-6
    )
    # symmetric: <A x, y> == <x, A y>
    y = torch.rand(obj_meta.padded_shape, generator=torch.Generator().manual_seed(1))
    lhs = float((ours.forward(x, 0) * y).sum())
    rhs = float((x * ours.backward(y, 0)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)


@needs_pytomography
def test_cached_attenuation_matches_pytomography_attenuation_transform():
    import torch
    from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta
    from pytomography.transforms.SPECT import SPECTAttenuationTransform

    dr = [0.47952] * 3
    obj_meta = SPECTObjectMeta(dr, (16, 16, 6))
    angles = np.arange(8) * 45.0 + 10.0
    proj_meta = SPECTProjMeta((16, 6), dr[:2], angles, radii=np.full(8, 15.0))
    gen = torch.Generator().manual_seed(0)
    mu = 0.15 * torch.rand((16, 16, 6), generator=gen)
    x = torch.rand(obj_meta.padded_shape, generator=gen)
    reference = SPECTAttenuationTransform(attenuation_map=mu)
    reference.configure(obj_meta, proj_meta)
    for max_bytes in (1 << 20, 0):  # cached, and over budget (recomputed every time)
        ours = ptglue.CachedAttenuationTransform(mu, max_bytes=max_bytes)
        ours.configure(obj_meta, proj_meta)
        for view in (0, 3, 3):
            idx = torch.tensor(view)
            # float16 storage: relative rounding ≤ 2^-11
            np.testing.assert_allclose(
                ours.forward(x, idx).numpy(), reference.forward(x, idx).numpy(), rtol=1e-3
            )
            assert torch.equal(ours.backward(x, idx), ours.forward(x, idx))
        assert len(ours._cache) == (2 if max_bytes else 0)


@needs_pytomography
def test_pytomography_import_keeps_warning_filters_and_stdout():
    code = (
        "import warnings, mcdose.spect; before = list(warnings.filters); "
        "import mcdose.spect._pytomography; "
        "assert warnings.filters == before, 'warning filters changed'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


# ----------------------------------------------------------------------------------------
# simulate_spect with PyTomography
# ----------------------------------------------------------------------------------------


@needs_pytomography
def test_total_activity_is_preserved(two_sphere_run):
    act, spect, info = two_sphere_run
    assert info["backend"] == "pytomography"
    assert spect.dtype == np.float32 and spect.shape == act.shape and spect.min() >= 0
    # calibration: the stored total equals the true total (float32 accumulation)
    assert spect.sum(dtype=np.float64) == pytest.approx(act.sum(dtype=np.float64), rel=1e-5)
    # before calibration, projection + OSEM + resampling with the known sensitivity
    # already recover the total within 5 % (measured 0.99)
    assert info["pre_calibration_ratio"] == pytest.approx(1.0, abs=0.05)
    assert info["calibration_factor"] == pytest.approx(1.0 / info["pre_calibration_ratio"])
    assert info["counts_detected"] == pytest.approx(3e7, rel=1e-3)  # Poisson: 5σ ≈ 1e-3
    assert info["spect_grid"]["shape_zyx"] == [21, 32, 32]  # 96 × 150 × 150 mm
    json.dumps(info)  # serialisable


@needs_pytomography
def test_recovery_coefficient_falls_with_sphere_size(two_sphere_run):
    act, spect, _ = two_sphere_run
    rc = {}
    for name, (centre, radius) in (("small", SMALL), ("large", LARGE)):
        mask = _sphere(centre, radius)
        rc[name] = spect[mask].mean() / act[mask].mean()
    # 14 mm sphere vs 36 mm sphere at ~12 mm system FWHM: partial-volume loss
    assert rc["small"] < rc["large"] - 0.15
    assert 0.2 < rc["small"] < 0.8
    assert 0.6 < rc["large"] < 1.1


def _centroid(image):
    z, y, x = _coords()
    w = np.clip(image - 0.2 * image.max(), 0, None)
    return np.array([(c * w).sum() / w.sum() for c in (x, y, z)])


@pytest.mark.parametrize("backend", ["pytomography", "gaussian"])
def test_off_centre_source_reconstructs_in_place(backend):
    """Axis order: (z, y, x) in and out, PyTomography's (x, y, z) inside."""
    if backend == "pytomography" and ptglue is None:
        pytest.skip("needs pytomography and torch")
    centre, radius = SMALL
    act = np.where(_sphere(centre, radius), 1.0, 0.0).astype(np.float32)
    spect, _ = simulate_spect(
        act, _density(), _geometry(), counts=1e7, seed=2, protocol=FAST, backend=backend
    )
    # within 1.5 mm of the true centre (case voxels 3–4 mm; a swapped axis moves it ≥ 35 mm)
    np.testing.assert_allclose(_centroid(spect), centre, atol=1.5)


@needs_pytomography
def test_noise_rises_as_counts_fall():
    act = np.where(_body(), 1e-3, 0.0).astype(np.float32)
    z, y, x = _coords()
    central = (x**2 + y**2 <= 40.0**2) & (np.abs(z) <= 30.0)
    cv = {}
    for counts in (1e7, 1e6, 1e5):
        spect, _ = simulate_spect(
            act, _density(), _geometry(), counts=counts, seed=5, protocol=FAST,
            backend="pytomography",
        )  # fmt: skip
        values = spect[central]
        cv[counts] = values.std() / values.mean()
    # Poisson: CV ∝ counts^-1/2, i.e. ×3.2 per decade; demand at least ×1.8 per decade
    assert cv[1e6] > 1.8 * cv[1e7]
    assert cv[1e5] > 1.8 * cv[1e6]


@needs_pytomography
def test_fixed_seed_reproduces_and_other_seed_differs():
    act = _two_spheres()
    small = SpectProtocol(views=16, iterations=2, subsets=2)
    kwargs = dict(counts=1e6, protocol=small, backend="pytomography")
    a, _ = simulate_spect(act, _density(), _geometry(), seed=7, **kwargs)
    b, _ = simulate_spect(act, _density(), _geometry(), seed=7, **kwargs)
    c, _ = simulate_spect(act, _density(), _geometry(), seed=8, **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ----------------------------------------------------------------------------------------
# fallback and input checks
# ----------------------------------------------------------------------------------------


def test_auto_backend_falls_back_with_a_warning(monkeypatch):
    def missing():
        raise ImportError("No module named 'pytomography'")

    monkeypatch.setattr(simulate_module, "_load_pytomography", missing)
    act = _two_spheres()
    with pytest.warns(UserWarning, match="fallback"):
        spect, info = simulate_spect(act, _density(), _geometry(), counts=1e6, seed=1)
    assert info["backend"] == "gaussian" and info["pytomography"] is None
    assert spect.sum(dtype=np.float64) == pytest.approx(act.sum(dtype=np.float64), rel=1e-5)
    assert info["fallback_fwhm_mm"] == pytest.approx(float(SpectProtocol().fwhm_mm(150.0)))
    with pytest.raises(InputError, match="pytomography"):
        simulate_spect(act, _density(), _geometry(), counts=1e6, seed=1, backend="pytomography")


def test_gaussian_backend_is_silent_reproducible_and_noisier_at_low_counts():
    act = np.where(_body(), 1e-3, 0.0).astype(np.float32)
    z, y, x = _coords()
    central = (x**2 + y**2 <= 40.0**2) & (np.abs(z) <= 30.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = {
            c: simulate_spect(act, _density(), _geometry(), counts=c, seed=3, backend="gaussian")
            for c in (1e7, 1e5)
        }
    again, _ = simulate_spect(act, _density(), _geometry(), counts=1e5, seed=3, backend="gaussian")
    np.testing.assert_array_equal(again, runs[1e5][0])
    cv = {c: r[0][central].std() / r[0][central].mean() for c, r in runs.items()}
    assert cv[1e5] > 3.0 * cv[1e7]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"activity": np.zeros(SHAPE, np.float32)}, "zero everywhere"),
        ({"activity": -np.ones(SHAPE, np.float32)}, "non-negative"),
        ({"density": np.ones((3, 3, 3), np.float32)}, "differs"),
        ({"counts": 0}, "counts"),
        ({"counts": float("nan")}, "counts"),
        ({"seed": -2}, "seed"),
        ({"backend": "simind"}, "backend"),
        ({"geometry": object()}, "spacing_mm"),
        ({"protocol": {"views": 8}}, "SpectProtocol"),
    ],
)
def test_bad_input_raises_input_error(change, match):
    kwargs = dict(
        activity_MBq=_two_spheres(), density=_density(), geometry=_geometry(), counts=1e6,
        seed=0, backend="gaussian",
    )  # fmt: skip
    kwargs.update({("activity_MBq" if k == "activity" else k): v for k, v in change.items()})
    with pytest.raises(InputError, match=match):
        simulate_spect(**kwargs)


# ----------------------------------------------------------------------------------------
# the case-file stage
# ----------------------------------------------------------------------------------------


@pytest.fixture
def case_file(tmp_path):
    from mcdose.io.case import Geometry, create_case

    path = tmp_path / "case.h5"
    create_case(
        path, geometry=Geometry(SPACING, (1.0, 2.0, 3.0)), nuclide="Lu-177",
        density=_density(), activity=_two_spheres(),
    )  # fmt: skip
    return path


def test_spect_case_writes_a_valid_dataset_and_skips_when_done(case_file):
    from mcdose.io.case import read_dataset, stage_done, validate_case

    tiny = SpectProtocol(views=16, iterations=2, subsets=2)
    first = spect_case(case_file, seed=4, protocol=tiny)
    assert first["skipped"] is False
    info = validate_case(case_file, require=("spect",))
    spect = read_dataset(case_file, "spect")
    activity = read_dataset(case_file, "activity")
    assert spect.shape == info.shape and spect.dtype == np.float32
    assert spect.sum(dtype=np.float64) == pytest.approx(activity.sum(dtype=np.float64), rel=1e-5)

    import h5py

    with h5py.File(case_file, "r") as f:
        attrs = dict(f["spect"].attrs)
    backend = first["info"]["backend"]
    assert attrs["counts"] == choose_count_level(4)  # counts=None: the seed's paper level
    assert attrs["seed"] == 4 and attrs["backend"] == backend
    assert SpectProtocol.from_json(attrs["protocol"]) == tiny
    assert attrs["units"] == "MBq per voxel" and attrs["software_version"]
    assert json.loads(attrs["provenance"])["seed"] == 4
    assert json.loads(attrs["info"])["calibration_factor"] > 0
    assert stage_done(case_file, "spect", first["params"])

    before = case_file.stat().st_mtime_ns
    again = spect_case(case_file, seed=4, protocol=tiny)
    assert again["skipped"] is True and case_file.stat().st_mtime_ns == before
    redo = spect_case(case_file, seed=5, counts=1e6, protocol=tiny)
    assert redo["skipped"] is False
    assert not np.array_equal(read_dataset(case_file, "spect"), spect)


def test_spect_case_on_a_missing_file_raises_case_file_error(tmp_path):
    with pytest.raises(CaseFileError, match="does not exist"):
        spect_case(tmp_path / "nope.h5", seed=0, backend="gaussian")
