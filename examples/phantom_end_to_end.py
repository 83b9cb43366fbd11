"""One virtual patient end to end: phantom → SPECT → MC ground truth → VDK → organ table.

Builds a single case file with the library's stage functions (the same ones
``mcdose build-dataset`` chains on Dask), then compares the VDK on the SPECT and the Monte
Carlo on the SPECT against the Monte Carlo ground truth on the true activity, per organ,
with the paper's metrics (MDE, NRMSE).  Optionally adds a trained CNN (``--model``).

Run::

    python examples/phantom_end_to_end.py --out phantom_case.h5 [--preset small]
        [--histories 5e6] [--seed 1] [--model model.pt]

About a minute on 2 CPU cores at the defaults (the SPECT reconstruction dominates).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mcdose.io.case import read_case_info, read_dataset, read_label_names, write_datasets
from mcdose.metrics import mde, nrmse, standard_regions
from mcdose.phantoms import generate_phantom, write_phantom_case
from mcdose.spect import SpectProtocol, spect_case
from mcdose.transport import simulate_case
from mcdose.vdk import vdk_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("phantom_case.h5"))
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--histories", type=float, default=5e6)
    parser.add_argument("--model", type=Path, default=None, help="trained residual CNN")
    parser.add_argument("--paper-spect", action="store_true",
                        help="paper's SPECT protocol (128 views, OSEM 16x4; slower)")
    args = parser.parse_args()
    histories = int(args.histories)

    if not args.out.exists():
        phantom = generate_phantom(args.seed, args.preset)
        write_phantom_case(phantom, args.out)
        print(f"phantom: {phantom.shape} voxels, {phantom.total_activity_MBq:.0f} MBq")
    protocol = None if args.paper_spect else SpectProtocol(views=60, iterations=6, subsets=6,
                                                           pixel_mm=6.0)  # fmt: skip
    spect_case(args.out, seed=args.seed, counts=5.5e6, protocol=protocol, progress=True)
    for source in ("activity", "spect"):
        simulate_case(args.out, source=source, histories=histories, seed=args.seed,
                      progress=True)  # fmt: skip
    vdk_case(args.out, source="spect")

    if args.model is not None:
        from residualnet.infer import predict_case
        from residualnet.modelfile import load_model

        info = read_case_info(args.out)
        model = load_model(args.model, expected_voxel_mm=info.geometry.spacing_mm,
                           expected_nuclide=info.nuclide)  # fmt: skip
        cnn = predict_case(model, read_dataset(args.out, "spect"),
                           read_dataset(args.out, "density"), read_dataset(args.out, "dose/vdk"),
                           labels=read_dataset(args.out, "labels"))  # fmt: skip
        write_datasets(args.out, {"dose/cnn": np.asarray(cnn, np.float32)},
                       attrs={"dose/cnn": {"method": "cnn", "model": str(args.model)}})

    truth = read_dataset(args.out, "dose/mc")
    labels = read_dataset(args.out, "labels")
    regions = standard_regions(read_label_names(args.out), labels)
    methods = {"VDK": "dose/vdk", "MC-SPECT": "dose/mc_spect"}
    if "dose/cnn" in read_case_info(args.out).datasets:
        methods["CNN"] = "dose/cnn"
    doses = {name: read_dataset(args.out, ds) for name, ds in methods.items()}
    header = f"{'region':<28}{'GT mGy/h':>10}" + "".join(
        f"{m + ' MDE%':>14}{m + ' NRMSE%':>16}" for m in methods
    )
    print(header)
    for region, mask in regions.items():
        gt = float(truth[mask].mean()) * 3.6e6
        cells = "".join(
            f"{100 * mde(d, truth, mask):>14.1f}{100 * nrmse(d, truth, mask):>16.1f}"
            for d in doses.values()
        )
        print(f"{region:<28}{gt:>10.2f}{cells}")
    print(f"case file: {args.out}")


if __name__ == "__main__":
    main()
