"""Clinical SPECT and CT inputs: reading, validation, units, the dose grid, the body mask.

Everything a scanner can get wrong is refused here with one line naming the file or the
parameter (:class:`~mcdose.errors.InputError`), before any dose is computed:

* missing voxel spacing (DICOM without ``PixelSpacing``; NIfTI ``pixdim`` 0; NRRD without
  ``space directions``/``spacings``; MetaImage without ``ElementSpacing`` — SimpleITK would
  silently use 1 mm) and non-finite voxels (NaN, inf; NIfTI files are scanned directly,
  since ITK's reader turns NaN into 0): both refused by
  :func:`mcdose.io.images.read_image` (:mod:`mcdose.io.checks`) for every image read;
* negative activity; a SPECT without any activity;
* CT values far outside the Hounsfield range [-1024, 4000] (below -3072 or above 5000 HU:
  not a CT in HU).  Values between -3072 and -1024 (scanner padding outside the field of
  view, noise in air) become -1024; values between 4000 and 5000 become 4000;
* SPECT units that contradict the DICOM header (``Units``, ``RealWorldValueMappingSequence``);
* SPECT and CT in different DICOM frames of reference, or not overlapping in space.

Units
-----
A SPECT in Bq/ml (the default; ``BQML`` in DICOM) gives the activity per voxel

    A [MBq] = C [Bq/ml] × V_voxel [ml] × 1e-6,

a SPECT in counts, with a calibration factor K (cps/MBq) and the frame duration T (s),

    A [MBq] = (N / T) / K.

Internally the SPECT is held as a concentration (MBq/ml), so that resampling onto another
grid conserves activity: the activity per voxel of any grid is the concentration times that
grid's voxel volume.

Geometry
--------
Coordinates are DICOM patient coordinates (LPS, mm) throughout, as SimpleITK reports them;
arrays are ``(z, y, x)``.  The dose grid is the SPECT grid (default) or the CT grid.  The CT
is converted to density on its own grid, smoothed by a Gaussian whose variance matches the
box of the coarser dose voxel (anti-aliasing: the dose-grid density is the local mean mass
density), then interpolated linearly; the SPECT concentration is interpolated linearly.
Voxels outside the CT get air.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError
from mcdose.io.case import Geometry

__all__ = [
    "BODY_SEED_DENSITY_G_CM3",
    "HU_ACCEPTED",
    "HU_RANGE",
    "SPECT_UNITS",
    "CTImage",
    "DoseGrid",
    "SpectImage",
    "activity_on_grid",
    "body_mask",
    "check_frame_of_reference",
    "check_overlap",
    "ct_on_grid",
    "dicom_datetime",
    "load_ct",
    "load_spect",
    "make_dose_grid",
    "overlap_fraction",
    "parse_hu_calibration",
]

log = logging.getLogger(__name__)

#: Hounsfield range that CT numbers are clipped to (air ... dense cortical bone / contrast)
HU_RANGE: tuple[float, float] = (-1024.0, 4000.0)
#: CT numbers outside this interval are refused ("far outside" HU_RANGE: not a CT in HU).
#: The lower end admits the usual padding values outside the field of view (-2000, -2048,
#: -3024, -3072).
HU_ACCEPTED: tuple[float, float] = (-3072.0, 5000.0)
#: SPECT units accepted by :func:`load_spect`
SPECT_UNITS: tuple[str, ...] = ("Bq/ml", "counts")
#: density (g/cm³) above which a voxel seeds the body mask (soft tissue and bone; lungs are
#: added by hole filling)
BODY_SEED_DENSITY_G_CM3 = 0.5
#: connected components of the body seed smaller than this fraction of the largest one,
#: or than 1 ml, are dropped (noise, loose objects)
_BODY_MIN_FRACTION = 0.01
_NEGATIVE_RTOL = 1e-6
_GRID_ATOL_MM = 0.01

# DICOM count spellings (0054,1001 Units and UCUM codes of RealWorldValueMapping);
# concentrations (BQML, kBq/mL ...) are parsed by mcdose.units
_COUNT_UNITS = {"cnts", "counts", "{counts}", "{cnts}", "{count}", "propcnts"}

_ELEMENTS = {
    "lutetium": "Lu", "yttrium": "Y", "iodine": "I", "technetium": "Tc", "indium": "In",
    "gallium": "Ga", "fluorine": "F", "radium": "Ra", "actinium": "Ac", "holmium": "Ho",
    "rhenium": "Re", "samarium": "Sm", "terbium": "Tb", "copper": "Cu", "lead": "Pb",
    "thorium": "Th", "astatine": "At", "strontium": "Sr", "erbium": "Er", "bismuth": "Bi",
    "zirconium": "Zr", "thallium": "Tl", "scandium": "Sc",
}


# --------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------


@dataclass
class CTImage:
    """A CT in Hounsfield units on its own grid.

    Attributes
    ----------
    hu : ndarray, float32 (z, y, x)
        CT numbers clipped to :data:`HU_RANGE`.
    geometry : Geometry
        Spacing / origin (mm), direction (LPS).
    path : Path
        File or DICOM folder read.
    dicom : dict or None
        :func:`mcdose.io.dicom.read_dicom_metadata` summary when the CT is DICOM.
    clipped_voxels : int
        Voxels moved into :data:`HU_RANGE`.
    """

    hu: np.ndarray
    geometry: Geometry
    path: Path
    dicom: dict[str, Any] | None = None
    clipped_voxels: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def frame_of_reference_uid(self) -> str | None:
        return (self.dicom or {}).get("FrameOfReferenceUID")


@dataclass
class SpectImage:
    """A quantitative SPECT as an activity concentration on its own grid.

    Attributes
    ----------
    concentration_MBq_ml : ndarray, float32 (z, y, x)
        Activity concentration at scan time, MBq/ml, ≥ 0.
    geometry : Geometry
    path : Path
    dicom : dict or None
        DICOM metadata summary (None for NIfTI/NRRD/MHA).
    units : str
        Units of the file (``"Bq/ml"`` or ``"counts"``).
    conversion : dict
        How values became MBq/ml (factors, header units, decay correction), for provenance.
    """

    concentration_MBq_ml: np.ndarray
    geometry: Geometry
    path: Path
    dicom: dict[str, Any] | None = None
    units: str = "Bq/ml"
    conversion: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.concentration_MBq_ml.shape)  # type: ignore[return-value]

    @property
    def activity_MBq(self) -> np.ndarray:
        """Activity per voxel (MBq) on the SPECT's own grid."""
        return (self.concentration_MBq_ml * np.float32(self.geometry.voxel_volume_cm3)).astype(
            np.float32, copy=False
        )

    @property
    def total_MBq(self) -> float:
        return float(np.sum(self.concentration_MBq_ml, dtype=np.float64)
                     * self.geometry.voxel_volume_cm3)

    @property
    def frame_of_reference_uid(self) -> str | None:
        return (self.dicom or {}).get("FrameOfReferenceUID")


