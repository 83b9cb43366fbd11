"""Results files, the Markdown table, the PNG chart and the README section.

A run writes ``<out>/<date>-<machine>.json`` (:data:`SCHEMA`); a later run on the same
machine and date *merges* into it (an entry measured again replaces the old one), so a
suite split over several commands (``--only mc`` then ``--only vdk,cnn`` ...) ends in one
file.  From that file come ``<date>-<machine>.md`` (every entry), ``<date>-<machine>.png``
(ours beside the published figures, log scale) and the README section between
:data:`README_START` and :data:`README_END` (the headline entries of the latest file of
each machine).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .reference import derive_pipeline, refresh

SCHEMA = "mcdose-benchmarks"
SCHEMA_VERSION = 1
README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"
GROUP_ORDER = ("mc", "vdk", "cnn", "pipeline", "dataset")
GROUP_TITLES = {"mc": "Monte Carlo", "vdk": "VDK convolution", "cnn": "Residual CNN",
                "pipeline": "Pipeline", "dataset": "Dataset factory"}  # fmt: skip

_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def results_path(out_dir: Path, date: str, machine_slug: str) -> Path:
    """``<out_dir>/<date>-<machine>.json``."""
    return Path(out_dir) / f"{date}-{machine_slug}.json"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def is_results(data: Any) -> bool:
    """True for a results file of this suite (older one-off benchmark files are not)."""
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def load(path: Path) -> dict[str, Any]:
    """Read a results file; ValueError if it is not one of this suite."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not is_results(data):
        raise ValueError(f"{path}: not a '{SCHEMA}' results file")
    return data


def _sort_key(e: dict[str, Any], order: dict[str, int]) -> tuple:
    g = e.get("group", "")
    return (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), order[e["name"]])


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``old``: same-name entries replaced, runs appended, pipeline
    entries derived afresh; the machine description is the newest."""
    entries: dict[str, dict] = {}
    order: dict[str, int] = {}
    runs: list[dict] = []
    for rec in (old, new):
        if not rec:
            continue
        runs += rec.get("runs", [])
        for e in rec.get("entries", []):
            if e.get("group") == "pipeline":
                continue
            order.setdefault(e["name"], len(order))
            entries[e["name"]] = e
    merged_entries = [refresh(dict(e)) for e in entries.values()]
    merged_entries += derive_pipeline(merged_entries)
    for e in merged_entries:
        order.setdefault(e["name"], len(order))
    merged_entries.sort(key=lambda e: _sort_key(e, order))
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "date": new.get("date") or (old or {}).get("date"),
        "machine_slug": new.get("machine_slug") or (old or {}).get("machine_slug"),
        "machine": new.get("machine") or (old or {}).get("machine", {}),
        "runs": runs,
        "entries": merged_entries,
    }


def existing(path: Path) -> dict[str, Any] | None:
    """The results already in ``path`` (None when absent or not a results file)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return load(path)
    except (ValueError, json.JSONDecodeError):
        return None


def write(old: dict[str, Any] | None, record: dict[str, Any], path: Path) -> Path:
    """Write ``record`` merged into ``old`` (the file's content before this run) to ``path``.

    Called after every group of a run with the same ``old``, so an interrupted run keeps
    the groups it finished and the file never holds a run twice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = merge(old, record)
    _write_text(path, json.dumps(merged, indent=2, default=_json_default) + "\n")
    return path


def save(record: dict[str, Any], out_dir: Path, *, fresh: bool = False) -> Path:
    """Merge ``record`` into its results file (or replace it with ``fresh``); the path."""
    path = results_path(Path(out_dir), record["date"], record["machine_slug"])
    return write(None if fresh else existing(path), record, path)


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def latest(out_dir: Path) -> list[Path]:
    """The newest results file of each machine in ``out_dir``, newest first."""
    best: dict[str, tuple[str, Path]] = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not is_results(data):
            continue
        slug = str(data.get("machine_slug"))
        stamp = max((r.get("finished", "") for r in data.get("runs", [])), default="")
        key = f"{data.get('date', '')}|{stamp}"
        if slug not in best or key > best[slug][0]:
            best[slug] = (key, path)
    return [p for _, p in sorted(best.values(), key=lambda kv: kv[0], reverse=True)]


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def fmt_number(v: float | None, digits: int = 3) -> str:
    """3 significant digits; powers of ten as ``1.23×10⁵`` outside 10⁻²…10⁴."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if v == 0:
        return "0"
    a = abs(v)
    if 100 <= a < 1e4:
        return f"{v:.0f}"
    if 1e-2 <= a < 100:
        return f"{v:.{digits}g}"
    exp = math.floor(math.log10(a))
    mant = v / 10**exp
    if round(mant, digits - 1) >= 10:
        mant /= 10
        exp += 1
    return f"{mant:.{digits - 1}f}×10{str(exp).translate(_SUP)}"


