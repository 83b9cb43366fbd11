"""``run_dosimetry``: clinical SPECT/CT in, dose image, RT Dose, organ table and report out.

Order of work (every check before any computation, every file written to a temporary folder
and moved into place only when everything succeeded — a failure leaves no partial output):

1. options: nuclide (ICRP-107), method, grid, integration model, thresholds, outputs;
2. the CT (HU checks), each time point's SPECT (units → MBq/ml, non-negative, finite), frame
   of reference and overlap of each SPECT with its CT, time points in increasing order;
3. the dose grid (SPECT grid, or ``grid="ct"``), a CNN model's voxel size and nuclide;
4. density on the dose grid (anti-aliased), body mask, labels (image or RTSTRUCT);
5. activity per voxel of each time point on the dose grid — later time points registered to
   the first by their CT (rigid), or assumed aligned — masked to the body;
6. one time point: the dose rate at scan time (Gy/h); several: the time-integrated activity
   per voxel (voxel fits, or organ fits applied to the first time point's distribution) and
   the absorbed dose (Gy), with the engine fed the time-integrated activity (the engines are
   linear in activity);
7. organ table, DVHs, report; NIfTI (+ JSON sidecar, + MC uncertainty), RT Dose when the CT
   is DICOM.

Time points: ``spect=`` gives one time point (dose rate; its time after administration is not
needed); ``timepoints=`` gives one or more :class:`TimePoint` (SPECT file, hours after
administration, optional CT of that session for registration), the first of which is the
reference: its CT is ``ct`` and its grid is the dose grid.  The two are exclusive.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = ["OUTPUT_SUFFIXES", "DosimetryResult", "TimePoint", "run_dosimetry"]

log = logging.getLogger(__name__)

#: dose image formats written (single-file formats only, so that each output is one rename)
OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
FIT_LEVELS = ("voxel", "organ")
GRIDS = ("spect", "ct")


@dataclass(frozen=True)
class TimePoint:
    """One SPECT acquisition: file, hours after administration, optional CT of its session."""

    spect: Path
    hours: float | None = None
    ct: Path | None = None

    @classmethod
    def parse(cls, text: str, ct: str | os.PathLike[str] | None = None) -> TimePoint:
        """``"SPECT:HOURS"`` (split at the last colon), e.g. ``"day1/spect.dcm:24"``."""
        if ":" not in text:
            raise InputError(f"--timepoint {text!r}: expected SPECT:HOURS, e.g. spect_24h.dcm:24")
        path, _, hours = text.rpartition(":")
        try:
            value = float(hours)
        except ValueError:
            raise InputError(f"--timepoint {text!r}: {hours!r} is not a number of hours"
                             ) from None
        if not path:
            raise InputError(f"--timepoint {text!r}: the SPECT path is empty")
        return cls(Path(path), value, Path(ct) if ct is not None else None)


@dataclass
class DosimetryResult:
    """What :func:`run_dosimetry` produced.

    Attributes
    ----------
    dose : ndarray, float32 (z, y, x)
        Absorbed dose (Gy) or dose rate at scan time (Gy/h), 0 outside the body.
    unit : str
        ``"Gy"`` or ``"Gy/h"``.
    quantity : str
    geometry : Geometry
        Dose grid.
    outputs : dict
        Name → path of every file written (``dose``, ``sidecar``, ``rtdose``, ``uncertainty``,
        ``report_html``, ``organs_csv``, ``organs_json``, ``dvh_png``).
    organs : list of dict
        Organ table rows.
    provenance : dict
    seconds : float
    """

    dose: np.ndarray
    unit: str
    quantity: str
    geometry: Geometry
    outputs: dict[str, Path] = field(default_factory=dict)
    organs: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _collect_warnings() -> Iterator[list[str]]:
    handler = _WarningCollector()
    logger = logging.getLogger("mcdose")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _split_suffix(path: Path) -> tuple[str, str]:
    name = path.name
    for suffix in OUTPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    raise InputError(
        f"--out {path}: the dose image must end with {', '.join(OUTPUT_SUFFIXES)}"
    )


def _check_outputs(out: Path, report_dir: Path | None, ct_is_dicom: bool, method: str,
                   overwrite: bool) -> dict[str, Path]:
    stem, suffix = _split_suffix(out)
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: output folder {out.parent} does not exist")
    targets = {"dose": out, "sidecar": out.with_name(stem + ".json")}
    if ct_is_dicom:
        targets["rtdose"] = out.with_name(stem + "_rtdose.dcm")
    if method == "mc":
        targets["uncertainty"] = out.with_name(stem + "_uncertainty" + suffix)
    if not overwrite:
        for key, path in targets.items():
            if path.exists():
                raise InputError(f"--out: {path} exists; pass --overwrite to replace it"
                                 if key == "dose" else
                                 f"{path} exists (written with --out {out.name}); pass "
                                 f"--overwrite to replace it")
    if report_dir is not None:
        if report_dir.exists() and not report_dir.is_dir():
            raise InputError(f"--report {report_dir}: exists and is not a folder")
        if not report_dir.parent.is_dir():
            raise InputError(f"--report {report_dir}: parent folder {report_dir.parent} does "
                             f"not exist")
        if report_dir.is_dir() and any(report_dir.iterdir()) and not overwrite:
            raise InputError(f"--report {report_dir}: folder exists and is not empty; pass "
                             f"--overwrite to replace it")
    return targets


def _sibling_outputs(out: Path) -> list[Path]:
    """Every file a run with ``--out out`` may write beside it."""
    stem, suffix = _split_suffix(out)
    return [out.with_name(stem + "_rtdose.dcm"),
            out.with_name(stem + "_uncertainty" + suffix)]


def _positive_thresholds(values: Sequence[float]) -> tuple[float, ...]:
    out = []
    for v in values:
        v = float(v)
        if not (math.isfinite(v) and v >= 0):
            raise InputError(f"--dvh-thresholds: {v} is not a dose >= 0")
        out.append(v)
    return tuple(out)


def _frame_durations(value: Any, n: int) -> list[float | None]:
    if value is None:
        return [None] * n
    if isinstance(value, (int, float)):
        return [float(value)] * n
    values = [float(v) for v in value]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise InputError(f"--frame-duration-s: give one value, or one per time point ({n}); got "
                         f"{len(values)}")
    return values


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def _replace_folder(src: Path, dst: Path) -> None:
    """Put folder ``src`` at ``dst`` (same file system), replacing an old ``dst``."""
    if dst.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, trash / dst.name)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(trash / dst.name, dst)
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


# --------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------


def run_dosimetry(
    *,
    ct: str | os.PathLike[str],
    out: str | os.PathLike[str],
    spect: str | os.PathLike[str] | None = None,
    timepoints: Sequence[TimePoint] = (),
    method: str = "vdk",
    model: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    label_names: str | os.PathLike[str] | None = None,
    nuclide: str = "Lu-177",
    spect_units: str = "Bq/ml",
    calibration_cps_per_mbq: float | None = None,
    frame_duration_s: float | Sequence[float] | None = None,
    hu_calibration: str | os.PathLike[str] = "paper",
    grid: str = "spect",
    histories: int | None = None,
    seed: int = 0,
    device: str = "auto",
    vdk_kernels: str = "single",
    kernel_histories: int | None = None,
    integration: str = "mono",
    fit_level: str = "voxel",
    dvh_thresholds: Sequence[float] = (),
    report_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> DosimetryResult:
    """Patient dosimetry from SPECT/CT: dose image, RT Dose, organ table, report.

    Parameters
    ----------
    ct : path-like
        CT of the (first) SPECT/CT session: DICOM folder/file or NIfTI/NRRD/MHA, in HU.
    out : path-like
        Dose image (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``).  Beside it: ``<stem>.json``
        (units, provenance), ``<stem>_rtdose.dcm`` when the CT is DICOM,
        ``<stem>_uncertainty<suffix>`` for ``method="mc"``.
    spect : path-like, optional
        The SPECT of a single time point (dose rate at scan time, Gy/h).
    timepoints : sequence of TimePoint, optional
        Instead of ``spect``: time points in increasing time; several give the absorbed
        dose (Gy).
    method : {"vdk", "cnn", "mc"}
    model : path-like, optional
        Residual-CNN model file (``method="cnn"``; default: the shipped model, run on its own
        voxel size with the inputs resampled to it); a file must match the dose grid's voxel size
        and the nuclide.
    labels : path-like, optional
        Label image (on the CT or SPECT grid) or DICOM RTSTRUCT.
    label_names : path-like, optional
        JSON/CSV label names for a label image.
    nuclide : str
        ICRP-107 nuclide (default Lu-177).
    spect_units : {"Bq/ml", "counts"}
    calibration_cps_per_mbq, frame_duration_s : float, optional
        Count calibration (counts only); ``frame_duration_s`` may hold one value per time
        point.
    hu_calibration : str or path-like
        ``"paper"`` or a CSV file ``hu,density_g_cm3``.
    grid : {"spect", "ct"}
        Dose grid.
    histories : int, optional
        Monte Carlo decays (default :data:`mcdose.dosimetry.methods.DEFAULT_HISTORIES`).
    seed : int
        Monte Carlo seed (and registration sampling seed).
    device : {"auto", "cpu", "cuda"}
        Device of the Monte Carlo (``mc``, kernel generation) and the CNN.
    vdk_kernels : {"single", "tissue"}
        VDK kernel mode for ``method="vdk"`` (the CNN always uses ``single``).
    kernel_histories : int, optional
        Decays per VDK kernel part when a kernel for this voxel size is not cached yet.
    integration : {"mono", "bi", "trapezoid"}
        Time-activity model (several time points).
    fit_level : {"voxel", "organ"}
        Fit each voxel's curve, or each organ's curve (voxels keep the first time point's
        distribution within their organ; unlabelled body voxels form one region).
    dvh_thresholds : sequence of float
        Dose levels (Gy, or Gy/h for a dose rate) for V_x in the organ table.
    report_dir : path-like, optional
        Folder for ``organs.csv``, ``organs.json``, ``dvh.png``, ``report.html``.
    overwrite : bool
        Replace existing outputs (otherwise refused).
    progress : bool
        Progress bars (MC, CNN).

    Returns
    -------
    DosimetryResult

    Raises
    ------
    InputError
        Any bad input (see :mod:`mcdose.dosimetry.inputs`), before anything is written.
    """
    with _collect_warnings() as warnings_seen:
        return _run(
            ct=Path(ct), out=Path(out), spect=Path(spect) if spect is not None else None,
            timepoints=list(timepoints), method=method, model=model, labels=labels,
            label_names=label_names, nuclide=nuclide, spect_units=spect_units,
            calibration_cps_per_mbq=calibration_cps_per_mbq, frame_duration_s=frame_duration_s,
            hu_calibration=hu_calibration, grid=grid, histories=histories, seed=seed,
            device=device, vdk_kernels=vdk_kernels, kernel_histories=kernel_histories,
            integration=integration, fit_level=fit_level,
            dvh_thresholds=dvh_thresholds,
            report_dir=Path(report_dir) if report_dir is not None else None,
            overwrite=overwrite, progress=progress, warnings_seen=warnings_seen,
        )


def _run(*, ct: Path, out: Path, spect: Path | None, timepoints: list[TimePoint], method: str,
         model: Any, labels: Any, label_names: Any, nuclide: str, spect_units: str,
         calibration_cps_per_mbq: float | None, frame_duration_s: Any, hu_calibration: Any,
         grid: str, histories: int | None, seed: int, device: str, vdk_kernels: str,
         kernel_histories: int | None, integration: str,
         fit_level: str, dvh_thresholds: Sequence[float], report_dir: Path | None,
         overwrite: bool, progress: bool, warnings_seen: list[str]) -> DosimetryResult:
    from mcdose.dosimetry import inputs as inp
    from mcdose.dosimetry import methods as meth
    from mcdose.dosimetry import timeintegration as ti
    from mcdose.io.images import is_dicom_input
    from mcdose.nuclides import load_nuclide, normalize_nuclide_name
    from mcdose.provenance import provenance as make_provenance

    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    # ---- 1. options ------------------------------------------------------------------
    nuclide = normalize_nuclide_name(nuclide)
    half_life_h = load_nuclide(nuclide).half_life_s / 3600.0
    if method not in meth.METHODS:
        raise InputError(f"--method must be one of {', '.join(meth.METHODS)}, got {method!r}")
    if grid not in GRIDS:
        raise InputError(f"--grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    if integration not in ti.INTEGRATION_METHODS:
        raise InputError(f"--integration must be one of {', '.join(ti.INTEGRATION_METHODS)}, "
                         f"got {integration!r}")
    if fit_level not in FIT_LEVELS:
        raise InputError(f"--fit-level must be one of {', '.join(FIT_LEVELS)}, got "
                         f"{fit_level!r}")
    if vdk_kernels not in meth.VDK_KERNELS:
        raise InputError(f"--vdk-kernels must be one of {', '.join(meth.VDK_KERNELS)}, got "
                         f"{vdk_kernels!r}")
    if kernel_histories is not None and int(kernel_histories) < 100:
        raise InputError(f"--kernel-histories must be at least 100, got {kernel_histories}")
    if method != "cnn" and model is not None:
        raise InputError("--model applies to --method cnn only")
    histories = meth.DEFAULT_HISTORIES if histories is None else int(histories)
    if method == "mc" and histories < 100:
        raise InputError(f"--histories must be at least 100, got {histories}")
    thresholds = _positive_thresholds(dvh_thresholds)
    hu_cal = inp.parse_hu_calibration(hu_calibration)

    if spect is not None and timepoints:
        raise InputError("give either --spect (one time point) or --timepoint (one or more), "
                         "not both")
    if spect is None and not timepoints:
        raise InputError("no SPECT: give --spect PATH or --timepoint SPECT:HOURS")
    tps = [TimePoint(spect)] if spect is not None else list(timepoints)
    names = [str(tp.spect) for tp in tps]
    if timepoints:
        hours = ti.check_times([tp.hours if tp.hours is not None else math.nan for tp in tps],
                               integration if len(tps) > 1 else None, names)
    else:
        hours = None
    if tps[0].ct is not None and Path(tps[0].ct).resolve() != ct.resolve():
        raise InputError("the first time point's CT is --ct; do not give it another CT")
    durations = _frame_durations(frame_duration_s, len(tps))
    targets = _check_outputs(out, report_dir, is_dicom_input(ct), method, overwrite)

    # ---- 2. images ---------------------------------------------------------------------
    t0 = time.perf_counter()
    ct_img = inp.load_ct(ct)
    spects = []
    for i, tp in enumerate(tps):
        what = "SPECT" if len(tps) == 1 else f"time point {i + 1} SPECT"
        spects.append(inp.load_spect(
            tp.spect, units=spect_units, calibration_cps_per_mbq=calibration_cps_per_mbq,
            frame_duration_s=durations[i], nuclide=nuclide,
            hours_after_administration=None if hours is None else float(hours[i]), what=what))
    tp_cts: list[Any] = [ct_img]
    for tp in tps[1:]:
        tp_cts.append(inp.load_ct(tp.ct) if tp.ct is not None else None)
    overlaps = []
    for i, (sp, own_ct) in enumerate(zip(spects, tp_cts, strict=True)):
        what = "SPECT" if len(tps) == 1 else f"time point {i + 1} SPECT"
        if own_ct is not None:
            inp.check_frame_of_reference(sp.frame_of_reference_uid, own_ct.frame_of_reference_uid,
                                         f"{what} {sp.path}", f"CT {own_ct.path}")
            overlaps.append(inp.check_overlap(sp, own_ct, spect_what=what))
        else:
            if (sp.frame_of_reference_uid and ct_img.frame_of_reference_uid
                    and sp.frame_of_reference_uid != ct_img.frame_of_reference_uid):
                log.warning("%s %s has another frame of reference than the first CT and no CT "
                            "of its own; assumed aligned", what, sp.path)
            overlaps.append(inp.check_overlap(sp, ct_img, spect_what=what))
    if len(spects) > 1:
        stamps = [inp.dicom_datetime(sp.dicom) for sp in spects]
        if all(s is not None for s in stamps):
            for i in range(1, len(stamps)):
                if stamps[i] <= stamps[i - 1]:  # type: ignore[operator]
                    raise InputError(
                        f"time points out of order: {names[i]} was acquired "
                        f"{stamps[i]:%Y-%m-%d %H:%M} (DICOM), before {names[i - 1]} "
                        f"({stamps[i - 1]:%Y-%m-%d %H:%M}), but is given a later time"
                    )
            for i in range(1, len(stamps)):
                dt_h = (stamps[i] - stamps[0]).total_seconds() / 3600.0  # type: ignore[operator]
                given = float(hours[i] - hours[0])  # type: ignore[index]
                if abs(dt_h - given) > max(2.0, 0.1 * given):
                    log.warning("time point %d: DICOM acquisition times are %.1f h apart from "
                                "the first, the given hours %.1f h", i + 1, dt_h, given)
    timings["read_s"] = time.perf_counter() - t0

    # ---- 3. grid, model ----------------------------------------------------------------
    dose_grid = inp.make_dose_grid(spects[0], ct_img, grid)
    cnn_model = None
    if method == "cnn":
        cnn_model = meth.load_cnn_model(model, voxel_mm=dose_grid.geometry.spacing_mm,
                                        nuclide=nuclide)

    # ---- 4. density, body, labels ------------------------------------------------------
    t0 = time.perf_counter()
    density = inp.ct_on_grid(ct_img, dose_grid, hu_cal)
    body = inp.body_mask(density, dose_grid.voxel_volume_ml)
    label_map = None
    if labels is not None:
        from mcdose.dosimetry.labels import load_labels

        label_map = load_labels(labels, dose_grid, ct=ct_img, spect=spects[0],
                                names_path=label_names)
        body |= label_map.labels != 0
    elif label_names is not None:
        raise InputError("--label-names needs --labels")
    timings["grid_s"] = time.perf_counter() - t0

    # ---- 5. activity on the grid -------------------------------------------------------
    t0 = time.perf_counter()
    stack = []
    registrations: list[dict[str, Any] | None] = [None]
    outside_fraction = []
    for i, sp in enumerate(spects):
        transform = None
        if i > 0 and tp_cts[i] is not None:
            transform, info = ti.register_rigid(ct_img.hu, ct_img.geometry, tp_cts[i].hu,
                                                tp_cts[i].geometry, seed=seed)
            registrations.append(info)
        elif i > 0:
            registrations.append({"assumed_aligned": True})
        act = inp.activity_on_grid(sp, dose_grid, transform)
        total = float(act.sum(dtype=np.float64))
        act[~body] = 0.0
        kept = float(act.sum(dtype=np.float64))
        outside_fraction.append(1.0 - kept / total if total > 0 else 0.0)
        if not kept > 0:
            raise InputError(f"{names[i]}: no activity inside the patient on the dose grid")
        stack.append(act)
    for i, f in enumerate(outside_fraction):
        if f > 0.2:
            log.warning("%s: %.0f %% of the activity lies outside the body mask and is ignored",
                        names[i], 100 * f)
    timings["activity_s"] = time.perf_counter() - t0

    # ---- 6. dose -----------------------------------------------------------------------
    t0 = time.perf_counter()
    fits: dict[int, Any] = {}
    if len(stack) == 1:
        source = stack[0]
        unit, quantity = "Gy/h", "absorbed-dose rate at scan time"
        to_unit = 3600.0  # Gy/s -> Gy/h
    else:
        assert hours is not None
        if fit_level == "voxel":
            tia = ti.integrate_voxels(hours, stack, integration, half_life_h, mask=body)
        else:
            painted = label_map.labels if label_map is not None else np.zeros(
                dose_grid.shape, np.int32)
            tia, fits = ti.integrate_by_region(hours, stack, painted, integration, half_life_h,
                                               body=body)
        source = tia * np.float32(3600.0)  # MBq·h -> MBq·s
        unit, quantity = "Gy", "absorbed dose"
        to_unit = 1.0  # (Gy/s per MBq) x MBq·s = Gy
    timings["integration_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = meth.compute_dose_rate(method, source, density, dose_grid.geometry,
                                    nuclide=nuclide, body=body, model=cnn_model,
                                    histories=histories, seed=seed, device=device,
                                    vdk_kernels=vdk_kernels,
                                    kernel_histories=kernel_histories, progress=progress)
    timings["dose_s"] = time.perf_counter() - t0
    dose = (result.dose_rate_Gy_s * np.float32(to_unit)).astype(np.float32)
    dose[~body] = 0.0
    uncertainty = None
    if result.relative_uncertainty is not None:
        uncertainty = np.where(body, result.relative_uncertainty, 0.0).astype(np.float32)

    # ---- 7. organ table ----------------------------------------------------------------
    regions = list(label_map.regions) if label_map is not None else []
    extra: dict[Any, dict[str, Any]] = {}
    tac: dict[str, Any] = {}
    region_items = [(r.value, r.name, r.mask) for r in regions] + [("patient", "patient", body)]
    if len(stack) == 1:
        for key, _, mask in region_items:
            extra[key] = {"activity_MBq": float(stack[0][mask].sum(dtype=np.float64))}
    else:
        curves, organ_fits = {}, {}
        for key, name, mask in region_items:
            curve = ti.time_activity_curve(stack, mask)
            fit = ti.fit_time_activity(hours, curve, integration, half_life_h)
            curves[name], organ_fits[name] = curve, fit
            row = {"tia_MBq_h": fit.tia_MBq_h}
            if "effective_half_life_h" in fit.parameters:
                row["effective_half_life_h"] = fit.parameters["effective_half_life_h"]
            for j, a in enumerate(curve):
                row[f"activity_MBq_{float(hours[j]):g}h"] = a
            extra[key] = row
        tac = {"hours": [float(h) for h in hours], "curves": curves,
               "fits": {k: {"method": f.method, "tia_MBq_h": f.tia_MBq_h,
                            "parameters": f.parameters, "fitted_MBq": f.fitted_MBq}
                        for k, f in organ_fits.items()}}
    from mcdose.dosimetry import report as rep

    rows = rep.organ_table(dose, regions, density, dose_grid.geometry, unit=unit,
                           thresholds=thresholds, body=body, extra=extra)

    # ---- provenance ----------------------------------------------------------------------
    prov = make_provenance(
        method=method, nuclide=nuclide, seed=int(seed),
        histories=int(histories) if method == "mc" else None,
    )
    prov.update({
        "quantity": quantity,
        "unit": unit,
        "ct": {"path": str(ct), "shape_zyx": list(ct_img.shape),
               "spacing_mm": list(ct_img.geometry.spacing_mm),
               "origin_mm": list(ct_img.geometry.origin_mm),
               "frame_of_reference_uid": ct_img.frame_of_reference_uid,
               "hu_clipped_voxels": ct_img.clipped_voxels,
               "hu_calibration": str(hu_calibration)},
        "time_points": [
            {"spect": str(sp.path), "hours": None if hours is None else float(hours[i]),
             "ct": str(tps[i].ct) if tps[i].ct is not None else None,
             "conversion": sp.conversion, "total_MBq_in_file": sp.total_MBq,
             "total_MBq_in_body": float(stack[i].sum(dtype=np.float64)),
             "fraction_outside_body": outside_fraction[i],
             "ct_overlap_fraction": overlaps[i],
             "registration": registrations[i]}
            for i, sp in enumerate(spects)],
        "dose_grid": {"source": dose_grid.source, "shape_zyx": list(dose_grid.shape),
                      "spacing_mm": list(dose_grid.geometry.spacing_mm),
                      "origin_mm": list(dose_grid.geometry.origin_mm),
                      "direction": list(dose_grid.geometry.direction)},
        "engine": result.info,
        "labels": None if label_map is None else {
            "path": str(label_map.path), "source": label_map.source,
            "regions": {str(r.value): r.name for r in regions},
            "dropped": label_map.dropped},
        "body_volume_ml": float(np.count_nonzero(body)) * dose_grid.voxel_volume_ml,
    })
    if len(stack) > 1:
        prov["time_integration"] = {"model": integration, "fit_level": fit_level,
                                    "half_life_h": half_life_h}
    prov["warnings"] = list(warnings_seen)

    # ---- 8. write everything to temporary folders, then move ---------------------------
    t0 = time.perf_counter()
    outputs = _write_outputs(
        targets=targets, out=out, report_dir=report_dir, dose=dose, unit=unit,
        quantity=quantity, geometry=dose_grid.geometry, uncertainty=uncertainty,
        ct_img=ct_img, density=density, label_map=label_map, regions=regions, body=body,
        rows=rows, thresholds=thresholds, tac=tac, organ_fits=tac.get("fits"),
        provenance=prov, method=method, nuclide=nuclide,
    )
    timings["write_s"] = time.perf_counter() - t0
    seconds = time.perf_counter() - t_start
    prov["timings_s"] = timings
    return DosimetryResult(dose=dose, unit=unit, quantity=quantity,
                           geometry=dose_grid.geometry, outputs=outputs, organs=rows,
                           provenance=prov, seconds=seconds)


def _write_outputs(*, targets: dict[str, Path], out: Path, report_dir: Path | None,
                   dose: np.ndarray, unit: str, quantity: str, geometry: Geometry,
                   uncertainty: np.ndarray | None, ct_img: Any, density: np.ndarray,
                   label_map: Any, regions: list[Any], body: np.ndarray,
                   rows: list[dict[str, Any]], thresholds: Sequence[float], tac: dict[str, Any],
                   organ_fits: Any, provenance: dict[str, Any], method: str, nuclide: str
                   ) -> dict[str, Path]:
    from mcdose.dosimetry import report as rep
    from mcdose.dosimetry.rtdose import read_reference_header, write_rtdose
    from mcdose.io.images import write_image
    from mcdose.io.jsonio import write_json

    tmp_out = Path(tempfile.mkdtemp(prefix=".mcdose-dose.", suffix=".tmp", dir=out.parent))
    tmp_report = None
    try:
        staged: dict[str, Path] = {}
        staged["dose"] = write_image(tmp_out / targets["dose"].name, dose, geometry)
        if uncertainty is not None:
            staged["uncertainty"] = write_image(tmp_out / targets["uncertainty"].name,
                                                uncertainty, geometry)
        if "rtdose" in targets:
            reference = read_reference_header(ct_img.path)
            comment = ("DOSE RATE Gy/h at scan time" if unit == "Gy/h"
                       else "absorbed dose Gy, time-integrated")
            what = "dose rate Gy/h" if unit == "Gy/h" else "dose Gy"
            staged["rtdose"] = write_rtdose(
                tmp_out / targets["rtdose"].name, dose, geometry, reference=reference,
                description=f"mcdose {method} {nuclide} {what}", comment=comment)
        sidecar = {"quantity": quantity, "unit": unit, "method": method, "nuclide": nuclide,
                   "provenance": provenance}
        staged["sidecar"] = write_json(tmp_out / targets["sidecar"].name,
                                       rep.json_safe(sidecar), allow_nan=False)

        report_files: dict[str, str] = {}
        if report_dir is not None:
            tmp_report = Path(tempfile.mkdtemp(prefix=f".{report_dir.name}.", suffix=".tmp",
                                               dir=report_dir.parent))
            os.chmod(tmp_report, 0o777 & ~_umask())  # mkdtemp makes 0700
            names = label_map.names if label_map is not None else {}
            rep.write_table_csv(tmp_report / "organs.csv", rows)
            document = {"quantity": quantity, "unit": unit, "organs": rows,
                        "time_activity": tac or None, "provenance": provenance}
            rep.write_table_json(tmp_report / "organs.json", document)
            dvh_regions = [(r.name, r.mask) for r in regions] + [("patient", body)]
            dvh_png = rep.plot_dvh(dose, dvh_regions, unit)
            (tmp_report / "dvh.png").write_bytes(dvh_png)
            slices_png, centre = rep.plot_slices(
                dose, density, geometry, unit,
                labels=None if label_map is None else label_map.labels, names=names)
            tac_png = None
            if tac:
                fits = {name: _FitView(f) for name, f in (organ_fits or {}).items()}
                tac_png = rep.plot_time_activity(tac["hours"], tac["curves"], fits)
            peak = float(dose.max())
            summary = (f"{quantity} by {method.upper()} for {nuclide}; maximum {peak:.4g} {unit}"
                       f" at voxel (z, y, x) {centre}; dose grid {tuple(dose.shape)} voxels of "
                       f"{tuple(round(v, 3) for v in geometry.spacing_mm)} mm.")
            note = ("Volumes in ml, masses in g (density from the CT); D_x is the minimum dose "
                    "of the hottest x % of the volume; V_x the percentage of the volume with at "
                    f"least x {unit}.  'patient' is the whole body mask.")
            html = rep.render_html(quantity=quantity, summary=summary, rows=rows,
                                   slices_png=slices_png, dvh_png=dvh_png,
                                   provenance=provenance, tac_png=tac_png, table_note=note)
            (tmp_report / "report.html").write_text(html, encoding="utf-8")
            report_files = {"report_html": "report.html", "organs_csv": "organs.csv",
                            "organs_json": "organs.json", "dvh_png": "dvh.png"}

        # everything is written: move into place, and drop outputs of an earlier run that
        # this one does not produce (an old RT Dose or MC uncertainty beside a new dose)
        outputs: dict[str, Path] = {}
        for key, path in staged.items():
            _move_into_place(path, targets[key])
            outputs[key] = targets[key]
        for path in _sibling_outputs(out):
            if path not in outputs.values():
                path.unlink(missing_ok=True)
        if report_dir is not None and tmp_report is not None:
            _replace_folder(tmp_report, report_dir)
            tmp_report = None
            for key, name in report_files.items():
                outputs[key] = report_dir / name
        return outputs
    finally:
        shutil.rmtree(tmp_out, ignore_errors=True)
        if tmp_report is not None:
            shutil.rmtree(tmp_report, ignore_errors=True)


class _FitView:
    """Adapter: the JSON fit record as an object with ``method`` and ``parameters``."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.method = record["method"]
        self.parameters = record["parameters"]
