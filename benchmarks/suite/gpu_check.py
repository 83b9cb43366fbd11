#!/usr/bin/env python
"""The device check's measurements (``benchmarks/gpu_check.sh`` runs this on the first GPU).

One command, a few minutes on one H100/H200, writing ordinary benchmark entries (so the
README's GPU rows fill in and the goals are judged):

* MC first call in fresh processes, numba cache empty (``mc.cuda.jit.cold``) and filled
  (``mc.cuda.jit.cached``);
* MC 10⁹ Lu-177 decays on the paper phantom (512×512×130): time, decays/s, peak GPU memory
  (``mc.cuda.paper.gpu.time_1e9``, ``mc.cuda.paper.rate``); a 10⁷ probe first, and the 10⁹
  run only when the probe predicts it fits in ``--mc-budget-s`` (else extrapolated, said);
* CPU/GPU agreement on a small heterogeneous phantom (lung slab, soft tissue, bone slab),
  same seed: the fraction of well-sampled voxels within 4 combined σ, and the totals;
* VDK with CuPy and CNN inference (torch) on 512×512×130 (the suite's own measurements);
* the ``-m gpu`` tests' outcome, read from the JUnit XML that gpu_check.sh wrote.

``--device cpu --preset tiny --histories 20000`` runs the same code on a CPU in seconds
(what the tests do).  Results go to ``<out>/<date>-<machine>.json`` (merged like
``run.py``'s), ``.md``, ``.png`` and the README section.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.suite.common import (  # noqa: E402
    Context,
    entry,
    gpu_name,
    guarded,
    phantom,
    sci,
    skipped,
)

#: the agreement phantom (z, y, x) and its spacing (mm); histories and seed
AGREEMENT_SHAPE = (12, 12, 12)
AGREEMENT_SPACING_MM = (4.0, 4.0, 4.0)
AGREEMENT_SEED = 5
#: k of the k·σ agreement criterion, and the fraction of voxels that must meet it
AGREEMENT_K = 4.0
AGREEMENT_MIN_FRACTION = 0.99


def agreement_phantom():
    """Lung slab (0.26 g/cm³), soft tissue (1.04), a bone slab (1.85); a cubic source."""
    import numpy as np

    density = np.full(AGREEMENT_SHAPE, 1.04, np.float32)
    density[:, :, :4] = 0.26
    density[:, :, -2:] = 1.85
    activity = np.zeros_like(density)
    activity[3:9, 3:9, 3:9] = 1.0
    return density, activity


def agreement(device: str, histories: int) -> dict[str, Any]:
    """``device`` against the CPU on :func:`agreement_phantom`, same seed and histories."""
    import numpy as np

    from mcdose.transport import simulate_dose

    density, activity = agreement_phantom()
    kw = dict(histories=int(histories), seed=AGREEMENT_SEED)
    ref = simulate_dose(density, activity, AGREEMENT_SPACING_MM, device="cpu", **kw)
    got = simulate_dose(density, activity, AGREEMENT_SPACING_MM, device=device, **kw)
    good = (ref.relative_uncertainty < 0.05) & (got.relative_uncertainty < 0.05)
    diff = np.abs(ref.dose_rate_Gy_s - got.dose_rate_Gy_s)[good]
    sigma = np.hypot(ref.dose_rate_Gy_s * ref.relative_uncertainty,
                     got.dose_rate_Gy_s * got.relative_uncertainty)[good]  # fmt: skip
    within = float(np.mean(diff <= AGREEMENT_K * sigma)) if diff.size else float("nan")
    total = float(got.dose_rate_Gy_s.sum() / ref.dose_rate_Gy_s.sum())
    return {
        "fraction_within_k_sigma": within,
        "k": AGREEMENT_K,
        "voxels_compared": int(good.sum()),
        "total_ratio": total,
        "max_abs_diff_over_max_dose": float(
            np.abs(ref.dose_rate_Gy_s - got.dose_rate_Gy_s).max() / ref.dose_rate_Gy_s.max()
        ),
        "energy_imbalance": got.energy_balance.get("relative_imbalance"),
        "histories": int(histories),
        "passed": bool(within >= AGREEMENT_MIN_FRACTION and abs(total - 1) < 0.01),
    }


def mc_entries(ctx: Context, device: str, preset: str, histories: int, probe: int,
               budget_s: float) -> list[dict]:  # fmt: skip
    """First-call times, then ``histories`` decays on ``preset`` (probe first)."""
    from benchmarks.suite import mc

    label = "GPU" if device == "cuda" else "CPU"
    gpu = gpu_name() if device == "cuda" else None
    threads = ctx.threads if device == "cpu" else None
    out = guarded(f"mc.{device}.jit.cold", f"MC JIT ({label})",
                  lambda: mc._jit_entries(ctx, device, label, gpu))  # fmt: skip
    ph = phantom(preset)
    ctx.log(f"  gpu_check: in-process first call on {preset}")
    first = mc.run_once(ph, 2000, device, threads)
    ctx.log(f"  gpu_check: probe, {probe:.0e} decays")
    pr = mc.run_once(ph, probe, device, threads)
    predicted = pr["elapsed_s"] * histories / probe
    tag = "gpu" if device == "cuda" else "check"
    cond = mc._cond(ph, device, threads, histories, gpu=gpu, phantom=preset)
    title = f"MC time for {sci(histories)} decays, {preset} phantom ({label})"
    stat: dict[str, Any] = {"probe": {k: pr[k] for k in ("histories", "elapsed_s",
                                                          "decays_per_s")},
                            "predicted_s": predicted,
                            "in_process_first_call_setup_s": first["setup_s"]}  # fmt: skip
    if predicted > budget_s:
        out.append(skipped(f"mc.{device}.{preset}.{tag}.h{histories:.0e}", title,
                           f"the probe predicts {predicted:.0f} s, over the budget of "
                           f"{budget_s:.0f} s (--mc-budget-s)", unit="s", conditions=cond))
        run, how = pr, f"extrapolated from the {sci(probe)} probe"
        t_full = predicted
    else:
        ctx.log(f"  gpu_check: {histories:.0e} decays on {preset} (predicted {predicted:.0f} s)")
        run, how = mc.run_once(ph, histories, device, threads), "measured"
        t_full = run["elapsed_s"]
    stat.update(wall_s=run["wall_s"], setup_s=run["setup_s"],
                energy_imbalance=run["energy_imbalance"], how=how)
    paper = preset == "paper" and device == "cuda"
    per_decay = histories / t_full
    out.append(entry(
        f"mc.{device}.{preset}.{tag}.time_1e9" if histories == 10**9
        else f"mc.{device}.{preset}.{tag}.time",
        title, t_full, "s", conditions={**cond, "how": how}, stat=stat,
        warmup_s=first["setup_s"], memory=run["memory"],
        published=("archer_time_1e9", "dpm_time_1e9") if paper and histories == 10**9 else (),
        goal="mc_gpu_time_1e9" if paper and histories == 10**9 else None, headline=True,
        note=f"{how}; warm-up: the in-process first call (kernels loaded from the cache or "
             "compiled)",
    ))  # fmt: skip
    out.append(entry(
        f"mc.{device}.{preset}.rate" if paper else f"mc.{device}.{preset}.{tag}.rate",
        f"MC decays/s at {sci(histories)} decays, {preset} phantom ({label})",
        per_decay, "decays/s", better="higher", conditions={**cond, "how": how}, stat=stat,
        memory=run["memory"], published=("archer_rate",) if paper else (),
        goal="mc_gpu_rate" if paper else None, headline=True,
        note=f"histories / transport time ({how}); peak GPU memory in the memory column",
    ))  # fmt: skip
    return out


def agreement_entries(device: str, histories: int) -> list[dict]:
    """The agreement as an entry (value: the fraction of voxels within k·σ)."""
    a = agreement(device, histories)
    label = "GPU" if device == "cuda" else "CPU"
    return [entry(
        f"mc.{device}.agreement", f"MC {label} vs CPU, heterogeneous 12³ phantom: voxels "
        f"within {AGREEMENT_K:g}σ", a["fraction_within_k_sigma"], "fraction", better="higher",
        conditions={"device": device, "histories": histories, "grid_zyx": list(AGREEMENT_SHAPE),
                    "spacing_mm": list(AGREEMENT_SPACING_MM), "gpu": gpu_name()
                    if device == "cuda" else None}, stat=a, headline=True,
        note=f"same seed; passes at ≥ {AGREEMENT_MIN_FRACTION:g} of the well-sampled voxels "
             f"and totals within 1 % (passed: {a['passed']}; total ratio "
             f"{a['total_ratio']:.4f})",
    )]  # fmt: skip


def junit_entry(path: Path) -> list[dict]:
    """The ``-m gpu`` tests' counts from a pytest JUnit XML file."""
    if not path.is_file():
        return [skipped("tests.gpu", "`-m gpu` tests", f"no JUnit file {path}")]
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                            "skipped")}  # fmt: skip
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for s in suites for c in s.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]  # fmt: skip
    return [entry(
        "tests.gpu", "`-m gpu` tests passed", passed, "tests", better="higher",
        conditions={"gpu": gpu_name()}, stat={**n, "passed": passed, "failed": failed},
        headline=True, note=f"{passed} passed, {n['failures'] + n['errors']} failed, "
                            f"{n['skipped']} skipped",
    )]  # fmt: skip


