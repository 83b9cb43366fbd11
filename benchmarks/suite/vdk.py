"""VDK convolution: 512×512×130 with the paper's 99³ photon + 9³ β kernels, CPU and GPU.

Times :func:`mcdose.vdk.vdk_dose` — NumPy arrays in, NumPy dose rate out, so host ↔ device
copies are included on a GPU — with the two kernels summed into one 99³ kernel and the
density correction (× 1.04 / ρ).  The kernels are **random symmetric arrays** of the
paper's sizes: their content does not change the cost, and no kernel Monte Carlo has to
run first.  The activity and density maps are random too (uniform; density 0.2–1.9 g/cm³).

* warm-up (reported separately): the first call — the kernel spectrum (computed once per
  grid shape and cached in the :class:`~mcdose.vdk.FFTConvolver`), FFT plans, GPU context;
* steady state: best (and median) of the following calls, as in a campaign that reuses one
  convolver;
* the tissue-class method (three kernel sets: lung, soft tissue, bone; one forward
  transform) and the 4.7952 mm SPECT grid (the default kernel sizes there) are timed too.

Backends: ``scipy`` and ``torch`` on the CPU (``--cpu-threads`` workers), ``cupy`` and
``torch`` (CUDA) on a GPU.  Formerly ``benchmarks/vdk_bench.py``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .common import (
    PAPER_SHAPE,
    PAPER_SPACING_MM,
    SPECT_VOXEL_MM,
    Context,
    PeakMemory,
    cupy_reason,
    entry,
    gpu_name,
    guarded,
    merge_memory,
    release_gpu_memory,
    skipped,
    torch_cuda_reason,
)

#: name → (backend, device)
BACKENDS = {
    "scipy": ("scipy", "cpu"),
    "torch-cpu": ("torch", "cpu"),
    "cupy": ("cupy", "cuda"),
    "torch-cuda": ("torch", "cuda"),
}
PARAMS = {
    "quick": {"repeat": 3, "tissue": ("scipy", "cupy"), "spect": ("scipy", "cupy")},
    "full": {"repeat": 5, "tissue": tuple(BACKENDS), "spect": tuple(BACKENDS)},
}
#: kernel sizes (z = y = x) of the paper
PAPER_KERNELS = {"electrons": 9, "photons": 99}


def symmetric_kernel(n: int | tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A random kernel symmetric under the three axis flips (Gy per decay scale)."""
    shape = (n, n, n) if isinstance(n, int) else tuple(n)
    k = rng.random(shape)
    for axis in range(3):
        k = k + np.flip(k, axis)
    return (k * 1e-12).astype(np.float32)


def _kernel(arr: np.ndarray, voxel_mm, rho: float, emissions: str):
    from mcdose.vdk import Kernel

    return Kernel(kernel=arr, voxel_mm=tuple(voxel_mm), nuclide="Lu-177", material="soft_tissue",
                  density_g_cm3=rho, histories=0, emissions=emissions)  # fmt: skip


def _sync(backend: str, device: str) -> None:
    if backend == "torch" and device == "cuda":
        import torch

        torch.cuda.synchronize()
    elif backend == "cupy":
        import cupy

        cupy.cuda.runtime.deviceSynchronize()


