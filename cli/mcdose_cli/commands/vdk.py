"""``mcdose vdk CASE... [--source spect|activity] [--kernels single|tissue|learned]``.

Composition only: :func:`mcdose.vdk.vdk_case` convolves each case's activity with the voxel
dose kernels (cached, or generated at the case's voxel size) and writes ``dose/vdk``; this
module parses options and prints one line per case.  Convolvers (and their kernel spectra)
are shared between the cases of one call.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from mcdose_cli.commands.kernel import Count
from mcdose_cli.options import force_large_option


@click.command(name="vdk")
@click.argument("cases", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source", type=click.Choice(["spect", "activity"]), default="spect",
              show_default=True, help="Activity dataset to convolve.")
@click.option("--kernels", "kernels", type=click.Choice(["single", "tissue", "learned"]),
              default="single", show_default=True,
              help="single: soft-tissue kernel × 1.04/ρ (the paper); tissue: one kernel per "
              "tissue class (lung, soft tissue, bone); learned: a kernel per voxel predicted "
              "from the density around it (lvdk, needs torch; cubic voxels of the model's "
              "size).")
@click.option("--kernel", "kernel_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Kernel file(s) to use (summed, e.g. a β and a photon kernel) instead of "
              "cached or generated ones; their voxel size must equal the case spacing.")
@click.option("--output", default="dose/vdk", show_default=True,
              help="Dataset to write (under dose/).")
@click.option("--histories", type=Count(), default=None,
              help="Decays of β kernels that must be generated; photon kernels get 10× "
              "[default: 1e6].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of generated kernels.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Device of kernel generation and convolution.")
@click.option("--backend", type=click.Choice(["auto", "scipy", "torch", "cupy"]),
              default="auto", show_default=True,
              help="FFT backend: auto = CuPy or torch on a GPU, scipy (all cores) on a CPU.")
@click.option("--precision", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True, help="FFT arithmetic.")
@click.option("--no-cache", is_flag=True, help="Do not read or store the kernel cache.")
@click.option("--force", is_flag=True, help="Recompute even when the output is up to date "
              "(also replaces a dose dataset mcdose did not write).")
@force_large_option
def vdk(
    cases: tuple[Path, ...],
    source: str,
    kernels: str,
    kernel_files: tuple[Path, ...],
    output: str,
    histories: int | None,
    seed: int,
    device: str,
    backend: str,
    precision: str,
    no_cache: bool,
    force: bool,
    force_large: bool,
) -> None:
    """Voxel-dose-kernel dose rate (Gy/s) of each CASE file, written to 'dose/vdk'.

    The activity (MBq per voxel) is convolved by FFT with the β and photon kernels and each
    voxel multiplied by ρ_kernel / ρ (density clamped at 0.05 g/cm3).  Cases already done
    with the same parameters are skipped.
    """
    from mcdose.vdk import DEFAULT_KERNEL_HISTORIES, vdk_case

    if kernel_files and kernels != "single":
        raise click.BadParameter("--kernel files go with --kernels single",
                                 param_hint="'--kernel'")  # fmt: skip
    from mcdose.io.case import replacing_foreign_datasets
    from mcdose.io.limits import check_histories
    from mcdose.io.outputs import check_output_folder
    from mcdose_cli.options import refuse_foreign_outputs

    if histories is not None:
        check_histories(histories, force=force_large)
        check_histories(10 * histories, flag="--histories (x10 for photon kernels)",
                        force=force_large)
    name = output if output.startswith("dose/") else f"dose/{output}"
    refuse_foreign_outputs(cases, name, force)
    for path in cases:
        check_output_folder(path.parent, flag=str(path))
    shared: dict = {}
    done = skipped = 0
    for path in cases:
        with replacing_foreign_datasets() if force else contextlib.nullcontext():
            result = vdk_case(
                path, source=source, kernels=kernels, kernel_files=kernel_files or None,
                output=output, histories=histories or DEFAULT_KERNEL_HISTORIES, seed=seed,
                device=device, backend=backend, precision=precision, cache=not no_cache,
                force=force, progress=True, convolvers=shared,
            )  # fmt: skip
        if result is None:
            skipped += 1
            click.echo(f"{path}: {output} up to date, skipped")
            continue
        done += 1
        t = result.timings
        dose = result.dose_rate_Gy_s
        click.echo(
            f"{path}: wrote {output} ({kernels} kernel{'s' if kernels == 'tissue' else ''}, "
            f"{source}, {result.backend}); convolution {t['convolution_s']:.2f} s, kernels "
            f"{t['kernels_s']:.2f} s; max {float(dose.max()):.3g} Gy/s"
        )
    if len(cases) > 1:
        click.echo(f"{done} case(s) computed, {skipped} skipped")