@dataclass(frozen=True)
class DoseGrid:
    """The grid the dose is computed on: geometry and ``(z, y, x)`` shape."""

    geometry: Geometry
    shape: tuple[int, int, int]
    source: str  # "spect" or "ct"

    @property
    def voxel_volume_ml(self) -> float:
        return self.geometry.voxel_volume_cm3


# --------------------------------------------------------------------------------------
# CT
# --------------------------------------------------------------------------------------


def _padding_hu(path: Path) -> float | None:
    from mcdose.io.checks import read_dicom_header

    ds = read_dicom_header(path)
    if ds is None or ds.get("PixelPaddingValue") is None:
        return None
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        return float(ds.PixelPaddingValue) * slope + intercept
    except (TypeError, ValueError):
        return None


def load_ct(path: str | os.PathLike[str]) -> CTImage:
    """Read a CT (DICOM series or file, NIfTI, NRRD, MHA) in Hounsfield units and check it.

    Parameters
    ----------
    path : path-like
        A DICOM folder (the largest series), a DICOM file or an image file.

    Returns
    -------
    CTImage
        HU clipped to :data:`HU_RANGE`; DICOM ``PixelPaddingValue`` voxels set to -1024.

    Raises
    ------
    InputError
        Unreadable file, missing spacing, non-finite voxels, CT numbers outside
        :data:`HU_ACCEPTED`.
    """
    from mcdose.io.dicom import read_dicom_metadata
    from mcdose.io.images import is_dicom_input, read_image

    path = Path(path)
    if not path.exists():
        raise InputError(f"CT {path}: no such file or folder")
    check_ct_storage(path)
    try:
        hu, geometry = read_image(path)
    except InputError as exc:
        raise InputError(f"CT {_strip_path(str(exc), path)}") from None
    meta = None
    if is_dicom_input(path):
        meta = read_dicom_metadata(path)
        modality = meta.get("Modality")
        if modality and modality not in ("CT",):
            log.warning("CT %s: DICOM modality is %s, not CT", path, modality)
        padding = _padding_hu(path)
        if padding is not None:
            hu[hu == np.float32(padding)] = HU_RANGE[0]
    check_ct_values(hu, path)
    lo, hi = float(hu.min()), float(hu.max())
    if lo < HU_ACCEPTED[0] or hi > HU_ACCEPTED[1]:
        raise InputError(
            f"CT {path}: values span [{lo:.6g}, {hi:.6g}], far outside the Hounsfield range "
            f"[{HU_RANGE[0]:g}, {HU_RANGE[1]:g}] (accepted {HU_ACCEPTED[0]:g} to "
            f"{HU_ACCEPTED[1]:g}); is this a CT in HU?"
        )
    clipped = int(np.count_nonzero((hu < HU_RANGE[0]) | (hu > HU_RANGE[1])))
    if clipped:
        log.info("CT %s: %d voxel(s) clipped to [%g, %g] HU", path, clipped, *HU_RANGE)
        np.clip(hu, HU_RANGE[0], HU_RANGE[1], out=hu)
    return CTImage(hu=hu, geometry=geometry, path=path, dicom=meta, clipped_voxels=clipped)


