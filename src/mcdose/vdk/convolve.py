"""'Same'-size linear convolution of a volume with voxel dose kernels by FFT.

Backends: ``scipy`` (``scipy.fft`` with all cores, the CPU default), ``torch`` (CUDA tensors
on a GPU, CPU tensors otherwise) and ``cupy`` (GPU).  GPU libraries are imported only when
their backend is chosen.

Method
------
Along each axis the volume (length n, at indices 0…n−1) and the kernel (offsets −c…c,
stored *wrapped*: offset d at index d mod L) are transformed with length
L ≥ n + c (``scipy.fft.next_fast_len``, 2·3·5-smooth), which makes the circular convolution
equal to the linear one at the outputs 0…n−1 (a wrapped term would need an offset beyond
±c).  The wrap is a phase factor on the kernel's spectrum, ``exp(2πi f c / L)`` per axis, so
the kernel never has to be padded to the full volume.  Kernel offsets beyond ±(n−1) can
never reach an output voxel and are cropped first.  Symmetric (even) kernels have a real
spectrum; it is stored as real numbers (half the memory, a cheaper product).

On the CPU the transforms are *pruned*: the forward transform runs along x (real FFT), then
y, then z, each pass only over the rows that are not known to be zero; the inverse runs
along z, keeps only the wanted slices, then y, keeping only the wanted rows, then x.  For
512×512×130 with a 99³ kernel this does about 60 % of the work of a full 3-D transform
of the padded volume.  On a GPU the full ``rfftn`` / ``irfftn`` of one cuFFT plan is used.

Several kernels (the tissue classes) share the forward transform of the volume; each kernel
costs one product and one inverse transform.

Bounded memory
--------------
When the estimated working memory of the whole volume exceeds ``max_bytes`` (default half of
the available memory; on a GPU 80 % of its free memory), the volume is cut into slabs of m
slices along z, each transformed with length L ≥ m + 2c and its full linear convolution
(m + 2c slices) added into the output (overlap-add).  The result equals the unchunked one to
float rounding.

Kernel spectra are cached per padded shape (a small LRU per :class:`FFTConvolver`), so the
cases of a campaign that share a grid transform the kernel once.
"""

from __future__ import annotations

import collections
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcdose.errors import DeviceError, InputError

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "ConvolutionPlan",
    "FFTConvolver",
    "available_backends",
    "fft_convolve",
    "resolve_backend",
]

BACKENDS = ("scipy", "torch", "cupy")
PRECISIONS = ("float32", "float64")
#: Rows per block when transforming a kernel along z (bounds the float64 temporaries).
_KERNEL_BLOCK_ROWS = 32


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


def _nvidia_driver_present() -> bool:
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version")
    return True  # elsewhere we cannot tell cheaply; let the libraries decide


def _cupy_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install
        return False


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def available_backends() -> list[str]:
    """Backends usable here: ``scipy`` always, ``torch`` when installed, ``cupy`` with a GPU."""
    out = ["scipy"]
    if importlib.util.find_spec("torch") is not None:
        out.append("torch")
    if _nvidia_driver_present() and _cupy_gpu():
        out.append("cupy")
    return out


def resolve_backend(backend: str = "auto", device: str | None = None) -> tuple[str, str]:
    """Map a backend request to ``(backend, device)``.

    Parameters
    ----------
    backend : {"auto", "scipy", "torch", "cupy"}
        ``auto``: CuPy on a GPU, else torch on a GPU, else scipy on the CPU.
    device : {"cpu", "cuda"} or None
        For ``torch``: the tensor device (default CUDA when available).  ``scipy`` is always
        ``cpu`` and ``cupy`` always ``cuda``.

    Raises
    ------
    InputError
        Unknown backend, or a device the backend cannot use.
    DeviceError
        The backend or its GPU is not available.
    """
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"backend must be auto, {', '.join(BACKENDS)}; got {backend!r}")
    if device not in (None, "auto", "cpu", "cuda"):
        raise InputError(f"device must be cpu or cuda, got {device!r}")
    device = None if device == "auto" else device
    if backend == "auto":
        if device == "cpu" or not _nvidia_driver_present():
            return "scipy", "cpu"
        if _cupy_gpu():
            return "cupy", "cuda"
        if _torch_cuda():
            return "torch", "cuda"
        if device == "cuda":
            raise DeviceError("no CUDA GPU usable by CuPy or torch for the convolution")
        return "scipy", "cpu"
    if backend == "scipy":
        if device == "cuda":
            raise InputError("the scipy backend runs on the CPU; use torch or cupy for CUDA")
        return "scipy", "cpu"
    if backend == "cupy":
        if device == "cpu":
            raise InputError("the cupy backend runs on a GPU; use scipy or torch for the CPU")
        if importlib.util.find_spec("cupy") is None:
            raise DeviceError("backend 'cupy' requested but CuPy is not installed")
        if not _cupy_gpu():
            raise DeviceError("backend 'cupy' requested but CuPy sees no CUDA GPU")
        return "cupy", "cuda"
    # torch
    if importlib.util.find_spec("torch") is None:
        raise DeviceError("backend 'torch' requested but torch is not installed")
    if device is None:
        return "torch", "cuda" if _torch_cuda() else "cpu"
    if device == "cuda" and not _torch_cuda():
        raise DeviceError("backend 'torch' on cuda requested but torch sees no CUDA GPU")
    return "torch", device


