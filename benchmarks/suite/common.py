"""Shared pieces of the benchmark suite: the run context, result entries, timing and memory.

Every measurement is a *result entry* (a plain dict, JSON-ready)::

    name        dotted id, unique in a results file ("mc.cpu.paper.rate_per_core")
    group       "mc" | "vdk" | "cnn" | "dataset" | "pipeline"
    title       one line for the tables
    status      "ok" | "skipped" | "error"; ``reason`` says why when not ok
    value, unit the steady-state figure (warm-up excluded)
    better      "lower" | "higher"
    conditions  grid, spacing, histories, threads, device, backend, ...
    stat        repeats, best / median, fits: what ``value`` was taken from
    warmup_s    first-call cost (JIT compile, plans, caches) measured separately, or None
    memory      peak host RSS and GPU memory during the measurement (MB)
    published   list of {key, label, value, unit, source, ratio, faster_by} (reference.py)
    goal        {issue, text, target, op, pass, note} where an issue defines one
    headline    True for the rows shown in the README

GPU libraries are imported only inside functions, and only when a GPU measurement runs.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

SUITES = ("quick", "full")
DEVICES = ("auto", "cpu", "cuda")
GROUPS = ("mc", "vdk", "cnn", "dataset")

#: the paper's grid (z, y, x) and spacing (x, y, z) in mm
PAPER_SHAPE = (130, 512, 512)
PAPER_SPACING_MM = (0.98, 0.98, 3.0)
#: the SPECT grid of MIRD 26 / the MRTDosimetry protocol (4.7952 mm voxels)
SPECT_VOXEL_MM = 4.7952


@dataclass
class Context:
    """What to measure and how; passed to every suite module.

    Attributes
    ----------
    suite : {"quick", "full"}
    device : {"auto", "cpu", "cuda"}
        ``auto``: CPU measurements, plus GPU ones when a GPU is present (else recorded as
        skipped); ``cpu``: CPU only; ``cuda``: GPU only.
    threads : int
        CPU threads for the CPU measurements (default: the usable cores).
    repeat : int or None
        Steady-state repeats (None: the suite's default).
    options : dict
        Per-module overrides from the command line (dataset cases, histories ...).
    log : callable
        Progress lines (stderr).
    """

    suite: str = "quick"
    device: str = "auto"
    threads: int = 1
    repeat: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)

    @property
    def want_cpu(self) -> bool:
        return self.device in ("auto", "cpu")

    @property
    def want_gpu(self) -> bool:
        return self.device in ("auto", "cuda")

    def repeats(self, default: int) -> int:
        return max(1, int(self.repeat)) if self.repeat else default


def sci(n: float) -> str:
    """``10⁶``, ``2×10⁵``, ``1.6×10⁶`` for history counts in titles."""
    import math

    n = float(n)
    if n <= 0:
        return f"{n:g}"
    exp = math.floor(math.log10(n) + 1e-9)
    mant = round(n / 10**exp, 2)
    sup = str(exp).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"10{sup}" if mant == 1 else f"{mant:g}×10{sup}"


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------
# GPU availability (never imports a GPU library unless asked)
# --------------------------------------------------------------------------------------


def _nvidia_driver() -> bool:
    return not sys.platform.startswith("linux") or os.path.exists("/proc/driver/nvidia/version")


@functools.cache
def numba_cuda_reason() -> str | None:
    """None when numba-cuda sees a GPU, else why not (one line)."""
    if not _nvidia_driver():
        return "no NVIDIA driver / GPU on this machine"
    from mcdose.transport.devices import cuda_available

    if cuda_available():
        return None
    return "numba-cuda sees no CUDA GPU (numba-cuda missing or no driver)"


@functools.cache
def torch_cuda_reason() -> str | None:
    """None when torch has CUDA, else why not."""
    if not _nvidia_driver():
        return "no NVIDIA driver / GPU on this machine"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    try:
        if torch.cuda.is_available():
            return None
    except Exception as exc:  # broken driver
        return f"torch.cuda failed: {exc}"
    return f"torch {torch.__version__} has no usable CUDA device"


@functools.cache
def cupy_reason() -> str | None:
    """None when CuPy sees a GPU, else why not."""
    if not _nvidia_driver():
        return "no NVIDIA driver / GPU on this machine"
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return None
    except Exception as exc:
        return f"CuPy sees no GPU: {exc}"
    return "CuPy sees no GPU"


@functools.cache
def gpu_name() -> str | None:
    """Name of the first GPU (``nvidia-smi``, else torch when it is already imported)."""
    from .machine import gpus

    found = gpus()
    if found:
        return str(found[0]["name"])
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                return str(torch.cuda.get_device_name(0))
    return None


def release_gpu_memory() -> None:
    """Return cached GPU memory of torch and CuPy (between measurements)."""
    gc.collect()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        with contextlib.suppress(Exception):
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
    if "cupy" in sys.modules:
        cupy = sys.modules["cupy"]
        with contextlib.suppress(Exception):
            cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()


# --------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------


from mcdose.resources import MB, PeakMemory, gpu_used_bytes, max_rss_bytes, rss_bytes  # noqa: E402,F401


def merge_memory(*results: dict[str, Any]) -> dict[str, Any]:
    """Element-wise maximum of several :meth:`PeakMemory.result` dicts."""
    out: dict[str, Any] = {}
    for res in results:
        for key, value in res.items():
            if value is None:
                out.setdefault(key, None)
            elif key == "start_host_MB":
                out[key] = value if out.get(key) is None else min(out[key], value)
            else:
                out[key] = value if out.get(key) is None else max(out[key], value)
    return out


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def summarize(times: list[float]) -> dict[str, Any]:
    """Best, median and all of a list of seconds."""
    return {
        "best_s": min(times),
        "median_s": statistics.median(times),
        "all_s": [round(t, 6) for t in times],
        "repeats": len(times),
    }


@contextlib.contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["s"]`` holds the seconds."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - t0


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares ``y = a + b·x``; None with fewer than 2 distinct x."""
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    b = sxy / sxx
    return my - b * mx, b


# --------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------


def entry(
    name: str,
    title: str,
    value: float | None,
    unit: str,
    *,
    better: str = "lower",
    conditions: dict[str, Any] | None = None,
    stat: dict[str, Any] | None = None,
    warmup_s: float | None = None,
    warmup_note: str | None = None,
    memory: dict[str, Any] | None = None,
    published: tuple[str, ...] = (),
    goal: str | None = None,
    headline: bool = False,
    note: str | None = None,
) -> dict[str, Any]:
    """A measured result entry; published figures and the goal are attached by key."""
    from .reference import attach

    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    e: dict[str, Any] = {
        "name": name,
        "group": name.split(".", 1)[0],
        "title": title,
        "status": "ok",
        "value": None if value is None else float(value),
        "unit": unit,
        "better": better,
        "conditions": dict(conditions or {}),
        "stat": dict(stat or {}),
        "warmup_s": None if warmup_s is None else float(warmup_s),
        "memory": dict(memory or {}),
        "headline": bool(headline),
    }
    if warmup_note:
        e["warmup_note"] = warmup_note
    if note:
        e["note"] = note
    return attach(e, published=published, goal=goal)


def skipped(name: str, title: str, reason: str, *, unit: str = "", headline: bool = False,
            conditions: dict[str, Any] | None = None, published: tuple[str, ...] = (),
            goal: str | None = None) -> dict[str, Any]:  # fmt: skip
    """An entry that could not be measured here (no GPU, no CuPy ...)."""
    from .reference import attach

    e = {
        "name": name,
        "group": name.split(".", 1)[0],
        "title": title,
        "status": "skipped",
        "reason": reason,
        "value": None,
        "unit": unit,
        "conditions": dict(conditions or {}),
        "headline": bool(headline),
    }
    return attach(e, published=published, goal=goal)


def failed(name: str, title: str, exc: BaseException, **kw: Any) -> dict[str, Any]:
    """An entry whose measurement raised (the run goes on)."""
    e = skipped(name, title, f"{type(exc).__name__}: {exc}", **kw)
    e["status"] = "error"
    return e


def guarded(name: str, title: str, fn: Callable[[], list[dict[str, Any]]],
            **kw: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Run ``fn``; on an exception return one ``error`` entry instead of raising."""
    try:
        return fn()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing measurement is a result, not a crash
        import traceback

        traceback.print_exc(file=sys.stderr)
        return [failed(name, title, exc, **kw)]


def set_cpu_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in numba and torch (those already imported or cheap)."""
    with contextlib.suppress(Exception):
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["torch"].set_num_threads(threads)


@functools.cache
def phantom(preset: str, seed: int = 0):
    """A standard phantom (cached): ``paper``, ``small``, ``tiny`` or ``spect`` (the paper's
    field of view on the 4.7952 mm SPECT grid)."""
    from mcdose.phantoms import generate_phantom

    if preset == "spect":
        return generate_phantom(seed, "paper", spacing_mm=SPECT_VOXEL_MM)
    return generate_phantom(seed, preset)


def grid_conditions(ph) -> dict[str, Any]:
    """Grid description of a phantom for ``conditions``."""
    shape = tuple(int(n) for n in ph.density.shape)
    return {
        "grid_zyx": list(shape),
        "spacing_mm": [round(float(s), 4) for s in ph.geometry.spacing_mm],
        "voxels": int(ph.density.size),
    }
