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
6. one time point: the dose rate at scan time (Gy/s), or with ``stp`` the single-time-point
   absorbed dose (Gy, Hänscheid or Madsen); several: the time-integrated activity
   per voxel (voxel fits, or organ fits applied to the first time point's distribution) and
   the absorbed dose (Gy), with the engine fed the time-integrated activity (the engines are
   linear in activity);
7. organ table (fitted model and AICc weight, lesion recovery correction, uncertainty
   budget), DVHs, report; NIfTI (+ JSON sidecar, + MC uncertainty), RT Dose when the CT
   is DICOM.

The code follows that order as named steps passing one :class:`Job`: ``_check_options`` →
``_read`` → ``_align`` → ``_activity`` → ``_dose`` → ``_regions`` → ``_write_outputs``.

Units: absorbed-dose rate in Gy/s (the contract's unit, as ``mcdose simulate``), absorbed
dose in Gy, written into every output (NIfTI description, RT Dose comment, JSON).

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

from mcdose.dosimetry import inputs as inp
from mcdose.dosimetry import methods as meth
from mcdose.dosimetry import timeintegration as ti
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
    stp: str | None = None,
    stp_teff: Sequence[str] | dict[str, float] | None = None,
    recovery_correction: bool = False,
    recovery_curve: str | os.PathLike[str] | None = None,
    calibration_uncertainty: float | None = None,
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
        The SPECT of a single time point (dose rate at scan time, Gy/s).
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
    integration : {"mono", "bi", "tri", "trapezoid", "auto"}
        Time-activity model (several time points); ``auto`` chooses by AICc
        (:mod:`~mcdose.dosimetry.timeintegration`); ``tri`` needs ``fit_level="organ"``.
    fit_level : {"voxel", "organ"}
        Fit each voxel's curve, or each organ's curve (voxels keep the first time point's
        distribution within their organ; unlabelled body voxels form one region).
    stp : {"hanscheid", "madsen"}, optional
        Single-time-point absorbed dose (Gy) from one ``timepoints`` entry
        (:mod:`~mcdose.dosimetry.stp`).
    stp_teff : sequence of "NAME=HOURS" or dict, optional
        Madsen: effective half-lives (h) overriding the population ones, by organ class
        (kidney, liver, spleen, tumour) or region name.
    recovery_correction : bool
        Divide each lesion's mean activity (and mean dose) by RC(volume)
        (:mod:`~mcdose.dosimetry.recovery`); reported beside the uncorrected values.
    recovery_curve : path-like, optional
        RC(volume) JSON of another SPECT protocol (default: mcdose's default protocol's).
    calibration_uncertainty : float, optional
        Relative standard uncertainty of the SPECT calibration factor (e.g. 0.05), a term of
        the uncertainty budget (:mod:`~mcdose.dosimetry.uncertainty`).
    dvh_thresholds : sequence of float
        Dose levels (Gy, or Gy/s for a dose rate) for V_x in the organ table.
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
    options = dict(locals())
    with _collect_warnings() as warnings_seen:
        return _run(_check_options(**options), warnings_seen)


# --------------------------------------------------------------------------------------
# the steps and the one object they pass on
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The checked options of one run (see :func:`run_dosimetry`)."""

    ct: Path
    out: Path
    tps: tuple[TimePoint, ...]
    hours: np.ndarray | None
    method: str
    model: Any
    labels: Any
    label_names: Any
    nuclide: str
    half_life_h: float
    spect_units: str
    calibration_cps_per_mbq: float | None
    durations: tuple[float | None, ...]
    hu_calibration: Any
    hu_cal: Any
    grid: str
    histories: int
    seed: int
    device: str
    vdk_kernels: str
    kernel_histories: int | None
    integration: str
    fit_level: str
    stp: str | None
    stp_teff: dict[str, float]
    recovery: Any
    calibration_uncertainty: float | None
    thresholds: tuple[float, ...]
    report_dir: Path | None
    targets: dict[str, Path]
    progress: bool

    @property
    def names(self) -> list[str]:
        return [str(tp.spect) for tp in self.tps]


@dataclass
class Job:
    """What the steps of one run hand on: options, then each step's products.

    ``read`` → ``ct_img, spects, tp_cts, overlaps``; ``align`` → ``grid, density, body,
    label_map, stack, registrations, outside_fraction``; ``activity`` → ``source`` (what the
    engine is fed: MBq, or MBq·s), ``quantity``, ``unit``, ``factor_s`` (STP), ``fits``;
    ``dose`` → ``engine, dose, uncertainty``; ``regions`` → ``rows, tac``.
    """

    opt: Options
    timings: dict[str, float] = field(default_factory=dict)
    ct_img: Any = None
    spects: list[Any] = field(default_factory=list)
    tp_cts: list[Any] = field(default_factory=list)
    overlaps: list[float] = field(default_factory=list)
    cnn_model: Any = None
    grid: Any = None
    density: Any = None
    body: Any = None
    label_map: Any = None
    stack: list[np.ndarray] = field(default_factory=list)
    registrations: list[dict[str, Any] | None] = field(default_factory=list)
    outside_fraction: list[float] = field(default_factory=list)
    source: Any = None
    quantity: str = ""
    unit: str = ""
    factor_s: Any = None
    stp_plan: Any = None
    voxel_choices: dict[str, int] = field(default_factory=dict)
    engine: Any = None
    dose: Any = None
    uncertainty: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    tac: dict[str, Any] = field(default_factory=dict)

    @property
    def regions(self) -> list[Any]:
        return list(self.label_map.regions) if self.label_map is not None else []

    @property
    def several(self) -> bool:
        return len(self.opt.tps) > 1


def _run(opt: Options, warnings_seen: list[str]) -> DosimetryResult:
    """Read and check inputs → align → activity/TIA → dose → regions → write."""
    t_start = time.perf_counter()
    job = Job(opt)
    for step in (_read, _align, _activity, _dose, _regions):
        t0 = time.perf_counter()
        step(job)
        job.timings[f"{step.__name__.strip('_')}_s"] = time.perf_counter() - t0
    prov = _provenance(job, warnings_seen)
    t0 = time.perf_counter()
    outputs = _write_outputs(job, prov)
    job.timings["write_s"] = time.perf_counter() - t0
    prov["timings_s"] = job.timings
    return DosimetryResult(dose=job.dose, unit=job.unit, quantity=job.quantity,
                           geometry=job.grid.geometry, outputs=outputs, organs=job.rows,
                           provenance=prov, seconds=time.perf_counter() - t_start)


def _check_options(*, ct: Any, out: Any, spect: Any, timepoints: Sequence[TimePoint],
                   method: str, model: Any, labels: Any, label_names: Any, nuclide: str,
                   spect_units: str, calibration_cps_per_mbq: float | None,
                   frame_duration_s: Any, hu_calibration: Any, grid: str,
                   histories: int | None, seed: int, device: str, vdk_kernels: str,
                   kernel_histories: int | None, integration: str, fit_level: str,
                   stp: str | None, stp_teff: Any, recovery_correction: bool,
                   recovery_curve: Any, calibration_uncertainty: float | None,
                   dvh_thresholds: Sequence[float], report_dir: Any, overwrite: bool,
                   progress: bool) -> Options:
    """Step 0: every option checked, before any file is read."""
    from mcdose.dosimetry import methods as meth
    from mcdose.dosimetry import stp as stp_mod
    from mcdose.dosimetry import timeintegration as ti
    from mcdose.io.images import is_dicom_input
    from mcdose.nuclides import load_nuclide, normalize_nuclide_name

    ct, out = Path(ct), Path(out)
    report_dir = Path(report_dir) if report_dir is not None else None
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
    if calibration_uncertainty is not None and not (
            math.isfinite(float(calibration_uncertainty))
            and 0 <= float(calibration_uncertainty) < 1):
        raise InputError(f"--calibration-uncertainty must be a relative standard uncertainty "
                         f"in [0, 1), e.g. 0.05; got {calibration_uncertainty}")

    if spect is not None and timepoints:
        raise InputError("give either --spect (one time point) or --timepoint (one or more), "
                         "not both")
    if spect is None and not timepoints:
        raise InputError("no SPECT: give --spect PATH or --timepoint SPECT:HOURS")
    tps = [TimePoint(Path(spect))] if spect is not None else list(timepoints)
    names = [str(tp.spect) for tp in tps]
    if stp is not None:
        if stp not in stp_mod.STP_METHODS:
            raise InputError(f"--stp must be one of {', '.join(stp_mod.STP_METHODS)}, got "
                             f"{stp!r}")
        if spect is not None or len(tps) != 1:
            raise InputError(f"--stp {stp} takes exactly one --timepoint SPECT:HOURS (its "
                             f"time after administration), got "
                             f"{'--spect' if spect is not None else f'{len(tps)} time points'}")
    elif stp_teff:
        raise InputError("--stp-teff applies to --stp madsen only")
    teff = stp_mod.parse_teff_overrides(stp_teff)
    if teff and stp != "madsen":
        raise InputError("--stp-teff applies to --stp madsen only")
    if timepoints:
        hours = ti.check_times([tp.hours if tp.hours is not None else math.nan for tp in tps],
                               integration if len(tps) > 1 else None, names)
    else:
        hours = None
    if len(tps) > 1 and integration == "tri" and fit_level == "voxel":
        raise InputError("--integration tri is fitted per organ only; add --fit-level organ "
                         "(or use --integration auto, which fits mono/bi per voxel)")
    if tps[0].ct is not None and Path(tps[0].ct).resolve() != ct.resolve():
        raise InputError("the first time point's CT is --ct; do not give it another CT")
    recovery = None
    if recovery_correction:
        from mcdose.dosimetry.recovery import load_recovery_curve

        if labels is None:
            raise InputError("--recovery-correction needs --labels (the lesions to correct)")
        recovery = load_recovery_curve(recovery_curve)
    elif recovery_curve is not None:
        raise InputError("--recovery-curve applies with --recovery-correction only")
    durations = _frame_durations(frame_duration_s, len(tps))
    targets = _check_outputs(out, report_dir, is_dicom_input(ct), method, overwrite)
    return Options(
        ct=ct, out=out, tps=tuple(tps), hours=hours, method=method, model=model, labels=labels,
        label_names=label_names, nuclide=nuclide, half_life_h=half_life_h,
        spect_units=spect_units, calibration_cps_per_mbq=calibration_cps_per_mbq,
        durations=tuple(durations), hu_calibration=hu_calibration, hu_cal=hu_cal, grid=grid,
        histories=histories, seed=int(seed), device=device, vdk_kernels=vdk_kernels,
        kernel_histories=kernel_histories, integration=integration, fit_level=fit_level,
        stp=stp, stp_teff=teff, recovery=recovery,
        calibration_uncertainty=None if calibration_uncertainty is None
        else float(calibration_uncertainty),
        thresholds=thresholds, report_dir=report_dir, targets=targets, progress=progress)


def _read(job: Job) -> None:
    """Step 1: the CT, each SPECT, their frames of reference, overlap and acquisition order."""
    opt = job.opt
    hours, names, n = opt.hours, opt.names, len(opt.tps)
    job.ct_img = inp.load_ct(opt.ct)
    for i, tp in enumerate(opt.tps):
        what = "SPECT" if n == 1 else f"time point {i + 1} SPECT"
        job.spects.append(inp.load_spect(
            tp.spect, units=opt.spect_units, calibration_cps_per_mbq=opt.calibration_cps_per_mbq,
            frame_duration_s=opt.durations[i], nuclide=opt.nuclide,
            hours_after_administration=None if hours is None else float(hours[i]), what=what))
    job.tp_cts = [job.ct_img] + [inp.load_ct(tp.ct) if tp.ct is not None else None
                                 for tp in opt.tps[1:]]
    for i, (sp, own_ct) in enumerate(zip(job.spects, job.tp_cts, strict=True)):
        what = "SPECT" if n == 1 else f"time point {i + 1} SPECT"
        if own_ct is not None:
            inp.check_frame_of_reference(sp.frame_of_reference_uid, own_ct.frame_of_reference_uid,
                                         f"{what} {sp.path}", f"CT {own_ct.path}")
            job.overlaps.append(inp.check_overlap(sp, own_ct, spect_what=what))
        else:
            if (sp.frame_of_reference_uid and job.ct_img.frame_of_reference_uid
                    and sp.frame_of_reference_uid != job.ct_img.frame_of_reference_uid):
                log.warning("%s %s has another frame of reference than the first CT and no CT "
                            "of its own; assumed aligned", what, sp.path)
            job.overlaps.append(inp.check_overlap(sp, job.ct_img, spect_what=what))
    if n > 1:
        _check_acquisition_order(job.spects, hours, names)
    job.grid = inp.make_dose_grid(job.spects[0], job.ct_img, opt.grid)
    if opt.method == "cnn":
        job.cnn_model = meth.load_cnn_model(opt.model, voxel_mm=job.grid.geometry.spacing_mm,
                                            nuclide=opt.nuclide)


def _check_acquisition_order(spects: list[Any], hours: Any, names: list[str]) -> None:
    stamps = [inp.dicom_datetime(sp.dicom) for sp in spects]
    if not all(s is not None for s in stamps):
        return
    for i in range(1, len(stamps)):
        if stamps[i] <= stamps[i - 1]:  # type: ignore[operator]
            raise InputError(
                f"time points out of order: {names[i]} was acquired "
                f"{stamps[i]:%Y-%m-%d %H:%M} (DICOM), before {names[i - 1]} "
                f"({stamps[i - 1]:%Y-%m-%d %H:%M}), but is given a later time"
            )
    for i in range(1, len(stamps)):
        dt_h = (stamps[i] - stamps[0]).total_seconds() / 3600.0  # type: ignore[operator]
        given = float(hours[i] - hours[0])
        if abs(dt_h - given) > max(2.0, 0.1 * given):
            log.warning("time point %d: DICOM acquisition times are %.1f h apart from "
                        "the first, the given hours %.1f h", i + 1, dt_h, given)


def _align(job: Job) -> None:
    """Step 2: density, body and labels on the dose grid; each time point's activity on it
    (later ones registered to the first by their CT, or assumed aligned), inside the body."""
    opt, grid = job.opt, job.grid
    job.density = inp.ct_on_grid(job.ct_img, grid, opt.hu_cal)
    job.body = inp.body_mask(job.density, grid.voxel_volume_ml)
    if opt.labels is not None:
        from mcdose.dosimetry.labels import load_labels

        job.label_map = load_labels(opt.labels, grid, ct=job.ct_img, spect=job.spects[0],
                                    names_path=opt.label_names)
        job.body |= job.label_map.labels != 0
    elif opt.label_names is not None:
        raise InputError("--label-names needs --labels")
    job.registrations = [None]
    for i, sp in enumerate(job.spects):
        transform = None
        if i > 0 and job.tp_cts[i] is not None:
            transform, info = ti.register_rigid(job.ct_img.hu, job.ct_img.geometry,
                                                job.tp_cts[i].hu, job.tp_cts[i].geometry,
                                                seed=opt.seed)
            job.registrations.append(info)
        elif i > 0:
            job.registrations.append({"assumed_aligned": True})
        act = inp.activity_on_grid(sp, grid, transform)
        total = float(act.sum(dtype=np.float64))
        act[~job.body] = 0.0
        kept = float(act.sum(dtype=np.float64))
        job.outside_fraction.append(1.0 - kept / total if total > 0 else 0.0)
        if not kept > 0:
            raise InputError(f"{opt.names[i]}: no activity inside the patient on the dose grid")
        job.stack.append(act)
    for i, f in enumerate(job.outside_fraction):
        if f > 0.2:
            log.warning("%s: %.0f %% of the activity lies outside the body mask and is ignored",
                        opt.names[i], 100 * f)


def _activity(job: Job) -> None:
    """Step 3: what the engine is fed — the activity (dose rate; STP: times a factor), or
    the time-integrated activity of several time points (voxel or organ fits)."""
    opt = job.opt
    if not job.several:
        job.source = job.stack[0]  # MBq -> Gy/s
        if opt.stp is None:
            job.unit, job.quantity = "Gy/s", "absorbed-dose rate at scan time"
            return
        from mcdose.dosimetry.labels import paint_regions
        from mcdose.dosimetry.stp import plan_stp

        assert opt.hours is not None
        names = [r.name for r in job.regions]
        job.stp_plan = plan_stp(opt.stp, float(opt.hours[0]), names, opt.stp_teff)
        painted = paint_regions(job.regions, job.grid.shape) if job.regions else None
        job.factor_s = job.stp_plan.factor_map(
            painted, {r.value: r.name for r in job.regions}, job.grid.shape)
        job.unit = "Gy"
        job.quantity = f"absorbed dose (single time point, {opt.stp.capitalize()} 2018)"
        return
    hours = opt.hours
    assert hours is not None
    if opt.fit_level == "voxel":
        tia = ti.integrate_voxels(hours, job.stack, opt.integration, opt.half_life_h,
                                  mask=job.body, choices=job.voxel_choices)
    else:
        painted = job.label_map.labels if job.label_map is not None else np.zeros(
            job.grid.shape, np.int32)
        tia, _ = ti.integrate_by_region(hours, job.stack, painted, opt.integration,
                                        opt.half_life_h, body=job.body)
    job.source = tia * np.float32(3600.0)  # MBq·h -> MBq·s; (Gy/s per MBq) x MBq·s = Gy
    job.unit, job.quantity = "Gy", "absorbed dose"


def _dose(job: Job) -> None:
    """Step 4: the engine (linear in activity), then the unit: Gy/s, or Gy."""
    opt = job.opt
    job.engine = meth.compute_dose_rate(
        opt.method, job.source, job.density, job.grid.geometry, nuclide=opt.nuclide,
        body=job.body, model=job.cnn_model, histories=opt.histories, seed=opt.seed,
        device=opt.device, vdk_kernels=opt.vdk_kernels, kernel_histories=opt.kernel_histories,
        progress=opt.progress)
    dose = job.engine.dose_rate_Gy_s
    if job.factor_s is not None:  # STP: D = Ḋ(t) · f
        dose = dose * job.factor_s
    job.dose = np.asarray(dose, dtype=np.float32)
    job.dose[~job.body] = 0.0
    if job.engine.relative_uncertainty is not None:
        job.uncertainty = np.where(job.body, job.engine.relative_uncertainty, 0.0
                                   ).astype(np.float32)


def _regions(job: Job) -> None:
    """Step 5: organ table — dose statistics, activity or fitted TIA (model, AICc weight),
    STP factors, lesion recovery correction and the uncertainty budget of each region."""
    from mcdose.dosimetry import report as rep
    from mcdose.dosimetry import uncertainty as unc
    from mcdose.dosimetry.recovery import is_lesion

    opt = job.opt
    items = [(r.value, r.name, r.mask) for r in job.regions] + [
        (rep.PATIENT, rep.PATIENT, job.body)]
    extra: dict[Any, dict[str, Any]] = {}
    fits: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    for key, name, mask in items:
        row: dict[str, Any] = {}
        if not job.several:
            row["activity_MBq"] = float(job.stack[0][mask].sum(dtype=np.float64))
            if job.stp_plan is not None:
                info = job.stp_plan.regions.get(name, {
                    "factor_h": job.stp_plan.default_factor_h, "t_eff_h": None,
                    "basis": "unlabelled: hanscheid"})
                row["stp_method"] = opt.stp
                row["stp_factor_h"] = info["factor_h"]
                row["stp_t_eff_h"] = info["t_eff_h"]
                row["tia_MBq_h"] = row["activity_MBq"] * info["factor_h"]
        else:
            assert opt.hours is not None
            curve = ti.time_activity_curve(job.stack, mask)
            fit = ti.fit_time_activity(opt.hours, curve, opt.integration, opt.half_life_h)
            curves[name], fits[name] = curve, fit
            row.update(_fit_columns(fit, opt.hours, curve))
        extra[key] = row
    rows = rep.organ_table(job.dose, job.regions, job.density, job.grid.geometry,
                           unit=job.unit, thresholds=opt.thresholds, body=job.body,
                           extra=extra)
    u = job.unit.replace("/", "_")
    masks = {name: mask for _, name, mask in items}
    spacing = job.grid.geometry.spacing_mm
    drawn = (job.label_map.drawn_spacing_mm if job.label_map is not None
             else job.ct_img.geometry.spacing_mm)  # the body mask comes from the CT
    lesions = 0
    for row in rows:
        name, mask = row["name"], masks[row["name"]]
        u_v_ml = unc.volume_uncertainty_ml(mask, spacing, drawn)
        terms: dict[str, float | None] = dict.fromkeys(unc.TERMS)
        terms["calibration"] = opt.calibration_uncertainty
        terms["volume"] = u_v_ml / row["volume_ml"]
        fit = fits.get(name)
        if fit is not None and fit.tia_MBq_h > 0 and fit.tia_sd_MBq_h is not None:
            terms["fit"] = fit.tia_sd_MBq_h / fit.tia_MBq_h
        terms["mc"] = unc.mc_relative_uncertainty(job.dose, job.uncertainty, mask)
        mean = row[f"mean_{u}"]
        if opt.recovery is not None and name != rep.PATIENT and is_lesion(name):
            lesions += 1
            rc = opt.recovery(row["volume_ml"])
            u_rc = opt.recovery.uncertainty(row["volume_ml"], u_v_ml)
            terms["recovery"] = u_rc / rc
            row["recovery_coefficient"] = rc
            row["recovery_in_measured_range"] = opt.recovery.in_range(row["volume_ml"])
            for col in ("activity_MBq", "tia_MBq_h"):
                if row.get(col) is not None:
                    row[f"{col}_rc_corrected"] = row[col] / rc
            row[f"mean_{u}_rc_corrected"] = mean / rc
            mean = mean / rc
        total = unc.combine(terms)
        for term, value in terms.items():
            row[f"u_{term}_percent"] = None if value is None else 100.0 * value
        row["u_total_percent"] = 100.0 * total
        row[f"u_total_{u}"] = total * mean
    if opt.recovery is not None and lesions == 0:
        log.warning("--recovery-correction: no region is named as a lesion (lesion, tumour, "
                    "metastasis ...); nothing corrected")
    job.rows = rows
    if job.several:
        assert opt.hours is not None
        job.tac = {"hours": [float(h) for h in opt.hours], "curves": curves,
                   "fits": {k: f.record() for k, f in fits.items()}}


def _fit_columns(fit: Any, hours: Any, curve: list[float]) -> dict[str, Any]:
    """Organ-table columns of one region's time-activity fit."""
    row: dict[str, Any] = {"tia_MBq_h": fit.tia_MBq_h, "tia_sd_MBq_h": fit.tia_sd_MBq_h,
                           "model": fit.method, "aicc": fit.aicc,
                           "aicc_weight": fit.aicc_weight}
    p = fit.parameters
    if "effective_half_life_h" in p:
        row["effective_half_life_h"] = p["effective_half_life_h"]
    if "uptake_half_life_h" in p:
        row["uptake_half_life_h"] = p["uptake_half_life_h"]
    if "half_life_2_h" in p:
        row["half_life_2_h"] = p["half_life_2_h"]
    row["fit_parameters"] = ";".join(f"{k}={v:.5g}" for k, v in p.items())
    for j, a in enumerate(curve):
        row[f"activity_MBq_{float(hours[j]):g}h"] = a
    return row


def _provenance(job: Job, warnings_seen: list[str]) -> dict[str, Any]:
    """Everything a reader needs to repeat the run: inputs, grid, engine, choices."""
    from mcdose.provenance import provenance as make_provenance

    opt, ct_img, hours = job.opt, job.ct_img, job.opt.hours
    prov = make_provenance(method=opt.method, nuclide=opt.nuclide, seed=int(opt.seed),
                           histories=int(opt.histories) if opt.method == "mc" else None)
    prov.update({
        "quantity": job.quantity,
        "unit": job.unit,
        "unit_convention": UNIT_CONVENTION,
        "ct": {"path": str(opt.ct), "shape_zyx": list(ct_img.shape),
               "spacing_mm": list(ct_img.geometry.spacing_mm),
               "origin_mm": list(ct_img.geometry.origin_mm),
               "frame_of_reference_uid": ct_img.frame_of_reference_uid,
               "hu_clipped_voxels": ct_img.clipped_voxels,
               "hu_calibration": str(opt.hu_calibration)},
        "time_points": [
            {"spect": str(sp.path), "hours": None if hours is None else float(hours[i]),
             "ct": str(opt.tps[i].ct) if opt.tps[i].ct is not None else None,
             "conversion": sp.conversion, "total_MBq_in_file": sp.total_MBq,
             "total_MBq_in_body": float(job.stack[i].sum(dtype=np.float64)),
             "fraction_outside_body": job.outside_fraction[i],
             "ct_overlap_fraction": job.overlaps[i],
             "registration": job.registrations[i]}
            for i, sp in enumerate(job.spects)],
        "dose_grid": {"source": job.grid.source, "shape_zyx": list(job.grid.shape),
                      "spacing_mm": list(job.grid.geometry.spacing_mm),
                      "origin_mm": list(job.grid.geometry.origin_mm),
                      "direction": list(job.grid.geometry.direction)},
        "engine": job.engine.info,
        "labels": None if job.label_map is None else {
            "path": str(job.label_map.path), "source": job.label_map.source,
            "regions": {str(r.value): r.name for r in job.regions},
            "dropped": job.label_map.dropped},
        "body_volume_ml": float(np.count_nonzero(job.body)) * job.grid.voxel_volume_ml,
        "uncertainty_budget": {
            "guidance": "EANM, Gear et al. EJNMMI 45 (2018) 2456; relative standard "
                        "uncertainties (k = 1) of each region's mean dose, combined in "
                        "quadrature",
            "calibration_relative": opt.calibration_uncertainty,
            "volume": "boundary +/- half a voxel of the image the labels were drawn on "
                      "(rectangular, s/sqrt(12)); area from voxel faces / 1.5",
            "fit": "curve_fit covariance propagated to the TIA (several time points)",
            "mc": "per-voxel MC relative error (--method mc)"},
    })
    if job.several:
        prov["time_integration"] = {"model": opt.integration, "fit_level": opt.fit_level,
                                    "half_life_h": opt.half_life_h}
        if job.voxel_choices:
            prov["time_integration"]["voxel_choices"] = dict(job.voxel_choices)
            prov["time_integration"]["voxel_rule"] = (
                "auto per voxel: mono or bi by AICc (tri organ-level only); fewer than 4 "
                "points: mono")
    if job.stp_plan is not None:
        prov["stp"] = job.stp_plan.record()
    if opt.recovery is not None:
        prov["recovery_correction"] = opt.recovery.record()
    prov["warnings"] = list(warnings_seen)
    return prov


#: the unit convention of every mcdose output (docs/DEVELOPING.md, contract)
UNIT_CONVENTION = "absorbed-dose rate in Gy/s, absorbed dose in Gy"


def _description(job: Job) -> str:
    """One line naming quantity and unit, for the image header (NIfTI descrip, 80 chars)."""
    return f"mcdose {job.opt.method} {job.opt.nuclide} {job.quantity.split(' (')[0]} " \
           f"{job.unit}"[:79]


def _write_outputs(job: Job, provenance: dict[str, Any]) -> dict[str, Path]:
    """Step 6: everything written to temporary folders, then moved into place."""
    from mcdose.dosimetry import report as rep
    from mcdose.dosimetry.rtdose import read_reference_header, write_rtdose
    from mcdose.io.images import write_image
    from mcdose.io.jsonio import write_json

    opt, targets, out, report_dir = job.opt, job.opt.targets, job.opt.out, job.opt.report_dir
    geometry, dose, unit = job.grid.geometry, job.dose, job.unit
    rate = unit == "Gy/s"
    tmp_out = Path(tempfile.mkdtemp(prefix=".mcdose-dose.", suffix=".tmp", dir=out.parent))
    tmp_report = None
    try:
        staged: dict[str, Path] = {}
        staged["dose"] = write_image(tmp_out / targets["dose"].name, dose, geometry,
                                     description=_description(job))
        if job.uncertainty is not None:
            staged["uncertainty"] = write_image(
                tmp_out / targets["uncertainty"].name, job.uncertainty, geometry,
                description="mcdose mc relative standard error of the dose (1)")
        if "rtdose" in targets:
            reference = read_reference_header(job.ct_img.path)
            comment = ("DOSE RATE Gy/s at scan time" if rate
                       else f"absorbed dose Gy, {job.quantity}")
            what = "dose rate Gy/s" if rate else "dose Gy"
            staged["rtdose"] = write_rtdose(
                tmp_out / targets["rtdose"].name, dose, geometry, reference=reference,
                description=f"mcdose {opt.method} {opt.nuclide} {what}", comment=comment)
        sidecar = {"quantity": job.quantity, "unit": unit, "method": opt.method,
                   "nuclide": opt.nuclide, "provenance": provenance}
        staged["sidecar"] = write_json(tmp_out / targets["sidecar"].name,
                                       rep.json_safe(sidecar), allow_nan=False)
        report_files: dict[str, str] = {}
        if report_dir is not None:
            tmp_report = Path(tempfile.mkdtemp(prefix=f".{report_dir.name}.", suffix=".tmp",
                                               dir=report_dir.parent))
            os.chmod(tmp_report, 0o777 & ~_umask())  # mkdtemp makes 0700
            _write_report(job, provenance, tmp_report)
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


def _write_report(job: Job, provenance: dict[str, Any], folder: Path) -> None:
    """organs.csv, organs.json, dvh.png, report.html in ``folder``."""
    from mcdose.dosimetry import report as rep

    opt, dose, unit, rows = job.opt, job.dose, job.unit, job.rows
    geometry = job.grid.geometry
    names = job.label_map.names if job.label_map is not None else {}
    rep.write_table_csv(folder / "organs.csv", rows)
    document = {"quantity": job.quantity, "unit": unit, "unit_convention": UNIT_CONVENTION,
                "organs": rows, "time_activity": job.tac or None, "provenance": provenance}
    rep.write_table_json(folder / "organs.json", document)
    dvh_regions = [(r.name, r.mask) for r in job.regions] + [("patient", job.body)]
    dvh_png = rep.plot_dvh(dose, dvh_regions, unit)
    (folder / "dvh.png").write_bytes(dvh_png)
    slices_png, centre = rep.plot_slices(
        dose, job.density, geometry, unit,
        labels=None if job.label_map is None else job.label_map.labels, names=names)
    tac_png = None
    if job.tac:
        fits = {name: _FitView(f) for name, f in job.tac["fits"].items()}
        tac_png = rep.plot_time_activity(job.tac["hours"], job.tac["curves"], fits)
    peak = float(dose.max())
    summary = (f"{job.quantity} by {opt.method.upper()} for {opt.nuclide}; maximum {peak:.4g} "
               f"{unit} at voxel (z, y, x) {centre}; dose grid {tuple(dose.shape)} voxels of "
               f"{tuple(round(v, 3) for v in geometry.spacing_mm)} mm.  Units: "
               f"{UNIT_CONVENTION}.")
    notes = [rep.method_note(job.quantity, opt.integration if job.several else None,
                             opt.fit_level, opt.stp, opt.recovery is not None)]
    note = ("Volumes in ml, masses in g (density from the CT); D_x is the minimum dose "
            "of the hottest x % of the volume; V_x the percentage of the volume with at "
            f"least x {unit}.  'patient' is the whole body mask.  u_* columns: relative "
            "standard uncertainties (k = 1, %) of the mean dose after Gear et al. 2018.")
    html = rep.render_html(quantity=job.quantity, summary=summary, rows=rows,
                           slices_png=slices_png, dvh_png=dvh_png, provenance=provenance,
                           tac_png=tac_png, table_note=note,
                           headline=rep.headline_rows(rows, unit), method_notes=notes)
    (folder / "report.html").write_text(html, encoding="utf-8")


class _FitView:
    """Adapter: the JSON fit record as an object with ``method`` and ``parameters``."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.method = record["method"]
        self.parameters = record["parameters"]
