"""Dose-comparison metrics: mean-dose error, normalised RMSE, dose-volume histograms, regions.

Pure NumPy; every function takes dose arrays of one shape ``(z, y, x)`` in any consistent
unit (Gy/s throughout mcdose) and a boolean region mask of the same shape.

The definitions follow the residual-CNN paper (Li, Fessler, Mikell, Wilderman, Dewaraja,
"DblurDoseNet", Med. Phys. 49 (2022) 1216, doi:10.1002/mp.15397), section on evaluation:

* MDE   = |mean(D̂ over R) − mean(D over R)| / mean(D over R)
  (:func:`mean_deviation` gives the same without the absolute value: its sign tells an
  under- from an overestimate)
* NRMSE = sqrt(mean((D̂ − D)² over R)) / sqrt(mean(D² over R))

with D the ground truth (Monte Carlo on the true activity), D̂ the estimate and R the
region's voxels.  Both are returned as fractions (0.055 means 5.5 %).

Regions follow the label convention of ``docs/DEVELOPING.md``: label 0 is ``background``
(outside the body), lesions are named ``lesion_<k>_<host>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "LESION_PATTERN",
    "REGION_CLASSES",
    "body_mask",
    "cumulative_dvh",
    "dvh_metrics",
    "mde",
    "mean_deviation",
    "nrmse",
    "region_class",
    "standard_regions",
]

#: lesion label names: ``lesion_<k>_<host>``, e.g. ``lesion_3_liver``
LESION_PATTERN = re.compile(r"lesion_(\d+)_([a-z0-9_]+)")

#: evaluation region classes of the paper's Tables I and II, in table order
REGION_CLASSES: tuple[str, ...] = (
    "healthy_liver",
    "liver",
    "tumour",
    "spleen",
    "kidney_left",
    "kidney_right",
)

#: density threshold (g/cm³) separating the patient from air when no labels are available;
#: below lung (≈ 0.26 g/cm³) and far above air (0.0012 g/cm³)
BODY_DENSITY_THRESHOLD_G_CM3 = 0.05


def _region_values(name: str, array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if array.shape != mask.shape:
        raise InputError(f"{name} has shape {array.shape}, the region mask {mask.shape}")
    values = np.asarray(array)[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise InputError("the region mask is empty")
    return values.astype(np.float64, copy=False)


def mean_deviation(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Signed relative deviation of the region's mean dose (a fraction; MDE without ``|·|``).

    Parameters
    ----------
    estimate, truth
        Dose (rate) arrays of one shape, same unit (Gy/s).
    mask
        Boolean region mask, same shape.

    Returns
    -------
    float
        ``(mean(estimate[mask]) − mean(truth[mask])) / mean(truth[mask])``: negative when the
        estimate's mean dose is below the truth's.

    Raises
    ------
    InputError
        Shapes differ, the mask is empty, or the true mean dose is not positive.
    """
    est = _region_values("estimate", estimate, mask)
    ref = _region_values("truth", truth, mask)
    ref_mean = float(ref.mean())
    if not ref_mean > 0:
        raise InputError("the true mean dose in the region is not positive; MDE is undefined")
    return (float(est.mean()) - ref_mean) / ref_mean