class _ScipyOps:
    """scipy.fft on NumPy arrays (CPU, ``workers`` threads)."""

    name = "scipy"
    gpu = False

    def __init__(self, device: str, workers: int) -> None:
        import scipy.fft

        self.fft_mod = scipy.fft
        self.workers = workers

    def to_device(self, a: np.ndarray) -> np.ndarray:
        return a

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def rfft(self, x, n, axis):
        return self.fft_mod.rfft(x, n=n, axis=axis, workers=self.workers)

    def fft(self, x, n, axis):
        return self.fft_mod.fft(x, n=n, axis=axis, workers=self.workers, overwrite_x=True)

    def ifft(self, x, axis):
        return self.fft_mod.ifft(x, axis=axis, workers=self.workers, overwrite_x=True)

    def irfft(self, x, n, axis):
        return self.fft_mod.irfft(x, n=n, axis=axis, workers=self.workers)

    def rfftn(self, x, s):
        return self.fft_mod.rfftn(x, s=s, workers=self.workers)

    def irfftn(self, x, s):
        return self.fft_mod.irfftn(x, s=s, workers=self.workers)

    def take0(self, x, index: np.ndarray):
        return np.take(x, index, axis=0)

    def mul(self, x, k, inplace: bool):
        if inplace:
            x *= k
            return x
        return x * k

    def clamp_min(self, x, value: float):
        """``max(x, value)``, in place where ``x`` may be overwritten."""
        return np.maximum(x, x.dtype.type(value), out=x)

    def div(self, x, d):
        """``x / d`` (``x`` may be a view; the result is a new array or ``x``)."""
        return np.divide(x, d, out=x)

    def free_bytes(self) -> int:
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            return 8 * 2**30

    def synchronize(self) -> None:
        return None


class _CupyOps(_ScipyOps):
    """cupy.fft on CuPy arrays (GPU)."""

    name = "cupy"
    gpu = True

    def __init__(self, device: str, workers: int) -> None:
        import cupy

        self.cp = cupy
        self.fft_mod = cupy.fft

    def to_device(self, a: np.ndarray):
        return self.cp.asarray(a)

    def to_numpy(self, a: Any) -> np.ndarray:
        return self.cp.asnumpy(a)

    def rfft(self, x, n, axis):
        return self.fft_mod.rfft(x, n=n, axis=axis)

    def fft(self, x, n, axis):
        return self.fft_mod.fft(x, n=n, axis=axis)

    def ifft(self, x, axis):
        return self.fft_mod.ifft(x, axis=axis)

    def irfft(self, x, n, axis):
        return self.fft_mod.irfft(x, n=n, axis=axis)

    def rfftn(self, x, s):
        return self.fft_mod.rfftn(x, s=s)

    def irfftn(self, x, s):
        return self.fft_mod.irfftn(x, s=s)

    def take0(self, x, index: np.ndarray):
        return self.cp.take(x, self.cp.asarray(index), axis=0)

    def clamp_min(self, x, value: float):
        return self.cp.maximum(x, x.dtype.type(value), out=x)

    def div(self, x, d):
        return self.cp.divide(x, d, out=x)

    def free_bytes(self) -> int:
        free, _total = self.cp.cuda.runtime.memGetInfo()
        return int(free)

    def synchronize(self) -> None:
        self.cp.cuda.runtime.deviceSynchronize()


