"""``mcdose dose``: patient dosimetry from a clinical SPECT/CT.

Composition only: :func:`mcdose.dosimetry.run_dosimetry` does the work; this module parses
the options and prints a short summary.
"""

from __future__ import annotations

from pathlib import Path

import click

from mcdose_cli.commands.kernel import Count
from mcdose_cli.options import force_large_option


def _thresholds(ctx: click.Context, param: click.Parameter, value: str | None
                ) -> tuple[float, ...]:
    if not value:
        return ()
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a number (e.g. 10,20,30)") from None
    return tuple(out)


def _check_arguments(out, report_dir, inputs, histories, kernel_histories, force_large):
    """Absurd numbers and outputs that are inputs, refused before anything is read."""
    from mcdose.io.limits import check_histories
    from mcdose.io.outputs import check_output

    if histories is not None:
        check_histories(histories, force=force_large)
    if kernel_histories is not None:
        check_histories(kernel_histories, flag="--kernel-histories", force=force_large)
    name = out.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.lower().endswith(suffix):
            stem, ext = name[: -len(suffix)], name[-len(suffix):]
            break
    else:
        stem, ext = out.stem, out.suffix
    targets = [out, out.with_name(stem + ".json"), out.with_name(stem + "_rtdose.dcm"),
               out.with_name(stem + "_uncertainty" + ext)]
    if report_dir is not None:
        targets += [report_dir / n for n in ("organs.csv", "organs.json", "dvh.png",
                                             "report.html")]
    for target in targets:
        if target.parent.is_dir():  # a missing folder is the pipeline's message
            check_output(target, inputs=[p for p in inputs if p is not None],
                         overwrite=True, flag="--out" if target == out else str(target))


@click.command(name="dose")
@click.option("--spect", type=click.Path(path_type=Path), default=None,
              help="SPECT of a single time point: DICOM NM file/folder or NIfTI/NRRD/MHA. "
              "Output: dose rate at scan time (Gy/s).")
@click.option("--ct", type=click.Path(path_type=Path), required=True,
              help="CT of the (first) SPECT/CT session in HU: DICOM folder/file or image.")
@click.option("--method", type=click.Choice(["vdk", "cnn", "mc", "lvdk"]), required=True,
              help="vdk: kernel convolution; cnn: residual CNN (the shipped model unless "
              "--model); mc: Monte Carlo; lvdk: learned density-specific kernels (shipped "
              "model, 4 mm voxels).")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Residual-CNN model file (--method cnn)  [default: the shipped model, run "
              "on its 4 mm grid with the images resampled to it; see mcdose models]; a file "
              "is refused if trained for another voxel size or nuclide.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Organ/lesion labels: integer image on the CT or SPECT grid, or DICOM "
              "RTSTRUCT.")
@click.option("--label-names", type=click.Path(path_type=Path), default=None,
              help="JSON {\"1\": \"liver\"} or CSV value,name for a label image.")
@click.option("--nuclide", default="Lu-177", show_default=True, help="ICRP-107 nuclide.")
@click.option("--spect-units", type=click.Choice(["Bq/ml", "counts"]), default="Bq/ml",
              show_default=True, help="Units of the SPECT voxels (checked against DICOM).")
@click.option("--calibration-cps-per-mbq", type=float, default=None,
              help="Counts per second per MBq (with --spect-units counts).")
@click.option("--frame-duration-s", type=float, multiple=True,
              help="Acquisition time in s that the counts were collected over (with counts); "
              "once, or once per time point.")
@click.option("--hu-calibration", default="paper", show_default=True,
              help="'paper' (Li et al. bilinear) or a CSV file hu,density_g_cm3.")
@click.option("--grid", type=click.Choice(["spect", "ct"]), default="spect", show_default=True,
              help="Dose grid: the SPECT's or the CT's.")
@click.option("--histories", type=Count(minimum=100), default=None,
              help="Monte Carlo decays (--method mc)  [default: 1e7]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Monte Carlo seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Device of Monte Carlo, kernel generation and CNN.")
@click.option("--timepoint", "timepoints", multiple=True, metavar="SPECT:HOURS",
              help="A SPECT and its time after administration in h (repeat, increasing "
              "time; instead of --spect).  The first is the reference (its CT is --ct).  Two "
              "or more give the absorbed dose in Gy.")
@click.option("--timepoint-ct", "timepoint_cts", multiple=True, metavar="HOURS:CT",
              help="CT of the later time point at HOURS, to register it to the first by "
              "rigid CT registration; time points without one are assumed aligned.")
@click.option("--integration", type=click.Choice(["mono", "bi", "tri", "trapezoid", "auto"]),
              default="mono", show_default=True,
              help="Time-activity model (several time points); auto: least AICc per organ "
              "(per voxel: mono/bi); tri: organ level only.")
@click.option("--fit-level", type=click.Choice(["voxel", "organ"]), default="voxel",
              show_default=True, help="Fit every voxel's curve, or every organ's curve.")
@click.option("--stp", type=click.Choice(["hanscheid", "madsen"]), default=None,
              help="Single-time-point absorbed dose (Gy) from one --timepoint SPECT:HOURS: "
              "Hänscheid 2018 (2t/ln2) or Madsen 2018 (population T_eff).")
@click.option("--stp-teff", multiple=True, metavar="NAME=HOURS",
              help="Madsen: effective half-life for an organ class (kidney, liver, spleen, "
              "tumour) or a region name, e.g. kidney=50 (repeat).")
@click.option("--recovery-correction", is_flag=True,
              help="Divide each lesion's mean activity and dose by RC(volume) of the SPECT "
              "protocol; uncorrected values are kept beside.")
