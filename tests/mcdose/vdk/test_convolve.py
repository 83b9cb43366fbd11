"""FFT convolution: exactness against direct convolution, backends, chunking, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy.signal import fftconvolve

from mcdose.errors import DeviceError, InputError
from mcdose.vdk.convolve import FFTConvolver, available_backends, fft_convolve, resolve_backend

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_CUPY = "cupy" in available_backends()

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")


def _even(k):
    """Make a kernel symmetric under the 8 reflections (as Monte Carlo kernels are)."""
    for axis in range(3):
        k = k + np.flip(k, axis)
    return k


def _case(seed=0, shape=(13, 17, 20), kshape=(5, 7, 9)):
    rng = np.random.default_rng(seed)
    vol = rng.random(shape).astype(np.float32)
    vol[rng.random(shape) < 0.3] = 0.0
    return vol, rng.random(kshape)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


CONFIGS = [
    {"backend": "scipy"},
    {"backend": "scipy", "mode": "full"},
    {"backend": "scipy", "precision": "float64"},
    pytest.param({"backend": "torch", "device": "cpu"}, marks=needs_torch),
    pytest.param({"backend": "torch", "device": "cpu", "mode": "full"}, marks=needs_torch),
    pytest.param({"backend": "torch", "device": "cpu", "precision": "float64"},
                 marks=needs_torch),  # fmt: skip
    pytest.param({"backend": "cupy"}, marks=pytest.mark.gpu),
    pytest.param({"backend": "torch", "device": "cuda"}, marks=pytest.mark.gpu),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kshape", [(5, 7, 9), (31, 3, 41), (1, 1, 1), (3, 5, 3)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_equals_direct_linear_convolution(config, kshape, symmetric):
    # 'same'-size linear convolution (zero outside the volume), also with kernels larger
    # than the volume (31 > 13 slices, 41 > 20 columns)
    vol, k = _case(kshape=kshape)
    if symmetric:
        k = _even(k)
    ref = fftconvolve(vol.astype(np.float64), k, mode="same")
    out = fft_convolve(vol, k, **config)
    assert out.dtype == np.float32 and out.shape == vol.shape
    # results are float32 either way: float64 arithmetic is exact to float32 rounding
    tol = 1e-7 if config.get("precision") == "float64" else 2e-6
    assert _rel(out, ref) < tol


@pytest.mark.parametrize("config", CONFIGS[:4])
@pytest.mark.parametrize("max_bytes", [1, 40_000, 80_000])
def test_chunked_overlap_add_equals_unchunked(config, max_bytes):
    vol, k = _case(seed=1, shape=(23, 11, 12), kshape=(7, 5, 5))
    k = _even(k)
    whole = FFTConvolver(k, **config)
    chunked = FFTConvolver(k, max_bytes=max_bytes, **config)
    plan = chunked.plan(vol.shape)
    assert plan.chunked and plan.chunk < vol.shape[0]
    assert not whole.plan(vol.shape).chunked
    tol = 1e-7 if config.get("precision") == "float64" else 1e-6
    assert _rel(chunked.convolve(vol)[0], whole.convolve(vol)[0]) < tol


def test_plan_respects_the_budget_and_pads_enough():
    k = np.ones((9, 9, 9))
    conv = FFTConvolver(k, backend="scipy", max_bytes=500_000)
    plan = conv.plan((40, 30, 30))
    assert plan.chunked and plan.estimated_bytes <= 500_000
    assert not FFTConvolver(k, backend="scipy", max_bytes=2_000_000).plan((40, 30, 30)).chunked
    lz, ly, lx = plan.padded
    cz, cy, cx = plan.half_widths
    assert lz >= plan.chunk + 2 * cz and ly >= 30 + cy and lx >= 30 + cx
    # kernel offsets beyond the volume are cropped: a 9-wide kernel on a 3-slice volume
    assert conv.plan((3, 30, 30)).half_widths == (2, 4, 4)


@needs_torch
def test_backends_agree():
    vol, k = _case(seed=2, shape=(20, 24, 18), kshape=(9, 9, 9))
    k = _even(k)
    results = {b: fft_convolve(vol, k, backend=b, device="cpu" if b == "torch" else None)
               for b in available_backends() if b != "cupy"}  # fmt: skip
    if HAVE_CUPY:
        results["cupy"] = fft_convolve(vol, k, backend="cupy")
    ref = results["scipy"]
    for name, out in results.items():
        assert _rel(out, ref) < 1e-5, name


def test_float32_agrees_with_float64():
    # a smooth, long-tailed kernel like a photon kernel: float32 is accurate to 1e-6 of max
    z, y, x = np.meshgrid(*(np.arange(-15, 16),) * 3, indexing="ij")
    k = 1.0 / (1.0 + x**2 + y**2 + (3 * z) ** 2)
    vol, _ = _case(seed=3, shape=(24, 40, 36))
    a = fft_convolve(vol, k, backend="scipy", precision="float32")
    b = fft_convolve(vol, k, backend="scipy", precision="float64")
    assert _rel(a, b) < 1e-5


def test_several_kernels_share_one_forward_transform():
    vol, k1 = _case(seed=4)
    k2 = _even(np.random.default_rng(5).random((3, 3, 3)))
    conv = FFTConvolver([k1, k2], backend="scipy")
    r1, r2 = conv.convolve(vol)
    assert _rel(r1, fftconvolve(vol.astype(float), k1, mode="same")) < 2e-6
    assert _rel(r2, fftconvolve(vol.astype(float), k2, mode="same")) < 2e-6


def test_kernel_spectra_are_cached_per_shape():
    vol, k = _case(seed=6)
    conv = FFTConvolver(_even(k), backend="scipy", cache_size=2)
    conv.convolve(vol)
    first = next(iter(conv._spectra.values()))
    conv.convolve(vol * 2)
    assert len(conv._spectra) == 1 and next(iter(conv._spectra.values())) is first
    conv.convolve(vol[:5])  # another shape, another spectrum
    conv.convolve(vol[:, :4])
    assert len(conv._spectra) == 2  # least recently used dropped


def test_symmetric_kernels_store_a_real_spectrum():
    vol, k = _case(seed=7)
    sym = FFTConvolver(_even(k), backend="scipy")
    asym = FFTConvolver(k, backend="scipy")
    sym.convolve(vol)
    asym.convolve(vol)
    assert next(iter(sym._spectra.values()))[0].dtype == np.float32
    assert next(iter(asym._spectra.values()))[0].dtype == np.complex64


def test_non_negative_input_gives_non_negative_output():
    vol = np.zeros((9, 9, 9), np.float32)
    vol[4, 4, 4] = 1.0
    k = _even(np.random.default_rng(8).random((7, 7, 7))) * 1e-9
    out = fft_convolve(vol, k, backend="scipy")
    assert out.min() >= 0.0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: FFTConvolver(np.ones((4, 3, 3))), InputError, "odd"),
        (lambda: FFTConvolver(np.ones((3, 3))), InputError, "3-D"),
        (lambda: FFTConvolver(np.full((3, 3, 3), np.nan)), InputError, "finite"),
        (lambda: FFTConvolver([]), InputError, "no kernel"),
        (lambda: FFTConvolver(np.ones((3, 3, 3)), backend="fftw"), InputError, "backend"),
        (lambda: FFTConvolver(np.ones((3, 3, 3)), precision="float16"), InputError, "precision"),
        (lambda: FFTConvolver(np.ones((3, 3, 3)), mode="fast"), InputError, "mode"),
        (lambda: resolve_backend("scipy", "cuda"), InputError, "CPU"),
        (lambda: fft_convolve(np.ones((3, 3)), np.ones((3, 3, 3))), InputError, "3-D"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy with a GPU is present")
def test_cupy_without_gpu_is_a_device_error():
    with pytest.raises(DeviceError, match="cupy"):
        resolve_backend("cupy")


def test_auto_backend_on_a_cpu_machine_is_scipy():
    if HAVE_CUPY:
        pytest.skip("a GPU is present")
    backend, device = resolve_backend("auto", "cpu")
    assert (backend, device) == ("scipy", "cpu")


def test_only_the_wanted_kernels_are_convolved():
    vol, k1 = _case(seed=9)
    k2 = _even(np.random.default_rng(10).random((3, 3, 3)))
    conv = FFTConvolver([k1, k2], backend="scipy")
    skipped, r2 = conv.convolve(vol, which=[False, True])
    assert skipped is None
    assert _rel(r2, fftconvolve(vol.astype(float), k2, mode="same")) < 2e-6
    with pytest.raises(InputError, match="which"):
        conv.convolve(vol, which=[True])