def fmt_value(v: float | None, unit: str) -> str:
    """A value with its unit; seconds above 120 also in minutes."""
    if v is None:
        return "–"
    text = f"{fmt_number(v)} {unit}".strip()
    if unit == "s" and v >= 120:
        text += f" ({fmt_number(v / 60)} min)"
    return text


def fmt_memory(mem: dict[str, Any] | None) -> str:
    """``host 1.2 GB / GPU 3.4 GB`` from an entry's memory dict."""
    if not mem:
        return "–"

    def gb(x: float | None) -> str:
        if x is None:
            return "–"
        return f"{x / 1024:.2f} GB" if x >= 1024 else f"{x:.0f} MB"

    parts = []
    if mem.get("peak_host_MB") is not None:
        parts.append(f"host {gb(mem['peak_host_MB'])}")
    gpu = mem.get("torch_peak_MB") or mem.get("cupy_pool_peak_MB")
    if gpu is None:
        gpu = mem.get("gpu_increase_MB") or mem.get("peak_gpu_MB")
    if gpu is not None:
        parts.append(f"GPU {gb(gpu)}")
    return " / ".join(parts) or "–"


def fmt_ratio(p: dict[str, Any]) -> str:
    """``0.05 (20× faster)`` for one published figure of an entry."""
    r, f = p.get("ratio"), p.get("faster_by")
    if r is None:
        return "–"
    if f is None:
        return fmt_number(r)
    how = f"{fmt_number(f)}× faster" if f >= 1 else f"{fmt_number(1 / f)}× slower"
    return f"{fmt_number(r)} ({how})"


def fmt_goal(g: dict[str, Any] | None) -> str:
    """``✅ ≤ 2 s (#4)``; ``–`` without a goal."""
    if not g:
        return "–"
    mark = {True: "✅ pass", False: "❌ miss", None: "– not measured"}[g.get("pass")]
    op = "≤" if g.get("op") == "<=" else "≥"
    text = f"{mark}: {op} {fmt_number(g.get('target'))} {g.get('unit', '')} (#{g.get('issue')})"
    if g.get("note"):
        text += f" — {g['note']}"
    return text


_COND_KEYS = ("phantom", "preset", "grid_zyx", "spacing_mm", "histories", "cases", "threads",
              "device", "backend", "gpu", "kernels", "amp", "crop_to_body", "spect_backend",
              "how")  # fmt: skip


def fmt_conditions(c: dict[str, Any] | None) -> str:
    """Short text of the conditions that matter for a row."""
    if not c:
        return ""
    parts = []
    for k in _COND_KEYS:
        v = c.get(k)
        if v is None or v == "":
            continue
        if k == "grid_zyx":
            parts.append("×".join(str(n) for n in list(v)[::-1]))
        elif k == "spacing_mm":
            parts.append("×".join(f"{x:g}" for x in v) + " mm")
        elif k == "histories":
            parts.append(f"{fmt_number(float(v), 2)} histories")
        elif k == "threads":
            parts.append(f"{v} thread" + ("s" if v != 1 else ""))
        elif k == "crop_to_body":
            parts.append("body crop" if v else "full slices")
        elif k in ("device", "backend", "gpu", "phantom", "preset", "kernels", "how"):
            parts.append(str(v))
        else:
            parts.append(f"{k.replace('_', ' ')} {v}")
    return ", ".join(dict.fromkeys(parts))


