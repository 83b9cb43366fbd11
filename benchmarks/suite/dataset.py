"""Dataset campaign: cases per hour and per-stage time and peak memory.

Builds a fresh dataset in a temporary folder with :func:`mcdose.dataset.build_dataset`
(every stage runs: phantom → SPECT → MC on the true activity → VDK on the SPECT) on the
embedded Dask cluster — one worker per GPU, else one CPU worker using every core.

* ``quick``: the ``small`` preset (96×88×112 at 4 mm), the **Gaussian SPECT fallback** and
  **10⁶ histories** per case (few: a smoke test of the factory's throughput, not the
  paper's statistics), 2 cases;
* ``full``: the ``paper`` preset (512×512×130) with **10⁹ histories** per case on the GPU,
  the SPECT backend ``auto`` (PyTomography when installed), 2 cases (``--dataset-cases``).

``cases_per_hour`` counts the whole campaign (cluster start, JIT compilation in the worker,
kernel generation when the kernel cache is cold); ``steady_cases_per_hour`` is
``workers × 3600 / median seconds per case``, the rate of a long campaign.  Warm-up
(reported separately): the cluster start-up and the first case's extra time over the
median.  Peak memory per stage: the worker's RSS and the GPU memory in use, sampled by the
stage runner.  Formerly ``benchmarks/dataset_bench.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import (
    Context,
    entry,
    gpu_name,
    guarded,
    max_rss_bytes,
    numba_cuda_reason,
    release_gpu_memory,
    sci,
    skipped,
)

PARAMS = {
    "quick": {"preset": "small", "histories": 10**6, "cases": 2, "spect_backend": "gaussian"},
    "full": {"preset": "paper", "histories": 10**9, "cases": 2, "spect_backend": "auto"},
}


def settings(ctx: Context) -> dict[str, Any]:
    """Preset, histories, cases, SPECT backend and MC device for this run."""
    p = dict(PARAMS[ctx.suite])
    for key in ("preset", "histories", "cases", "spect_backend"):
        value = ctx.options.get(f"dataset_{key}")
        if value is not None:
            p[key] = value
    gpu_ok = numba_cuda_reason() is None if ctx.want_gpu else False
    if ctx.device == "cpu" or (ctx.device == "auto" and not gpu_ok and ctx.suite == "quick"):
        p["device"] = "cpu"
    else:
        p["device"] = "cuda"
    return p


def _campaign(ctx: Context, p: dict[str, Any]) -> list[dict]:
    from mcdose.dataset import build_dataset, read_manifest
    from mcdose.spect.simulate import resolve_backend
    from mcdose.vdk import cache_dir

    release_gpu_memory()
    kernel_cache_warm = cache_dir().exists() and any(cache_dir().glob("*.h5"))
    dev = p["device"]
    preset = p["preset"]
    base = f"dataset.{dev}.{preset}"
    ctx.log(f"  dataset: {p['cases']} × {preset}, {p['histories']:.0e} histories, {dev}")
    with tempfile.TemporaryDirectory(prefix="mcdose-bench-dataset-") as tmp:
        t0 = time.perf_counter()
        summary = build_dataset(
            Path(tmp), cases=int(p["cases"]), preset=preset, seed=0,
            histories=int(p["histories"]), device=dev, spect_backend=p["spect_backend"],
            progress=False,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        manifest = read_manifest(Path(tmp))
    if summary.failed:
        raise RuntimeError("; ".join(f"{r.file}: {r.error}" for r in summary.failed)[:500])
    case_s = [r.seconds for r in summary.results if r.ok]
    median = statistics.median(case_s)
    first_extra = case_s[0] - statistics.median(case_s[1:]) if len(case_s) > 1 else None
    stages = summary.stage_stats()
    peak_rss = max((s["peak_rss_MB"] or 0) for s in stages.values()) or None
    gpus = [s["peak_gpu_MB"] for s in stages.values() if s.get("peak_gpu_MB")]
    memory = {"peak_host_MB": peak_rss, "peak_gpu_MB": max(gpus) if gpus else None,
              "driver_peak_host_MB": round(max_rss_bytes() / 2**20, 1)}  # fmt: skip
    cond = {
        "preset": preset,
        "grid_zyx": manifest["parameters"]["shape_zyx"],
        "spacing_mm": manifest["parameters"]["spacing_mm"],
        "histories": int(p["histories"]),
        "cases": int(p["cases"]),
        "workers": summary.workers,
        "device": dev,
        "gpu": gpu_name() if dev == "cuda" else None,
        "threads": ctx.threads if dev == "cpu" else None,
        "spect_backend": resolve_backend(p["spect_backend"])[0],
        "kernel_cache_warm_at_start": kernel_cache_warm,
    }
    stat = {"wall_s": wall, "startup_s": summary.startup_seconds, "seconds_per_case": case_s,
            "median_seconds_per_case": median, "first_case_extra_s": first_extra,
            "stage_mean_s": {k: v["mean_s"] for k, v in stages.items()}}  # fmt: skip
    dev_label = "GPU" if dev == "cuda" else "CPU"
    title = f"{preset} preset, {sci(p['histories'])} histories"
    out = [
        entry(f"{base}.cases_per_hour", f"Dataset cases/hour, campaign ({title}, {dev_label})",
              summary.cases_per_hour, "cases/h", better="higher", conditions=cond, stat=stat,
              warmup_s=summary.startup_seconds, warmup_note="cluster start-up (first-case "
              "extra over the median in stat.first_case_extra_s)", memory=memory,
              headline=True),
        entry(f"{base}.steady_cases_per_hour",
              f"Dataset cases/hour, steady ({title}, {dev_label})",
              summary.workers * 3600.0 / median, "cases/h", better="higher", conditions=cond,
              stat=stat, memory=memory),
    ]  # fmt: skip
    for stage, s in stages.items():
        if not s["ran"]:
            continue
        out.append(entry(
            f"{base}.stage.{stage}", f"Dataset stage '{stage}', mean per case ({title}, "
            f"{dev_label})", s["mean_s"], "s", conditions=cond,
            stat={"max_s": s["max_s"], "ran": s["ran"]},
            memory={"peak_host_MB": s["peak_rss_MB"],
                    "host_increase_MB": s["peak_rss_increase_MB"],
                    "peak_gpu_MB": s["peak_gpu_MB"]},
        ))  # fmt: skip
    return out


def run(ctx: Context) -> list[dict]:
    """Dataset entries (one campaign)."""
    p = settings(ctx)
    name = f"dataset.{p['device']}.{p['preset']}.cases_per_hour"
    title = f"Dataset cases/hour ({p['preset']}, {sci(p['histories'])} histories)"
    overridden = any(ctx.options.get(f"dataset_{k}") is not None for k in ("preset", "histories"))
    if p["device"] == "cpu" and ctx.suite == "full" and not overridden:
        return [skipped(name, title, "the full campaign (paper preset, 10⁹ histories per case) "
                        "is a GPU measurement; set --dataset-preset / --dataset-histories for "
                        "a CPU campaign", unit="cases/h", headline=True)]  # fmt: skip
    if p["device"] == "cuda":
        reason = numba_cuda_reason()
        if reason:
            if ctx.device == "auto":
                reason += (f"; the {p['preset']} preset with {p['histories']:.0e} histories "
                           "is a GPU measurement")  # fmt: skip
            return [skipped(name, title, reason, unit="cases/h", headline=True)]
    return guarded(name, title, lambda: _campaign(ctx, p), unit="cases/h", headline=True)
