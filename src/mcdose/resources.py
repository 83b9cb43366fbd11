"""Memory of the running process: resident size now and at peak, and GPU memory in use.

Used to report the peak memory of pipeline stages (:mod:`mcdose.dataset`) and benchmarks.
GPU libraries are never imported here: a GPU is queried through whichever of CuPy, torch or
numba-cuda the process has already imported.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading

#: Bytes per MB (MiB) in reports.
MB = 2**20


def rss_bytes() -> int:
    """Resident set size of this process now, bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return max_rss_bytes()


def max_rss_bytes() -> int:
    """Lifetime peak RSS of this process (``getrusage``), bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def gpu_used_bytes() -> int | None:
    """Memory in use on the current GPU (whole device), via a library already imported."""
    if "cupy" in sys.modules:
        with contextlib.suppress(Exception):
            free, total = sys.modules["cupy"].cuda.runtime.memGetInfo()
            return int(total - free)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        with contextlib.suppress(Exception):
            if torch.cuda.is_initialized():
                free, total = torch.cuda.mem_get_info()
                return int(total - free)
    if "numba.cuda" in sys.modules:
        with contextlib.suppress(Exception):
            free, total = sys.modules["numba.cuda"].current_context().get_memory_info()
            return int(total - free)
    return None


class PeakMemory:
    """Peak host RSS and GPU memory while a block runs (a sampling thread, every 20 ms).

    Host: the highest RSS sample, or the process's new lifetime peak (``getrusage``) when
    the block set one (exact).  GPU (``gpu=True``): device memory in use, sampled (whole
    device, all allocators; ``gpu_increase_MB`` is the rise over the start), plus the exact
    peaks of torch's allocator (``torch_peak_MB``) and CuPy's pool (sampled,
    ``cupy_pool_peak_MB``) when those libraries are in use.
    """

    def __init__(self, gpu: bool = False, interval_s: float = 0.02) -> None:
        self.gpu = gpu
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mcdose-memory", daemon=True)
        self.start_rss = 0
        self.peak_rss = 0
        self.start_gpu: int | None = None
        self.peak_gpu: int | None = None
        self.peak_cupy: int | None = None
        self.peak_torch: int | None = None
        self._maxrss_before = 0

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss_bytes())
        if not self.gpu:
            return
        used = gpu_used_bytes()
        if used is not None:
            self.peak_gpu = used if self.peak_gpu is None else max(self.peak_gpu, used)
        if "cupy" in sys.modules:
            with contextlib.suppress(Exception):
                pool = sys.modules["cupy"].get_default_memory_pool().total_bytes()
                self.peak_cupy = max(self.peak_cupy or 0, int(pool))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._maxrss_before = max_rss_bytes()
        self.start_rss = rss_bytes()
        if self.gpu:
            self.start_gpu = gpu_used_bytes()
            if "torch" in sys.modules:
                torch = sys.modules["torch"]
                with contextlib.suppress(Exception):
                    if torch.cuda.is_initialized():
                        torch.cuda.reset_peak_memory_stats()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        after = max_rss_bytes()
        if after > self._maxrss_before:
            self.peak_rss = max(self.peak_rss, after)
        if self.gpu and "torch" in sys.modules:
            torch = sys.modules["torch"]
            with contextlib.suppress(Exception):
                if torch.cuda.is_initialized():
                    self.peak_torch = int(torch.cuda.max_memory_allocated())

    def result(self) -> dict[str, float | None]:
        """Peaks in MB (None where not measured)."""

        def mb(x: int | None) -> float | None:
            return None if x is None else round(x / MB, 1)

        out: dict[str, float | None] = {
            "peak_host_MB": mb(self.peak_rss),
            "start_host_MB": mb(self.start_rss),
        }
        if self.gpu:
            out["peak_gpu_MB"] = mb(self.peak_gpu)
            inc = None
            if self.peak_gpu is not None and self.start_gpu is not None:
                inc = max(0, self.peak_gpu - self.start_gpu)
            out["gpu_increase_MB"] = mb(inc)
            if self.peak_torch:
                out["torch_peak_MB"] = mb(self.peak_torch)
            if self.peak_cupy:
                out["cupy_pool_peak_MB"] = mb(self.peak_cupy)
        return out
