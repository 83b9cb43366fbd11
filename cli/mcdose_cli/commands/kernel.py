"""``mcdose kernel --nuclide NAME --voxel-mm X [Y Z] --size N --material NAME --out K.h5``.

Composition only: :func:`mcdose.vdk.get_kernel` generates the kernel with the Monte Carlo
engine (or takes it from the kernel cache) and :func:`mcdose.vdk.write_kernel` writes it;
this module parses options and prints the kernel's energy bookkeeping and noise.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from mcdose_cli.options import force_large_option


class Count(click.ParamType):
    """A whole number ≥ ``minimum``, also written as ``1e7``."""

    name = "N"

    def __init__(self, minimum: int = 10) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                as_float = float(str(value))
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
            if as_float != as_float or as_float in (float("inf"), float("-inf")):
                self.fail(f"{value!r} is not a number", param, ctx)
            if not as_float.is_integer():
                self.fail(f"{value!r} is not a whole number", param, ctx)
            from mcdose.io.limits import MAX_HISTORIES

            if abs(as_float) > MAX_HISTORIES:
                self.fail(f"{value!r} exceeds {MAX_HISTORIES:.3g}, the most mcdose can count",
                          param, ctx)
            number = int(as_float)
        if number < self.minimum:
            self.fail(f"{value!r} must be at least {self.minimum}", param, ctx)
        return number


def _numbers(text: str, what: str) -> list[str]:
    return [t for t in re.split(r"[,x×\s]+", text.strip()) if t]


def parse_voxel(voxel_mm: str, extra: tuple[str, ...]) -> tuple[float, float, float]:
    """``--voxel-mm X [Y Z]`` (also ``X,Y,Z``) → (x, y, z) mm."""
    parts = _numbers(voxel_mm, "voxel") + [t for e in extra for t in _numbers(e, "voxel")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"expected 1 or 3 numbers (mm), got {' '.join(parts)!r}",
                                 param_hint="'--voxel-mm'") from None  # fmt: skip
    if len(values) not in (1, 3):
        raise click.BadParameter(f"expected 1 or 3 numbers (x y z mm), got {len(values)}",
                                 param_hint="'--voxel-mm'")  # fmt: skip
    if len(values) == 1:
        values *= 3
    if not all(v > 0 and v < float("inf") for v in values):
        raise click.BadParameter("voxel sizes must be positive (mm)", param_hint="'--voxel-mm'")
    return (values[0], values[1], values[2])


def parse_size(text: str) -> tuple[int, int, int]:
    """``--size N`` or ``NX,NY,NZ`` → odd sizes (x, y, z)."""
    parts = _numbers(text, "size")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"expected an odd integer or three, got {text!r}",
                                 param_hint="'--size'") from None  # fmt: skip
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or any(v < 1 or v % 2 == 0 for v in values):
        raise click.BadParameter(
            f"kernel size must be odd (the source voxel is the centre), got {text!r}",
            param_hint="'--size'",
        )
    return (values[0], values[1], values[2])


@click.command(name="kernel")
@click.option("--nuclide", required=True, help="ICRP-107 nuclide, e.g. Lu-177.")
@click.option("--voxel-mm", "voxel_mm", required=True, metavar="X [Y Z]",
              help="Voxel size in mm: one number (cubic) or three (x y z), e.g. 0.98 0.98 3.")
@click.option("--size", "size", required=True, metavar="N",
              help="Kernel size in voxels (odd), or NX,NY,NZ.")
@click.option("--material", default="soft_tissue", show_default=True,
              help="Homogeneous medium (soft_tissue, lung, cortical_bone, water, ...).")
@click.option("--density", "density", type=click.FloatRange(min=0, min_open=True),
              default=None,
              help="Medium density in g/cm3 [default: 1.04 for soft_tissue (the paper), "
              "else the material's nominal density].")
@click.option("--emissions", type=click.Choice(["all", "electrons", "photons"]), default="all",
              show_default=True, help="Radiations: all (β + photons), electrons or photons.")
@click.option("--histories", type=Count(), default="1000000", show_default=True,
              help="Decays simulated (e.g. 1e6); with --emissions all the photon part gets "
              "10× unless --photon-histories is given.")
@click.option("--photon-histories", type=Count(), default=None,
              help="Decays for the photon part of an 'all' kernel [default: 10 × --histories].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed (the photon part uses SEED + 1).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Monte Carlo device.")
@click.option("--no-symmetrize", is_flag=True, help="Keep the raw kernel (no octant averaging).")
@click.option("--no-cache", is_flag=True, help="Neither read nor store the kernel cache.")
@click.option("--regenerate", is_flag=True, help="Generate even when cached.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Kernel file to write (HDF5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@force_large_option
@click.argument("voxel_extra", nargs=-1, metavar="")
def kernel(
    nuclide: str,
    voxel_mm: str,
    size: str,
    material: str,
    density: float | None,
    emissions: str,
    histories: int,
    photon_histories: int | None,
    seed: int,
    device: str,
    no_symmetrize: bool,
    no_cache: bool,
    regenerate: bool,
    out: Path,
    overwrite: bool,
    voxel_extra: tuple[str, ...],
    force_large: bool,
) -> None:
    """Generate a voxel dose kernel (Gy per decay) by Monte Carlo and write it to --out.

    Decays uniform in the central voxel of a homogeneous medium are transported by the
    mcdose engine, electrons and photons separately; the kernel is averaged over its
    symmetry images.  Kernels are cached (MCDOSE_CACHE_DIR or the user cache folder), so a
    second request with the same parameters is immediate.

    \b
    The paper's pair (Li et al. 2022), 0.98×0.98×3 mm voxels in soft tissue (1.04 g/cm3):
      mcdose kernel --nuclide Lu-177 --voxel-mm 0.98 0.98 3 --size 9
                    --emissions electrons --out beta.h5
      mcdose kernel --nuclide Lu-177 --voxel-mm 0.98 0.98 3 --size 99
                    --emissions photons --histories 1e7 --out gamma.h5
    """
    from mcdose.io.limits import check_histories, check_memory, check_voxel_mm
    from mcdose.io.outputs import check_output
    from mcdose.vdk import get_kernel, write_kernel

    voxel = parse_voxel(voxel_mm, voxel_extra)
    check_voxel_mm(voxel)
    size3 = parse_size(size)
    check_output(out, overwrite=overwrite)
    check_histories(histories, force=force_large)
    if photon_histories is not None:
        check_histories(photon_histories, flag="--photon-histories", force=force_large)
    elif emissions == "all":
        check_histories(10 * histories, flag="--histories (x10 for the photon part)",
                        force=force_large)
    nvox = size3[0] * size3[1] * size3[2]
    # the MC grid (density, materials, tallies per batch) and the kernel arrays: ~64 B/voxel
    check_memory(64.0 * nvox, what=f"a {size3[0]}x{size3[1]}x{size3[2]} kernel",
                 flag="--size", force=force_large)

    k = get_kernel(
        nuclide, voxel, size3, material, density_g_cm3=density, emissions=emissions,
        histories=histories, photon_histories=photon_histories, seed=seed,
        symmetric=not no_symmetrize, device=device, progress=True, cache=not no_cache,
        regenerate=regenerate,
    )  # fmt: skip
    write_kernel(out, k)
    click.echo(f"wrote {out}: {k.describe()}"
               + (" (from the kernel cache)" if k.attrs.get("cached") else ""))  # fmt: skip
    report = k.energy_report()
    for part, r in report.items():
        click.echo(
            f"  {part:9s} emitted {r['emitted']:8.3f} keV/decay (ICRP-107 {r['tabulated']:.3f}),"
            f" in kernel {r['deposited']:8.3f} ({100 * r['deposited_fraction']:5.1f} %), "
            f"escaped {r['escaped']:8.3f}; imbalance {r['imbalance']:.1e}"
        )
    if k.uncertainty is not None:
        import numpy as np

        c = tuple(n // 2 for n in k.shape)
        kern = k.kernel.astype(np.float64)
        order = np.argsort(kern, axis=None)[::-1]
        cum = np.cumsum(kern.ravel()[order]) / max(kern.sum(), 1e-300)
        core = order[: int(np.searchsorted(cum, 0.9)) + 1]
        med = float(np.median(k.uncertainty.ravel()[core]))
        click.echo(
            f"  noise: source voxel {100 * float(k.uncertainty[c]):.3g} %, median over the "
            f"voxels holding 90 % of the kernel {100 * med:.3g} % (relative standard error)"
        )
