"""``mcdose phantom OUT_DIR --count N [--seed S] [--preset paper|small|tiny]``.

Writes ``OUT_DIR/case_0000.h5``, ``case_0001.h5``, ... with case ``i`` generated from seed
``S + i`` (:func:`mcdose.phantoms.generate_phantom`, recorded in the file).  A case file
that already exists with the same seed and preset is kept (so an interrupted run resumes);
one made differently is an error unless ``--overwrite``.  ``--from-ct CT --from-activity
IMAGE`` builds ``case_0000.h5`` from a real CT and activity image instead
(:func:`mcdose.phantoms.phantom_from_images`).
"""

from __future__ import annotations

from pathlib import Path

import click

from mcdose.errors import InputError
from mcdose.units import ACTIVITY_UNITS
from mcdose_cli.options import force_large_option

PRESET_NAMES = ("paper", "small", "tiny")


def _case_path(out_dir: Path, i: int) -> Path:
    return out_dir / f"case_{i:04d}.h5"


def _existing_matches(path: Path, seed: int, preset: str) -> bool:
    from mcdose.phantoms import read_phantom_params

    try:
        params = read_phantom_params(path)
    except InputError:
        return False
    return params.get("seed") == seed and params.get("preset") == preset


@click.command("phantom")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", "-n", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of phantoms.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the first phantom; case i uses seed + i.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="small", show_default=True,
              help="Grid: paper 512×512×130 @ 0.98×0.98×3 mm; small 4 mm; tiny 12 mm.")
@click.option("--nuclide", default="Lu-177", show_default=True, help="Nuclide of the activity.")
@click.option("--overwrite", is_flag=True, help="Replace existing case files.")
@click.option("--from-ct", "from_ct", type=click.Path(exists=True, path_type=Path),
              help="Real CT (HU): build one case from it instead of a phantom.")
@click.option("--from-activity", "from_activity", type=click.Path(exists=True, path_type=Path),
              help="Activity image (e.g. PET) to go with --from-ct.")
@click.option("--activity-units", default="Bq/ml", show_default=True,
              type=click.Choice(ACTIVITY_UNITS, case_sensitive=False),
              help="Units of --from-activity (concentration or amount per voxel).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, path_type=Path),
              help="Optional label image to go with --from-ct.")
@click.option("--calibration", default="paper", show_default=True,
              help="HU→density: 'paper' or a CSV file with columns hu,density_g_cm3.")
@force_large_option
def phantom(
    out_dir: Path,
    count: int,
    seed: int,
    preset: str,
    nuclide: str,
    overwrite: bool,
    from_ct: Path | None,
    from_activity: Path | None,
    activity_units: str,
    labels_path: Path | None,
    calibration: str,
    force_large: bool,
) -> None:
    """Generate virtual-patient case files (density, activity, labels) in OUT_DIR."""
    from mcdose.phantoms import PRESETS
    from mcdose.progress import progress_bar

    if (from_ct is None) != (from_activity is None):
        raise click.BadParameter(
            "--from-ct and --from-activity must be given together",
            param_hint="'--from-ct' / '--from-activity'",
        )
    if from_ct is None and labels_path is not None:
        raise click.BadParameter("--labels needs --from-ct and --from-activity",
                                 param_hint="'--labels'")
    if from_ct is not None and count != 1:
        raise click.BadParameter("--from-ct builds one case; use --count 1",
                                 param_hint="'--count'")
    from mcdose.io.limits import check_cases
    from mcdose.io.outputs import check_output_folder

    pre = PRESETS[preset]
    nz, ny, nx = pre.shape_zyx
    # density, activity (float32), labels (int16), compressed about 2x: ~5 B per voxel
    check_cases(count, force=force_large, bytes_per_case=5.0 * nx * ny * nz)
    check_output_folder(out_dir, flag="OUT_DIR", create=True)

    if from_ct is not None:
        _from_images(out_dir, from_ct, from_activity, activity_units, labels_path,
                     calibration, nuclide, overwrite)
        return

    from mcdose.phantoms import generate_phantom, write_phantom_case

    # check every existing file before generating anything
    todo: list[int] = []
    for i in range(count):
        path = _case_path(out_dir, i)
        if path.exists() and not overwrite:
            if not _existing_matches(path, seed + i, preset):
                raise InputError(
                    f"{path}: exists and was not made with seed {seed + i} and preset "
                    f"{preset}; pass --overwrite to replace it"
                )
            continue
        todo.append(i)
    totals: list[float] = []
    lesions: list[int] = []
    with progress_bar(len(todo), f"phantoms ({preset})", unit="cases") as advance:
        for i in todo:
            ph = generate_phantom(seed + i, preset)
            write_phantom_case(ph, _case_path(out_dir, i), nuclide, overwrite=True)
            totals.append(ph.total_activity_MBq)
            lesions.append(sum(1 for n in ph.label_names.values() if n.startswith("lesion_")))
            advance(1)
    nz, ny, nx = pre.shape_zyx
    sx, sy, sz = pre.spacing_mm_xyz
    click.echo(
        f"wrote {len(todo)} case(s) to {out_dir} (preset {preset}: {nx}×{ny}×{nz} voxels "
        f"at {sx:g}×{sy:g}×{sz:g} mm; seeds {seed}–{seed + count - 1}); "
        f"kept {count - len(todo)} existing"
    )
    if totals:
        click.echo(
            f"activity in the field of view {min(totals):.0f}–{max(totals):.0f} MBq "
            f"(mean {sum(totals) / len(totals):.0f}); lesions per case "
            f"{min(lesions)}–{max(lesions)}"
        )


def _from_images(out_dir, ct, activity, units, labels_path, calibration, nuclide, overwrite):
    from mcdose.io.outputs import check_output
    from mcdose.phantoms import phantom_from_images, write_phantom_case

    path = _case_path(out_dir, 0)
    check_output(path, inputs=(ct, activity, labels_path), overwrite=overwrite,
                 flag="OUT_DIR")
    ph = phantom_from_images(ct, activity, calibration=calibration, activity_units=units,
                             labels_path=labels_path)
    write_phantom_case(ph, path, nuclide, overwrite=overwrite)
    nz, ny, nx = ph.shape
    click.echo(
        f"wrote {path} from {ct} and {activity} ({nx}×{ny}×{nz} voxels); activity "
        f"{ph.total_activity_MBq:.1f} MBq on the CT grid"
    )