def _published_cells(e: dict[str, Any]) -> tuple[str, str]:
    pubs = e.get("published") or []
    if not pubs:
        return "–", "–"
    pub = "<br>".join(f"{fmt_value(p['value'], p['unit'])} ({p['label']}, {p['hardware']})"
                      for p in pubs)
    rat = "<br>".join(fmt_ratio(p) for p in pubs)
    return pub, rat


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def machine_line(m: dict[str, Any]) -> str:
    """One line: CPU, cores, memory, GPU, driver."""
    gpus = m.get("gpus") or []
    gpu = ", ".join(f"{g['name']} ({g.get('memory_GiB')} GiB, driver {g.get('driver')})"
                    for g in gpus) or "no GPU"  # fmt: skip
    return (f"{m.get('cpu', '?')}, {m.get('cpus_usable', '?')} usable cores, "
            f"{m.get('memory_GiB', '?')} GiB RAM; {gpu}")  # fmt: skip


def libraries_line(m: dict[str, Any]) -> str:
    libs = m.get("libraries") or {}
    text = ", ".join(f"{k} {v}" for k, v in libs.items() if v)
    return f"Python {m.get('python', '?')}; {text}"


def markdown(record: dict[str, Any]) -> str:
    """The full table of a results file (every entry, skipped ones with their reason)."""
    m = record.get("machine", {})
    runs = record.get("runs", [])
    lines = [
        f"# mcdose benchmarks — {record.get('machine_slug')} — {record.get('date')}",
        "",
        f"**Machine:** {machine_line(m)}  ",
        f"**Software:** {libraries_line(m)}  ",
        f"**Platform:** {m.get('platform', '?')}",
        "",
        "**Runs:** " + "; ".join(
            f"`{' '.join(r.get('argv') or [])}` ({r.get('suite')}, device {r.get('device')}, "
            f"{fmt_number(r.get('wall_s'))} s, load average {r.get('load_average_start')} → "
            f"{r.get('load_average_end')})" for r in runs) if runs else "**Runs:** –",
        "",
        "*Ours* is the steady state (best of the repeats; warm-up excluded and shown apart). "
        "*Ours ÷ published* is the ratio in the row's unit — for times lower is better, for "
        "rates higher is better; \"n× faster\" reads the same either way. The published "
        "figures were measured on other hardware (named in each). Goals are the targets of "
        "the issues (#n).",
        "",
    ]  # fmt: skip
    entries = record.get("entries", [])
    for group in [*GROUP_ORDER, *sorted({e.get("group") for e in entries} - set(GROUP_ORDER))]:
        rows = [e for e in entries if e.get("group") == group]
        if not rows:
            continue
        lines += [f"## {GROUP_TITLES.get(group, group)}", "",
                  "| Benchmark | Ours | Warm-up | Peak memory | Published | Ours ÷ published "
                  "| Goal | Conditions |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for e in rows:
            if e.get("status") != "ok":
                pub, rat = _published_cells(e)
                lines.append(f"| {_md_escape(e['title'])} | {e.get('status')}: "
                             f"{_md_escape(e.get('reason', ''))} | – | – | {_md_escape(pub)} | – "
                             f"| {_md_escape(fmt_goal(e.get('goal')))} | "
                             f"{_md_escape(fmt_conditions(e.get('conditions')))} |")  # fmt: skip
                continue
            pub, rat = _published_cells(e)
            warm = fmt_value(e.get("warmup_s"), "s") if e.get("warmup_s") is not None else "–"
            lines.append(
                f"| {_md_escape(e['title'])} | **{_md_escape(fmt_value(e['value'], e['unit']))}**"
                f" | {warm} | {_md_escape(fmt_memory(e.get('memory')))} | {_md_escape(pub)} | "
                f"{_md_escape(rat)} | {_md_escape(fmt_goal(e.get('goal')))} | "
                f"{_md_escape(fmt_conditions(e.get('conditions')))} |"
            )  # fmt: skip
        notes = [f"- {e['title']}: {e['note']}" for e in rows if e.get("note")]
        if notes:
            lines += ["", *notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def headline_table(record: dict[str, Any]) -> str:
    """Compact table of the headline entries (README)."""
    lines = ["| Benchmark | Ours | Warm-up | Published | Ours ÷ published | Goal |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    missing: dict[str, list[str]] = {}
    for e in record.get("entries", []):
        if not e.get("headline"):
            continue
        pub, rat = _published_cells(e)
        if e.get("status") == "skipped":
            missing.setdefault(str(e.get("reason", "")), []).append(e["title"])
            continue
        if e.get("status") != "ok":
            ours = f"{e.get('status')}: {e.get('reason', '')}"
            warm = "–"
            rat = "–"
        else:
            ours = f"**{fmt_value(e['value'], e['unit'])}**"
            warm = fmt_value(e.get("warmup_s"), "s") if e.get("warmup_s") is not None else "–"
        lines.append(f"| {_md_escape(e['title'])} | {_md_escape(ours)} | {warm} | "
                     f"{_md_escape(pub)} | {_md_escape(rat)} | "
                     f"{_md_escape(fmt_goal(e.get('goal')))} |")  # fmt: skip
    for reason, titles in missing.items():
        lines += ["", f"Not measured here ({reason}): {'; '.join(titles)}."]
    return "\n".join(lines)


def readme_section(records: Iterable[tuple[dict[str, Any], str]],
                   static: tuple[dict[str, Any], str] | None = None) -> str:  # fmt: skip
    """The README text between the markers: one headline table per machine, then the GPU
    status — "unmeasured" until a results file holds a measured GPU row — and the static
    figures of the CUDA kernels (``static``: a gpu_static report and its relative path).

    ``records``: (results record, path of its files relative to the README, without suffix).
    """
    records = list(records)
    parts = [
        "Measured with `python benchmarks/run.py` (see [benchmarks/README.md]"
        "(benchmarks/README.md)); the newest results of each machine, headline rows only. "
        "*Ours* is the steady state, warm-up (JIT compilation, first call) apart; *ours ÷ "
        "published* is in the row's unit — times: lower is better, rates: higher is better. "
        "Published: Li et al. 2022 (DblurDoseNet) Table III, ARCHER-NM (Liu et al. 2024).",
        "",
    ]  # fmt: skip
    for rec, rel in records:
        suites = sorted({r.get("suite", "?") for r in rec.get("runs", [])})
        loads = [x for r in rec.get("runs", []) for x in (r.get("load_average_start"),
                                                          r.get("load_average_end")) if x]
        load = ""
        if loads:
            lo, hi = min(x[0] for x in loads), max(x[0] for x in loads)
            load = f" 1-min load average {lo:.1f}–{hi:.1f} at the runs' start and end."
        parts += [
            f"**{rec.get('machine_slug')}** ({rec.get('date')}, suite {', '.join(suites)}): "
            f"{machine_line(rec.get('machine', {}))}.{load}",
            "",
            headline_table(rec),
            "",
            f"All rows: [{rel}.md]({rel}.md); chart: [{rel}.png]({rel}.png); "
            f"data: [{rel}.json]({rel}.json).",
            "",
        ]  # fmt: skip
    parts += gpu_status_lines([rec for rec, _ in records], static)
    return "\n".join(parts).rstrip() + "\n"


# --------------------------------------------------------------------------------------
# GPU status: measured rows, or the static figures of benchmarks/gpu_static.py
# --------------------------------------------------------------------------------------

STATIC_SCHEMA = "mcdose-gpu-static"


def gpu_measured(records: Iterable[dict[str, Any]]) -> bool:
    """True when some results file holds a measured (status ok) GPU Monte Carlo row."""
    return any(
        e.get("status") == "ok" and str(e.get("name", "")).startswith("mc.cuda.")
        for rec in records for e in rec.get("entries", [])
    )  # fmt: skip


def latest_static(out_dir: Path) -> Path | None:
    """The newest ``benchmarks/gpu_static.py`` result file in ``out_dir`` (None if none)."""
    best: tuple[str, Path] | None = None
    for path in sorted(Path(out_dir).glob("*-gpu-static.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or data.get("schema") != STATIC_SCHEMA:
            continue
        key = f"{data.get('date', '')}|{data.get('created', '')}"
        if best is None or key > best[0]:
            best = (key, path)
    return best[1] if best else None


def static_goals(rec: dict[str, Any]) -> dict[str, bool]:
    """Issue 22's goals for one kernel record: ≤ 64 registers, no spills, stack ≤ 1 KiB,
    ≥ 50 % theoretical occupancy (sm_90)."""
    out = {
        "registers": rec["registers_per_thread"] <= 64,
        "no_spills": rec["spill_store_bytes"] + rec["spill_load_bytes"] == 0,
        "stack": rec["stack_frame_bytes"] <= 1024,
    }
    if rec.get("arch") == "sm_90":
        out["occupancy"] = rec["occupancy"]["occupancy"] >= 0.5
    return out


def static_table(report: dict[str, Any]) -> str:
    """One row per kernel and architecture of a gpu_static report."""
    rows = ["| Kernel | Arch | Threads/block | Registers/thread | Stack frame | Spill st/ld "
            "| Occupancy (limit) | f64 / f32 PTX instr. (arith.) | Compile PTX + ptxas | "
            "Goals (#22) |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for rec in report.get("kernels", []):
        occ = rec["occupancy"]
        n = rec["ptx_instructions"]
        goals = static_goals(rec)
        mark = "✅ all" if all(goals.values()) else "❌ " + ", ".join(
            k for k, ok in goals.items() if not ok)  # fmt: skip
        c = rec["compile_s"]
        rows.append(
            f"| {rec['kernel']} | {rec['arch']} | {rec['threads_per_block']} | "
            f"{rec['registers_per_thread']} | {rec['stack_frame_bytes']} B | "
            f"{rec['spill_store_bytes']} / {rec['spill_load_bytes']} B | "
            f"{occ['occupancy'] * 100:.2f} % ({occ['blocks_per_sm']} blocks/SM; "
            f"{', '.join(occ['limited_by'])}) | {n['f64']} / {n['f32']} "
            f"({n['f64_arith']} / {n['f32_arith']}) | {c['ptx']:.1f} + {c['ptxas']:.1f} s | "
            f"{mark} |"
        )  # fmt: skip
    return "\n".join(rows)


def gpu_status_lines(records: list[dict[str, Any]],
                     static: tuple[dict[str, Any], str] | None) -> list[str]:  # fmt: skip
    """README lines: GPU rows unmeasured (until a GPU ran the check) and the static figures."""
    out: list[str] = []
    if not gpu_measured(records):
        out += [
            "**GPU rows: unmeasured.** No GPU has run the device check "
            "(`bash benchmarks/gpu_check.sh`, see [benchmarks/README.md]"
            "(benchmarks/README.md#the-device-check-for-the-first-gpu)) yet; until one does, "
            "the GPU's figures are the static ones of its kernels below.",
            "",
        ]  # fmt: skip
    if static is not None:
        rep, rel = static
        out += [
            f"Static figures of the CUDA kernels ({rep.get('date')}; "
            "`python benchmarks/gpu_static.py --out DIR`: numba-cuda's PTX assembled by "
            f"ptxas {rep.get('ptxas_version') or ''}, no GPU; occupancy is theoretical, at "
            "the driver's block size):",
            "",
            static_table(rep),
            "",
            f"Formula and every figure: [{rel}.md]({rel}.md); data: [{rel}.json]({rel}.json).",
            "",
        ]  # fmt: skip
    return out


def update_readme_text(text: str, section: str) -> str:
    """Replace the text between the markers; add a "Benchmarks" section before
    ``## Documentation`` (else at the end) when the markers are missing."""
    block = f"{README_START}\n{section.rstrip()}\n{README_END}"
    start, end = text.find(README_START), text.find(README_END)
    if start != -1 and end != -1 and end > start:
        return text[:start] + block + text[end + len(README_END) :]
    if start != -1 or end != -1:
        raise ValueError("README has only one of the benchmark markers")
    new = f"## Benchmarks\n\n{block}\n\n"
    anchor = text.find("\n## Documentation")
    if anchor == -1:
        return text.rstrip("\n") + "\n\n" + new.rstrip("\n") + "\n"
    return text[: anchor + 1] + new + text[anchor + 1 :]


def update_readme(readme: Path, out_dir: Path) -> bool:
    """Rewrite the README section from the latest results of each machine in ``out_dir``."""
    readme = Path(readme)
    paths = latest(out_dir)
    if not paths:
        return False
    recs = []
    for p in paths:
        rel = os.path.relpath(p.with_suffix(""), readme.parent).replace(os.sep, "/")
        recs.append((load(p), rel))
    static = None
    static_path = latest_static(out_dir)
    if static_path is not None:
        rel = os.path.relpath(static_path.with_suffix(""), readme.parent).replace(os.sep, "/")
        static = (json.loads(static_path.read_text(encoding="utf-8")), rel)
    text = readme.read_text(encoding="utf-8")
    new = update_readme_text(text, readme_section(recs, static))
    if new != text:
        _write_text(readme, new)
    return True


# --------------------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------------------


def chart_rows(record: dict[str, Any]) -> dict[str, list[tuple[str, float, list[tuple]]]]:
    """Per unit ("s", "decays/s"): (label, ours, [(published label, value, hardware)])."""
    out: dict[str, list] = {}
    for e in record.get("entries", []):
        if e.get("status") != "ok" or not e.get("published") or not e.get("value"):
            continue
        if e["unit"] not in ("s", "decays/s"):
            continue
        pubs = [(p["label"], p["value"], p.get("hardware", "")) for p in e["published"]]
        goal = e.get("goal") or {}
        out.setdefault(e["unit"], []).append((e["title"], e["value"], pubs,
                                              goal.get("target")))  # fmt: skip
    return out


def plot(record: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars, log scale: ours beside each published figure (and the goal)."""
    rows = chart_rows(record)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = [u for u in ("s", "decays/s") if u in rows]
    heights = [sum(1 + len(r[2]) for r in rows[u]) for u in units]
    fig, axes = plt.subplots(len(units), 1, figsize=(11, 1.2 + 0.32 * sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)  # fmt: skip
    for ax, unit in zip(axes[:, 0], units, strict=True):
        y = 0.0
        ticks, labels = [], []
        for title, ours, pubs, goal in rows[unit]:
            ax.barh(y, ours, color="#1f77b4", height=0.8)
            ax.text(ours, y, f" {fmt_number(ours)}", va="center", fontsize=7)
            ticks.append(y)
            labels.append(f"ours: {title}")
            if goal:
                ax.plot([goal, goal], [y - 0.45, y + 0.45], color="#2ca02c", lw=2)
            for label, value, hw in pubs:
                y += 1
                ax.barh(y, value, color="#bbbbbb", height=0.8)
                ax.text(value, y, f" {fmt_number(value)}", va="center", fontsize=7)
                ticks.append(y)
                labels.append(f"{label}, {hw}" if hw else label)
            y += 1.6
        values = [v for _, ours, pubs, goal in rows[unit]
                  for v in (ours, goal, *(p[1] for p in pubs)) if v]
        ax.set_xlim(10 ** math.floor(math.log10(min(values)) - 0.3), max(values) * 4)
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        better = "lower is better" if unit == "s" else "higher is better"
        ax.set_xlabel(f"{'time (s)' if unit == 's' else 'decays per second'} — {better}; "
                      "blue: ours, grey: published, green tick: goal", fontsize=8)
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.suptitle(f"mcdose benchmarks — {record.get('machine_slug')} — {record.get('date')}",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def render(json_path: Path, readme: Path | None = None) -> dict[str, Path | None]:
    """Write the Markdown and the PNG of a results file; update the README section."""
    json_path = Path(json_path)
    record = load(json_path)
    md = json_path.with_suffix(".md")
    _write_text(md, markdown(record))
    try:
        png = plot(record, json_path.with_suffix(".png"))
    except ImportError:  # matplotlib missing: the table is still written
        png = None
    done = {"json": json_path, "markdown": md, "png": png, "readme": None}
    if readme is not None and update_readme(readme, json_path.parent):
        done["readme"] = Path(readme)
    return done