#: a CT whose values all lie in [0, DENSITY_LIKE_MAX] (and not all 0) is a density map
DENSITY_LIKE_MAX = 30.0


def check_ct_storage(path: str | os.PathLike[str], flag: str = "--ct") -> None:
    """Refuse a CT file whose voxels are stored in 8 bits (HU wrap around in int8/uint8).

    Raises
    ------
    InputError
        ``"CT <path>: stored as int8 ..."``.
    """
    from mcdose.io.images import IMAGE_SUFFIXES, _suffix
    from mcdose.io.nifti import stored_pixel_type

    path = Path(path)
    if path.is_dir() or _suffix(path) not in IMAGE_SUFFIXES + (".hdr",):
        return
    if _suffix(path) == ".hdr":
        from mcdose.io.interfile import read_interfile_header

        dtype = read_interfile_header(path).dtype
    else:
        dtype = stored_pixel_type(path)
    if dtype is not None and dtype.itemsize == 1:
        raise InputError(
            f"CT {path}: voxels stored as {dtype} (range {np.iinfo(dtype).min} to "
            f"{np.iinfo(dtype).max}) cannot hold Hounsfield units (-1024 to 3000+); the "
            f"values have wrapped; export the CT as int16 or float ({flag})"
        )


def check_ct_values(hu: np.ndarray, path: str | os.PathLike[str], flag: str = "--ct") -> None:
    """Refuse a "CT" whose values are a mass density (g/cm³) rather than HU.

    Every CT of a patient shows air (about -1000 HU) around the body; values all between 0
    and :data:`DENSITY_LIKE_MAX` (not all zero) are a density map.

    Raises
    ------
    InputError
        Names the flag: ``"CT <path>: values span [0, 1.9] ... looks like a density map"``.
    """
    lo, hi = float(np.min(hu)), float(np.max(hu))
    if lo >= 0.0 and 0.0 < hi <= DENSITY_LIKE_MAX:
        raise InputError(
            f"CT {path}: values span [{lo:.4g}, {hi:.4g}]: this looks like a density map "
            f"(g/cm3), not a CT in HU (air would be near -1000); {flag} needs HU (a density "
            f"map goes to 'mcdose simulate --density')"
        )
    if lo >= 0.0 and hi > 1000.0:
        log.warning("CT %s: no value below 0 HU (min %.4g): no air in the image; are these "
                    "stored values without their RescaleIntercept (-1024)?", path, lo)


def _strip_path(message: str, path: Path) -> str:
    """``"<path>: reason"`` stays; a message without the path gets it prepended."""
    return message if str(path) in message else f"{path}: {message}"


def parse_hu_calibration(spec: str | os.PathLike[str] | None) -> Any:
    """``"paper"`` (default) or the path of a ``hu,density_g_cm3`` CSV file.

    Returns
    -------
    str or HUCalibration
        Something :func:`mcdose.materials.hu_to_density` accepts.
    """
    from mcdose.materials import HUCalibration

    if spec is None or str(spec).strip().lower() == "paper":
        return "paper"
    path = Path(spec)
    if not path.is_file():
        raise InputError(
            f"--hu-calibration {spec}: neither 'paper' nor an existing CSV file "
            f"(columns hu,density_g_cm3)"
        )
    try:
        cal = HUCalibration.from_csv(path)
    except InputError as exc:
        raise InputError(f"--hu-calibration {_strip_path(str(exc), path)}") from None
    check_hu_calibration(cal, path)
    return cal


