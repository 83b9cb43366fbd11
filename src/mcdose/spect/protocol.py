"""The SPECT acquisition and reconstruction protocol, and the paper's count levels.

The defaults follow the MIRD 26 / MRTDosimetry Lu-177 protocol (128×128 matrix of 4.7952 mm
pixels, 208.4 keV photopeak, medium-energy collimator) and the residual-CNN paper (128 views,
OSEM 16 iterations × 4 subsets with attenuation and collimator-detector response, four total
count levels).  See ``docs/spect.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from mcdose.errors import InputError

#: Total counts of the paper's four simulated acquisitions (Li et al., DblurDoseNet, §II).
PAPER_COUNT_LEVELS: tuple[float, ...] = (1.9e7, 5.5e6, 4.4e6, 3.0e6)

#: FWHM = 2·sqrt(2·ln 2)·σ for a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclasses.dataclass(frozen=True)
class SpectProtocol:
    """Acquisition and reconstruction parameters of a simulated SPECT scan.

    The collimator-detector response (CDR) is a Gaussian whose FWHM grows with the distance
    ``d`` from the collimator face,

    ``FWHM(d) = sqrt(R_i² + (a + b·d)²)`` with ``R_i = intrinsic_fwhm_mm``,
    ``a = collimator_fwhm_at_face_mm`` and ``b = collimator_fwhm_slope``:

    the geometric model of a parallel-hole collimator (hole diameter ``D``, effective length
    ``L_eff = L − 2/μ_Pb``): ``FWHM_geo(d) = D + D·d / L_eff``, as PyTomography's
    ``get_psfmeta_from_scanner_params`` builds it.  The defaults are the Siemens Symbia/Intevo
    medium-energy (MELP) collimator of the SIMIND collimator database shipped with
    PyTomography (code ``SY-ME``: hexagonal holes, D = 2.94 mm, L = 40.64 mm), lead
    μ = 1.028 mm⁻¹ at 208.4 keV (xraydb, Elam tables), so ``L_eff`` = 38.69 mm and slope
    D/L_eff = 0.07598; intrinsic resolution 3.9 mm FWHM at 140 keV scaled by E^(-1/2) to
    3.20 mm at 208.4 keV.  The system FWHM is then 11.0 mm at 10 cm, inside the 9–13 mm that
    MIRD 26 quotes for ME/MEGP collimators.

    Parameters
    ----------
    views
        Number of projection angles over 360° (paper: 128; MIRD 26: 120).
    pixel_mm
        Projection pixel and reconstruction voxel size in mm (MIRD 26: 4.7952 mm).
    matrix
        Transaxial matrix size of the reconstruction grid; ``None`` chooses the smallest
        square grid that covers the case (a 512 × 0.98 mm case gives 105).  A fixed size
        (e.g. the clinical 128) must cover the case.
    energy_keV
        Photopeak energy (Lu-177: 208.4 keV) at which the attenuation map is computed.
    collimator
        Name of the collimator model, for the record.
    intrinsic_fwhm_mm, collimator_fwhm_at_face_mm, collimator_fwhm_slope
        CDR parameters (see above); FWHM in mm, slope in mm per mm of distance.
    orbit_radius_mm
        Radius of the circular orbit (collimator face to rotation axis) in mm; ``None`` puts
        the collimator ``orbit_clearance_mm`` outside the body's largest radial extent.
    orbit_clearance_mm
        Gap between the body and the collimator face for the automatic orbit, in mm.
    iterations, subsets
        OSEM iterations and subsets (paper: 16 × 4).
    attenuation, psf
        Model attenuation / the CDR in both the simulation and the reconstruction.
    scatter
        Scatter model; only ``"none"`` is implemented: the projections hold primary photons
        only, so the reconstruction needs no scatter correction (the paper simulated scatter
        with SIMIND and corrected it; the residual after correction is not modelled here).
    fallback_distance_mm
        Source-collimator distance whose system FWHM the Gaussian fallback uses (mm).
    """

    views: int = 128
    pixel_mm: float = 4.7952
    matrix: int | None = None
    energy_keV: float = 208.4
    collimator: str = "medium-energy (Siemens MELP, SIMIND SY-ME)"
    intrinsic_fwhm_mm: float = 3.1965
    collimator_fwhm_at_face_mm: float = 2.94
    collimator_fwhm_slope: float = 0.075979
    orbit_radius_mm: float | None = None
    orbit_clearance_mm: float = 20.0
    iterations: int = 16
    subsets: int = 4
    attenuation: bool = True
    psf: bool = True
    scatter: str = "none"
    fallback_distance_mm: float = 150.0

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool = False) -> None:
            value = getattr(self, name)
            if integer and (isinstance(value, bool) or int(value) != value):
                raise InputError(f"SpectProtocol.{name} must be an integer, got {value!r}")
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"SpectProtocol.{name} must be positive, got {value!r}")

        for name in ("views", "iterations", "subsets"):
            positive(name, integer=True)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("pixel_mm", "energy_keV", "collimator_fwhm_slope", "fallback_distance_mm"):
            positive(name)
        for name in ("intrinsic_fwhm_mm", "collimator_fwhm_at_face_mm", "orbit_clearance_mm"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"SpectProtocol.{name} must be >= 0, got {value!r}")
        if self.matrix is not None:
            positive("matrix", integer=True)
            object.__setattr__(self, "matrix", int(self.matrix))
        if self.orbit_radius_mm is not None:
            positive("orbit_radius_mm")
        if self.subsets > self.views:
            raise InputError(
                f"SpectProtocol.subsets ({self.subsets}) exceeds the number of views ({self.views})"
            )
        if self.scatter != "none":
            raise InputError(f"SpectProtocol.scatter must be 'none', got {self.scatter!r}")

    def fwhm_mm(self, distance_mm: Any) -> np.ndarray:
        """System FWHM (mm) of the collimator-detector response at ``distance_mm`` from the face."""
        d = np.maximum(np.asarray(distance_mm, dtype=np.float64), 0.0)
        geometric = self.collimator_fwhm_at_face_mm + self.collimator_fwhm_slope * d
        return np.sqrt(self.intrinsic_fwhm_mm**2 + geometric**2)

    def sigma_mm(self, distance_mm: Any) -> np.ndarray:
        """Gaussian σ (mm) of the collimator-detector response at ``distance_mm``."""
        return self.fwhm_mm(distance_mm) / FWHM_PER_SIGMA

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in the ``spect`` dataset's attributes."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectProtocol:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`~mcdose.errors.InputError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown SpectProtocol field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> SpectProtocol:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def choose_count_level(seed: int, levels: tuple[float, ...] = PAPER_COUNT_LEVELS) -> float:
    """Pick one total count level for a case, reproducibly from its seed.

    Parameters
    ----------
    seed
        The case's seed (non-negative integer).
    levels
        Candidate total counts (default: the paper's four, :data:`PAPER_COUNT_LEVELS`).

    Returns
    -------
    float
        One element of ``levels``, the same for the same seed on every platform.
    """
    if not levels:
        raise InputError("choose_count_level needs at least one count level")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), 0x5BEC7])
    return float(levels[int(rng.integers(len(levels)))])
