"""Single-time-point doses against the multi-time-point dose on the example patient.

Runs ``examples/dicom_patient_vdk.py`` (synthetic DICOM patient, five time points 4-168 h,
organ kinetics with uptake and washout) once with all five time points (``--integration
auto --fit-level organ``, lesion recovery correction, 5 % calibration uncertainty) and
with ``--stp hanscheid`` / ``--stp madsen`` on the 24 h and the 96 h scan alone, then writes
the organ doses side by side (markdown table for docs/dosimetry.md and JSON) to
``benchmarks/results/dosimetry_stp_vs_mtp.{md,json}``.

Usage::

    nice -n 10 python examples/stp_comparison.py [--folder DIR] [--mc]

About 3 minutes on two shared CPU cores (VDK kernels cached after the first run).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "benchmarks" / "results"


def _rows(folder: Path) -> dict[str, dict]:
    doc = json.loads((folder / "report" / "organs.json").read_text())
    return {r["name"]: r for r in doc["organs"]}


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    import dicom_patient_vdk as example

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--mc", action="store_true", help="Monte Carlo instead of VDK")
    parser.add_argument("--out", type=Path, default=RESULTS / "dosimetry_stp_vs_mtp")
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mcdose-stp-"))
    runs = {"mtp": []}
    for method in ("hanscheid", "madsen"):
        for hours in (24.0, 96.0):
            runs[f"{method}_{hours:g}h"] = ["--stp", method, "--stp-hours", f"{hours:g}"]
    tables = {}
    for name, extra in runs.items():
        argv_run = ["--out", str(folder / name)] + (extra or ["--timepoints"])
        argv_run += ["--mc"] if args.mc else []
        if example.main(argv_run) != 0:
            print(f"run {name} failed", file=sys.stderr)
            return 1
        tables[name] = _rows(folder / name)
    mtp = tables["mtp"]
    names = list(mtp)
    header = ("| region | volume (ml) | MTP dose (Gy) ± u (k=1) | model (AICc weight) | "
              + " | ".join(f"{k.replace('_', ' ')}" for k in runs if k != "mtp") + " |")
    lines = [header, "|" + "---|" * (4 + len(runs) - 1)]
    doc_rows = []
    for n in names:
        r = mtp[n]
        mean = r.get("mean_Gy_rc_corrected", r["mean_Gy"])
        w = r.get("aicc_weight")
        cells = [n, f"{r['volume_ml']:.1f}",
                 f"{mean:.3g} ± {r['u_total_Gy']:.2g} ({r['u_total_percent']:.0f} %)",
                 f"{r.get('model')} ({'' if w is None else f'{w:.2f}'})"]
        entry = {"region": n, "volume_ml": r["volume_ml"], "mtp_mean_Gy": mean,
                 "mtp_u_total_Gy": r["u_total_Gy"], "mtp_u_terms_percent": {
                     t: r.get(f"u_{t}_percent") for t in ("calibration", "volume", "fit",
                                                         "recovery", "mc")},
                 "model": r.get("model"), "aicc_weight": w, "stp": {}}
        for k in runs:
            if k == "mtp":
                continue
            s = tables[k][n]
            sm = s.get("mean_Gy_rc_corrected", s["mean_Gy"])
            cells.append(f"{sm:.3g} ({100 * (sm / mean - 1):+.0f} %)")
            entry["stp"][k] = {"mean_Gy": sm, "t_eff_h": s.get("stp_t_eff_h"),
                               "relative_to_mtp": sm / mean - 1}
        lines.append("| " + " | ".join(cells) + " |")
        doc_rows.append(entry)
    machine = f"{platform.machine()}, {platform.system()} (shared CPU); engine " \
              f"{'mc' if args.mc else 'vdk'}"
    md = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(
        f"# STP vs multi-time-point organ doses ({machine})\n\n"
        "Command: `nice -n 10 python examples/stp_comparison.py"
        + (" --mc" if args.mc else "") + "`\n\n" + md, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "command": "python examples/stp_comparison.py"
         + (" --mc" if args.mc else ""), "regions": doc_rows}, indent=1) + "\n",
        encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