#: densest material in the body (enamel ~2.9 g/cm³; metal implants titanium 4.5, steel 8,
#: gold 19.3) -- a calibration beyond this is not a CT calibration
MAX_CALIBRATION_DENSITY_G_CM3 = 22.6  # osmium, the densest element


def check_hu_calibration(cal: Any, path: str | os.PathLike[str]) -> None:
    """Refuse a HU -> density calibration whose density decreases with HU or is absurd.

    Density rises with attenuation for every tissue (Schneider et al. 1996, Phys. Med.
    Biol. 41:111); a decreasing table is a swapped or mis-sorted column.
    """
    d = np.asarray(cal.density_g_cm3, dtype=np.float64)
    h = np.asarray(cal.hu, dtype=np.float64)
    drop = np.flatnonzero(np.diff(d) < 0)
    if drop.size:
        i = int(drop[0])
        raise InputError(
            f"--hu-calibration {path}: density decreases from {d[i]:g} to {d[i + 1]:g} "
            f"g/cm3 between {h[i]:g} and {h[i + 1]:g} HU; a CT calibration must not decrease "
            f"(columns swapped?)"
        )
    if d.max() > MAX_CALIBRATION_DENSITY_G_CM3:
        raise InputError(
            f"--hu-calibration {path}: density {d.max():g} g/cm3 exceeds "
            f"{MAX_CALIBRATION_DENSITY_G_CM3} g/cm3 (osmium); are the units g/cm3?"
        )


# --------------------------------------------------------------------------------------
# SPECT
# --------------------------------------------------------------------------------------


def _units_kind(units: str | None) -> tuple[str, float] | None:
    """(``"Bq/ml"``, scale to Bq/ml) or (``"counts"``, 1) for a header unit; None unknown."""
    from mcdose.units import parse_activity_unit

    if not units:
        return None
    key = str(units).strip().lower().replace(" ", "")
    try:
        per_ml, mbq = parse_activity_unit(key)
    except InputError:
        per_ml, mbq = False, 0.0
    if per_ml:
        return "Bq/ml", mbq * 1e6  # MBq -> Bq
    if key in _COUNT_UNITS:
        return "counts", 1.0
    return None


def _nuclide_from_dicom(text: str | None) -> str | None:
    """``"^177^Lutetium"``, ``"Lutetium-177"``, ``"177Lu"`` -> ``"Lu-177"`` (None if unsure)."""
    if not text:
        return None
    s = str(text)
    mass = re.search(r"(\d{1,3})\s*(m(?![a-z]))?", s)
    if mass is None:
        return None
    rest = s[: mass.start()] + " " + s[mass.end():]
    words = re.findall(r"[A-Za-z]+", rest)
    symbol = None
    for word in words:
        if word.lower() in _ELEMENTS:
            symbol = _ELEMENTS[word.lower()]
            break
    if symbol is None:
        for word in words:
            if 1 <= len(word) <= 2:
                symbol = word[0].upper() + word[1:].lower()
                break
    if symbol is None:
        return None
    return f"{symbol}-{mass.group(1)}{mass.group(2) or ''}"


def dicom_datetime(meta: dict[str, Any] | None) -> _dt.datetime | None:
    """Acquisition (else series) date and time of a DICOM metadata summary, or None."""
    if not meta:
        return None
    for date_key, time_key in (("AcquisitionDate", "AcquisitionTime"),
                               ("SeriesDate", "SeriesTime")):
        date, time = meta.get(date_key), meta.get(time_key)
        if not date or not time:
            continue
        date_s, time_s = str(date).strip(), str(time).strip().split(".")[0]
        try:
            return _dt.datetime.strptime(date_s + time_s.ljust(6, "0")[:6], "%Y%m%d%H%M%S")
        except ValueError:
            continue
    return None


