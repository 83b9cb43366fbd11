"""Side-by-side table of residual-CNN campaign results: goals with their bootstrap, and MDEs.

Reads result files of ``benchmarks/residualnet_campaign.py`` (``results/*-residualnet-*.json``)
and writes one Markdown page: for every goal of issue 6, each run's ratio of the CNN's value
to the goal's threshold (< 1: met), its 95 % bootstrap CI and the share of bootstrap draws in
which the goal is met; the goals met per run; and the mean MDE and NRMSE of every region for
VDK, MC-on-SPECT (from the first file) and each run's CNN, with the NRMSE floor set by the
truth's own MC noise where the evaluation has it.  Runs evaluated on different test
cases are refused: their VDK columns would differ.  The summary and goals are recomputed
from each file's per-case metrics with the current :mod:`residualnet.evaluate` (the goals
as scored now, e.g. the lesion goals of issue 24); ``--as-recorded`` keeps the files' own.

Examples
--------
The external test set of the CPU campaign::

    python benchmarks/residualnet_compare.py benchmarks/results/*-external48.json \\
        --out /tmp/external48.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from mcdose.errors import InputError
from mcdose.io.atomic import atomic_path

#: What the file stem keeps as the run's name: what follows ``-residualnet-<preset>-``.
STEM_PATTERN = re.compile(r"-residualnet-[a-z]+-(?P<run>.+)$")
METHOD_TITLES = {"vdk": "VDK", "mc_spect": "MC-on-SPECT"}


def run_name(path: Path) -> str:
    """The run's name from a result file's name (``…-residualnet-small-<run>.json``)."""
    match = STEM_PATTERN.search(path.stem)
    return match["run"] if match else path.stem


def rescored(evaluation: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, Any]:
    """``evaluation`` with its summary and goals recomputed from the per-case metrics."""
    from residualnet.evaluate import accuracy_goals, goal_uncertainty, summarize

    summary = summarize(cases, evaluation["methods"])
    goals = accuracy_goals(summary)
    goal_uncertainty(cases, goals)
    return {**evaluation, "summary": summary, "goals": goals}


def load_run(path: Path, rescore: bool = True) -> dict[str, Any]:
    """A campaign result file's evaluation, checked to carry a table and goals; with
    ``rescore`` (and per-case metrics in the file) scored by the current code."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read a result file ({exc})") from None
    evaluation = record.get("evaluation") if isinstance(record, dict) else None
    if not isinstance(evaluation, dict) or "summary" not in evaluation or \
            "goals" not in evaluation:
        raise InputError(f"{path}: not a residualnet campaign result (no evaluation table)")
    cases = record.get("cases") or []
    if rescore and cases and all("regions" in c for c in cases):
        evaluation = rescored(evaluation, cases)
    return {"name": run_name(path), "evaluation": evaluation,
            "cases": [c["case"] for c in cases]}


def _ratio_cell(goal: dict[str, Any]) -> str:
    from residualnet.evaluate import goal_ratio

    mark = "" if goal["passed"] else " ✗"
    if "ratio_ci95" not in goal:  # results rendered before the bootstrap
        return f"{goal_ratio(goal):.2f}{mark}"
    low, high = goal["ratio_ci95"]
    return f"{goal['ratio']:.2f} ({low:.2f}–{high:.2f}) {100 * goal['met_fraction']:.0f} %{mark}"


def _short_names(names: list[str]) -> list[str]:
    """The names without the ``-``-separated tail all of them share (``-external48``)."""
    if len(names) < 2:
        return names
    parts = [n.split("-") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and \
            len({p[-1 - common] for p in parts}) == 1:
        common += 1
    return ["-".join(p[: len(p) - common]) for p in parts] if common else names


def compare(runs: list[dict[str, Any]]) -> str:
    """The Markdown page for ``runs`` (:func:`load_run` dicts, in column order)."""
    from residualnet.evaluate import region_title

    if not runs:
        raise InputError("no result files to compare")
    cases = runs[0]["cases"]
    for run in runs[1:]:
        if run["cases"] != cases:
            raise InputError(f"{run['name']}: evaluated on other test cases than "
                             f"{runs[0]['name']}; compare runs on the same cases only")
    names = _short_names([r["name"] for r in runs])
    lines = [
        "# Residual CNN runs compared",
        "",
        f"{len(cases)} test case(s); each goal cell: CNN / threshold (< 1 met), 95 % bootstrap "
        "CI over the cases (lesions go with their case), share of draws met; ✗ not met on the "
        "means.  *(extra)*: listed, not counted among the goals.",
        "",
        "| goal | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(runs),
    ]
    keys: list[tuple[str, str]] = []
    by_run: list[dict[tuple[str, str], dict[str, Any]]] = []
    for run in runs:
        goals = {(g["goal"], g["region"]): g for g in run["evaluation"]["goals"]}
        by_run.append(goals)
        keys += [k for k in goals if k not in keys]
    for key in keys:
        extra = any(goals.get(key, {}).get("extra") for goals in by_run)
        cells = [_ratio_cell(goals[key]) if key in goals else "—" for goals in by_run]
        label = f"{region_title(key[1])}: {key[0]}" + (" *(extra)*" if extra else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    met = [
        f"**{sum(g['passed'] for g in goals.values() if not g.get('extra'))}** of "
        f"{sum(not g.get('extra') for g in goals.values())}"
        for goals in by_run
    ]
    lines += ["| goals met | " + " | ".join(met) + " |", ""]

    first = runs[0]["evaluation"]
    references = [m for m in first["methods"] if m != "cnn"]
    floors = first.get("truth_noise_floor") or {}
    titles = {"mde": "MDE", "nrmse": "NRMSE",
              "mean_deviation": "Signed mean-dose deviation (D̄_est − D̄_MC) / D̄_MC"}
    for metric, title in titles.items():
        if not any(metric in cell for r in runs for row in r["evaluation"]["summary"].values()
                   for cell in row.values()):
            continue  # results written before the signed deviation was reported
        floor_column = metric == "nrmse" and bool(floors)
        form = "{:+.1f}" if metric == "mean_deviation" else "{:.1f}"
        lines += [
            f"## {title} (%), mean over cases (over lesions for *tumour*)",
            "",
            "| region | " + " | ".join(METHOD_TITLES.get(m, m) for m in references)
            + (" | truth noise" if floor_column else "")
            + " | " + " | ".join(f"`{n}`" for n in names) + " |",
            "|---|" + "---|" * (len(references) + floor_column + len(runs)),
        ]
        for region, row in first["summary"].items():
            count = next(iter(row.values()))["mde"]["n"]
            label = region_title(region, count)
            cells = [row.get(m, {}).get(metric) for m in references]
            if floor_column:
                cells.append(floors.get(region))
            cells += [r["evaluation"]["summary"].get(region, {}).get("cnn", {}).get(metric)
                      for r in runs]
            lines.append(f"| {label} | " + " | ".join(
                form.format(100 * c["mean"]) if c else "—" for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="campaign result JSON files")
    p.add_argument("--out", type=Path, default=None, help="Markdown file (default: stdout)")
    p.add_argument("--as-recorded", action="store_true",
                   help="the files' own goals, not rescored by the current evaluation code")
    args = p.parse_args(argv)
    try:
        page = compare([load_run(path, rescore=not args.as_recorded)
                        for path in args.results])
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        print(page)
    else:
        with atomic_path(args.out) as tmp:
            tmp.write_text(page)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
