"""Activity units: from what an image stores to MBq per voxel (the case-file unit) or MBq/ml.

An activity image holds either an amount per voxel (``MBq``, ``kBq``, ``Bq``) or a
concentration (``MBq/ml``, ``kBq/ml``, ``Bq/ml``; 1 ml = 1 cm³).  With the voxel volume
V (ml) of the image's own grid,

    A [MBq per voxel] = C [MBq/ml] × V,      C [MBq/ml] = A [MBq per voxel] / V.

Spellings are case- and space-insensitive; ``/cm3`` and the DICOM ``Units`` code ``BQML``
(``KBQML``, ``MBQML``) count as per ml.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "ACTIVITY_UNITS",
    "activity_to_mbq_per_ml",
    "activity_to_mbq_per_voxel",
    "parse_activity_unit",
]

#: the canonical spellings (per voxel, then per ml)
ACTIVITY_UNITS: tuple[str, ...] = ("MBq", "kBq", "Bq", "MBq/ml", "kBq/ml", "Bq/ml")

_MBQ_PER = {"mbq": 1.0, "kbq": 1e-3, "bq": 1e-6}
_PER_ML_ENDINGS = ("/ml", "/cm3", "/cc", "ml")  # "ml": DICOM's BQML


def parse_activity_unit(unit: str, what: str = "activity unit") -> tuple[bool, float]:
    """``(per_ml, factor)`` of an activity unit: values × factor are MBq, or MBq/ml.

    Parameters
    ----------
    unit : str
        ``"MBq"``, ``"kBq"``, ``"Bq"``, ``"MBq/ml"``, ``"kBq/ml"``, ``"Bq/ml"`` (any case;
        also ``/cm3`` and DICOM's ``BQML``).
    what : str
        Name of the option or field in the error message.

    Returns
    -------
    per_ml : bool
        True for a concentration.
    factor : float
        To MBq (per voxel) or to MBq/ml.

    Raises
    ------
    InputError
        Unknown unit (the message lists :data:`ACTIVITY_UNITS`).
    """
    key = str(unit).strip().lower().replace(" ", "")
    per_ml = False
    for ending in _PER_ML_ENDINGS:
        if key.endswith(ending) and key[: -len(ending)] in _MBQ_PER:
            key, per_ml = key[: -len(ending)], True
            break
    if key not in _MBQ_PER:
        raise InputError(f"unknown {what} {unit!r}; choose from {', '.join(ACTIVITY_UNITS)}")
    return per_ml, _MBQ_PER[key]


def activity_to_mbq_per_voxel(values: Any, unit: str, voxel_ml: float) -> np.ndarray:
    """Activity per voxel (MBq) of an image in ``unit`` on a grid of voxels of ``voxel_ml``.

    The result keeps a floating-point input's dtype (float32 for other inputs).
    """
    per_ml, factor = parse_activity_unit(unit)
    scale = factor * float(voxel_ml) if per_ml else factor
    return _scaled(values, scale)


def activity_to_mbq_per_ml(values: Any, unit: str, voxel_ml: float) -> np.ndarray:
    """Activity concentration (MBq/ml) of an image in ``unit`` with voxels of ``voxel_ml``.

    The result keeps a floating-point input's dtype (float32 for other inputs).
    """
    per_ml, factor = parse_activity_unit(unit)
    scale = factor if per_ml else factor / float(voxel_ml)
    return _scaled(values, scale)


def _scaled(values: Any, scale: float) -> np.ndarray:
    arr = np.asarray(values)
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float32)
    return arr.astype(dtype, copy=False) * dtype.type(scale)