def load_spect(
    path: str | os.PathLike[str],
    *,
    units: str = "Bq/ml",
    calibration_cps_per_mbq: float | None = None,
    frame_duration_s: float | None = None,
    nuclide: str | None = None,
    hours_after_administration: float | None = None,
    what: str = "SPECT",
) -> SpectImage:
    """Read a quantitative SPECT and convert it to activity concentration (MBq/ml).

    Parameters
    ----------
    path : path-like
        DICOM NM file/folder, or a NIfTI/NRRD/MHA image.
    units : {"Bq/ml", "counts"}
        Units of the voxel values.  DICOM headers (``Units`` (0054,1001), the units code of
        ``RealWorldValueMappingSequence``) are cross-checked: a contradiction is an error;
        kBq/ml and MBq/ml headers are scaled to Bq/ml.
    calibration_cps_per_mbq : float, optional
        System sensitivity (counts per second per MBq); required with ``units="counts"``.
    frame_duration_s : float, optional
        Acquisition time (s) the counts were collected over; required with counts.
    nuclide : str, optional
        Canonical nuclide name; cross-checked against the DICOM radiopharmaceutical
        information when present, and needed to undo decay correction to administration.
    hours_after_administration : float, optional
        Scan time after administration (h); needed when the DICOM header says the image is
        decay-corrected to administration (``DecayCorrection`` = ``ADMIN``).
    what : str
        Name of this input in messages (``"SPECT"``, ``"time point 2 SPECT"``).

    Returns
    -------
    SpectImage

    Raises
    ------
    InputError
        Unreadable file, missing spacing, non-finite voxels, negative activity, no activity,
        units or nuclide contradicting the header, counts without calibration.
    """
    from mcdose.io.dicom import read_dicom_metadata
    from mcdose.io.images import is_dicom_input, read_image

    path = Path(path)
    if units not in SPECT_UNITS:
        raise InputError(f"--spect-units must be one of {', '.join(SPECT_UNITS)}, got {units!r}")
    if units == "counts":
        for name, value in (("--calibration-cps-per-mbq", calibration_cps_per_mbq),
                            ("--frame-duration-s", frame_duration_s)):
            if value is None:
                raise InputError(f"{what} in counts needs {name}")
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise InputError(f"{name} must be a positive number, got {value}")
    elif calibration_cps_per_mbq is not None or frame_duration_s is not None:
        raise InputError(
            "--calibration-cps-per-mbq and --frame-duration-s apply to --spect-units counts only"
        )
    if not path.exists():
        raise InputError(f"{what} {path}: no such file or folder")
    try:
        values, geometry = read_image(path)
    except InputError as exc:
        raise InputError(f"{what} {_strip_path(str(exc), path)}") from None

    check_spect_shape(values.shape, path, what)
    conversion: dict[str, Any] = {"units": units}
    meta = None
    scale_bq_ml = 1.0
    if is_dicom_input(path):
        meta = read_dicom_metadata(path)
        check_units_agree(meta, path, what)
        header_units = meta.get("RealWorldValueUnits") or meta.get("Units")
        conversion["header_units"] = header_units
        kind = _units_kind(header_units)
        if not header_units:
            conversion["units_source"] = "assumed from --spect-units (header states none)"
            log.warning("%s %s: the DICOM header states no units (neither Units (0054,1001) "
                        "nor a RealWorldValueMapping unit); taking the values as %s, as "
                        "--spect-units says", what, path, units)
        if kind is None:
            if header_units:
                log.warning("%s %s: header units %r not recognised; taking %s as given",
                            what, path, header_units, units)
        elif kind[0] != units:
            if kind[0] == "counts":
                raise InputError(
                    f"{what} {path}: the DICOM header says the values are counts "
                    f"({header_units}); give --spect-units counts with "
                    f"--calibration-cps-per-mbq and --frame-duration-s"
                )
            raise InputError(
                f"{what} {path}: the DICOM header says the values are an activity "
                f"concentration ({header_units}), not counts; drop --spect-units counts"
            )
        else:
            scale_bq_ml = kind[1]
        header_nuclide = _nuclide_from_dicom(meta.get("Radionuclide"))
        if nuclide and header_nuclide:
            from mcdose.nuclides import normalize_nuclide_name

            try:
                canonical = normalize_nuclide_name(header_nuclide)
            except InputError:
                canonical = None
            if canonical is not None and canonical != nuclide:
                raise InputError(
                    f"{what} {path}: the DICOM header names the radionuclide "
                    f"{meta.get('Radionuclide')!r} ({canonical}), but --nuclide is {nuclide}"
                )
        decay = str(meta.get("DecayCorrection") or "").strip().upper()
        conversion["header_decay_correction"] = decay or None
        if decay == "ADMIN":
            if hours_after_administration is None or nuclide is None:
                raise InputError(
                    f"{what} {path}: the image is decay-corrected to the administration "
                    f"time (DecayCorrection ADMIN); give its time with --timepoint SPECT:HOURS "
                    f"so that mcdose can restore the activity at scan time"
                )
            from mcdose.nuclides import load_nuclide

            lam_per_h = math.log(2.0) / (load_nuclide(nuclide).half_life_s / 3600.0)
            undo = math.exp(-lam_per_h * float(hours_after_administration))
            scale_bq_ml *= undo
            conversion["decay_correction_undone"] = undo

    elif path.suffix.lower() in (".hdr", ".h33"):
        _check_interfile_units(path, units, what)

    vmax = float(values.max()) if values.size else 0.0
    vmin = float(values.min()) if values.size else 0.0
    if vmin < 0.0:
        tolerance = _NEGATIVE_RTOL * max(abs(vmax), 0.0)
        n_neg = int(np.count_nonzero(values < -tolerance))
        if n_neg:
            raise InputError(
                f"{what} {path}: {n_neg} voxel(s) hold negative activity (min {vmin:.4g}); "
                f"activity must be >= 0"
            )
        np.maximum(values, 0.0, out=values)
    if not vmax > 0.0:
        raise InputError(f"{what} {path}: the image holds no activity (all voxels are 0)")

    voxel_ml = geometry.voxel_volume_cm3
    if units == "Bq/ml":
        factor = scale_bq_ml * 1e-6  # Bq/ml -> MBq/ml
        conversion["factor_to_MBq_ml"] = factor
    else:
        # counts -> MBq per voxel = counts / T / K; -> MBq/ml divide by the voxel volume
        factor = scale_bq_ml / (float(frame_duration_s) * float(calibration_cps_per_mbq)
                                * voxel_ml)
        conversion.update(
            factor_to_MBq_ml=factor,
            calibration_cps_per_mbq=float(calibration_cps_per_mbq),
            frame_duration_s=float(frame_duration_s),
        )
    values *= np.float32(factor)
    check_total_activity(float(np.sum(values, dtype=np.float64)) * voxel_ml, path, what)
    return SpectImage(concentration_MBq_ml=values, geometry=geometry, path=path, dicom=meta,
                      units=units, conversion=conversion)


