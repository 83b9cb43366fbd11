"""Single-time-point (STP) absorbed dose from one SPECT: Hänscheid 2018 and Madsen 2018.

With one scan at ``t`` hours after administration and the dose-rate map ``Ḋ(t)`` (Gy/s),
the absorbed dose is approximated, per voxel, by ``D ≈ Ḋ(t) · f`` with

``hanscheid``  (Hänscheid et al. 2018 [1]_)
    ``f = 2t / ln 2`` — no kinetic parameter.  For mono-exponential kinetics of effective
    half-life T_eff the ratio to the true dose is ``2x·2^(−x)`` with ``x = t/T_eff``: exact
    at ``t = T_eff`` and ``t = 2 T_eff``, at most +6.15 % high between (at ``t = T_eff/ln 2``),
    within −10 % for ``0.764 ≤ x ≤ 2.437`` and within −20 % for ``0.611 ≤ x ≤ 2.815``, and
    far too low outside (x = 0.5: −29 %; x = 4: −50 %).  The authors recommend a scan at
    about 4 days after Lu-177 DOTATATE/DOTATOC, where T_eff of kidneys and most tumours lies
    in that window.
``madsen``  (Madsen et al. 2018 [2]_)
    ``f = e^(k t) / k`` with ``k = ln 2 / T_eff`` from a population effective half-life of
    the organ: exact for mono-exponential kinetics when T_eff is right.  A relative error
    ε of T_eff gives, to first order, a dose error ``ε·(1 − k t)``: none at ``t = T_eff/ln 2``
    (the optimal scan time), ``−ε`` for an early scan.

Population effective half-lives for Lu-177 DOTATATE (defaults, overridable per organ with
``--stp-teff NAME=HOURS``): kidneys 50 h, liver 70 h, spleen 70 h, tumours/lesions 90 h —
rounded population means of the ranges reported by Sandström et al. 2013 [3]_ (kidneys),
Garske et al. 2012 [4]_ and Hänscheid et al. 2018 [1]_; check them against the local
population.  A region is matched to a class by its name (``kidney_left`` → kidney,
``lesion_1_liver`` → tumour: lesion words first); regions without a population T_eff and
unlabelled voxels fall back to Hänscheid's factor, which needs none (stated in the report).

References
----------
.. [1] H. Hänscheid, C. Lapa, A. K. Buck, M. Lassmann, R. A. Werner, "Surrogate dose mapping
   after endoradiotherapy with 177Lu-DOTATATE/DOTATOC by a single measurement after 4
   days", J. Nucl. Med. 59 (2018) 75-81.
.. [2] M. T. Madsen, Y. Menda, T. M. O'Dorisio, M. S. O'Dorisio, "Technical Note: Single
   time point dose estimate for exponential clearance", Med. Phys. 45 (2018) 2318-2324.
.. [3] M. Sandström et al., "Individualized dosimetry of kidney and bone marrow in patients
   undergoing 177Lu-DOTA-octreotate treatment", J. Nucl. Med. 54 (2013) 33-41.
.. [4] U. Garske et al., "Minor changes in effective half-life during fractionated
   177Lu-octreotate therapy", Acta Oncol. 51 (2012) 86-96.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "ACCURACY",
    "POPULATION_TEFF_H",
    "STP_METHODS",
    "StpPlan",
    "hanscheid_factor_h",
    "hanscheid_relative_error",
    "madsen_factor_h",
    "madsen_relative_error",
    "organ_class",
    "parse_teff_overrides",
    "plan_stp",
]

STP_METHODS: tuple[str, ...] = ("hanscheid", "madsen")
#: population effective half-lives (h) of Lu-177 DOTATATE by organ class (module docstring)
POPULATION_TEFF_H: dict[str, float] = {"kidney": 50.0, "liver": 70.0, "spleen": 70.0,
                                       "tumour": 90.0}
POPULATION_SOURCE = ("Lu-177 DOTATATE population means, rounded: Sandström et al. JNM 54 "
                     "(2013) 33; Garske et al. Acta Oncol 51 (2012) 86; Hänscheid et al. JNM "
                     "59 (2018) 75")
#: name fragments of each organ class, tried in this order (lesions first)
_CLASS_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tumour", ("lesion", "tumour", "tumor", "metast", "nodule")),
    ("kidney", ("kidney", "renal")),
    ("liver", ("liver", "hepat")),
    ("spleen", ("spleen", "splen")),
)
ACCURACY = {
    "hanscheid": "Hänscheid et al., J Nucl Med 59 (2018) 75: D = Ḋ(t)·2t/ln2; for mono-"
                 "exponential kinetics exact at t = T_eff and t = 2·T_eff, at most +6.2 % "
                 "between, within -10 % for 0.76 ≤ t/T_eff ≤ 2.44 (-29 % at t = T_eff/2, "
                 "-50 % at t = 4·T_eff); scan about 4 days after Lu-177 DOTATATE/TOC.",
    "madsen": "Madsen et al., Med Phys 45 (2018) 2318: D = Ḋ(t)·e^(kt)/k, k = ln2/T_eff "
              "(population T_eff): exact for mono-exponential kinetics when T_eff is right; "
              "a relative T_eff error ε gives a dose error ≈ ε·(1 - kt), none at "
              "t = T_eff/ln2.",
}


def hanscheid_factor_h(hours: float) -> float:
    """Hänscheid's time factor ``2t/ln 2`` (h) for a scan at ``hours`` after administration."""
    return 2.0 * float(hours) / math.log(2.0)


