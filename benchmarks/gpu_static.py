#!/usr/bin/env python
"""Static GPU report of every CUDA kernel, from the real compiler, without a GPU.

For each kernel that the CUDA modules list (``kernel_specs()``, see
:mod:`mcdose.transport.ptx`) and each architecture (sm_90, sm_80): PTX from numba-cuda
(NVVM), then ``ptxas -v``: registers per thread, stack frame, spill stores/loads, the
theoretical occupancy at the driver's block size (the formula is in the report), f64/f32
PTX instruction counts and the compile times.

    python benchmarks/gpu_static.py --out build/gpu-static

writes ``<out>/<kernel>.sm_90.ptx`` (and sm_80) and ``<out>/report.json``, and
``benchmarks/results/<date>-<machine>-gpu-static.{json,md}`` with the machine described;
the README's benchmark section shows these figures beside the GPU rows (``--no-readme``
leaves it alone).  Needs the ``ptx`` extra (``pip install -e ".[ptx]"``).  Exit status: 0,
1 when a kernel failed to compile or assemble (the others are still reported), 2 on bad
arguments or missing compilers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCHEMA = "mcdose-gpu-static"
SUFFIX = "gpu-static"
#: issue 22's goals for every transport kernel (checked by report.static_goals)
GOALS = {"registers_per_thread": 64, "spill_bytes": 0, "stack_frame_bytes": 1024,
         "occupancy_sm_90": 0.5}  # fmt: skip


def _arch(text: str) -> tuple[int, int]:
    t = text.strip().lower().removeprefix("sm_")
    if not (t.isdigit() and len(t) in (2, 3)):
        raise argparse.ArgumentTypeError(f"{text!r}: an architecture like sm_90")
    return int(t[:-1]), int(t[-1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/gpu_static.py",
                                description="PTX and ptxas figures of every CUDA kernel")
    p.add_argument("--out", type=Path, required=True, help="folder for the PTX and report.json")
    p.add_argument("--arch", type=_arch, action="append", default=None,
                   help="architecture (repeatable; default sm_90 and sm_80)")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                   help="folder of the dated result file (default benchmarks/results)")
    p.add_argument("--no-results", action="store_true", help="write no dated result file")
    p.add_argument("--machine", default=None, help="machine name in the file name")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    return p


def ptxas_version(exe: Path) -> str | None:
    """``release 13.5, V13.5.37`` from ``ptxas --version``."""
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                             timeout=60, check=False).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln for ln in out.splitlines() if "release" in ln]
    return lines[-1].split("tools, ", 1)[-1].strip() if lines else None


def goal_check(rec: dict[str, Any]) -> dict[str, bool]:
    """Which of issue 22's goals a kernel record meets (occupancy on sm_90 only)."""
    from benchmarks.suite.report import static_goals

    return static_goals(rec)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    from benchmarks.suite.report import libraries_line, machine_line, static_table

    m = report.get("machine", {})
    lines = [
        f"# mcdose static GPU report — {report.get('date')}",
        "",
        f"**Machine (compiled on, no GPU needed):** {machine_line(m)}  ",
        f"**Software:** {libraries_line(m)}; ptxas {report.get('ptxas_version')}  ",
        f"**Command:** `{' '.join(report.get('argv', []))}`",
        "",
        "Registers, stack and spills from `ptxas -arch=sm_XX -v` on the PTX numba-cuda "
        "generates; occupancy is theoretical, at the driver's block size: "
        f"{report.get('occupancy_formula')}. f64/f32: PTX instructions whose type is f64/f32 "
        "(arithmetic only in brackets). Goals (issue 22): ≤ 64 registers, no spills, "
        "stack ≤ 1 KiB, ≥ 50 % occupancy on sm_90.",
        "",
        static_table(report),
        "",
    ]  # fmt: skip
    failed = report.get("failed") or {}
    if failed:
        lines += ["Failed:", *[f"- {k}: {v}" for k, v in failed.items()], ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from benchmarks.suite import machine
    from mcdose.transport import ptx

    missing = [n for n, ok in (("NVVM/NVRTC (numba-cuda[cu13])", ptx.nvvm_available()),
                               ("ptxas (nvidia-cuda-nvcc)", ptx.find_ptxas() is not None))
               if not ok]  # fmt: skip
    if missing:
        print(f"gpu_static.py: error: {' and '.join(missing)} not installed "
              "(pip install -e '.[ptx]')", file=sys.stderr)  # fmt: skip
        return 2
    arches = args.arch or [(9, 0), (8, 0)]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    exe = ptx.find_ptxas()
    info = machine.describe()
    records: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    for spec in ptx.kernel_specs():
        for cc in arches:
            key = f"{spec.name}.sm_{cc[0]}{cc[1]}"
            print(f"gpu_static: {key} ...", file=sys.stderr, flush=True)
            try:
                compiled, rec = ptx.static_report(spec, cc, ptxas=exe)
            except Exception as exc:  # a kernel that fails is reported, the rest go on
                failed[key] = f"{type(exc).__name__}: {str(exc)[:1000]}"
                print(f"gpu_static: {key} failed: {failed[key]}", file=sys.stderr)
                continue
            _write(out / f"{key}.ptx", compiled.ptx)
            rec["ptx_file"] = f"{key}.ptx"
            rec["goals_met"] = goal_check(rec)
            records.append(rec)
            occ = rec["occupancy"]
            print(f"  {rec['registers_per_thread']} registers, {rec['stack_frame_bytes']} B "
                  f"stack, spills {rec['spill_store_bytes']}/{rec['spill_load_bytes']} B, "
                  f"occupancy {occ['occupancy']:.4f} at {spec.threads_per_block} threads, "
                  f"f64 {rec['ptx_instructions']['f64']} / f32 "
                  f"{rec['ptx_instructions']['f32']}", file=sys.stderr)  # fmt: skip
    report = {
        "schema": SCHEMA,
        "schema_version": 1,
        "date": machine.today(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": ["benchmarks/gpu_static.py", *sys.argv[1:]],
        "machine": info,
        "ptxas": str(exe),
        "ptxas_version": ptxas_version(exe),
        "occupancy_formula": ptx.OCCUPANCY_FORMULA,
        "sm_limits": {f"sm_{a}{b}": vars(v) for (a, b), v in ptx.SM_LIMITS.items()},
        "goals": GOALS,
        "kernels": records,
        "failed": failed,
    }
    text = json.dumps(report, indent=2) + "\n"
    _write(out / "report.json", text)
    print(f"report: {out / 'report.json'}")
    if not args.no_results:
        slug = args.machine or machine.slug(info)
        base = args.results / f"{report['date']}-{slug}-{SUFFIX}"
        args.results.mkdir(parents=True, exist_ok=True)
        _write(base.with_suffix(".json"), text)
        _write(base.with_suffix(".md"), markdown(report))
        print(f"results: {base}.json, {base}.md")
        if not args.no_readme:
            from benchmarks.suite import report as suite_report

            if suite_report.update_readme(args.readme, args.results):
                print(f"readme: {args.readme}")
    return 1 if failed else 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MCDOSE_NO_PROGRESS", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