#: total activity (MBq) in a SPECT field of view above which it is refused: no
#: radionuclide therapy administers 100 GBq (Lu-177 PSMA/DOTATATE: 7.4 GBq per cycle;
#: I-131 ablation up to ~11 GBq)
MAX_TOTAL_ACTIVITY_MBQ = 1.0e5
#: below this (1 kBq) a warning is logged: likely wrong units (Bq read as MBq, counts ...)
MIN_TOTAL_ACTIVITY_MBQ = 1.0e-3


def _check_interfile_units(path: Path, units: str, what: str) -> None:
    """Refuse an Interfile SPECT whose ``quantification units`` contradict --spect-units."""
    from mcdose.io.interfile import is_interfile, read_interfile_header

    if not is_interfile(path):
        return
    stated = read_interfile_header(path).units
    kind = _units_kind(stated)
    if kind is not None and kind[0] != units:
        raise InputError(
            f"{what} {path}: Interfile 'quantification units' is {stated!r}, but "
            f"--spect-units is {units}"
        )
    if kind is not None and kind[1] != 1.0:
        raise InputError(
            f"{what} {path}: Interfile 'quantification units' is {stated!r}; mcdose reads "
            f"Interfile SPECT in Bq/ml or counts only, convert the image"
        )


def check_spect_shape(shape: tuple[int, ...], path: Path, what: str = "SPECT") -> None:
    """Refuse a 2-D SPECT (one slice or one row): a reconstruction is a 3-D volume."""
    if len(shape) != 3 or min(shape) < 2:
        raise InputError(
            f"{what} {path}: image is {'x'.join(str(n) for n in shape[::-1])} voxels (x y z), "
            f"not a 3-D reconstruction; a planar or single-slice image cannot give a dose "
            f"map"
        )


def check_units_agree(meta: dict[str, Any], path: Path, what: str = "SPECT") -> None:
    """Refuse a DICOM SPECT whose ``Units`` (0054,1001) contradict its value-mapping unit."""
    a, b = meta.get("Units"), meta.get("RealWorldValueUnits")
    if not a or not b:
        return
    ka, kb = _units_kind(a), _units_kind(b)
    if ka is None or kb is None:
        return
    # Units describe the rescaled values, the mapping its own output (PS3.3 C.8.9.1.1.3,
    # C.7.6.16.2.11): a different scale (BQML vs kBq/mL) can be right and the mapping is
    # used; counts against a concentration cannot both be right.
    if ka[0] != kb[0]:
        raise InputError(
            f"{what} {path}: DICOM Units (0054,1001) is {a!r} but the RealWorldValueMapping "
            f"unit is {b!r}; the header contradicts itself, refusing to choose a factor"
        )


