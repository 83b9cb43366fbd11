"""Benchmark of the VDK convolution: 512×512×130 with the paper's 99³ photon + 9³ β kernels.

Usage::

    python benchmarks/vdk_bench.py [--backends scipy torch-cpu] [--repeat 5] [--quick]
    python benchmarks/vdk_bench.py --backends cupy torch-cuda      # on a GPU machine

Times :func:`mcdose.vdk.vdk_dose` — NumPy arrays in, NumPy dose rate out, so host ↔ device
copies are included on a GPU — with the two kernels (random, symmetric: the content does not
change the cost) summed into one 99³ kernel and the density correction.  ``cold`` includes
the kernel spectrum (computed once per grid shape and cached); ``warm`` is the steady state
of a campaign (best and median of ``--repeat`` runs).  The tissue-class method (three kernel
sets, one forward transform) is timed too.  Goals (issue 4): ≤ 2 s on 2 CPU cores,
≤ 0.2 s on one H100/H200; the paper (Li et al. 2022, Table III): 20 s on a CPU, 10 s on a V100.

Writes ``benchmarks/results/<date>-vdk-<cpu|gpu>.json`` with the machine described (CPU model,
cores, memory, load average, library versions, GPU).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from mcdose.vdk import Kernel, tissue_class_dose, vdk_dose
from mcdose.vdk.convolve import FFTConvolver

PAPER_SHAPE = (130, 512, 512)  # (z, y, x), 0.98 × 0.98 × 3 mm
VOXEL = (0.98, 0.98, 3.0)
BACKENDS = {
    "scipy": ("scipy", None),
    "torch-cpu": ("torch", "cpu"),
    "torch-cuda": ("torch", "cuda"),
    "cupy": ("cupy", None),
}


def _ver(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict:
    """CPU model, cores, memory, load, library versions and GPU (if any)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_GiB": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _ver(p) for p in ("mcdose", "numpy", "scipy", "torch", "cupy-cuda12x",
                                          "cupy-cuda13x", "numba")},  # fmt: skip
        "gpu": None,
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["versions"]["cuda_torch"] = torch.version.cuda
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _symmetric_kernel(n: int, rng: np.random.Generator) -> np.ndarray:
    k = rng.random((n, n, n))
    for axis in range(3):
        k = k + np.flip(k, axis)
    return (k * 1e-12).astype(np.float32)


def _kernel(arr: np.ndarray, rho: float, emissions: str) -> Kernel:
    return Kernel(kernel=arr, voxel_mm=VOXEL, nuclide="Lu-177", material="soft_tissue",
                  density_g_cm3=rho, histories=0, emissions=emissions)  # fmt: skip


def _sync(backend: str, device: str | None) -> None:
    if backend == "torch" and device == "cuda":
        import torch

        torch.cuda.synchronize()
    elif backend == "cupy":
        import cupy

        cupy.cuda.runtime.deviceSynchronize()


def bench(name: str, shape: tuple, repeat: int, tissue: bool) -> dict:
    backend, device = BACKENDS[name]
    rng = np.random.default_rng(0)
    activity = rng.random(shape, dtype=np.float32)
    density = rng.uniform(0.2, 1.9, shape).astype(np.float32)
    beta = _kernel(_symmetric_kernel(9, rng), 1.04, "electrons")
    gamma = _kernel(_symmetric_kernel(99, rng), 1.04, "photons")
    conv = FFTConvolver(_sum(beta, gamma), backend=backend, device=device)
    plan = conv.plan(shape)
    out: dict = {"backend": conv.backend, "device": conv.device, "mode": conv.mode,
                 "padded_shape": plan.padded, "chunks": -(-shape[0] // plan.chunk),
                 "estimated_bytes": plan.estimated_bytes}  # fmt: skip

    def run():
        t = time.perf_counter()
        vdk_dose(activity, density, [beta, gamma], convolver=conv)
        _sync(backend, device)
        return time.perf_counter() - t

    out["cold_s"] = run()
    warm = [run() for _ in range(repeat)]
    out["warm_best_s"] = min(warm)
    out["warm_median_s"] = statistics.median(warm)
    out["warm_all_s"] = warm
    if tissue:
        sets = {c: [_kernel(beta.kernel, r, "electrons"), _kernel(gamma.kernel, r, "photons")]
                for c, r in (("lung", 0.26), ("soft_tissue", 1.04), ("bone", 1.92))}  # fmt: skip
        tconv = FFTConvolver([_sum(*s) for s in sets.values()], backend=backend, device=device)

        def run_t():
            t = time.perf_counter()
            tissue_class_dose(activity, density, sets, convolver=tconv)
            _sync(backend, device)
            return time.perf_counter() - t

        out["tissue_cold_s"] = run_t()
        tw = [run_t() for _ in range(max(1, repeat // 2))]
        out["tissue_warm_best_s"] = min(tw)
        out["tissue_warm_median_s"] = statistics.median(tw)
    return out


def _sum(*kernels: Kernel) -> np.ndarray:
    from mcdose.vdk import combine_kernels

    return combine_kernels([k.kernel for k in kernels])


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["scipy", "torch-cpu"],
                        choices=sorted(BACKENDS))  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="64×128×128 (a smoke test)")
    parser.add_argument("--no-tissue", action="store_true", help="skip the tissue classes")
    parser.add_argument("--out-dir", type=Path,
                        default=Path(__file__).resolve().parent / "results")  # fmt: skip
    args = parser.parse_args(argv)
    shape = (64, 128, 128) if args.quick else PAPER_SHAPE
    results = {
        "benchmark": "vdk convolution (vdk_dose: 99³ photon + 9³ β kernels, density "
                     "correction; NumPy in and out)",
        "shape_zyx": shape,
        "voxel_mm": VOXEL,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "goals_s": {"cpu_2_cores": 2.0, "h100_h200": 0.2},
        "paper_s": {"cpu": 20.0, "v100": 10.0},
        "runs": {},
    }  # fmt: skip
    for name in args.backends:
        try:
            results["runs"][name] = bench(name, shape, args.repeat, not args.no_tissue)
        except Exception as exc:  # a missing GPU library is a result, not a crash
            results["runs"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(name, json.dumps(results["runs"][name], default=str))
    results["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    kind = "gpu" if any(n in ("cupy", "torch-cuda") for n in args.backends) else "cpu"
    suffix = "-quick" if args.quick else ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{dt.date.today().isoformat()}-vdk-{kind}{suffix}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
