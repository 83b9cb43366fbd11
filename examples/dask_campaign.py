"""Build a few tiny cases on a local Dask cluster, then resume the campaign.

Run::

    python examples/dask_campaign.py [OUT_DIR] [--cases 4] [--workers 2] [--histories 20000]

Each case goes through phantom → SPECT → Monte Carlo on the true activity (``dose/mc``) →
VDK on the SPECT (``dose/vdk``) → Monte Carlo on the SPECT (``dose/mc_spect``) on a
:class:`distributed.LocalCluster` of process workers; ``OUT_DIR/manifest.json`` records
the parameters, seeds and the train/val/test split.  The second call finds every stage
done and skips it.  The tiny preset (12 mm voxels) and few histories keep this to about a
minute on a laptop; use ``mcdose build-dataset`` (docs/dataset.md) for real datasets.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mcdose.dataset import build_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", nargs="?", type=Path, default=None,
                   help="dataset folder (default: a temporary folder)")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--histories", type=int, default=20_000)
    p.add_argument("--spect-backend", default="gaussian",
                   choices=("auto", "pytomography", "gaussian"),
                   help="SPECT simulator (gaussian: fast documented fallback)")
    args = p.parse_args()
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="mcdose-campaign-"))

    common = dict(cases=args.cases, preset="tiny", histories=args.histories, mc_spect=True,
                  workers=args.workers, spect_backend=args.spect_backend,
                  vdk_options={"histories": 20_000})
    summary = build_dataset(out, **common)
    summary.print()
    if not summary.ok:
        raise SystemExit(f"{len(summary.failed)} case(s) failed")

    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["cases"]:
        print(f"{entry['file']}: split {entry['split']:5s}  phantom seed {entry['seed']}  "
              f"SPECT counts {entry['counts']:.2g}  MC seed {entry['mc_seed']}")

    again = build_dataset(out, **common, progress=False)  # resume: nothing left to do
    skipped = sum(len(r.skipped) for r in again.results)
    print(f"second run: {skipped} stages skipped, {sum(len(r.ran) for r in again.results)} "
          f"ran, {again.seconds:.1f} s; dataset in {out}")


if __name__ == "__main__":  # the worker processes import this module: keep work under here
    main()