def check_total_activity(total_mbq: float, path: Path, what: str = "SPECT") -> None:
    """Refuse a total activity above :data:`MAX_TOTAL_ACTIVITY_MBQ`; warn below the minimum."""
    if not math.isfinite(total_mbq) or total_mbq > MAX_TOTAL_ACTIVITY_MBQ:
        raise InputError(
            f"{what} {path}: total activity {total_mbq:.4g} MBq exceeds "
            f"{MAX_TOTAL_ACTIVITY_MBQ:g} MBq (100 GBq, more than any therapy administers); "
            f"check the units (--spect-units, Bq/ml vs kBq/ml)"
        )
    if total_mbq < MIN_TOTAL_ACTIVITY_MBQ:
        log.warning("%s %s: total activity %.3g MBq is below 1 kBq; check the units", what,
                    path, total_mbq)


# --------------------------------------------------------------------------------------
# consistency between images
# --------------------------------------------------------------------------------------


def check_frame_of_reference(a_uid: str | None, b_uid: str | None, a_what: str, b_what: str
                             ) -> None:
    """Refuse two DICOM inputs in different frames of reference (when both state one)."""
    if a_uid and b_uid and str(a_uid) != str(b_uid):
        raise InputError(
            f"{a_what} and {b_what} are in different DICOM frames of reference "
            f"({a_uid} vs {b_uid}); register them first or use images from one SPECT/CT "
            f"session"
        )


def _centres_in(geometry: Geometry, shape: tuple[int, int, int], target: Geometry,
                target_shape: tuple[int, int, int], max_points: int = 200_000
                ) -> np.ndarray:
    """Boolean: which (strided) voxel centres of one grid lie inside another grid."""
    nz, ny, nx = shape
    n = nz * ny * nx
    stride = max(1, int(round((n / max_points) ** (1.0 / 3.0))))
    k, j, i = np.meshgrid(np.arange(0, nz, stride), np.arange(0, ny, stride),
                          np.arange(0, nx, stride), indexing="ij")
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.float64)
    points = geometry.index_to_physical(idx)
    a = target.affine
    cont = np.linalg.solve(a[:3, :3], (points - a[:3, 3]).T).T
    tz, ty, tx = target_shape
    upper = np.array([tx, ty, tz], dtype=np.float64) - 0.5
    return np.all((cont >= -0.5) & (cont <= upper), axis=1)


def overlap_fraction(geometry: Geometry, shape: tuple[int, int, int], target: Geometry,
                     target_shape: tuple[int, int, int]) -> float:
    """Fraction of the voxel centres of ``(geometry, shape)`` inside the target grid."""
    inside = _centres_in(geometry, shape, target, target_shape)
    return float(np.count_nonzero(inside)) / max(1, inside.size)


