"""Build the recovery-coefficient curve RC(volume) of the default SPECT protocol.

The lesion recovery correction of ``mcdose dose --recovery-correction`` divides each
lesion's mean activity by RC(volume).  This script measures RC with the factory's own
SPECT simulation (:func:`mcdose.spect.simulate_spect`, default
:class:`mcdose.spect.SpectProtocol`: 128 views, OSEM 16 × 4, attenuation + collimator-
detector response, 4.7952 mm voxels) on the NEMA-IEC-like sphere phantom of
``examples/spect_recovery.py`` (six spheres of 10-37 mm, 8:1 sphere-to-background), as
docs/spect.md does:

* RC = mean reconstructed / true concentration in each sphere's volume, at 10⁹ counts
  (nearly noise-free) — the curve;
* its standard uncertainty: the standard deviation of RC over the paper's four count levels
  (3.0e6 - 1.9e7 counts, seed 1).

It writes ``src/mcdose/data/recovery_lu177_default_spect.json`` (the data file read by
:mod:`mcdose.dosimetry.recovery`).  Usage::

    nice -n 10 python examples/recovery_curve.py [--out FILE] [--threads 1]

Five OSEM runs, about 2 minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "src" / "mcdose" / "data" / "recovery_lu177_default_spect.json"


def _phantom_module():
    spec = importlib.util.spec_from_file_location("spect_recovery", HERE / "spect_recovery.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    from mcdose.io.case import Geometry
    from mcdose.provenance import provenance
    from mcdose.spect import PAPER_COUNT_LEVELS, SpectProtocol, simulate_spect

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)

    ph = _phantom_module()
    density, activity, spheres, _ = ph.phantom()
    geometry = Geometry(ph.SPACING_MM)
    protocol = SpectProtocol()
    voxel_ml = float(np.prod(ph.SPACING_MM)) / 1000.0
    runs = {}
    for counts in (1e9, *PAPER_COUNT_LEVELS):
        start = time.perf_counter()
        spect, _ = simulate_spect(activity, density, geometry, counts=counts, seed=1,
                                  protocol=protocol, backend="pytomography",
                                  threads=args.threads)
        rc = [float(spect[m].mean() / activity[m].mean()) for m in spheres]
        runs[f"{counts:.3g}"] = rc
        print(f"{counts:9.3g} counts: " + " ".join(f"{r:.3f}" for r in rc)
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    noisy = np.array([runs[f"{c:.3g}"] for c in PAPER_COUNT_LEVELS])
    document = {
        "what": "recovery coefficient RC = mean reconstructed / true activity concentration "
                "in a sphere, against its volume",
        "nuclide": "Lu-177",
        "protocol": dataclasses.asdict(protocol),
        "backend": "pytomography",
        "phantom": {"description": "NEMA-IEC-like: water cylinder r = 100 mm, six hot "
                                   "spheres on a 57 mm ring, 8:1 sphere-to-background",
                    "case_voxel_mm": list(ph.SPACING_MM), "case_shape_zyx": list(ph.SHAPE)},
        "diameters_mm": list(ph.DIAMETERS_MM),
        "volumes_ml": [math.pi / 6.0 * (d / 10.0) ** 3 for d in ph.DIAMETERS_MM],
        "voxelised_volumes_ml": [float(np.count_nonzero(m)) * voxel_ml for m in spheres],
        "rc": runs["1e+09"],
        "rc_sd": [float(v) for v in noisy.std(axis=0, ddof=1)],
        "rc_sd_from": "standard deviation over the counts levels "
                      + ", ".join(f"{c:.3g}" for c in PAPER_COUNT_LEVELS) + " (seed 1)",
        "runs_rc_by_counts": runs,
        "command": "nice -n 10 python examples/recovery_curve.py",
        "provenance": provenance(seed=1, histories=None),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
