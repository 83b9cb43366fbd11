"""``mcdose spect CASE...``: simulated SPECT acquisition and OSEM reconstruction per case.

Composition only: :func:`mcdose.spect.spect_case` does the work and writes the dataset
``spect`` into each case file; this module parses options and prints one line per case.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="spect")
@click.argument("cases", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--counts",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Total counts in the projections.  Default: one of the paper's four levels "
    "(1.9e7, 5.5e6, 4.4e6, 3.0e6), chosen from each case's seed.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the first case; case k (in argument order) uses SEED + k.",
)
@click.option("--iterations", type=click.IntRange(min=1), default=16, show_default=True,
              help="OSEM iterations.")
@click.option("--subsets", type=click.IntRange(min=1), default=4, show_default=True,
              help="OSEM subsets.")
@click.option("--views", type=click.IntRange(min=1), default=128, show_default=True,
              help="Projection angles over 360°.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "pytomography", "gaussian"]),
    default="auto",
    show_default=True,
    help="pytomography: projection + OSEM; gaussian: the blur + Poisson fallback; auto: "
    "pytomography when installed.",
)
@click.option("--overwrite", is_flag=True, help="Recompute even when 'spect' is up to date.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads for projection and OSEM (default: torch's choice).")
def spect(
    cases: tuple[Path, ...],
    counts: float | None,
    seed: int,
    iterations: int,
    subsets: int,
    views: int,
    backend: str,
    overwrite: bool,
    threads: int | None,
) -> None:
    """Simulate SPECT of each CASE file's true activity and store it as 'spect'.

    Medium-energy collimator response, attenuation at 208.4 keV, Poisson noise, OSEM with
    the same corrections, resampled to the case grid and calibrated to the true total
    activity (MBq per voxel).  Cases already done with the same parameters are skipped.
    """
    from mcdose.errors import CaseFileError
    from mcdose.io.limits import LARGE_HISTORIES, check_threads
    from mcdose.io.outputs import check_output_folder
    from mcdose.spect import SpectProtocol, spect_case

    for path in cases:
        if not path.is_file():
            raise CaseFileError(f"{path}: case file does not exist")
        check_output_folder(path.parent, flag=str(path))
    threads = check_threads(threads)
    if counts is not None and counts > LARGE_HISTORIES:
        raise click.BadParameter(f"{counts:.3g} counts is more than any acquisition "
                                 f"(clinical SPECT: 1e6-1e8)", param_hint="'--counts'")
    if views > 4096 or iterations * subsets > 10_000:
        raise click.BadParameter(
            f"{views} views, {iterations} iterations x {subsets} subsets is far beyond any "
            f"protocol (128 views, 16 x 4)", param_hint="'--views' / '--iterations'")
    protocol = SpectProtocol(views=views, iterations=iterations, subsets=subsets)
    for k, path in enumerate(cases):
        result = spect_case(
            path,
            seed=seed + k,
            counts=counts,
            protocol=protocol,
            backend=backend,
            progress=True,
            overwrite=overwrite,
            threads=threads,
        )
        params = result["params"]
        if result["skipped"]:
            click.echo(f"{path}: spect up to date (seed {params['seed']}); skipped")
            continue
        info = result["info"]
        click.echo(
            f"{path}: spect written ({info['backend']}, {params['counts']:.3g} counts, "
            f"seed {params['seed']}, calibration ×{info['calibration_factor']:.4f}, "
            f"{info['seconds']:.1f} s)"
        )
