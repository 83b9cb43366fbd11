"""Peak memory (RSS) of ``mcdose dose`` on a 512x512x350 CT with a 4.8 mm SPECT, per method.

Writes a synthetic patient (CT in HU, 0.98 x 0.98 x 2 mm; SPECT in Bq/ml, 4.8 mm, the CT's
field of view) into a scratch folder, runs ``mcdose dose`` once per method in a child
process and reads the child's peak resident set size from ``os.wait4`` (``ru_maxrss``,
KiB on Linux).  Results: ``benchmarks/results/<date>-cpu-<n>c-memory-dose.{json,md}``.

    nice -n 10 python benchmarks/memory_dose.py --methods vdk mc [--cnn-model M.pt]

Few histories are used on purpose: memory, not accuracy, is measured (the MC and kernel
arrays do not grow with the number of decays).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CT_SHAPE = (350, 512, 512)  # z, y, x
CT_SPACING = (0.98, 0.98, 2.0)
SPECT_SPACING = (4.8, 4.8, 4.8)


def _write_patient(folder: Path) -> tuple[Path, Path]:
    sys.path[:0] = [str(ROOT / "src")]
    from mcdose.io.case import Geometry
    from mcdose.io.images import write_image

    nz, ny, nx = CT_SHAPE
    z, y, x = np.ogrid[:nz, :ny, :nx]
    body = ((x - nx / 2) / (0.4 * nx)) ** 2 + ((y - ny / 2) / (0.3 * ny)) ** 2 <= 1.0
    hu = np.where(body, np.float32(40.0), np.float32(-1000.0)).astype(np.float32)
    hu = np.broadcast_to(hu, CT_SHAPE).copy()
    ct = write_image(folder / "ct.nii", hu, Geometry(CT_SPACING), compress=False)
    del hu
    extent = [n * s for n, s in zip((nx, ny, nz), CT_SPACING, strict=True)]
    sshape = tuple(int(e // s) for e, s in zip(extent[::-1], SPECT_SPACING[::-1], strict=True))
    sz, sy, sx = np.ogrid[: sshape[0], : sshape[1], : sshape[2]]
    conc = np.where(((sx - sshape[2] / 2) / (0.3 * sshape[2])) ** 2
                    + ((sy - sshape[1] / 2) / (0.2 * sshape[1])) ** 2 <= 1.0, 2e4, 0.0)
    conc = np.broadcast_to(conc, sshape).astype(np.float32)
    spect = write_image(folder / "spect.nii.gz", conc, Geometry(SPECT_SPACING))
    return ct, spect


def _run(args: list[str], log: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "cli")]),
               MCDOSE_NO_PROGRESS="1")
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mcdose_cli.main", "dose", *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    return {"exit_status": os.waitstatus_to_exitcode(status),
            "peak_rss_GiB": usage.ru_maxrss * 1024 / 2**30,
            "wall_s": time.perf_counter() - t0,
            "log_tail": log.read_text(errors="replace")[-600:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["vdk", "mc", "cnn"])
    ap.add_argument("--mc-histories", default="2e4")
    ap.add_argument("--kernel-histories", default="2e4")
    ap.add_argument("--cnn-model", default=None)
    ap.add_argument("--scratch", default=None)
    args = ap.parse_args()

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="mcdose-mem-"))
    scratch.mkdir(parents=True, exist_ok=True)
    cache = scratch / "cache"
    cache.mkdir(exist_ok=True)
    os.environ["MCDOSE_CACHE_DIR"] = str(cache)
    ct, spect = _write_patient(scratch)
    results = {}
    for method in args.methods:
        cmd = ["--ct", str(ct), "--spect", str(spect), "--method", method,
               "--out", str(scratch / f"dose_{method}.nii.gz"), "--overwrite",
               "--device", "cpu", "--kernel-histories", args.kernel_histories]
        if method == "mc":
            cmd += ["--histories", args.mc_histories]
        if method == "cnn":
            if not args.cnn_model:
                results[method] = {"skipped": "no --cnn-model given"}
                continue
            cmd += ["--model", args.cnn_model]
        results[method] = _run(cmd, scratch / f"{method}.log")
        print(method, {k: v for k, v in results[method].items() if k != "log_tail"},
              flush=True)

    date = dt.date.today().isoformat()
    cores = len(os.sched_getaffinity(0))
    machine = {"platform": platform.platform(), "python": platform.python_version(),
               "cpu_cores": cores, "processor": platform.processor(),
               "memory_GiB": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
               "load_average": os.getloadavg(), "note": "shared machine, run nice'd"}
    record = {"benchmark": "memory_dose", "date": date, "ct_shape_zyx": CT_SHAPE,
              "ct_spacing_mm": CT_SPACING, "spect_spacing_mm": SPECT_SPACING,
              "mc_histories": args.mc_histories, "kernel_histories": args.kernel_histories,
              "machine": machine, "results": results}
    out = ROOT / "benchmarks" / "results" / f"{date}-cpu-{cores}c-memory-dose"
    if out.with_suffix(".json").exists():  # a run of other methods the same day: keep them
        earlier = json.loads(out.with_suffix(".json").read_text()).get("results", {})
        results = {**{k: v for k, v in earlier.items() if "skipped" not in v}, **results}
        record["results"] = results
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# mcdose dose: peak RSS, {CT_SHAPE[2]}x{CT_SHAPE[1]}x{CT_SHAPE[0]} CT, "
             f"{SPECT_SPACING[0]} mm SPECT ({date})", "",
             f"Machine: {machine['platform']}, {cores} cores, {machine['memory_GiB']:.0f} GiB, "
             f"load {machine['load_average'][0]:.1f} (shared).", "",
             "| method | exit | peak RSS (GiB) | wall (s) |", "|---|---|---|---|"]
    for method, r in results.items():
        if "skipped" in r:
            lines.append(f"| {method} | - | not measured ({r['skipped']}) | - |")
        else:
            lines.append(f"| {method} | {r['exit_status']} | {r['peak_rss_GiB']:.2f} | "
                         f"{r['wall_s']:.0f} |")
    lines += ["", f"MC {args.mc_histories} decays, VDK kernels {args.kernel_histories} decays "
              f"per part (memory does not grow with decays); CNN model: "
              f"{args.cnn_model or 'none'}.  Peak RSS from os.wait4 (ru_maxrss) of the "
              f"`mcdose dose` child process.  Command: "
              f"`nice -n 10 python benchmarks/memory_dose.py --methods ...`."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
