"""Dataset campaign benchmark: cases per hour and peak memory per stage.

Builds a fresh dataset with :func:`mcdose.dataset.build_dataset` (every stage runs) and
writes ``benchmarks/results/dataset_<preset>_<device>_h<histories>.json`` with the machine
described, the parameters, per-stage seconds and peak memory (host RSS of the worker
process, sampled every 20 ms plus ``getrusage``; GPU memory in use on the worker's device
from numba's CUDA driver API when the MC runs on a GPU), and cases per hour.

Examples
--------
CPU numbers on a workstation (small preset, 10⁶ histories)::

    python benchmarks/dataset_bench.py --preset small --histories 1e6 --cases 2

The paper measurement (one GPU, 512×512×130 voxels, 10⁹ histories)::

    python benchmarks/dataset_bench.py --preset paper --histories 1e9 --cases 3 --device cuda

``cases_per_hour`` counts the whole campaign (cluster start, JIT cache loading, kernel
generation when the kernel cache is cold); ``steady_cases_per_hour`` is
``workers × 3600 / median seconds per case`` on the workers, the rate of a long campaign.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _count(text: str) -> int:
    value = float(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(value)


def machine() -> dict:
    """CPU, memory, GPUs and software of this machine."""
    import psutil

    from mcdose.dataset.manifest import software_versions

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    gpus: list[dict] = []
    from mcdose.transport.devices import cuda_available

    if cuda_available():
        from numba import cuda

        for dev in cuda.gpus:
            with dev:
                free, total = cuda.current_context().get_memory_info()
                gpus.append({"name": dev.name.decode() if isinstance(dev.name, bytes)
                             else str(dev.name), "memory_GiB": round(total / 2**30, 1)})
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "memory_GiB": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "software": software_versions(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", choices=("paper", "small", "tiny"))
    p.add_argument("--histories", type=_count, default=10**6)
    p.add_argument("--cases", type=_count, default=2)
    p.add_argument("--workers", type=_count, default=None)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--spect-backend", default="auto",
                   choices=("auto", "pytomography", "gaussian"))
    p.add_argument("--kernel-histories", type=_count, default=None)
    p.add_argument("--mc-spect", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", type=Path, default=None,
                   help="dataset folder (default: a fresh temporary folder, removed after)")
    p.add_argument("--out", type=Path, default=None, help="result JSON path")
    p.add_argument("--note", default="", help="free text stored with the result")
    args = p.parse_args(argv)

    from mcdose.dataset import build_dataset
    from mcdose.vdk import cache_dir

    kernel_cache_warm = cache_dir().exists() and any(cache_dir().glob("*.h5"))
    info = machine()
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mcdose-dataset-bench-")
        folder = Path(tmp.name)
    else:
        folder = args.dir
        if folder.exists() and any(folder.iterdir()):
            p.error(f"{folder} is not empty (the benchmark needs every stage to run)")
    vdk_options = {"histories": args.kernel_histories} if args.kernel_histories else None
    t0 = time.perf_counter()
    try:
        summary = build_dataset(
            folder, cases=args.cases, preset=args.preset, seed=args.seed,
            histories=args.histories, mc_spect=args.mc_spect, workers=args.workers,
            scheduler=args.scheduler, device=args.device, spect_backend=args.spect_backend,
            vdk_options=vdk_options, progress=sys.stderr.isatty(),
        )
        wall = time.perf_counter() - t0
        summary.print()
        from mcdose.dataset import read_manifest

        manifest = read_manifest(folder)
    finally:
        if tmp is not None:
            tmp.cleanup()

    case_s = [r.seconds for r in summary.results if r.ok]
    median = statistics.median(case_s) if case_s else None
    from mcdose.spect.simulate import resolve_backend

    stage_backend = resolve_backend(args.spect_backend)[0]
    result = {
        "benchmark": "dataset",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "parameters": {
            "preset": args.preset,
            "shape_zyx": manifest["parameters"]["shape_zyx"],
            "spacing_mm": manifest["parameters"]["spacing_mm"],
            "histories": args.histories,
            "cases": args.cases,
            "workers": summary.workers,
            "device": args.device,
            "spect_backend": stage_backend,
            "mc_spect": args.mc_spect,
            "kernel_histories": args.kernel_histories,
            "kernel_cache_warm_at_start": kernel_cache_warm,
        },
        "wall_s": wall,
        "startup_s": summary.startup_seconds,
        "completed": summary.completed,
        "failed": [f"{r.file}: {r.error}" for r in summary.failed],
        "cases_per_hour": summary.cases_per_hour,
        "seconds_per_case": case_s,
        "median_seconds_per_case": median,
        "steady_cases_per_hour": summary.workers * 3600.0 / median if median else None,
        "stages": summary.stage_stats(),
        "per_case": [
            {"file": r.file, "worker": r.worker, "seconds": r.seconds,
             "stages": {s.stage: {"seconds": s.seconds,
                                  "peak_rss_MB": (s.peak_rss_bytes or 0) / 2**20 or None,
                                  "start_rss_MB": (s.start_rss_bytes or 0) / 2**20 or None,
                                  "peak_gpu_MB": (s.peak_gpu_bytes or 0) / 2**20 or None}
                        for s in r.stages}}
            for r in summary.results
        ],
        "driver_peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "note": args.note,
    }
    out = args.out
    if out is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        device = "gpu" if info["gpus"] and args.device != "cpu" else "cpu"
        out = RESULTS / f"dataset_{args.preset}_{device}_h{args.histories:.0e}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}: {result['completed']} case(s), "
          f"{result['cases_per_hour'] or 0:.3g} cases/hour (campaign), "
          f"{result['steady_cases_per_hour'] or 0:.3g} cases/hour (steady)")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