def madsen_factor_h(hours: float, t_eff_h: float) -> float:
    """Madsen's time factor ``e^(kt)/k`` (h), ``k = ln 2 / T_eff`` (T_eff in h)."""
    k = math.log(2.0) / float(t_eff_h)
    return math.exp(k * float(hours)) / k


def hanscheid_relative_error(hours: float, t_eff_h: float) -> float:
    """(Hänscheid − true)/true for mono-exponential kinetics: ``2x·2^(−x) − 1``, x = t/T_eff."""
    x = float(hours) / float(t_eff_h)
    return 2.0 * x * 2.0 ** (-x) - 1.0


def madsen_relative_error(hours: float, t_eff_true_h: float, t_eff_used_h: float) -> float:
    """(Madsen − true)/true for mono-exponential kinetics when T_eff used ≠ true T_eff."""
    return madsen_factor_h(hours, t_eff_used_h) / madsen_factor_h(hours, t_eff_true_h) - 1.0


def organ_class(name: str) -> str | None:
    """Organ class (``kidney``, ``liver``, ``spleen``, ``tumour``) of a region name, or None."""
    low = name.lower()
    for cls, words in _CLASS_WORDS:
        if any(w in low for w in words):
            return cls
    return None


def parse_teff_overrides(items: Sequence[str] | Mapping[str, float] | None) -> dict[str, float]:
    """``["kidney=50", "lesion_1=120"]`` → ``{"kidney": 50.0, "lesion_1": 120.0}`` (h > 0).

    A key is an organ class (kidney, liver, spleen, tumour) or an exact region name.
    """
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else [
        tuple(s.split("=", 1)) if "=" in s else (s, "") for s in items]
    out = {}
    for key, value in pairs:
        key = str(key).strip()
        try:
            hours = float(value)
        except ValueError:
            raise InputError(f"--stp-teff {key}={value}: expected NAME=HOURS, e.g. kidney=50"
                             ) from None
        if not key or not (math.isfinite(hours) and hours > 0):
            raise InputError(f"--stp-teff {key}={value}: expected NAME=HOURS with HOURS > 0")
        out[key] = hours
    return out


@dataclass
class StpPlan:
    """The STP factors of every region.

    Attributes
    ----------
    method : str
    hours : float
        Scan time after administration (h).
    regions : dict
        Region name → ``{"factor_h", "t_eff_h", "basis"}`` (basis: ``population <class>``,
        ``--stp-teff``, or ``hanscheid fallback``).
    default_factor_h : float
        Factor of unlabelled voxels (h).
    """

    method: str
    hours: float
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_factor_h: float = 0.0

    def factor_map(self, labels: np.ndarray | None, values: Mapping[int, str],
                   shape: tuple[int, ...]) -> np.ndarray:
        """Factor (s) per voxel from a painted label map (label value → region name)."""
        out = np.full(shape, self.default_factor_h * 3600.0, dtype=np.float64)
        if labels is not None:
            for value, name in values.items():
                out[labels == value] = self.regions[name]["factor_h"] * 3600.0
        return out

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "hours": self.hours, "accuracy": ACCURACY[self.method],
                "regions": self.regions, "unlabelled_factor_h": self.default_factor_h,
                "population_t_eff_h": dict(POPULATION_TEFF_H),
                "population_source": POPULATION_SOURCE}


def plan_stp(method: str, hours: float | None, names: Sequence[str],
             overrides: Mapping[str, float] | None = None) -> StpPlan:
    """STP factors for regions ``names`` scanned at ``hours`` after administration.

    Raises
    ------
    InputError
        Unknown method, missing or non-positive scan time, an override that names neither
        an organ class nor a region.
    """
    if method not in STP_METHODS:
        raise InputError(f"--stp must be one of {', '.join(STP_METHODS)}, got {method!r}")
    if hours is None or not (math.isfinite(float(hours)) and float(hours) > 0):
        raise InputError("--stp needs the scan time: give one --timepoint SPECT:HOURS with "
                         "HOURS > 0 after administration")
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in POPULATION_TEFF_H and key not in names:
            raise InputError(f"--stp-teff {key}=...: neither an organ class "
                             f"({', '.join(POPULATION_TEFF_H)}) nor a region name "
                             f"({', '.join(names) or 'no labels'})")
    t = float(hours)
    plan = StpPlan(method, t, default_factor_h=hanscheid_factor_h(t))
    for name in names:
        cls = organ_class(name)
        if name in overrides:
            teff, basis = overrides[name], "--stp-teff"
        elif cls is not None and cls in overrides:
            teff, basis = overrides[cls], f"--stp-teff {cls}"
        elif cls is not None:
            teff, basis = POPULATION_TEFF_H[cls], f"population {cls}"
        else:
            teff, basis = None, None
        if method == "hanscheid":
            plan.regions[name] = {"factor_h": hanscheid_factor_h(t), "t_eff_h": None,
                                  "basis": "no kinetic parameter"}
        elif teff is None:
            plan.regions[name] = {"factor_h": hanscheid_factor_h(t), "t_eff_h": None,
                                  "basis": "hanscheid fallback (no population T_eff)"}
        else:
            plan.regions[name] = {"factor_h": madsen_factor_h(t, teff), "t_eff_h": teff,
                                  "basis": basis}
    return plan
