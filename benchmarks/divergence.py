"""SIMT efficiency of the GPU transport's work split, estimated on the CPU.

A GPU runs threads in warps of 32 that advance in lockstep: a warp takes as long as its
busiest thread.  This script measures every particle's work (photon flights; electron steps
plus voxel segments) with the engine's own functions, in the order the GPU would launch the
work, and groups it 32 by 32 (:func:`mcdose.transport.banked_cpu.warp_efficiency`):

* ``history``  — the old design: one thread runs one decay's whole history (photons and
  electrons mixed), consecutive histories in a warp;
* ``banked``   — the CUDA driver's design (:mod:`mcdose.transport.cuda`): a decay pass,
  then photon and electron passes over particle banks, electrons sorted by energy;
* ``banked (unsorted)`` — the same without the sort.

Efficiency = Σ work / Σ_warps (lanes × busiest lane); the per-pass figures are combined
weighted by their issued lane-work (the time they take).  The decay pass and the electron
filter pass (one range-rejection test per thread, :func:`mcdose.transport.history.
filter_banked_electron`) do the same small work in every thread and are left out.

Usage: ``python benchmarks/divergence.py [--preset paper] [--histories 20000]``; writes
``benchmarks/results/<date>-<machine>-divergence.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


def _combine(parts: list[dict]) -> dict:
    """Efficiency of several launches run one after another (weights: issued lane-work)."""
    useful = sum(p["efficiency"] * p["issued"] for p in parts)
    issued = sum(p["issued"] for p in parts)
    return {"efficiency": useful / issued if issued else float("nan"), "issued": issued}


def _launch(work: np.ndarray) -> dict:
    from mcdose.transport.banked_cpu import warp_efficiency

    eff = warp_efficiency(work)
    eff["issued"] = float(work.sum() / eff["efficiency"]) if work.sum() else 0.0
    eff["particles"] = int(work.size)
    return eff


def measure(preset: str, histories: int, seed: int = 0, limit: int | None = None) -> dict:
    """Work and warp efficiency of the three orders on a standard phantom."""
    from mcdose.phantoms import generate_phantom
    from mcdose.physics import layout as L
    from mcdose.transport.banked_cpu import BankedCpuBackend, history_work
    from mcdose.transport.setup import prepare_simulation

    t0 = time.perf_counter()
    ph = generate_phantom(0, preset)
    inputs = prepare_simulation(ph.density, ph.activity_MBq, ph.geometry.spacing_mm)
    arrays = inputs.kernel_arrays()
    tally = np.zeros(inputs.voxels.shape[0], np.uint64)
    counters = np.zeros(4, np.uint64)
    per_history = history_work(np.int64(0), np.int64(histories), np.uint64(seed), *arrays,
                               tally, counters)
    result = {"history": _launch(per_history)}
    for name, sort in (("banked", True), ("banked (unsorted)", False)):
        backend = BankedCpuBackend(inputs, sort_electrons=sort,
                                   pass_work_limit=limit or L.PASS_WORK_LIMIT)
        backend.run(0, histories, seed)
        if not np.array_equal(backend.tally, tally):
            raise RuntimeError("banked and depth-first tallies differ: the comparison is void")
        passes = [dict(_launch(work), kind=kind) for kind, work in backend.passes]
        combined = _combine(passes)
        combined["passes"] = passes
        for kind in ("photon", "electron"):
            combined[kind] = _combine([p for p in passes if p["kind"] == kind])
        result[name] = combined
    return {
        "preset": preset,
        "grid_zyx": list(ph.density.shape),
        "spacing_mm": list(ph.geometry.spacing_mm),
        "histories": histories,
        "seed": seed,
        "pass_work_limit": limit or L.PASS_WORK_LIMIT,
        "orders": result,
        "elapsed_s": time.perf_counter() - t0,
    }


def _markdown(doc: dict) -> str:
    m = doc["machine"]
    r = doc["result"]
    o = r["orders"]
    lines = [
        f"# SIMT efficiency estimate — {doc['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus_usable']} usable cores (the estimate is a count, "
        "not a timing: the machine does not enter it).",
        f"Phantom `{r['preset']}` {r['grid_zyx']} at {r['spacing_mm']} mm, "
        f"{r['histories']} Lu-177 decays, seed {r['seed']}, at most {r['pass_work_limit']} "
        "flights or steps per particle and pass; `python benchmarks/divergence.py`.",
        "",
        "| order | efficiency (mean/max work per warp of 32) | photon passes | electron passes |",
        "|---|---|---|---|",
        f"| one thread per history (old) | {o['history']['efficiency']:.3f} | – | – |",
    ]
    for name in ("banked", "banked (unsorted)"):
        b = o[name]
        lines.append(
            f"| {name} | **{b['efficiency']:.3f}** | {b['photon']['efficiency']:.3f} | "
            f"{b['electron']['efficiency']:.3f} |"
        )
    lines += [
        "",
        "Goal (issue 22): ≥ 0.6 for the banked order.  Work: photon flights (real and "
        "virtual), electron steps plus voxel segments; the banked and the depth-first "
        "orders deposit bit-identical tallies (checked in the run).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=("paper", "small", "tiny"))
    parser.add_argument("--histories", type=int, default=20_000)
    parser.add_argument("--pass-work-limit", type=int, default=None,
                        help="flights/steps per particle and pass (default: the driver's)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    from suite.machine import describe, slug, today

    from mcdose.io.jsonio import write_json

    machine = describe(threads=1)
    result = measure(args.preset, args.histories, limit=args.pass_work_limit)
    doc = {"benchmark": "divergence", "date": today(), "machine": machine, "result": result}
    stem = args.out / f"{today()}-{slug(machine)}-divergence"
    write_json(stem.with_suffix(".json"), doc)
    from mcdose.io.atomic import atomic_path

    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(_markdown(doc))
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