@click.option("--recovery-curve", type=click.Path(path_type=Path), default=None,
              help="RC(volume) JSON of another SPECT protocol (default: mcdose's own).")
@click.option("--calibration-uncertainty", type=float, default=None, metavar="REL",
              help="Relative standard uncertainty of the SPECT calibration (e.g. 0.05), a "
              "term of the uncertainty budget.")
@click.option("--dvh-thresholds", callback=_thresholds, default=None, metavar="X,Y,...",
              help="Dose levels (Gy; Gy/s for a dose rate) for V_x in the organ table.")
@click.option("--vdk-kernels", type=click.Choice(["single", "tissue"]), default="single",
              show_default=True, help="VDK: one soft-tissue kernel (paper) or one per tissue "
              "class.")
@click.option("--kernel-histories", type=Count(minimum=100), default=None,
              help="Decays per VDK kernel part when a kernel must be generated  [default: 1e6]")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for organs.csv, organs.json, dvh.png and report.html.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Dose image (.nii.gz, .nii, .nrrd, .mha); <stem>_rtdose.dcm is written "
              "beside it when the CT is DICOM.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input).")
@force_large_option
def dose(spect, ct, method, model, labels, label_names, nuclide, spect_units,
         calibration_cps_per_mbq, frame_duration_s, hu_calibration, grid, histories, seed,
         device, timepoints, timepoint_cts, integration, fit_level, stp, stp_teff,
         recovery_correction, recovery_curve, calibration_uncertainty, dvh_thresholds,
         vdk_kernels, kernel_histories, report_dir, out, overwrite, force_large) -> None:
    """Absorbed dose (rate) of a patient from SPECT/CT, with organ table and report.

    One time point (--spect, or a single --timepoint): the dose-rate map in Gy/s at scan
    time (with --stp: the single-time-point absorbed dose in Gy).  Several (--timepoint
    SPECT:HOURS repeated): time-integrated activity per voxel or organ, then the absorbed
    dose in Gy, with each organ's fitted model, AICc weight and uncertainty budget.  Every
    input is checked before anything is computed; on any error nothing is written.
    """
    from mcdose.dosimetry.pipeline import TimePoint, run_dosimetry
    from mcdose.errors import InputError

    cts: dict[float, Path] = {}
    for item in timepoint_cts:
        hours, sep, path = item.partition(":")
        try:
            key = float(hours)
        except ValueError:
            key = None
        if not sep or not path or key is None:
            raise InputError(f"--timepoint-ct {item!r}: expected HOURS:CT, e.g. 24:ct_day2/")
        cts[key] = Path(path)
    tps = [TimePoint.parse(text) for text in timepoints]
    if cts:
        later = {tp.hours for tp in tps[1:]}
        for key in cts:
            if key not in later:
                raise InputError(f"--timepoint-ct {key:g}:...: no later --timepoint at {key:g} h")
        tps = [tps[0]] + [TimePoint(tp.spect, tp.hours, cts.get(tp.hours)) for tp in tps[1:]]

    _check_arguments(out, report_dir, [ct, spect, model, labels, label_names,
                                       *(tp.spect for tp in tps), *cts.values()],
                     histories, kernel_histories, force_large)
    result = run_dosimetry(
        ct=ct, out=out, spect=spect, timepoints=tps, method=method, model=model, labels=labels,
        label_names=label_names, nuclide=nuclide, spect_units=spect_units,
        calibration_cps_per_mbq=calibration_cps_per_mbq,
        frame_duration_s=list(frame_duration_s) or None, hu_calibration=hu_calibration,
        grid=grid, histories=histories, seed=seed, device=device, vdk_kernels=vdk_kernels,
        kernel_histories=kernel_histories, integration=integration, fit_level=fit_level,
        stp=stp, stp_teff=list(stp_teff) or None, recovery_correction=recovery_correction,
        recovery_curve=recovery_curve, calibration_uncertainty=calibration_uncertainty,
        dvh_thresholds=dvh_thresholds, report_dir=report_dir, overwrite=overwrite,
        progress=True,
    )
    unit = result.unit
    key = unit.replace("/", "_")
    click.echo(f"{result.quantity} ({unit}) by {method} written to {result.outputs['dose']} "
               f"in {result.seconds:.1f} s; maximum {float(result.dose.max()):.4g} {unit}")
    resampling = result.provenance.get("engine", {}).get("resampling")
    if resampling:
        click.echo(f"  {resampling['note']}")
    for name in ("rtdose", "uncertainty", "report_html"):
        if name in result.outputs:
            click.echo(f"  {name}: {result.outputs[name]}")
    for row in result.organs:
        mean = row.get(f"mean_{key}_rc_corrected", row[f"mean_{key}"])
        text = (f"  {row['name']:<24} {row['volume_ml']:10.1f} ml  mean {mean:.4g} ± "
                f"{row[f'u_total_{key}']:.2g}  max {row[f'max_{key}']:.4g}  D50 "
                f"{row[f'D50_{key}']:.4g} {unit}")
        if "recovery_coefficient" in row:
            text += (f"  (RC {row['recovery_coefficient']:.2f}; uncorrected "
                     f"{row[f'mean_{key}']:.4g})")
        if row.get("model"):
            w = row.get("aicc_weight")
            text += f"  model {row['model']}" + (f" (AICc weight {w:.2f})" if w is not None
                                                 else "")
        click.echo(text)
    for message in result.provenance.get("warnings", []):
        click.echo(f"  warning: {message}")
