"""Lesion recovery correction: RC(volume) of the SPECT protocol, applied to lesion activity.

Partial-volume loss makes a small lesion's mean reconstructed activity concentration a
fraction RC (the recovery coefficient) of the truth.  The curve RC(volume) shipped with
mcdose (``mcdose/data/recovery_lu177_default_spect.json``) was measured with the factory's
own SPECT simulation of the default :class:`mcdose.spect.SpectProtocol` on a NEMA-IEC-like
sphere phantom (``examples/recovery_curve.py``, which wrote it; docs/spect.md, Validation):
spheres of 10-37 mm (0.52-26.5 ml), RC ≈ 0.25 → 0.82.  A curve for another protocol is a
JSON file with ``volumes_ml``, ``rc`` and optionally ``rc_sd``.

With ``--recovery-correction``, every lesion (a region named lesion/tumour/metastasis...)
gets its mean activity (or TIA) divided by RC at its volume, and so its mean absorbed dose
(self-dose approximation: Lu-177's β range, < 2 mm, is small against the lesion; as
OpenDose3D and Gear et al. 2018 do); the uncorrected values stay beside the corrected ones.
RC is interpolated linearly in log(volume); outside the measured volumes it is held at the
end value and the row is flagged.  The RC standard uncertainty combines the curve's own
(spread over count levels) and the volume uncertainty through the slope dRC/dV (Gear et al.
2018, recovery-correction term).

References
----------
.. [1] J. Gear et al., "EANM practical guidance on uncertainty analysis for molecular
   radiotherapy absorbed dose calculations", EJNMMI 45 (2018) 2456.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError

__all__ = ["DEFAULT_CURVE", "RecoveryCurve", "is_lesion", "load_recovery_curve"]

DEFAULT_CURVE = "recovery_lu177_default_spect.json"
_LESION_WORDS = ("lesion", "tumour", "tumor", "metast", "nodule")


def is_lesion(name: str) -> bool:
    """Whether a region name denotes a lesion (lesion, tumour/tumor, metastasis, nodule)."""
    low = name.lower()
    return any(w in low for w in _LESION_WORDS)


@dataclass
class RecoveryCurve:
    """Recovery coefficient against volume.

    Attributes
    ----------
    volumes_ml : ndarray
        Increasing sphere volumes (ml).
    rc : ndarray
        RC at those volumes (0 < RC ≤ 1.5).
    rc_sd : ndarray
        Standard uncertainty of RC at those volumes.
    source : str
        File it came from.
    protocol : dict
        The SPECT protocol it belongs to.
    """

    volumes_ml: np.ndarray
    rc: np.ndarray
    rc_sd: np.ndarray
    source: str = ""
    protocol: dict[str, Any] = field(default_factory=dict)

    def __call__(self, volume_ml: float) -> float:
        """RC at ``volume_ml`` (ml), log-volume interpolation, held at the ends."""
        x = math.log(max(float(volume_ml), 1e-9))
        return float(np.interp(x, np.log(self.volumes_ml), self.rc))

    def in_range(self, volume_ml: float) -> bool:
        return bool(self.volumes_ml[0] <= volume_ml <= self.volumes_ml[-1])

    def uncertainty(self, volume_ml: float, volume_sd_ml: float = 0.0) -> float:
        """Standard uncertainty of RC: the curve's own and ``volume_sd_ml`` through dRC/dV."""
        v = max(float(volume_ml), 1e-9)
        x = math.log(v)
        lx = np.log(self.volumes_ml)
        own = float(np.interp(x, lx, self.rc_sd))
        if lx[0] <= x <= lx[-1]:
            i = int(np.clip(np.searchsorted(lx, x) - 1, 0, lx.size - 2))
            slope = (self.rc[i + 1] - self.rc[i]) / (lx[i + 1] - lx[i]) / v  # dRC/dV, 1/ml
        else:
            slope = 0.0
        return math.hypot(own, slope * float(volume_sd_ml))

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "volumes_ml": self.volumes_ml.tolist(),
                "rc": self.rc.tolist(), "rc_sd": self.rc_sd.tolist(),
                "protocol": self.protocol}


def load_recovery_curve(path: str | os.PathLike[str] | None = None) -> RecoveryCurve:
    """Read a recovery curve (default: the one of mcdose's default SPECT protocol).

    Raises
    ------
    InputError
        Unreadable file, missing keys, volumes not increasing, RC outside (0, 1.5].
    """
    if path is None:
        ref = resources.files("mcdose") / "data" / DEFAULT_CURVE
        text, where = ref.read_text(encoding="utf-8"), f"mcdose/data/{DEFAULT_CURVE}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--recovery-curve {where}: cannot read ({exc.strerror})") from None
    try:
        doc = json.loads(text)
        v = np.asarray(doc["volumes_ml"], dtype=np.float64)
        rc = np.asarray(doc["rc"], dtype=np.float64)
        sd = np.asarray(doc.get("rc_sd", np.zeros_like(rc)), dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--recovery-curve {where}: not a recovery curve JSON with "
                         f"volumes_ml and rc ({exc})") from None
    if v.ndim != 1 or v.size < 2 or v.shape != rc.shape or sd.shape != rc.shape:
        raise InputError(f"--recovery-curve {where}: volumes_ml, rc (and rc_sd) must be "
                         f"lists of the same length >= 2")
    if not (np.all(np.isfinite(v)) and np.all(v > 0) and np.all(np.diff(v) > 0)):
        raise InputError(f"--recovery-curve {where}: volumes_ml must be positive and "
                         f"increasing")
    if not (np.all(np.isfinite(rc)) and np.all(rc > 0) and np.all(rc <= 1.5)
            and np.all(np.isfinite(sd)) and np.all(sd >= 0)):
        raise InputError(f"--recovery-curve {where}: rc must lie in (0, 1.5], rc_sd >= 0")
    return RecoveryCurve(v, rc, sd, where, dict(doc.get("protocol", {})))
