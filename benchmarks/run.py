#!/usr/bin/env python
"""mcdose benchmark suite: MC, VDK, CNN and dataset throughput beside the published figures.

Examples
--------
On a workstation (CPU, a few minutes)::

    python benchmarks/run.py --suite quick

On a GPU machine, split to keep each command short (results merge into one file)::

    python benchmarks/run.py --suite full --device cuda --only mc
    python benchmarks/run.py --suite full --device auto --only vdk,cnn
    python benchmarks/run.py --suite full --device cuda --only dataset

Re-render the Markdown, PNG and README section of the latest results::

    python benchmarks/run.py --render

Writes ``<out>/<date>-<machine>.json`` (merged with an existing file of the same date and
machine), ``.md`` and ``.png`` beside it, and the README section between
``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->``.  Exit status: 0, or 1 when a
measurement raised (recorded as an ``error`` entry; the others still run), 2 on bad
arguments.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.suite.common import DEVICES, GROUPS, SUITES, usable_cores  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results"
DEFAULT_README = ROOT / "README.md"


def _positive_int(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(value)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def _groups(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in GROUPS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown group {', '.join(bad) or repr(text)}; choose from {','.join(GROUPS)}"
        )
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="mcdose benchmarks: MC decays/s, VDK, CNN, dataset throughput, peak "
        "memory, beside the published figures (Li et al. 2022 Table III, ARCHER-NM).",
    )
    p.add_argument("--suite", choices=SUITES, default="quick",
                   help="quick: CPU-friendly, minutes; full: the GPU machine (default quick)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto: CPU + GPU when present; cpu: CPU only; cuda: GPU only")
    p.add_argument("--only", type=_groups, default=list(GROUPS), metavar="GROUPS",
                   help=f"comma list of {','.join(GROUPS)} (default all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="results folder (default benchmarks/results)")
    p.add_argument("--cpu-threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads for the CPU measurements (default: all usable cores)")
    p.add_argument("--repeat", type=_positive_int, default=None, metavar="N",
                   help="steady-state repeats (default per suite)")
    p.add_argument("--mc-budget-s", type=_positive_float, default=None, metavar="S",
                   help="longest single GPU MC run to start; the 10⁹ point is extrapolated "
                   "when predicted longer (default 150)")
    p.add_argument("--mc-jit-only", action="store_true",
                   help="mc: only the first-call times, cold and cached, in fresh processes")
    p.add_argument("--dataset-preset", choices=("paper", "small", "tiny"), default=None)
    p.add_argument("--dataset-histories", type=_positive_int, default=None, metavar="N")
    p.add_argument("--dataset-cases", type=_positive_int, default=None, metavar="N")
    p.add_argument("--dataset-spect", choices=("auto", "pytomography", "gaussian"),
                   default=None, help="SPECT backend of the dataset campaign")
    p.add_argument("--machine", default=None, metavar="NAME",
                   help="machine name in the file names (default from the GPU / cores)")
    p.add_argument("--fresh", action="store_true",
                   help="replace an existing results file of the same date and machine "
                   "instead of merging into it")
    p.add_argument("--readme", type=Path, default=DEFAULT_README,
                   help="README whose benchmark section is updated (default README.md)")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.add_argument("--render", nargs="?", const="latest", default=None, metavar="JSON",
                   help="measure nothing: re-render the Markdown, PNG and README from a "
                   "results file (default: the latest in --out)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the arguments (``SystemExit(2)`` on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.machine is not None:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.machine):
            parser.error("--machine: letters, digits, '.', '_' and '-' only")
    return args


def _context(args: argparse.Namespace):
    from benchmarks.suite import Context

    options = {
        "mc_budget_s": args.mc_budget_s,
        "mc_jit_only": args.mc_jit_only,
        "dataset_preset": args.dataset_preset,
        "dataset_histories": args.dataset_histories,
        "dataset_cases": args.dataset_cases,
        "dataset_spect_backend": args.dataset_spect,
    }
    return Context(suite=args.suite, device=args.device,
                   threads=args.cpu_threads or usable_cores(), repeat=args.repeat,
                   options=options)  # fmt: skip


def _summary_line(e: dict) -> str:
    from benchmarks.suite.report import fmt_goal, fmt_ratio, fmt_value

    if e.get("status") != "ok":
        return f"  {e['name']}: {e.get('status')}: {e.get('reason')}"
    text = f"  {e['name']}: {fmt_value(e['value'], e['unit'])}"
    if e.get("warmup_s") is not None:
        text += f" (warm-up {fmt_value(e['warmup_s'], 's')})"
    for p in e.get("published") or []:
        text += f"; vs {p['label']}: {fmt_ratio(p)}"
    if e.get("goal"):
        text += f"; goal {fmt_goal(e['goal'])}"
    return text


def render(args: argparse.Namespace) -> int:
    from benchmarks.suite import report

    if args.render == "latest":
        paths = report.latest(args.out)
        if not paths:
            print(f"run.py: error: no results file in {args.out}", file=sys.stderr)
            return 2
        path = paths[0]
    else:
        path = Path(args.render)
        if not path.is_file():
            print(f"run.py: error: {path}: no such file", file=sys.stderr)
            return 2
    try:
        done = report.render(path, None if args.no_readme else args.readme)
    except ValueError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    for kind, p in done.items():
        if p is not None:
            print(f"{kind}: {p}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return render(args)
    os.environ.setdefault("MCDOSE_NO_PROGRESS", "1")
    from benchmarks.suite import machine, modules, report
    from benchmarks.suite.common import set_cpu_threads

    ctx = _context(args)
    set_cpu_threads(ctx.threads)
    info = machine.describe(threads=ctx.threads)
    slug = args.machine or machine.slug(info)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    ctx.log(f"mcdose benchmarks: suite {args.suite}, device {args.device}, "
            f"groups {','.join(args.only)}, {ctx.threads} CPU threads, machine {slug}")
    runners = modules()
    entries: list[dict] = []
    record = {"date": machine.today(), "machine_slug": slug, "machine": info, "runs": [],
              "entries": entries}  # fmt: skip
    path = report.results_path(args.out, record["date"], slug)
    old = None if args.fresh else report.existing(path)
    for group in args.only:
        ctx.log(f"[{group}]")
        g0 = time.perf_counter()
        try:
            got = runners[group](ctx)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a module that cannot even start is a result too
            import traceback

            from benchmarks.suite.common import failed

            traceback.print_exc()
            got = [failed(f"{group}.run", f"{group} suite", exc)]
        for e in got:
            print(_summary_line(e), flush=True)
        ctx.log(f"[{group}] {time.perf_counter() - g0:.0f} s")
        entries += got
        # write after every group: an interrupted run keeps what it finished
        record["runs"] = [{
            "suite": args.suite, "device": args.device, "only": args.only,
            "threads": ctx.threads, "argv": ["benchmarks/run.py", *(argv or sys.argv[1:])],
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - t0, 1),
            "load_average_start": [round(x, 2) for x in load_start] if load_start else None,
            "load_average_end": [round(x, 2) for x in os.getloadavg()]
            if hasattr(os, "getloadavg") else None,
            "groups_done": args.only[: args.only.index(group) + 1],
            "entries": [e["name"] for e in entries],
        }]  # fmt: skip
        report.write(old, record, path)
        if group != args.only[-1]:
            report.render(path, None)
    done = report.render(path, None if args.no_readme else args.readme)
    for kind, p in done.items():
        if p is not None:
            print(f"{kind}: {p}")
    errors = [e["name"] for e in entries if e.get("status") == "error"]
    if errors:
        print(f"run.py: {len(errors)} measurement(s) failed: {', '.join(errors)}",
              file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