class _TorchOps:
    """torch.fft on torch tensors (CUDA or CPU)."""

    name = "torch"

    def __init__(self, device: str, workers: int) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.gpu = self.device.type == "cuda"

    def to_device(self, a: np.ndarray):
        t = self.torch.from_numpy(np.ascontiguousarray(a))
        return t.to(self.device, non_blocking=False)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy()

    def rfft(self, x, n, axis):
        return self.torch.fft.rfft(x, n=n, dim=axis)

    def fft(self, x, n, axis):
        return self.torch.fft.fft(x, n=n, dim=axis)

    def ifft(self, x, axis):
        return self.torch.fft.ifft(x, dim=axis)

    def irfft(self, x, n, axis):
        return self.torch.fft.irfft(x, n=n, dim=axis)

    def rfftn(self, x, s):
        return self.torch.fft.rfftn(x, s=s, dim=(0, 1, 2))

    def irfftn(self, x, s):
        return self.torch.fft.irfftn(x, s=s, dim=(0, 1, 2))

    def take0(self, x, index: np.ndarray):
        return self.torch.index_select(x, 0, self.torch.as_tensor(index, device=x.device))

    def mul(self, x, k, inplace: bool):
        if inplace:
            x.mul_(k)
            return x
        return x * k

    def clamp_min(self, x, value: float):
        return x.clamp_(min=value)

    def div(self, x, d):
        return x.div_(d)

    def free_bytes(self) -> int:
        if self.gpu:
            free, _total = self.torch.cuda.mem_get_info(self.device)
            return int(free)
        return _ScipyOps.free_bytes(self)  # type: ignore[arg-type]

    def synchronize(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize(self.device)


_OPS = {"scipy": _ScipyOps, "cupy": _CupyOps, "torch": _TorchOps}


# --------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------


def _fast_len(n: int, real: bool = True) -> int:
    """Next FFT-friendly length ≥ n: 2·3·5-smooth (``real``), else also 7 and 11 factors."""
    import scipy.fft

    return int(scipy.fft.next_fast_len(int(n), real=real))


@dataclass(frozen=True)
class ConvolutionPlan:
    """How a volume is convolved.

    Attributes
    ----------
    shape : (z, y, x)
        Volume shape.
    half_widths : (cz, cy, cx)
        Kernel half-widths after cropping to the volume (offsets −c…c are used).
    padded : (Lz, Ly, Lx)
        FFT lengths.
    chunk : int
        Slices per z-slab (``shape[0]`` when not chunked).
    estimated_bytes : int
        Estimated peak working memory of one slab (device memory on a GPU).
    budget_bytes : int
        The memory budget it was planned for.
    """

    shape: tuple[int, int, int]
    half_widths: tuple[int, int, int]
    padded: tuple[int, int, int]
    chunk: int
    estimated_bytes: int
    budget_bytes: int

    @property
    def chunked(self) -> bool:
        """True when the volume is processed in several z-slabs (overlap-add)."""
        return self.chunk < self.shape[0]


def _estimate_bytes(
    m: int, padded: tuple[int, int, int], shape: tuple[int, int, int], n_kernels: int,
    real_spectra: int, precision: str,
) -> int:  # fmt: skip
    lz, ly, lx = padded
    _, ny, nx = shape
    csize = 8 if precision == "float32" else 16
    rsize = csize // 2
    half = lz * ly * (lx // 2 + 1)
    spec = half * csize
    kspec = half * (real_spectra * rsize + (n_kernels - real_spectra) * csize)
    volume = m * ny * nx * rsize * (1 + n_kernels)
    return int(3 * spec + kspec + volume)


# --------------------------------------------------------------------------------------
# The convolver
# --------------------------------------------------------------------------------------


def _as_kernel_array(k: Any) -> np.ndarray:
    arr = np.asarray(getattr(k, "kernel", k))
    if arr.ndim != 3 or any(n % 2 == 0 for n in arr.shape):
        raise InputError(f"kernel must be 3-D (z, y, x) with odd sizes, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
        raise InputError("kernel must hold finite numbers")
    return arr.astype(np.float64)


def _is_even(k: np.ndarray) -> bool:
    scale = float(np.max(np.abs(k))) or 1.0
    return all(
        float(np.max(np.abs(k - np.flip(k, axis)))) <= 1e-6 * scale for axis in range(3)
    )


class FFTConvolver:
    """Same-size linear convolution of volumes with one or more kernels (see module doc).

    Parameters
    ----------
    kernels : ndarray, Kernel or sequence of them
        Kernels ``(z, y, x)`` with odd sizes, centred.  A :class:`~mcdose.vdk.Kernel` is
        taken by its ``kernel`` array.  ``convolve`` returns one result per kernel.
    backend : {"auto", "scipy", "torch", "cupy"}
        See :func:`resolve_backend`.
    device : {"cpu", "cuda"}, optional
        For ``torch``; default CUDA when available.
    precision : {"float32", "float64"}
        Arithmetic of the transforms (results are float32 either way).  float32 agrees with
        float64 to ~1e-6 of the maximum.
    max_bytes : int, optional
        Working-memory budget; default half the available memory (CPU) or 80 % of the free
        GPU memory.
    workers : int
        scipy threads (-1: all cores).
    mode : {"pruned", "full"}, optional
        Transform scheme; default pruned on the CPU, full on a GPU.
    cache_size : int
        Kernel spectra kept (per padded shape).
    """

    def __init__(
        self,
        kernels: Any,
        *,
        backend: str = "auto",
        device: str | None = None,
        precision: str = "float32",
        max_bytes: int | None = None,
        workers: int = -1,
        mode: str | None = None,
        cache_size: int = 2,
    ) -> None:
        if isinstance(kernels, np.ndarray) or hasattr(kernels, "kernel"):
            kernels = [kernels]
        self.kernels = [_as_kernel_array(k) for k in kernels]
        if not self.kernels:
            raise InputError("no kernel given")
        if precision not in PRECISIONS:
            raise InputError(f"precision must be float32 or float64, got {precision!r}")
        self.backend, self.device = resolve_backend(backend, device)
        self.ops = _OPS[self.backend](self.device, workers)
        self.precision = precision
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        if mode is None:
            mode = "full" if self.ops.gpu else "pruned"
        if mode not in ("pruned", "full"):
            raise InputError(f"mode must be pruned or full, got {mode!r}")
        self.mode = mode
        self._even = [_is_even(k) for k in self.kernels]
        self._spectra: collections.OrderedDict[Any, list[Any]] = collections.OrderedDict()
        self._cache_size = max(1, int(cache_size))

    # -- planning ----------------------------------------------------------------------

    def budget_bytes(self) -> int:
        """Memory budget of one slab (bytes)."""
        if self.max_bytes is not None:
            return self.max_bytes
        free = self.ops.free_bytes()
        return int(0.8 * free) if self.ops.gpu else int(0.5 * free)

    def plan(self, shape: Sequence[int]) -> ConvolutionPlan:
        """Padded shape and z-chunking for a volume of ``shape`` (z, y, x)."""
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"volume must be 3-D (z, y, x) and non-empty, got shape {shape}")
        kshape = tuple(max(k.shape[i] for k in self.kernels) for i in range(3))
        half = tuple(min(kshape[i] // 2, shape[i] - 1) for i in range(3))
        # pocketfft (scipy) is fast for 7- and 11-smooth complex lengths (y, z); cuFFT and
        # the x axis (a real transform) get 2·3·5-smooth lengths
        cplx = not self.ops.gpu and self.backend == "scipy"
        ly = _fast_len(shape[1] + half[1], real=not cplx)
        lx = _fast_len(shape[2] + half[2])
        nk = len(self.kernels)
        nreal = sum(self._even)
        budget = self.budget_bytes()
        nz, cz = shape[0], half[0]
        lz = _fast_len(nz + cz, real=not cplx)
        est = _estimate_bytes(nz, (lz, ly, lx), shape, nk, nreal, self.precision)
        if est <= budget:
            return ConvolutionPlan(shape, half, (lz, ly, lx), nz, est, budget)
        best = None
        lo, hi = 1, nz - 1
        while lo <= hi:  # the largest slab that fits
            m = (lo + hi) // 2
            lzm = _fast_len(m + 2 * cz, real=not cplx)
            e = _estimate_bytes(m, (lzm, ly, lx), shape, nk, nreal, self.precision)
            if e <= budget:
                best = (m, lzm, e)
                lo = m + 1
            else:
                hi = m - 1
        if best is None:
            lzm = _fast_len(1 + 2 * cz, real=not cplx)
            e = _estimate_bytes(1, (lzm, ly, lx), shape, nk, nreal, self.precision)
            log.warning("one slice needs ~%.3g GB, more than the %.3g GB budget; proceeding",
                        e / 1e9, budget / 1e9)  # fmt: skip
            best = (1, lzm, e)
        m, lzm, e = best
        return ConvolutionPlan(shape, half, (lzm, ly, lx), m, e, budget)

    # -- kernel spectra ----------------------------------------------------------------

    def _spectra_for(self, half: tuple[int, int, int], padded: tuple[int, int, int]) -> list:
        key = (half, padded)
        if key in self._spectra:
            self._spectra.move_to_end(key)
            return self._spectra[key]
        spectra = [
            self.ops.to_device(self._kernel_spectrum(k, even, half, padded))
            for k, even in zip(self.kernels, self._even, strict=True)
        ]
        self._spectra[key] = spectra
        while len(self._spectra) > self._cache_size:
            self._spectra.popitem(last=False)
        return spectra

    def _kernel_spectrum(
        self, kernel: np.ndarray, even: bool, half: tuple[int, int, int],
        padded: tuple[int, int, int],
    ) -> np.ndarray:  # fmt: skip
        """rfftn of the kernel cropped to ±half and wrapped (offset d at index d mod L)."""
        import scipy.fft as sf

        lz, ly, lx = padded
        centre = tuple(n // 2 for n in kernel.shape)
        own = tuple(min(centre[i], half[i]) for i in range(3))  # a smaller kernel keeps its own
        crop = kernel[tuple(slice(centre[i] - own[i], centre[i] + own[i] + 1)
                            for i in range(3))]  # fmt: skip
        cz, cy, cx = own
        cdt = np.complex64 if self.precision == "float32" else np.complex128
        rdt = np.float32 if self.precision == "float32" else np.float64
        crop = crop.astype(rdt)
        fx = np.arange(lx // 2 + 1)
        fy = np.arange(ly)
        fz = np.arange(lz)
        # phases in float64, applied in the working precision
        a = sf.rfft(crop, n=lx, axis=2) * np.exp(2j * np.pi * fx * cx / lx).astype(cdt)
        a = sf.fft(a, n=ly, axis=1) * np.exp(2j * np.pi * fy * cy / ly).astype(cdt)[:, None]
        phase_z = np.exp(2j * np.pi * fz * cz / lz).astype(cdt)[:, None, None]
        out = np.empty((lz, ly, lx // 2 + 1), dtype=rdt if even else cdt)
        for y0 in range(0, ly, _KERNEL_BLOCK_ROWS):
            b = sf.fft(a[:, y0 : y0 + _KERNEL_BLOCK_ROWS], n=lz, axis=0) * phase_z
            out[:, y0 : y0 + _KERNEL_BLOCK_ROWS] = b.real if even else b
        return out

    # -- convolution -------------------------------------------------------------------

    def convolve(
        self, volume: Any, *, which: Sequence[bool] | None = None,
        nonnegative: bool | None = None, factor: float | Sequence[float] = 1.0,
        divide_by: np.ndarray | None = None, floor: float = 0.0,
    ) -> list[np.ndarray | None]:  # fmt: skip
        """Convolve ``volume`` (z, y, x) with every kernel; 'same' size, linear (zero outside).

        Parameters
        ----------
        volume : array (z, y, x)
            The volume (e.g. activity, MBq per voxel).
        which : sequence of bool, optional
            Convolve only with the kernels marked True (the others give None).
        nonnegative : bool, optional
            Whether the volume is known to be ≥ 0 (checked when not given).
        factor : float or one per kernel
            Results are multiplied by it.
        divide_by : array (z, y, x), optional
            Results are divided by ``max(divide_by, floor)`` voxel by voxel — the density
            correction, done on the device before the copy back.
        floor : float
            See ``divide_by`` (> 0 when given).

        Returns
        -------
        list of ndarray float32 (or None)
            One result per kernel, same shape as ``volume``, clipped at 0 when the volume and
            kernel are non-negative (FFT rounding leaves ±1e-7 of the maximum).
        """
        vol = np.asarray(volume)
        if vol.ndim != 3:
            raise InputError(f"volume must be 3-D (z, y, x), got shape {vol.shape}")
        if vol.dtype.kind not in "fiub":
            raise InputError(f"volume must be numeric, got dtype {vol.dtype}")
        plan = self.plan(vol.shape)
        nz, ny, nx = plan.shape
        cz = plan.half_widths[0]
        lz, ly, lx = plan.padded
        real = np.float32 if self.precision == "float32" else np.float64
        wanted = [True] * len(self.kernels) if which is None else [bool(w) for w in which]
        if len(wanted) != len(self.kernels):
            raise InputError(f"which has {len(wanted)} entries for {len(self.kernels)} kernels")
        factors = ([float(factor)] * len(self.kernels) if np.ndim(factor) == 0
                   else [float(f) for f in factor])  # fmt: skip
        if len(factors) != len(self.kernels):
            raise InputError(f"factor has {len(factors)} entries for {len(self.kernels)} kernels")
        if divide_by is not None:
            divide_by = np.asarray(divide_by)
            if divide_by.shape != vol.shape:
                raise InputError(f"divide_by has shape {divide_by.shape}, expected {vol.shape}")
        if nonnegative is None:
            nonnegative = bool(vol.size == 0 or np.min(vol) >= 0)
        clip = [nonnegative and bool(np.min(k) >= 0) for k in self.kernels]
        spectra = self._spectra_for(plan.half_widths, plan.padded)
        ops = self.ops
        active = [i for i in range(len(self.kernels)) if wanted[i]]
        outputs: list[np.ndarray | None] = [
            (np.empty if not plan.chunked else np.zeros)(plan.shape, dtype=np.float32)
            if wanted[i] else None
            for i in range(len(self.kernels))
        ]  # fmt: skip
        for z0 in range(0, nz, plan.chunk):
            z1 = min(nz, z0 + plan.chunk)
            m = z1 - z0
            if plan.chunked:
                o0, o1 = max(-cz, -z0), min(m + cz, nz - z0)
            else:
                o0, o1 = 0, nz
            block = ops.to_device(np.ascontiguousarray(vol[z0:z1], dtype=real))
            if self.mode == "full":
                spec = ops.rfftn(block, (lz, ly, lx))
            else:
                spec = ops.rfft(block, lx, 2)
                spec = ops.fft(spec, ly, 1)
                spec = ops.fft(spec, lz, 0)
            del block
            denom = None
            if divide_by is not None:
                denom = ops.clamp_min(ops.to_device(np.ascontiguousarray(
                    divide_by[z0 + o0 : z0 + o1], dtype=real)), floor)  # fmt: skip
            for i in active:
                kspec = spectra[i]
                last = i == active[-1]
                prod = ops.mul(spec, kspec, inplace=last)
                if last:
                    spec = None
                index = np.arange(o0, o1) % lz
                if self.mode == "full":
                    res = ops.irfftn(prod, (lz, ly, lx))
                    del prod
                    res = _take_z(ops, res[:, :ny, :nx], o0, o1, lz, index)
                else:
                    prod = ops.ifft(prod, 0)
                    prod = _take_z(ops, prod, o0, o1, lz, index)
                    prod = ops.ifft(prod, 1)[:, :ny]
                    res = ops.irfft(prod, lx, 2)[..., :nx]
                    del prod
                if clip[i]:  # each slab's part is ≥ 0 up to rounding, so is their sum
                    res = ops.clamp_min(res, 0.0)
                if factors[i] != 1.0:
                    res = ops.mul(res, factors[i], inplace=True)
                if denom is not None:
                    res = ops.div(res, denom)
                out = ops.to_numpy(res)
                del res
                target = outputs[i]
                if plan.chunked:
                    target[z0 + o0 : z0 + o1] += out
                else:
                    target[...] = out
            del denom
        ops.synchronize()
        return outputs


def _take_z(ops: Any, x: Any, o0: int, o1: int, lz: int, index: np.ndarray) -> Any:
    """Rows ``o0…o1−1`` (mod ``lz``) of axis 0: a slice when contiguous, else a gather."""
    if o0 >= 0 and o1 <= lz:
        return x[o0:o1]
    return ops.take0(x, index)


def fft_convolve(
    volume: Any,
    kernel: Any,
    *,
    backend: str = "auto",
    device: str | None = None,
    precision: str = "float32",
    max_bytes: int | None = None,
    workers: int = -1,
    mode: str | None = None,
) -> np.ndarray:
    """'Same'-size linear convolution of ``volume`` with one ``kernel`` (see :class:`FFTConvolver`).

    Returns
    -------
    ndarray float32
        Same shape as ``volume``.
    """
    conv = FFTConvolver(kernel, backend=backend, device=device, precision=precision,
                        max_bytes=max_bytes, workers=workers, mode=mode)  # fmt: skip
    return conv.convolve(volume)[0]

