"""``mcdose build-dataset OUT_DIR --cases N [--preset ...] [--workers K | --scheduler ADDRESS]``.

Builds (or resumes) a training dataset on Dask with :func:`mcdose.dataset.build_dataset`:
for each case phantom → SPECT → MC on the true activity (``dose/mc``) → VDK on the SPECT
(``dose/vdk``) → optionally MC on the SPECT (``dose/mc_spect``), and ``manifest.json``.
Finished stages are skipped, so rerunning the same command resumes.  Prints a summary table;
exits 1 when a case failed (the others still complete).  See ``docs/dataset.md``.
"""

from __future__ import annotations

from pathlib import Path

import click

from mcdose_cli.commands.kernel import Count
from mcdose_cli.options import force_large_option

PRESET_NAMES = ("paper", "small", "tiny")


class CampaignFailed(click.ClickException):
    """Some cases failed: exit status 1 (usage errors exit 2)."""

    exit_code = 1


@click.command("build-dataset")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cases", "-n", type=click.IntRange(min=1), required=True,
              help="Number of cases (case_0000.h5 ...).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="small", show_default=True,
              help="Phantom grid: paper 512×512×130 @ 0.98×0.98×3 mm; small 4 mm; tiny 12 mm.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Campaign seed: phantom i uses seed + i; SPECT/MC seeds and the split "
                   "derive from it.")
@click.option("--histories", type=Count(minimum=1), default="1000000", show_default=True,
              help="Monte Carlo histories per MC stage (e.g. 1e9).")
@click.option("--mc-spect/--no-mc-spect", default=False, show_default=True,
              help="Also run the MC on the SPECT (dose/mc_spect, the paper's comparison).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Workers of the local Dask cluster [default: one per GPU, else 1].")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Use a running Dask scheduler (e.g. tcp://host:8786) instead.")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cases run at once by one worker.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Monte Carlo device on the workers.")
@click.option("--counts", type=click.FloatRange(min=0, min_open=True), multiple=True,
              help="SPECT total counts; repeat to give levels picked per case "
                   "[default: the paper's four levels].")
@click.option("--spect-backend", type=click.Choice(["auto", "pytomography", "gaussian"]),
              default="auto", show_default=True, help="SPECT simulator.")
@click.option("--batches", type=click.IntRange(min=2), default=10, show_default=True,
              help="MC batches for the uncertainty estimate.")
@click.option("--kernel-histories", type=Count(minimum=1), default=None,
              help="Histories per part of VDK kernels generated for the grid "
                   "[default: mcdose.vdk's].")
@click.option("--split", "split_fractions", type=(click.FloatRange(min=0),) * 3,
              default=(0.7, 0.15, 0.15), show_default=True, metavar="TRAIN VAL TEST",
              help="Fractions of cases per split (by case); --split 0 0 1 makes an external "
                   "test set.")
@click.option("--nuclide", default="Lu-177", show_default=True, help="Nuclide of the activity.")
@click.option("--dashboard", "dashboard_address", metavar="ADDRESS", default=None,
              help="Serve the local cluster's Dask dashboard there (e.g. :8787).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar over cases and stages (stderr).")
@force_large_option
def build_dataset(
    out_dir: Path,
    cases: int,
    preset: str,
    seed: int,
    histories: int,
    mc_spect: bool,
    workers: int | None,
    scheduler: str | None,
    threads_per_worker: int,
    device: str,
    counts: tuple[float, ...],
    spect_backend: str,
    batches: int,
    kernel_histories: int | None,
    split_fractions: tuple[float, float, float],
    nuclide: str,
    dashboard_address: str | None,
    progress: bool,
    force_large: bool,
) -> None:
    """Build a training dataset of N cases in OUT_DIR on Dask (resumable)."""
    from rich.console import Console

    from mcdose.dataset import build_dataset as run

    if workers is not None and scheduler is not None:
        raise click.BadParameter("give --workers (local cluster) or --scheduler, not both",
                                 param_hint="'--workers' / '--scheduler'")
    from mcdose.io.limits import check_cases, check_fractions, check_histories, check_threads

    check_cases(cases, flag="--cases", force=force_large)
    check_histories(histories, force=force_large)
    if kernel_histories:
        check_histories(kernel_histories, flag="--kernel-histories", force=force_large)
    check_fractions(split_fractions)
    threads_per_worker = check_threads(threads_per_worker, flag="--threads-per-worker")
    vdk_options = {"histories": kernel_histories} if kernel_histories else None
    summary = run(
        out_dir,
        cases=cases,
        preset=preset,
        seed=seed,
        histories=histories,
        mc_spect=mc_spect,
        workers=workers,
        scheduler=scheduler,
        threads_per_worker=threads_per_worker,
        progress=progress,
        device=device,
        counts=list(counts) or None,
        spect_backend=spect_backend,
        batches=batches,
        nuclide=nuclide,
        split_fractions=split_fractions,
        vdk_options=vdk_options,
        dashboard_address=dashboard_address,
    )
    summary.print(Console(), max_rows=40)
    click.echo(
        f"{summary.completed}/{len(summary.results)} case(s) complete in {out_dir}; "
        f"manifest {summary.manifest_path}"
    )
    if summary.failed:
        first = summary.failed[0]
        raise CampaignFailed(
            f"{len(summary.failed)} of {len(summary.results)} case(s) failed "
            f"(first: {first.file}: {first.error}); rerun the same command to retry them"
        )