def _extent(geometry: Geometry, shape: tuple[int, int, int]) -> str:
    nz, ny, nx = shape
    corners = np.array([[i, j, k] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5)
                        for k in (-0.5, nz - 0.5)])
    pts = geometry.index_to_physical(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return " ".join(f"{ax}[{a:.0f},{b:.0f}]" for ax, a, b in zip("xyz", lo, hi, strict=True))


def check_overlap(spect: SpectImage, ct: CTImage, *, spect_what: str = "SPECT",
                  ct_what: str = "CT") -> float:
    """Fraction of SPECT voxel centres inside the CT; refuse 0 (no overlap).

    Returns
    -------
    float
        The overlap fraction (0 < f ≤ 1); below 0.5 a warning is logged.
    """
    fraction = overlap_fraction(spect.geometry, spect.shape, ct.geometry, ct.shape)
    if fraction <= 0.0:
        raise InputError(
            f"{spect_what} {spect.path} and {ct_what} {ct.path} do not overlap "
            f"({spect_what} spans {_extent(spect.geometry, spect.shape)} mm, {ct_what} spans "
            f"{_extent(ct.geometry, ct.shape)} mm, LPS)"
        )
    if fraction < 0.5:
        log.warning("%s covers only %.0f %% of the %s field of view", ct_what, 100 * fraction,
                    spect_what)
    return fraction


# --------------------------------------------------------------------------------------
# the dose grid, CT and SPECT on it
# --------------------------------------------------------------------------------------


def make_dose_grid(spect: SpectImage, ct: CTImage, grid: str = "spect") -> DoseGrid:
    """The SPECT grid (``"spect"``, default) or the CT grid (``"ct"``)."""
    if grid == "spect":
        return DoseGrid(spect.geometry, spect.shape, "spect")
    if grid == "ct":
        return DoseGrid(ct.geometry, ct.shape, "ct")
    raise InputError(f"--grid must be 'spect' or 'ct', got {grid!r}")


def _antialias_sigma_voxels(source: Geometry, target: Geometry) -> np.ndarray:
    """Gaussian sigma (source voxels, x y z) matching the box of a coarser target voxel."""
    ds, dt = source.direction_matrix, target.direction_matrix
    # target voxel extent seen along each source axis
    extent = np.abs(ds.T @ dt) @ np.asarray(target.spacing_mm)
    s = np.asarray(source.spacing_mm)
    var = np.maximum(extent**2 - s**2, 0.0) / 12.0
    return np.sqrt(var) / s


def ct_on_grid(ct: CTImage, grid: DoseGrid, calibration: Any = "paper") -> np.ndarray:
    """Mass density (g/cm³, float32) on the dose grid.

    The density is computed on the CT grid, smoothed to the dose voxel size when the dose
    grid is coarser (so that each dose voxel gets the mean density of the tissue it holds),
    and interpolated linearly; outside the CT it is air.
    """
    from scipy import ndimage

    from mcdose.io.images import resample_to_grid
    from mcdose.materials import AIR_DENSITY_G_CM3, hu_to_density

    density = hu_to_density(ct.hu, calibration)
    if grid.source == "ct":
        return density
    sigma_xyz = _antialias_sigma_voxels(ct.geometry, grid.geometry)
    if np.any(sigma_xyz > 0.25):
        density = ndimage.gaussian_filter(density, sigma=tuple(sigma_xyz[::-1]), mode="nearest",
                                          truncate=3.0)
    return resample_to_grid(density, ct.geometry, grid.geometry, grid.shape, "linear",
                            default_value=AIR_DENSITY_G_CM3)


def activity_on_grid(spect: SpectImage, grid: DoseGrid, transform: Any = None) -> np.ndarray:
    """Activity per voxel (MBq, float32) of ``spect`` on the dose grid.

    Parameters
    ----------
    spect : SpectImage
    grid : DoseGrid
    transform : SimpleITK.Transform, optional
        Maps dose-grid physical points to SPECT physical points (a registration result);
        default identity (the images are aligned in patient coordinates).
    """
    from mcdose.io.images import resample_to_grid, to_sitk

    conc = spect.concentration_MBq_ml
    if transform is None:
        same = spect.shape == grid.shape and spect.geometry.allclose(
            grid.geometry, atol_mm=1e-6, atol_direction=1e-9)
        if not same:
            conc = resample_to_grid(conc, spect.geometry, grid.geometry, grid.shape, "linear",
                                    default_value=0.0)
    else:
        import SimpleITK as sitk

        image = to_sitk(conc, spect.geometry)
        out = sitk.Resample(image, (grid.shape[2], grid.shape[1], grid.shape[0]), transform,
                            sitk.sitkLinear, grid.geometry.origin_mm, grid.geometry.spacing_mm,
                            grid.geometry.direction, 0.0, sitk.sitkFloat32)
        conc = np.array(sitk.GetArrayViewFromImage(out), dtype=np.float32, copy=True)
    activity = conc * np.float32(grid.voxel_volume_ml)
    np.maximum(activity, 0.0, out=activity)  # linear interpolation of >= 0 stays >= 0
    return activity.astype(np.float32, copy=False)


def body_mask(density: np.ndarray, voxel_volume_ml: float,
              seed_density_g_cm3: float = BODY_SEED_DENSITY_G_CM3) -> np.ndarray:
    """The patient on the dose grid, from density.

    Voxels denser than ``seed_density_g_cm3`` (soft tissue, bone), connected components
    (26-connectivity, so that skin voxels touching the body only by a corner stay) of at
    least 1 ml and 1 % of the largest, holes filled in 3-D and slice by slice (lungs, bowel
    gas).

    Raises
    ------
    InputError
        No voxel is dense enough: the CT shows no patient on the dose grid.
    """
    from scipy import ndimage

    seed = density > seed_density_g_cm3
    labels, n = ndimage.label(seed, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        raise InputError(
            f"the CT shows no patient on the dose grid (no voxel denser than "
            f"{seed_density_g_cm3} g/cm3); check that SPECT and CT overlap"
        )
    sizes = np.bincount(labels.ravel())[1:]
    keep_min = max(_BODY_MIN_FRACTION * sizes.max(), 1.0 / max(voxel_volume_ml, 1e-12))
    keep = np.flatnonzero(sizes >= min(keep_min, sizes.max())) + 1
    body = np.isin(labels, keep)
    body = ndimage.binary_fill_holes(body)
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    return body