def mde(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean-dose error of ``estimate`` against ``truth`` over a region (a fraction).

    Parameters
    ----------
    estimate, truth
        Dose (rate) arrays of one shape, same unit (Gy/s).
    mask
        Boolean region mask, same shape.

    Returns
    -------
    float
        ``|mean(estimate[mask]) − mean(truth[mask])| / mean(truth[mask])``.

    Raises
    ------
    InputError
        Shapes differ, the mask is empty, or the true mean dose is not positive.

    References
    ----------
    Li et al., DblurDoseNet, Med. Phys. 49 (2022) 1216, eq. for MDE (evaluation section).
    """
    return abs(mean_deviation(estimate, truth, mask))


def nrmse(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Normalised root-mean-square error over a region (a fraction).

    Parameters
    ----------
    estimate, truth
        Dose (rate) arrays of one shape, same unit (Gy/s).
    mask
        Boolean region mask, same shape.

    Returns
    -------
    float
        ``sqrt(mean((estimate − truth)²)) / sqrt(mean(truth²))`` over the region's voxels.

    Raises
    ------
    InputError
        Shapes differ, the mask is empty, or the truth is zero everywhere in the region.

    References
    ----------
    Li et al., DblurDoseNet, Med. Phys. 49 (2022) 1216, eq. for NRMSE (evaluation section).
    """
    est = _region_values("estimate", estimate, mask)
    ref = _region_values("truth", truth, mask)
    denominator = float(np.sqrt(np.mean(ref * ref)))
    if not denominator > 0:
        raise InputError("the true dose is zero everywhere in the region; NRMSE is undefined")
    diff = est - ref
    return float(np.sqrt(np.mean(diff * diff))) / denominator


def cumulative_dvh(
    dose: np.ndarray,
    mask: np.ndarray,
    bins: int | Sequence[float] | np.ndarray = 200,
    *,
    max_dose: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative dose-volume histogram of a region.

    Parameters
    ----------
    dose
        Dose (rate) array (Gy/s).
    mask
        Boolean region mask, same shape.
    bins
        Number of equally spaced dose levels from 0 to ``max_dose`` (inclusive), or the
        dose levels themselves (increasing, same unit as ``dose``).
    max_dose
        Upper dose level when ``bins`` is a number; default the region's maximum dose.
        Pass a common value to compare several DVHs on one axis.

    Returns
    -------
    levels : ndarray, float64
        Dose levels ``d`` (same unit as ``dose``).
    volume_fraction : ndarray, float64
        Fraction of the region's voxels receiving a dose ``≥ d``; non-increasing, 1 at
        ``d ≤ min dose``.
    """
    values = _region_values("dose", dose, mask)
    if np.ndim(bins) == 0:
        n = int(bins)  # type: ignore[arg-type]
        if n < 2:
            raise InputError(f"DVH needs at least 2 dose levels, got bins={n}")
        top = float(values.max()) if max_dose is None else float(max_dose)
        if not top > 0:
            top = 1.0
        levels = np.linspace(0.0, top, n)
    else:
        levels = np.asarray(bins, dtype=np.float64)
        if levels.ndim != 1 or levels.size < 1 or np.any(np.diff(levels) < 0):
            raise InputError("DVH dose levels must be a non-empty increasing 1-D sequence")
    ordered = np.sort(values)
    # voxels with dose >= d: n - (number strictly below d)
    below = np.searchsorted(ordered, levels, side="left")
    volume = (ordered.size - below) / ordered.size
    return levels, volume.astype(np.float64)


def dvh_metrics(
    dose: np.ndarray,
    mask: np.ndarray,
    *,
    d_percent: Iterable[float] = (2.0, 50.0, 98.0),
    v_levels: Iterable[float] = (),
) -> dict[str, float]:
    """Dose-volume metrics D_x and V_d of a region.

    Parameters
    ----------
    dose
        Dose (rate) array (Gy/s).
    mask
        Boolean region mask.
    d_percent
        Volume percentages ``x`` for ``D_x``: the minimum dose received by the hottest
        ``x`` % of the region (the ``(100 − x)``-th percentile, linear interpolation), e.g.
        ``D2`` near the maximum, ``D50`` the median, ``D98`` near the minimum.
    v_levels
        Dose levels ``d`` (same unit as ``dose``) for ``V_d``: the fraction of the region's
        voxels receiving at least ``d``.

    Returns
    -------
    dict
        Keys ``"D2"``, ``"D50"``, ``"D98"`` (``f"D{x:g}"``) and ``f"V_{d:g}"``; doses in the
        unit of ``dose``, volumes as fractions.
    """
    values = _region_values("dose", dose, mask)
    result: dict[str, float] = {}
    for x in d_percent:
        x = float(x)
        if not 0.0 <= x <= 100.0:
            raise InputError(f"D_x needs 0 <= x <= 100, got {x}")
        result[f"D{x:g}"] = float(np.percentile(values, 100.0 - x))
    for d in v_levels:
        result[f"V_{float(d):g}"] = float(np.count_nonzero(values >= d) / values.size)
    return result


def _label_names_dict(label_names: Mapping[int | str, str] | str) -> dict[int, str]:
    if isinstance(label_names, str):
        label_names = json.loads(label_names)
    out: dict[int, str] = {}
    for key, name in label_names.items():  # type: ignore[union-attr]
        try:
            out[int(key)] = str(name).strip().lower()
        except (TypeError, ValueError):
            raise InputError(f"label value {key!r} is not an integer") from None
    return out


def body_mask(
    labels: np.ndarray | None = None,
    density: np.ndarray | None = None,
    *,
    threshold_g_cm3: float = BODY_DENSITY_THRESHOLD_G_CM3,
) -> np.ndarray:
    """The patient's voxels: ``labels != 0`` when labels exist, else ``density > threshold``.

    Parameters
    ----------
    labels
        Integer label array; 0 is ``background`` (outside the body).
    density
        Mass density (g/cm³), used when ``labels`` is None.
    threshold_g_cm3
        Density threshold (g/cm³), default 0.05: below lung, far above air.

    Returns
    -------
    ndarray of bool
    """
    if labels is not None:
        return np.asarray(labels) != 0
    if density is None:
        raise InputError("a body mask needs labels or density")
    return np.asarray(density) > threshold_g_cm3


def region_class(name: str) -> str:
    """Table row of a region name: ``"tumour/lesion_3_liver"`` → ``"tumour"``."""
    return name.split("/", 1)[0]


def standard_regions(
    label_names: Mapping[int | str, str] | str, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """The paper's evaluation regions from a label map.

    Parameters
    ----------
    label_names
        Label value → name (the ``names`` attribute of a case file's ``labels``; a JSON
        string or a mapping with int or str keys).  Names follow ``docs/DEVELOPING.md``.
    labels
        Integer label array ``(z, y, x)``.

    Returns
    -------
    dict[str, ndarray of bool]
        In this order, each only when not empty:

        * ``healthy_liver`` — label ``liver`` (lesion voxels carry their own label);
        * ``liver`` — ``liver`` and every ``lesion_<k>_liver``;
        * ``tumour/<lesion name>`` — each lesion separately (any host), e.g.
          ``tumour/lesion_3_liver``; :func:`region_class` maps it to ``tumour``;
        * ``spleen``;
        * ``kidney_left`` — ``kidney_left`` (if present), ``kidney_left_cortex``,
          ``kidney_left_medulla``; ``kidney_right`` likewise;
        * ``body`` — every labelled voxel (label ≠ 0): the whole patient, not the label
          named ``body`` (remaining soft tissue).

    References
    ----------
    Li et al., DblurDoseNet, Med. Phys. 49 (2022) 1216, Tables I and II (regions).
    """
    names = _label_names_dict(label_names)
    labels = np.asarray(labels)
    by_name: dict[str, list[int]] = {}
    for value, name in names.items():
        by_name.setdefault(name, []).append(value)

    def mask_of(values: list[int]) -> np.ndarray:
        if not values:
            return np.zeros(labels.shape, dtype=bool)
        return np.isin(labels, np.asarray(values, dtype=labels.dtype))

    lesions = sorted(
        (name for name in by_name if LESION_PATTERN.fullmatch(name)),
        key=lambda n: (int(LESION_PATTERN.fullmatch(n).group(1)), n),  # type: ignore[union-attr]
    )
    liver_lesions = [
        v
        for name in lesions
        if LESION_PATTERN.fullmatch(name).group(2) == "liver"  # type: ignore[union-attr]
        for v in by_name[name]
    ]
    regions: dict[str, np.ndarray] = {}
    regions["healthy_liver"] = mask_of(by_name.get("liver", []))
    regions["liver"] = mask_of(by_name.get("liver", []) + liver_lesions)
    for name in lesions:
        regions[f"tumour/{name}"] = mask_of(by_name[name])
    regions["spleen"] = mask_of(by_name.get("spleen", []))
    for side in ("left", "right"):
        values: list[int] = []
        for part in (f"kidney_{side}", f"kidney_{side}_cortex", f"kidney_{side}_medulla"):
            values += by_name.get(part, [])
        regions[f"kidney_{side}"] = mask_of(values)
    regions["body"] = labels != 0
    return {name: mask for name, mask in regions.items() if mask.any()}
