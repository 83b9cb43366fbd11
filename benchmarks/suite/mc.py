"""Monte Carlo transport: decays/s on CPU and GPU, scaling with histories and grid size.

Measured with :func:`mcdose.transport.simulate_dose` on the standard phantoms
(:func:`mcdose.phantoms.generate_phantom`, seed 0): ``paper`` 512×512×130 at
0.98×0.98×3 mm, ``spect`` (the same field of view on the 4.7952 mm SPECT grid), ``small``
and ``tiny``.

* Steady state: ``DoseResult.elapsed_s`` (transport of all batches, the per-batch tally
  reductions included; table building and the JIT warm-up excluded) → decays/s.
* Warm-up, reported separately: ``setup_s`` of every run (tables + a 4-history compile
  call), and the first call of a fresh process with an empty numba cache (``jit.cold``)
  and of a second fresh process with the cache the first one wrote (``jit.cached``), on
  the CPU and on the GPU (the CUDA kernels are ``cuda.jit(cache=True)``: numba-cuda ≥ 0.30
  stores their PTX and cubin).  ``--mc-jit-only`` measures these two alone.
* ``time vs histories`` (3 points) is fitted with ``t = a + b·N``: ``1/b`` is the
  asymptotic rate (the per-batch reductions over 34 M voxels, ``a``, cost a fixed time) and
  ``a + 10⁹·b`` the time for 10⁹ decays.  Where the 10⁹ run itself is measured (``full``
  on a GPU, when the fit predicts it fits in ``--mc-budget-s``) it is used instead.
* Wall time (``wall_s``) adds the conversion of the tallies to dose and uncertainty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import (
    Context,
    PeakMemory,
    entry,
    gpu_name,
    grid_conditions,
    guarded,
    linear_fit,
    numba_cuda_reason,
    phantom,
    release_gpu_memory,
    sci,
    set_cpu_threads,
    skipped,
)

#: per suite and device: headline histories, the 3 scaling points, repeats of the headline.
#: The CPU's last point is 3.2×10⁶ decays (seconds of transport): with 8×10⁵ the fixed
#: per-batch reductions over the paper phantom's 34 M voxels (≈ 0.5 s, memory-bound and
#: noisy) were a third of the longest run and could halve the fitted 2-thread rate.
PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "quick": {
        "cpu": {"histories": 200_000, "scaling": (200_000, 800_000, 3_200_000), "repeat": 2,
                "grids": ("tiny", "small", "spect", "paper")},
        "cuda": {"histories": 10**7, "scaling": (10**6, 10**7, 10**8), "repeat": 2,
                 "grids": ("tiny", "small", "spect", "paper")},
    },
    "full": {
        "cpu": {"histories": 200_000, "scaling": (200_000, 800_000, 3_200_000), "repeat": 3,
                "grids": ("tiny", "small", "spect", "paper")},
        "cuda": {"histories": 10**8, "scaling": (10**7, 10**8, 10**9), "repeat": 2,
                 "grids": ("tiny", "small", "spect", "paper")},
    },
}  # fmt: skip
#: default longest single GPU run the full suite will start (s); the 10⁹ point is skipped
#: (and extrapolated) when the fit predicts more
BUDGET_S = 150.0
SEED = 0

_JIT_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
from mcdose.phantoms import generate_phantom
from mcdose.transport import simulate_dose
t_import = time.perf_counter() - t0
ph = generate_phantom(0, "tiny")
args = (ph.density, ph.activity_MBq, ph.geometry.spacing_mm)
t1 = time.perf_counter()
r1 = simulate_dose(*args, histories=2000, device=sys.argv[1])
first_wall = time.perf_counter() - t1
r2 = simulate_dose(*args, histories=2000, device=sys.argv[1])
print("JIT-RESULT " + json.dumps({"import_s": t_import, "first_setup_s": r1.setup_s,
      "first_wall_s": first_wall, "second_setup_s": r2.setup_s, "device": r1.device}))
"""


def _src_path() -> str:
    import mcdose

    return str(Path(mcdose.__file__).resolve().parents[1])