def run(args: argparse.Namespace) -> tuple[list[dict], Context]:
    """Every measurement of the check, in order; errors become ``error`` entries."""
    from benchmarks.suite import cnn, vdk
    from benchmarks.suite.common import cupy_reason, set_cpu_threads, torch_cuda_reason

    ctx = Context(suite="quick", device=args.device, threads=args.cpu_threads or 2,
                  options={"mc_budget_s": args.mc_budget_s})  # fmt: skip
    set_cpu_threads(ctx.threads)
    entries: list[dict] = []
    if args.junit:
        entries += junit_entry(Path(args.junit))
    entries += guarded(f"mc.{args.device}.{args.preset}.rate", "MC (device check)",
                       lambda: mc_entries(ctx, args.device, args.preset, args.histories,
                                          args.probe, args.mc_budget_s))  # fmt: skip
    entries += guarded(f"mc.{args.device}.agreement", "MC agreement",
                       lambda: agreement_entries(args.device, args.agreement_histories))
    if args.device == "cuda" and not args.skip_vdk_cnn:
        reason = cupy_reason()
        entries += ([skipped("vdk.cuda.paper.cupy.single", "VDK (cupy, GPU)", reason,
                             unit="s", headline=True)] if reason else
                    guarded("vdk.cuda.paper.cupy.single", "VDK (cupy, GPU)",
                            lambda: vdk._entries_for(ctx, "cupy", "paper")))  # fmt: skip
        reason = torch_cuda_reason()
        entries += ([skipped("cnn.cuda.paper.crop", "CNN inference (GPU)", reason, unit="s",
                             headline=True)] if reason else
                    guarded("cnn.cuda.paper.crop", "CNN inference (GPU)",
                            lambda: cnn._gpu(ctx)))  # fmt: skip
    return entries, ctx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/suite/gpu_check.py",
                                description="the device check's measurements")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--preset", choices=("paper", "small", "tiny"), default="paper")
    p.add_argument("--histories", type=int, default=10**9)
    p.add_argument("--probe", type=int, default=10**7, help="decays of the probe run")
    p.add_argument("--mc-budget-s", type=float, default=200.0,
                   help="longest MC run to start (s); longer is extrapolated from the probe")
    p.add_argument("--agreement-histories", type=int, default=200_000)
    p.add_argument("--cpu-threads", type=int, default=None)
    p.add_argument("--junit", default=None, help="JUnit XML of the `-m gpu` tests")
    p.add_argument("--skip-vdk-cnn", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--machine", default=None)
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--no-readme", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import _summary_line
    from benchmarks.suite import machine, report

    args = build_parser().parse_args(argv)
    os.environ.setdefault("MCDOSE_NO_PROGRESS", "1")
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    entries, ctx = run(args)
    info = machine.describe(threads=ctx.threads)
    slug = args.machine or machine.slug(info)
    record = {"date": machine.today(), "machine_slug": slug, "machine": info, "entries": entries,
              "runs": [{"suite": "gpu-check", "device": args.device, "only": ["gpu-check"],
                        "threads": ctx.threads,
                        "argv": ["benchmarks/suite/gpu_check.py", *(argv or sys.argv[1:])],
                        "started": started.isoformat(timespec="seconds"),
                        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "wall_s": round(time.perf_counter() - t0, 1),
                        "entries": [e["name"] for e in entries]}]}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = report.save(record, args.out)
    done = report.render(path, None if args.no_readme else args.readme)
    for e in entries:
        print(_summary_line(e), flush=True)
    for kind, p in done.items():
        if p is not None:
            print(f"{kind}: {p}")
    bad = [e["name"] for e in entries if e.get("status") == "error"]
    bad += [e["name"] for e in entries if e["name"].endswith(".agreement")
            and e.get("status") == "ok" and not e["stat"]["passed"]]  # fmt: skip
    bad += [e["name"] for e in entries if e["name"] == "tests.gpu" and e.get("status") == "ok"
            and e["stat"]["failed"]]  # fmt: skip
    if bad:
        print(f"gpu_check: failed: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
