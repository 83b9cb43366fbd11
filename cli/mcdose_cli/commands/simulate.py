"""``mcdose simulate``: Monte Carlo absorbed-dose rate for case files or image files."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from mcdose.errors import InputError
from mcdose.io.case import replacing_foreign_datasets
from mcdose.io.outputs import check_output_folder
from mcdose.units import ACTIVITY_UNITS
from mcdose_cli.commands.kernel import Count
from mcdose_cli.options import force_large_option, refuse_foreign_outputs


def _run_on_images(density_path, activity_path, out, units, options):
    import numpy as np

    from mcdose.io.images import read_image, write_image
    from mcdose.io.limits import check_density
    from mcdose.transport import simulate_dose
    from mcdose.units import activity_to_mbq_per_voxel

    density, geometry = read_image(density_path)
    check_density(density, f"--density {density_path}")
    activity, act_geometry = read_image(activity_path)
    if activity.shape != density.shape or not act_geometry.allclose(geometry):
        raise InputError(
            f"{activity_path}: activity grid {activity.shape} does not match the density grid "
            f"{density.shape} of {density_path} (same size, spacing, origin and direction needed)"
        )
    activity = activity_to_mbq_per_voxel(activity, units, geometry.voxel_volume_cm3)
    result = simulate_dose(density, activity, geometry.spacing_mm, **options)
    out = Path(out)
    unc_path = _uncertainty_path(out)
    write_image(unc_path, result.relative_uncertainty.astype(np.float32), geometry,
                description="mcdose mc relative standard error of the dose rate (1)")
    try:
        write_image(out, result.dose_rate_Gy_s, geometry,
                    description="mcdose mc absorbed-dose rate Gy/s")
    except BaseException:
        unc_path.unlink(missing_ok=True)  # no half of a result left behind
        raise
    return result, [out, unc_path]


def _uncertainty_path(out: Path) -> Path:
    suffix = "".join(out.suffixes)
    stem = out.name[: len(out.name) - len(suffix)] if suffix else out.name
    return out.with_name(f"{stem}_uncertainty{suffix}")


def _summary(result) -> str:
    b = result.energy_balance
    return (
        f"{result.histories:,} decays on {result.device} in {result.elapsed_s:.1f} s "
        f"({result.decays_per_second:,.0f} decays/s; setup {result.setup_s:.1f} s); "
        f"energy per decay: emitted {b['emitted']:.2f} keV, deposited {b['deposited']:.2f}, "
        f"escaped {b['escaped']:.2f} (imbalance {b['relative_imbalance']:.1e})"
    )


@click.command(name="simulate")
@click.argument("cases", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", type=click.Choice(["activity", "spect"]), default="activity",
              show_default=True, help="Case dataset to use as the source.")
@click.option("--histories", type=Count(minimum=2), default="1000000", show_default=True,
              help="Number of decays to simulate (e.g. 1e7).")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--batches", type=click.IntRange(min=2), default=10, show_default=True,
              help="Independent batches for the uncertainty estimate.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: all cores).")
@click.option("--density", "density_path", type=click.Path(dir_okay=True, path_type=Path),
              help="Density image (g/cm³): NIfTI/NRRD/MHA or DICOM folder.")
@click.option("--activity", "activity_path", type=click.Path(dir_okay=True, path_type=Path),
              help="Activity image on the density grid.")
@click.option("--activity-units", type=click.Choice(ACTIVITY_UNITS), default="MBq",
              show_default=True, help="Units of --activity (per voxel or per ml).")
@click.option("--nuclide", default="Lu-177", show_default=True,
              help="Nuclide for --density/--activity (cases carry their own).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Output dose-rate image (Gy/s); its uncertainty goes to *_uncertainty.")
@click.option("--force", is_flag=True, help="Recompute even if the case already has this stage "
              "(also replaces a dose dataset mcdose did not write).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out image.")
@force_large_option
def simulate(cases, source, histories, seed, device, batches, threads, density_path,
             activity_path, activity_units, nuclide, out, force, overwrite,
             force_large):  # fmt: skip
    """Monte Carlo absorbed-dose rate (Gy/s).

    \b
    On case files: writes dose/mc and dose/mc_uncertainty (or dose/mc_spect with
    --source spect); a case that already holds the same stage is skipped.
    On images:  mcdose simulate --density D --activity A --out DOSE.nii.gz

    Ctrl-C leaves every file as it was.
    """
    from mcdose.io.limits import check_histories, check_threads
    from mcdose.transport import simulate_case

    threads = check_threads(threads)
    check_histories(histories, force=force_large, threads=threads)
    image_mode = any(p is not None for p in (density_path, activity_path, out))
    if image_mode and cases:
        raise click.UsageError("give either CASE files or --density/--activity/--out, not both")
    if image_mode:
        missing = [n for n, v in (("--density", density_path), ("--activity", activity_path),
                                  ("--out", out)) if v is None]  # fmt: skip
        if missing:
            raise click.UsageError(f"image mode needs {', '.join(missing)}")
        from mcdose.io.outputs import check_output

        for target in (out, _uncertainty_path(out)):
            check_output(target, inputs=(density_path, activity_path), overwrite=overwrite)
        options = dict(nuclide=nuclide, histories=histories, seed=seed, device=device,
                       batches=batches, threads=threads, progress=True)  # fmt: skip
        result, written = _run_on_images(density_path, activity_path, out, activity_units,
                                         options)  # fmt: skip
        click.echo(_summary(result))
        for path in written:
            click.echo(f"wrote {path}")
        return
    if not cases:
        raise click.UsageError("no CASE files given (or use --density/--activity/--out)")
    for path in cases:
        if not path.exists():
            raise InputError(f"case file not found: {path}")
    name = "dose/mc" if source == "activity" else "dose/mc_spect"
    refuse_foreign_outputs(cases, name, force)
    refuse_foreign_outputs(cases, name + "_uncertainty", force)
    for path in cases:
        check_output_folder(path.parent, flag=str(path))
    for path in cases:
        with replacing_foreign_datasets() if force else contextlib.nullcontext():
            result = simulate_case(path, source=source, histories=histories, seed=seed,
                                   device=device, batches=batches, progress=True,
                                   force=force)  # fmt: skip
        if result is None:
            click.echo(f"{path}: {source} MC already done with these parameters, skipped")
        else:
            click.echo(f"{path}: {_summary(result)}")