def jit_subprocess(device: str, cache_dir: str, threads: int, timeout: float = 420) -> dict:
    """First-call costs in a fresh Python with the numba cache in ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, MCDOSE_NO_PROGRESS="1",
               NUMBA_NUM_THREADS=str(threads))  # fmt: skip
    env["PYTHONPATH"] = _src_path() + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _JIT_CODE, device], capture_output=True,
                         text=True, env=env, timeout=timeout)  # fmt: skip
    wall = time.perf_counter() - t0
    for line in res.stdout.splitlines():
        if line.startswith("JIT-RESULT "):
            out = json.loads(line[len("JIT-RESULT ") :])
            out["process_wall_s"] = wall
            return out
    tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"JIT subprocess failed (exit {res.returncode}): {tail[0]}")


def run_once(ph, histories: int, device: str, threads: int | None) -> dict[str, Any]:
    """One :func:`simulate_dose` call, timed, with its peak memory."""
    from mcdose.transport import simulate_dose

    with PeakMemory(gpu=device == "cuda") as mem:
        t0 = time.perf_counter()
        r = simulate_dose(ph.density, ph.activity_MBq, ph.geometry.spacing_mm,
                          histories=int(histories), seed=SEED, device=device,
                          threads=threads)  # fmt: skip
        wall = time.perf_counter() - t0
    out = {
        "histories": int(histories),
        "elapsed_s": r.elapsed_s,
        "setup_s": r.setup_s,
        "wall_s": wall,
        "postprocess_s": max(0.0, wall - r.setup_s - r.elapsed_s),
        "decays_per_s": r.decays_per_second,
        "energy_imbalance": r.energy_balance.get("relative_imbalance"),
        "memory": mem.result(),
    }
    del r
    if device == "cuda":
        release_gpu_memory()
    return out


def _cond(ph, device: str, threads: int | None, histories: int | None = None, **kw) -> dict:
    c = {**grid_conditions(ph), "device": device,
         "backend": "numba-cuda" if device == "cuda" else "numba (CPU, parallel)",
         "threads": threads, "nuclide": "Lu-177", "batches": 10}  # fmt: skip
    if histories is not None:
        c["histories"] = int(histories)
    c.update(kw)
    return c


def cache_files(folder: str) -> int:
    """Number of numba cache files (index ``.nbi`` and data ``.nbc``) under ``folder``."""
    return sum(1 for p in Path(folder).rglob("*") if p.suffix in (".nbi", ".nbc"))


def _jit_entries(ctx: Context, device: str, dev_label: str, gpu: str | None) -> list[dict]:
    threads = ctx.threads if device == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="mcdose-bench-numba-") as tmp:
        ctx.log(f"  mc/{device}: first call in a fresh process (empty numba cache)")
        cold = jit_subprocess(device, tmp, threads or 1)
        cold["cache_files_after"] = cache_files(tmp)
        ctx.log(f"  mc/{device}: first call in a second fresh process (cache filled)")
        cached = jit_subprocess(device, tmp, threads or 1)
        cached["cache_files_after"] = cache_files(tmp)
    cond = {"device": device, "threads": threads, "gpu": gpu, "phantom": "tiny",
            "histories": 2000}  # fmt: skip
    out = [
        entry(f"mc.{device}.jit.cold", f"MC first call, empty JIT cache ({dev_label})",
              cold["first_setup_s"], "s", conditions=cond, stat=cold,
              warmup_s=cold["first_setup_s"], headline=True,
              warmup_note="the whole value is warm-up: compile + tables, a fresh process",
              note="setup_s of the first simulate_dose call in a fresh Python with an empty "
                   "numba cache (compile + table building); the second call's setup_s "
                   f"{cold['second_setup_s']:.2f} s is the table building alone"),
    ]  # fmt: skip
    out.append(entry(
        f"mc.{device}.jit.cached", f"MC first call, JIT cache filled ({dev_label})",
        cached["first_setup_s"], "s", conditions=cond, stat=cached,
        warmup_s=cached["first_setup_s"], headline=True,
        note="setup_s of the first call in a second fresh Python, with the numba cache the "
             f"first one wrote ({cold.get('cache_files_after', '?')} cache files)",
    ))  # fmt: skip
    return out


def _device_entries(ctx: Context, device: str) -> list[dict]:
    p = PARAMS[ctx.suite][device]
    dev_label = "GPU" if device == "cuda" else "CPU"
    threads_all = ctx.threads if device == "cpu" else None
    gpu = gpu_name() if device == "cuda" else None
    budget = float(ctx.options.get("mc_budget_s") or BUDGET_S)
    entries: list[dict] = []
    entries += guarded(f"mc.{device}.jit.cold", f"MC JIT ({dev_label})",
                       lambda: _jit_entries(ctx, device, dev_label, gpu))  # fmt: skip
    if ctx.options.get("mc_jit_only"):
        return entries

    paper = phantom("paper")
    # in-process warm-up on the paper phantom: JIT (compiled or loaded from the cache),
    # process-level table caches and first-touch costs stay out of the measurements
    warm = run_once(paper, 2000, device, threads_all)
    ctx.log(f"  mc/{device}: in-process first call: setup {warm['setup_s']:.2f} s, "
            f"wall {warm['wall_s']:.2f} s")

    thread_counts = [threads_all] if device == "cuda" else sorted({1, ctx.threads})
    for threads in thread_counts:
        tag = f"t{threads}" if device == "cpu" else "gpu"
        runs: dict[int, list[dict]] = {}
        for i, n in enumerate(p["scaling"]):
            # GPU runs longer than the headline one are repeated once (they are long and
            # steady); CPU points are repeated (shared machines are noisy)
            reps = 1 if device == "cuda" and n > p["histories"] else ctx.repeats(p["repeat"])
            if i == len(p["scaling"]) - 1 and len(runs) >= 2:
                fit = linear_fit([float(k) for k in runs],
                                 [min(r["elapsed_s"] for r in v) for v in runs.values()])
                if fit and fit[1] > 0:
                    predicted = fit[0] + fit[1] * n
                    if predicted > budget:
                        entries.append(skipped(
                            f"mc.{device}.paper.{tag}.h{n:.0e}",
                            f"MC transport time, {sci(n)} histories ({dev_label})",
                            f"predicted {predicted:.0f} s exceeds the budget of {budget:.0f} s "
                            "(--mc-budget-s); extrapolated from the other points instead",
                            unit="s", conditions=_cond(paper, device, threads, n, gpu=gpu)))
                        continue  # fmt: skip
            runs[n] = []
            for _ in range(reps):
                ctx.log(f"  mc/{device}: paper, {n:.0e} histories, threads={threads}")
                runs[n].append(run_once(paper, n, device, threads))
        entries += _scaling_entries(device, dev_label, tag, paper, threads, runs, p, gpu)
    reuse = {"paper": _best(runs[p["histories"]])} if p["histories"] in runs else {}
    entries += _grid_entries(ctx, device, dev_label, threads_all, p, gpu, reuse)
    for e in entries:
        if e.get("name", "").endswith(".jit.cold"):
            e.setdefault("stat", {})["in_process_first_call"] = {
                k: warm[k] for k in ("setup_s", "elapsed_s", "wall_s")}
    return entries


def _best(rs: list[dict]) -> dict:
    return min(rs, key=lambda r: r["elapsed_s"])


def _scaling_entries(device, dev_label, tag, paper, threads, runs, p, gpu) -> list[dict]:
    out = []
    cpu = device == "cpu"
    for n, rs in runs.items():
        b = _best(rs)
        out.append(entry(
            f"mc.{device}.paper.{tag}.h{n:.0e}",
            f"MC transport time, paper phantom, {sci(n)} histories ({dev_label}"
            + (f", {threads} thread" + ("s" if threads != 1 else "") if cpu else "") + ")",
            b["elapsed_s"], "s", conditions=_cond(paper, device, threads, n, gpu=gpu),
            stat={"transport_s": [r["elapsed_s"] for r in rs], "decays_per_s": b["decays_per_s"],
                  "wall_s": b["wall_s"], "postprocess_s": b["postprocess_s"],
                  "energy_imbalance": b["energy_imbalance"]},
            warmup_s=b["setup_s"], warmup_note="setup_s: tables + 4-history call",
            memory=b["memory"],
        ))  # fmt: skip
    head = runs.get(p["histories"])
    ns = sorted(runs)
    fit = linear_fit([float(n) for n in ns], [_best(runs[n])["elapsed_s"] for n in ns])
    per = f", {threads} thread" + ("s" if threads != 1 else "") if cpu else ""
    cond = _cond(paper, device, threads, gpu=gpu)
    if head:
        b = _best(head)
        rate = b["decays_per_s"]
        out.append(entry(
            f"mc.{device}.paper.{tag}.rate",
            f"MC decays/s at {sci(p['histories'])} histories, paper phantom ({dev_label}{per})",
            rate, "decays/s", better="higher",
            conditions={**cond, "histories": p["histories"]},
            stat={"decays_per_s_all": [r["decays_per_s"] for r in head],
                  "per_core": rate / threads if cpu else None, "wall_s": b["wall_s"]},
            warmup_s=b["setup_s"], memory=b["memory"],
            note="histories / transport time at this count (fixed per-batch costs included)",
        ))  # fmt: skip
    if fit is None or fit[1] <= 0:
        return out
    a, slope = fit
    asym = 1.0 / slope
    mem = _best(runs[ns[-1]])["memory"]
    fit_stat = {"points": {str(n): _best(runs[n])["elapsed_s"] for n in ns},
                "fixed_s": a, "s_per_decay": slope}  # fmt: skip
    if cpu:
        out.append(entry(
            f"mc.cpu.paper.{tag}.rate_per_core",
            f"MC decays/s per core, asymptotic, paper phantom (CPU{per})",
            asym / threads, "decays/s", better="higher", conditions=cond,
            stat={**fit_stat, "decays_per_s_total": asym}, memory=mem,
            published=("dpm_rate_core",), goal="mc_cpu_rate_core",
            headline=True,
            note="1/slope of transport time vs histories (3 points), divided by threads",
        ))  # fmt: skip
    else:
        out.append(entry(
            "mc.cuda.paper.rate", "MC decays/s, asymptotic, paper phantom (GPU)",
            asym, "decays/s", better="higher", conditions=cond, stat=fit_stat, memory=mem,
            published=("archer_rate",), goal="mc_gpu_rate", headline=True,
            note="1/slope of transport time vs histories (3 points)",
        ))  # fmt: skip
        out.append(entry(
            "mc.cuda.paper.speedup_vs_dpm", "MC GPU speed-up over DPM on one CPU core",
            asym * 2400.0 / 1e9, "× DPM core", better="higher", conditions=cond,
            stat=fit_stat, published=("gdpm_speedup",),
            note="asymptotic decays/s ÷ DPM's 10⁹/40 min; gDPM's figure is for external beams",
        ))  # fmt: skip
    if 10**9 in runs:
        t9 = _best(runs[10**9])["elapsed_s"]
        how = "measured"
    else:
        t9 = max(a, 0.0) + 1e9 * slope
        how = "extrapolated: fixed_s + 10⁹ × s_per_decay"
    pubs = ("dpm_time_1e9",) if cpu else ("archer_time_1e9", "dpm_time_1e9")
    out.append(entry(
        f"mc.{device}.paper.{tag}.time_1e9",
        f"MC time for 10⁹ decays, paper phantom ({dev_label}{per})",
        t9, "s", conditions={**cond, "histories": 10**9, "how": how}, stat=fit_stat,
        warmup_s=_best(runs[ns[-1]])["setup_s"], memory=mem, published=pubs,
        goal=None if cpu else "mc_gpu_time_1e9", headline=(not cpu) or threads == 1,
        note=how + ("; DPM's figure is one core" if cpu and threads != 1 else ""),
    ))  # fmt: skip
    return out


def _grid_entries(ctx, device, dev_label, threads, p, gpu, reuse) -> list[dict]:
    out = []
    n = p["histories"]
    for preset in p["grids"]:
        ph = phantom(preset)
        if preset in reuse:
            r = reuse[preset]
        else:
            ctx.log(f"  mc/{device}: grid {preset} {ph.density.shape}, {n:.0e} histories")
            run_once(ph, 1000, device, threads)  # first touch of this grid's tables
            r = run_once(ph, n, device, threads)
        out.append(entry(
            f"mc.{device}.grid.{preset}",
            f"MC transport time vs grid: {preset} {'×'.join(map(str, ph.density.shape[::-1]))}"
            f" ({dev_label})",
            r["elapsed_s"], "s", conditions=_cond(ph, device, threads, n, gpu=gpu,
                                                  phantom=preset),
            stat={"decays_per_s": r["decays_per_s"], "wall_s": r["wall_s"],
                  "postprocess_s": r["postprocess_s"]},
            warmup_s=r["setup_s"], memory=r["memory"],
        ))  # fmt: skip
    return out


def run(ctx: Context) -> list[dict]:
    """All MC entries of the suite for the devices ``ctx`` asks for."""
    entries: list[dict] = []
    if ctx.want_cpu:
        set_cpu_threads(ctx.threads)
        entries += guarded("mc.cpu", "MC on the CPU", lambda: _device_entries(ctx, "cpu"))
    if ctx.want_gpu:
        reason = numba_cuda_reason()
        if reason:
            entries.append(skipped("mc.cuda.paper.rate", "MC decays/s (GPU)", reason,
                                   unit="decays/s", published=("archer_rate",),
                                   goal="mc_gpu_rate", headline=True))  # fmt: skip
            entries.append(skipped("mc.cuda.paper.gpu.time_1e9",
                                   "MC time for 10⁹ decays, paper phantom (GPU)", reason,
                                   unit="s", published=("archer_time_1e9",),
                                   goal="mc_gpu_time_1e9", headline=True))  # fmt: skip
        else:
            entries += guarded("mc.cuda", "MC on the GPU", lambda: _device_entries(ctx, "cuda"))
    return entries