def bench(name: str, shape, voxel_mm, sizes: dict[str, Any], repeat: int, tissue: bool,
          workers: int) -> dict[str, Any]:  # fmt: skip
    """Cold and warm times of ``vdk_dose`` (and optionally ``tissue_class_dose``)."""
    from mcdose.vdk import FFTConvolver, combine_kernels, tissue_class_dose, vdk_dose

    backend, device = BACKENDS[name]
    gpu = device == "cuda"
    rng = np.random.default_rng(0)
    activity = rng.random(shape, dtype=np.float32)
    density = rng.uniform(0.2, 1.9, shape).astype(np.float32)
    beta = _kernel(symmetric_kernel(sizes["electrons"], rng), voxel_mm, 1.04, "electrons")
    gamma = _kernel(symmetric_kernel(sizes["photons"], rng), voxel_mm, 1.04, "photons")
    conv = FFTConvolver(combine_kernels([beta.kernel, gamma.kernel]), backend=backend,
                        device=device, workers=workers)  # fmt: skip
    plan = conv.plan(shape)
    out: dict[str, Any] = {"backend": conv.backend, "device": conv.device, "mode": conv.mode,
                           "padded_shape": list(plan.padded),
                           "chunks": -(-shape[0] // plan.chunk),
                           "estimated_MB": round(plan.estimated_bytes / 2**20, 1)}  # fmt: skip

    def run() -> float:
        t = time.perf_counter()
        vdk_dose(activity, density, [beta, gamma], convolver=conv)
        _sync(backend, device)
        return time.perf_counter() - t

    with PeakMemory(gpu=gpu) as mem_cold:
        out["cold_s"] = run()
    with PeakMemory(gpu=gpu) as mem:
        warm = [run() for _ in range(repeat)]
    out.update(warm_best_s=min(warm), warm_median_s=statistics.median(warm), warm_all_s=warm,
               memory=merge_memory(mem_cold.result(), mem.result()))  # fmt: skip
    conv = None  # frees the kernel spectra
    if gpu:
        release_gpu_memory()
    if tissue:
        sets = {c: [_kernel(beta.kernel, voxel_mm, r, "electrons"),
                    _kernel(gamma.kernel, voxel_mm, r, "photons")]
                for c, r in (("lung", 0.26), ("soft_tissue", 1.04), ("bone", 1.92))}
        tconv = FFTConvolver([combine_kernels([k.kernel for k in s]) for s in sets.values()],
                             backend=backend, device=device, workers=workers)  # fmt: skip

        def run_t() -> float:
            t = time.perf_counter()
            tissue_class_dose(activity, density, sets, convolver=tconv)
            _sync(backend, device)
            return time.perf_counter() - t

        with PeakMemory(gpu=gpu) as tmem:
            out["tissue_cold_s"] = run_t()
            tw = [run_t() for _ in range(max(1, repeat // 2))]
        out.update(tissue_warm_best_s=min(tw), tissue_warm_median_s=statistics.median(tw),
                   tissue_warm_all_s=tw, tissue_memory=tmem.result())  # fmt: skip
        tconv = None
        if gpu:
            release_gpu_memory()
    return out


def _reason(name: str) -> str | None:
    backend, device = BACKENDS[name]
    if device == "cpu":
        import importlib.util

        if backend == "torch" and importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        return None
    return cupy_reason() if backend == "cupy" else torch_cuda_reason()


def _entries_for(ctx: Context, name: str, grid: str) -> list[dict]:
    p = PARAMS[ctx.suite]
    backend, device = BACKENDS[name]
    dev = device
    gpu = device == "cuda"
    if grid == "paper":
        shape, voxel = PAPER_SHAPE, PAPER_SPACING_MM
        sizes = dict(PAPER_KERNELS)
    else:
        from mcdose.phantoms import resolve_grid
        from mcdose.vdk import default_kernel_sizes

        _, shape, voxel = resolve_grid("paper", None, SPECT_VOXEL_MM)
        ds = default_kernel_sizes(voxel, shape=shape)
        sizes = {"electrons": tuple(ds["electrons"][::-1]), "photons": tuple(ds["photons"][::-1])}
    tissue = grid == "paper" and name in p["tissue"]
    label = f"{name}, {'GPU' if gpu else 'CPU'}"
    threads = None if gpu else ctx.threads
    ksz = {k: "×".join(map(str, v if isinstance(v, tuple) else (v,) * 3))
           for k, v in sizes.items()}  # fmt: skip
    cond = {"grid_zyx": list(shape), "spacing_mm": list(voxel), "device": dev,
            "backend": name, "threads": threads, "gpu": gpu_name() if gpu else None,
            "kernels": f"{ksz['photons']} photon + {ksz['electrons']} β (random, symmetric)"}
    title = ("VDK dose, 512×512×130, 99³+9³ kernels" if grid == "paper"
             else "VDK dose, SPECT grid 4.8 mm")  # fmt: skip
    base = f"vdk.{dev}.{grid}.{name}"
    reason = _reason(name)
    if reason:
        paper = grid == "paper"
        return [skipped(f"{base}.single", f"{title} ({label})", reason, unit="s",
                        conditions=cond, headline=paper and name in ("scipy", "cupy"),
                        published=(("vdk_v100",) if gpu else ("vdk_cpu",)) if paper else (),
                        goal=("vdk_gpu" if gpu else "vdk_cpu") if paper else None)]
    repeat = ctx.repeats(p["repeat"])
    ctx.log(f"  vdk: {name} on {grid} {shape}")
    r = bench(name, shape, voxel, sizes, repeat, tissue, ctx.threads)
    cond.update(mode=r["mode"], padded_shape=r["padded_shape"], chunks=r["chunks"])
    stat = {k: r[k] for k in ("warm_best_s", "warm_median_s", "warm_all_s", "estimated_MB")}
    out = [entry(
        f"{base}.single", f"{title} ({label})", r["warm_best_s"], "s", conditions=cond,
        stat=stat, warmup_s=r["cold_s"],
        warmup_note="first call: kernel spectrum, FFT plans" + (", GPU context" if gpu else ""),
        memory=r["memory"],
        published=(("vdk_v100",) if gpu else ("vdk_cpu",)) if grid == "paper" else (),
        goal=("vdk_gpu" if gpu else "vdk_cpu") if grid == "paper" else None,
        headline=grid == "paper" and name in ("scipy", "cupy", "torch-cuda"),
        note="best of the warm calls; one convolver reused (its kernel spectrum cached)",
    )]  # fmt: skip
    if tissue:
        out.append(entry(
            f"{base}.tissue", f"VDK tissue classes (3 kernel sets), 512×512×130 ({label})",
            r["tissue_warm_best_s"], "s", conditions=cond,
            stat={k: r[k] for k in r if k.startswith("tissue_warm")},
            warmup_s=r["tissue_cold_s"], memory=r["tissue_memory"],
        ))  # fmt: skip
    return out


def run(ctx: Context) -> list[dict]:
    """VDK entries for the devices ``ctx`` asks for."""
    names = []
    if ctx.want_cpu:
        names += ["scipy", "torch-cpu"]
        try:
            import torch

            torch.set_num_threads(ctx.threads)
        except ImportError:
            pass
    if ctx.want_gpu:
        names += ["cupy", "torch-cuda"]
    out: list[dict] = []
    for grid in ("paper", "spect"):
        for name in names:
            if grid == "spect" and name not in PARAMS[ctx.suite]["spect"]:
                continue
            out += guarded(f"vdk.{BACKENDS[name][1]}.{grid}.{name}.single",
                           f"VDK {grid} ({name})", lambda n=name, g=grid: _entries_for(ctx, n, g))
    return out
