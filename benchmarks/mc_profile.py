"""Where the CPU Monte Carlo spends its time: decays/s with parts of the emission switched off.

The CPU engine (:class:`mcdose.transport.cpu.CpuBackend`, one thread) runs Lu-177 decays on
a phantom (default the paper's 512×512×130) with the kernel parameters changed one way at
a time — no β particles, no line emissions, nothing emitted (the decay sampling alone), no
range rejection, larger energy-loss steps, no boundary-grown steps — so each part's share of
the time per decay can be read off as a difference.  The dose of such runs is not physics;
this is a profile, not a validation.  Every variant is timed ``--repeat`` times (best kept)
after an in-process warm-up; the machine's load average is recorded (a shared machine makes
absolute rates noisy, differences less so).

Usage: ``python benchmarks/mc_profile.py [--preset paper] [--histories 40000]``; writes
``benchmarks/results/<date>-<machine>-mc-profile.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

#: (name, what it shows, parameter changes: layout name → value or a function of the base)
VARIANTS = (
    ("full", "the physics as shipped", {}),
    ("no beta particles", "β particles not emitted (their energy not deposited either)",
     {"P_EMIT_BETA_PARTICLES": 0.0}),
    ("no line emissions", "conversion/Auger electrons and γ/X-rays not emitted",
     {"P_ELINE_YIELD": 0.0, "P_PLINE_YIELD": 0.0}),
    ("decay sampling only", "nothing emitted: source voxel, position, local energy",
     {"P_EMIT_BETA_PARTICLES": 0.0, "P_ELINE_YIELD": 0.0, "P_PLINE_YIELD": 0.0}),
    ("no range rejection", "electrons that cannot leave their voxel are still transported",
     {"P_RANGE_REJECTION": 0.0}),
    ("energy-loss step x2", "maximum fractional energy loss per step doubled",
     {"P_STEP_FRAC": lambda base: min(0.5, 2.0 * base)}),
    ("no boundary-grown steps", "steps not grown to the nearest voxel face",
     {"P_BOUNDARY_STEPS": 0.0}),
)


def measure(preset: str, histories: int, repeat: int) -> dict:
    import numba
    from suite.common import phantom

    from mcdose.physics import layout as L
    from mcdose.transport.cpu import CpuBackend
    from mcdose.transport.setup import prepare_simulation

    numba.set_num_threads(1)
    ph = phantom(preset)
    inputs = prepare_simulation(ph.density, ph.activity_MBq, ph.geometry.spacing_mm,
                                nuclide="Lu-177")  # fmt: skip
    params = inputs.kernel_arrays()[-1]  # the float32 copy the kernels read
    base = params.copy()
    rows = []
    first = 1000
    for name, what, changes in VARIANTS:
        params[:] = base
        for key, value in changes.items():
            i = getattr(L, key)
            params[i] = value(float(base[i])) if callable(value) else value
        backend = CpuBackend(inputs, threads=1)
        backend.run(0, 200, 1)  # warm-up (compiled code, first touch of the tallies)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            backend.run(first, first + histories, 1)
            times.append(time.perf_counter() - t)
            first += histories
        best = min(times)
        rows.append({"variant": name, "what": what,
                     "changes": {k: float(params[getattr(L, k)]) for k in changes},
                     "seconds": times, "decays_per_s": histories / best,
                     "us_per_decay": best / histories * 1e6})  # fmt: skip
        del backend
    params[:] = base
    full = rows[0]["us_per_decay"]
    for r in rows:
        r["share_of_full"] = r["us_per_decay"] / full
    return {"preset": preset, "histories": histories, "repeat": repeat, "threads": 1,
            "load_average_1min_after": os.getloadavg()[0], "variants": rows}  # fmt: skip


def _markdown(doc: dict) -> str:
    r = doc["result"]
    m = doc["machine"]
    lines = [f"# CPU Monte Carlo profile — {doc['date']}", "",
             f"- machine: {m.get('cpu')}, {m.get('cpus_usable')} usable cores; 1 thread; "
             f"load average after the runs {r['load_average_1min_after']:.1f}",
             f"- {r['histories']} Lu-177 decays per run on the `{r['preset']}` phantom, best "
             f"of {r['repeat']}; command: `python benchmarks/mc_profile.py --preset "
             f"{r['preset']} --histories {r['histories']}`",
             "- variants switch parts off in the kernel parameters: a profile, not physics", "",
             "| variant | decays/s | µs per decay | × full | what changes |",
             "|---|---|---|---|---|"]  # fmt: skip
    for v in r["variants"]:
        lines.append(f"| {v['variant']} | {v['decays_per_s']:.3g} | {v['us_per_decay']:.2f} | "
                     f"{v['share_of_full']:.2f} | {v['what']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=("paper", "small", "tiny"))
    parser.add_argument("--histories", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    from suite.machine import describe, slug, today

    from mcdose.io.atomic import atomic_path
    from mcdose.io.jsonio import write_json

    machine = describe(threads=1)
    result = measure(args.preset, args.histories, args.repeat)
    doc = {"benchmark": "mc-profile", "date": today(), "machine": machine, "result": result}
    stem = args.out / f"{today()}-{slug(machine)}-mc-profile"
    write_json(stem.with_suffix(".json"), doc)
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(_markdown(doc))
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
