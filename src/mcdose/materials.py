"""Materials: elemental compositions, CT number → density calibrations, density → material.

The Monte Carlo engine needs, for every voxel, a mass density (g/cm³) and a material (an
index into a short list of compositions with their own cross sections and stopping powers).
This module provides the compositions (:data:`MATERIALS`), the conversion of CT numbers to
density (:func:`hu_to_density`, :class:`HUCalibration`) and the segmentation of density into
materials (:class:`MaterialAssignment`, :func:`assign_materials`).

Nothing here touches xraydb at import time; atomic weights are looked up lazily the first
time a derived quantity (electrons per gram, ...) is requested.

References
----------
.. [1] ICRU Report 44, "Tissue Substitutes in Radiation Dosimetry and Measurement" (1989) and
   ICRU Report 46, "Photon, Electron, Proton and Neutron Interaction Data for Body Tissues"
   (1992): elemental compositions of adult body tissues (Woodard & White 1986).
.. [2] J. H. Hubbell and S. M. Seltzer, "Tables of X-Ray Mass Attenuation Coefficients and Mass
   Energy-Absorption Coefficients", NIST Standard Reference Database 126 (NISTIR 5632, 1995,
   updated 2004), Table 2: the ICRU-44 compositions as used here, with densities and mean
   excitation energies.
.. [3] ICRU Report 37, "Stopping Powers for Electrons and Positrons" (1984): mean excitation
   energies (water 75.0 eV, dry air 85.7 eV, ICRU four-component soft tissue 74.9 eV) and the
   Bragg-additivity rule with the values for atoms bound in condensed compounds
   (H 19.2, C 81.0, N 82.0, O 106.0, F 112.0, Cl 180.0 eV; other elements 1.13 × their
   elemental I), see :func:`bragg_mean_excitation_energy`.
.. [4] ICRP Publication 110, "Adult Reference Computational Phantoms" (2009): tissue densities
   (e.g. inflated lung ≈ 0.26–0.38 g/cm³, adipose 0.95, muscle 1.05, cortical bone 1.92).
.. [5] Z. Li, J. A. Fessler, J. K. Mikell, S. J. Wilderman and Y. K. Dewaraja, "DblurDoseNet:
   A deep residual learning network for voxel radionuclide dosimetry compensating for single-
   photon emission computerized tomography imaging resolution", Med. Phys. 49, 1216 (2022):
   the bilinear CT calibration used by :func:`hu_to_density` ("paper").
"""

from __future__ import annotations

import csv
import functools
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "AIR_DENSITY_G_CM3",
    "DEFAULT_ASSIGNMENT",
    "HUCalibration",
    "MATERIALS",
    "Material",
    "MaterialAssignment",
    "assign_materials",
    "atomic_number",
    "atomic_weight",
    "bragg_mean_excitation_energy",
    "get_material",
    "hu_to_density",
]

#: Lowest density returned by the CT calibrations, g/cm³ (dry air near sea level,
#: 1.205e-3 g/cm³ [2], rounded).
AIR_DENSITY_G_CM3: float = 0.0012

_AVOGADRO = 6.02214076e23  # mol⁻¹, CODATA 2018 (exact); repeated to keep this module light

# Element symbols Z = 1 ... 92.
_SYMBOLS: tuple[str, ...] = tuple(
    """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As
    Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd
    Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U""".split()
)
_Z_OF: dict[str, int] = {s: i + 1 for i, s in enumerate(_SYMBOLS)}


def atomic_number(symbol: str) -> int:
    """Atomic number Z of an element symbol ("O" → 8); :class:`InputError` if unknown."""
    try:
        return _Z_OF[symbol]
    except KeyError:
        raise InputError(f"unknown element symbol {symbol!r} (use e.g. 'H', 'C', 'Ca')") from None


@functools.cache
def atomic_weight(symbol: str) -> float:
    """Standard atomic weight A of an element in g/mol (as tabulated by xraydb).

    Parameters
    ----------
    symbol : str
        Element symbol, e.g. ``"O"``.

    Returns
    -------
    float
        Atomic weight in g/mol (xraydb's table, e.g. H 1.0078, O 15.999).
    """
    atomic_number(symbol)  # validates
    import xraydb

    return float(xraydb.atomic_mass(symbol))


# ICRU Report 37 (1984), Table 2.11 / Seltzer & Berger (1982): I values (eV) for atoms bound
# in condensed compounds; elements not listed use 1.13 × their elemental I value.
_I_BOUND_CONDENSED_EV: dict[str, float] = {
    "H": 19.2,
    "C": 81.0,
    "N": 82.0,
    "O": 106.0,
    "F": 112.0,
    "Cl": 180.0,
}
# Elemental I values (eV), ICRU Report 37 Table 2.1 (as used by ESTAR / NIST SRD 126 Table 1).
_I_ELEMENTAL_EV: dict[str, float] = {
    "H": 19.2,
    "He": 41.8,
    "C": 78.0,
    "N": 82.0,
    "O": 95.0,
    "F": 115.0,
    "Na": 149.0,
    "Mg": 156.0,
    "Al": 166.0,
    "Si": 173.0,
    "P": 173.0,
    "S": 180.0,
    "Cl": 174.0,
    "Ar": 188.0,
    "K": 190.0,
    "Ca": 191.0,
    "Fe": 286.0,
    "Cu": 322.0,
    "Zn": 330.0,
    "I": 491.0,
}


def bragg_mean_excitation_energy(mass_fractions: Mapping[str, float]) -> float:
    """Mean excitation energy of a condensed mixture by the Bragg additivity rule (ICRU 37).

    ``ln I = Σ_i w_i (Z_i/A_i) ln I_i / Σ_i w_i (Z_i/A_i)`` with the ICRU 37 values for atoms
    bound in condensed compounds: H 19.2, C 81.0, N 82.0, O 106.0, F 112.0, Cl 180.0 eV, and
    1.13 × the elemental I value for the other elements.  This reproduces the I values that
    NIST SRD 126 Table 2 lists for the ICRU-44 tissues (e.g. adipose 64.8 eV, cortical bone
    112.0 eV) to 0.1 eV.

    Parameters
    ----------
    mass_fractions : mapping of str to float
        Element symbol → mass fraction (need not be normalised).

    Returns
    -------
    float
        Mean excitation energy in eV.

    References
    ----------
    .. [1] ICRU Report 37 (1984), section 2.4 and Table 2.11.
    .. [2] S. M. Seltzer and M. J. Berger, Int. J. Appl. Radiat. Isot. 33, 1189 (1982).
    """
    num = 0.0
    den = 0.0
    for el, w in mass_fractions.items():
        if el in _I_BOUND_CONDENSED_EV:
            i_ev = _I_BOUND_CONDENSED_EV[el]
        elif el in _I_ELEMENTAL_EV:
            i_ev = 1.13 * _I_ELEMENTAL_EV[el]
        else:
            raise InputError(
                f"no ICRU 37 mean excitation energy tabulated here for element {el!r}; "
                "give mean_excitation_energy_eV explicitly"
            )
        za = w * atomic_number(el) / atomic_weight(el)
        num += za * math.log(i_ev)
        den += za
    if den <= 0.0:
        raise InputError("mass fractions must contain at least one positive entry")
    return math.exp(num / den)


@dataclass(frozen=True)
class Material:
    """A homogeneous material: nominal density, elemental composition, mean excitation energy.

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"soft_tissue"``.
    density_g_cm3 : float
        Nominal mass density in g/cm³.  Voxels carry their own density; the nominal value is
        used for kernels and for the density-effect correction of the stopping power.
    mass_fractions : mapping of str to float
        Element symbol → mass fraction.  Must sum to 1 within 1e-3; it is renormalised to
        exactly 1 and stored read-only, ordered by atomic number.
    mean_excitation_energy_eV : float
        Mean excitation energy I in eV (ICRU 37).
    source : str
        Citation for the composition, density and I value.

    Notes
    -----
    Derived quantities (:attr:`z_over_a`, :attr:`electrons_per_gram`,
    :attr:`atoms_per_gram`) need atomic weights, which are read from xraydb on first use.
    """

    name: str
    density_g_cm3: float
    mass_fractions: Mapping[str, float] = field(hash=False)
    mean_excitation_energy_eV: float
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("material name must be a non-empty string")
        rho = float(self.density_g_cm3)
        if not (math.isfinite(rho) and rho > 0.0):
            raise InputError(f"material {self.name!r}: density_g_cm3 must be > 0, got {rho}")
        i_ev = float(self.mean_excitation_energy_eV)
        if not (math.isfinite(i_ev) and i_ev > 0.0):
            raise InputError(
                f"material {self.name!r}: mean_excitation_energy_eV must be > 0, got {i_ev}"
            )
        fractions = dict(self.mass_fractions)
        if not fractions:
            raise InputError(f"material {self.name!r}: mass_fractions is empty")
        for el, w in fractions.items():
            atomic_number(el)
            w = float(w)
            if not (math.isfinite(w) and w >= 0.0):
                raise InputError(
                    f"material {self.name!r}: mass fraction of {el} must be >= 0, got {w}"
                )
        total = sum(float(w) for w in fractions.values())
        if abs(total - 1.0) > 1e-3:
            raise InputError(
                f"material {self.name!r}: mass fractions sum to {total:.6f}, expected 1"
            )
        ordered = {
            el: float(fractions[el]) / total
            for el in sorted(fractions, key=atomic_number)
            if fractions[el] > 0.0
        }
        object.__setattr__(self, "density_g_cm3", rho)
        object.__setattr__(self, "mean_excitation_energy_eV", i_ev)
        object.__setattr__(self, "mass_fractions", types.MappingProxyType(ordered))

    # -- derived quantities -------------------------------------------------------------

    @property
    def elements(self) -> tuple[str, ...]:
        """Element symbols, ordered by atomic number."""
        return tuple(self.mass_fractions)

    @property
    def atomic_numbers(self) -> np.ndarray:
        """Atomic numbers Z of :attr:`elements` (int64 array)."""
        return np.array([atomic_number(el) for el in self.mass_fractions], dtype=np.int64)

    @property
    def weights(self) -> np.ndarray:
        """Mass fractions w_i of :attr:`elements` (float64 array, sums to 1)."""
        return np.array(list(self.mass_fractions.values()), dtype=np.float64)

    @property
    def atomic_weights(self) -> np.ndarray:
        """Atomic weights A_i of :attr:`elements` in g/mol (float64 array)."""
        return np.array([atomic_weight(el) for el in self.mass_fractions], dtype=np.float64)

    @property
    def z_over_a(self) -> float:
        """Σ_i w_i Z_i / A_i in mol/g (e.g. 0.5551 for water)."""
        return float(np.sum(self.weights * self.atomic_numbers / self.atomic_weights))

    @property
    def electrons_per_gram(self) -> float:
        """Number of electrons per gram, N_A Σ_i w_i Z_i / A_i (g⁻¹)."""
        return _AVOGADRO * self.z_over_a

    @property
    def atoms_per_gram(self) -> dict[str, float]:
        """Number of atoms of each element per gram of material, N_A w_i / A_i (g⁻¹)."""
        return {el: _AVOGADRO * w / atomic_weight(el) for el, w in self.mass_fractions.items()}

    @property
    def electron_density_per_cm3(self) -> float:
        """Electrons per cm³ at the nominal density (cm⁻³)."""
        return self.electrons_per_gram * self.density_g_cm3


_NIST126 = (
    "NIST SRD 126 (Hubbell & Seltzer 2004) Table 2; composition ICRU Report 44 (1989) = "
    "ICRU Report 46 (1992) adult tissue"
)

#: The built-in materials, keyed by name.  Compositions from ICRU Reports 44/46 as tabulated
#: in NIST SRD 126 Table 2; mean excitation energies from ICRU Report 37 where the material is
#: one of its tabulated substances (water, air, ICRU four-component soft tissue), otherwise by
#: the ICRU 37 Bragg-additivity rule (:func:`bragg_mean_excitation_energy`; equal to the
#: NIST SRD 126 values).
MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material(
            name="air",
            density_g_cm3=1.20479e-3,
            mass_fractions={"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827},
            mean_excitation_energy_eV=85.7,
            source="Air, dry (near sea level): NIST SRD 126 Table 2 / ESTAR; I = 85.7 eV ICRU 37",
        ),
        Material(
            name="lung",
            density_g_cm3=0.26,
            mass_fractions={
                "H": 0.103,
                "C": 0.105,
                "N": 0.031,
                "O": 0.749,
                "Na": 0.002,
                "P": 0.002,
                "S": 0.003,
                "Cl": 0.003,
                "K": 0.002,
            },
            mean_excitation_energy_eV=75.2,
            source=(
                f"Lung tissue (ICRU-44), {_NIST126}; inflated-lung density 0.26 g/cm3 "
                "(ICRU 44/46; ICRP 110 lists 0.38 g/cm3 including blood); I = 75.2 eV Bragg/ICRU 37"
            ),
        ),
        Material(
            name="adipose",
            density_g_cm3=0.95,
            mass_fractions={
                "H": 0.114,
                "C": 0.598,
                "N": 0.007,
                "O": 0.278,
                "Na": 0.001,
                "S": 0.001,
                "Cl": 0.001,
            },
            mean_excitation_energy_eV=64.8,
            source=f"Adipose tissue (ICRU-44), {_NIST126}; I = 64.8 eV Bragg/ICRU 37",
        ),
        Material(
            name="soft_tissue",
            density_g_cm3=1.0,
            mass_fractions={"H": 0.101174, "C": 0.111, "N": 0.026, "O": 0.761826},
            mean_excitation_energy_eV=74.9,
            source=(
                "Tissue, soft (ICRU four-component): ICRU Report 37 / ESTAR / NIST SRD 126 "
                "Table 2; I = 74.9 eV ICRU 37"
            ),
        ),
        Material(
            name="water",
            density_g_cm3=1.0,
            mass_fractions={"H": 0.111898, "O": 0.888102},
            mean_excitation_energy_eV=75.0,
            source="Water, liquid: NIST SRD 126 Table 2 / ESTAR; I = 75.0 eV ICRU 37",
        ),
        Material(
            name="muscle",
            density_g_cm3=1.05,
            mass_fractions={
                "H": 0.102,
                "C": 0.143,
                "N": 0.034,
                "O": 0.710,
                "Na": 0.001,
                "P": 0.002,
                "S": 0.003,
                "Cl": 0.001,
                "K": 0.004,
            },
            mean_excitation_energy_eV=74.6,
            source=f"Muscle, skeletal (ICRU-44), {_NIST126}; I = 74.6 eV Bragg/ICRU 37",
        ),
        Material(
            name="cortical_bone",
            density_g_cm3=1.92,
            mass_fractions={
                "H": 0.034,
                "C": 0.155,
                "N": 0.042,
                "O": 0.435,
                "Na": 0.001,
                "Mg": 0.002,
                "P": 0.103,
                "S": 0.003,
                "Ca": 0.225,
            },
            mean_excitation_energy_eV=112.0,
            source=f"Bone, cortical (ICRU-44), {_NIST126}; I = 112.0 eV Bragg/ICRU 37",
        ),
    )
}


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def get_material(name: str | Material) -> Material:
    """Look up a built-in material by name (case-insensitive; '-' and ' ' read as '_').

    Parameters
    ----------
    name : str or Material
        ``"water"``, ``"soft tissue"``, ... A :class:`Material` is returned unchanged.

    Returns
    -------
    Material

    Raises
    ------
    InputError
        If the name is unknown; the message lists the choices.
    """
    if isinstance(name, Material):
        return name
    if not isinstance(name, str):
        raise InputError(f"material must be a name or a Material, got {type(name).__name__}")
    key = _normalise_name(name)
    try:
        return MATERIALS[key]
    except KeyError:
        raise InputError(
            f"unknown material {name!r}; choose one of: {', '.join(MATERIALS)}"
        ) from None


# ---------------------------------------------------------------------------------------
# CT number → density
# ---------------------------------------------------------------------------------------


class HUCalibration:
    """A tabulated, piecewise-linear CT-number → mass-density calibration.

    Parameters
    ----------
    hu : sequence of float
        CT numbers (HU), strictly increasing, at least two points.
    density : sequence of float
        Mass densities in g/cm³ at those CT numbers, finite and >= 0.

    Notes
    -----
    Between the points the density is interpolated linearly; outside the table it is
    extrapolated linearly with the slope of the first / last segment, and the result is
    clipped below at :data:`AIR_DENSITY_G_CM3`.  Calling the object on an array of HU returns
    float32 densities of the same shape.

    Examples
    --------
    >>> cal = HUCalibration([-1000, 0, 1000], [0.0012, 1.0, 1.6])
    >>> float(cal(500))
    1.2999999523162842
    """

    def __init__(self, hu: Sequence[float] | np.ndarray, density: Sequence[float] | np.ndarray):
        try:
            h = np.array(hu, dtype=np.float64).ravel()
            d = np.array(density, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise InputError(f"HU calibration: values must be numbers ({exc})") from None
        if h.size != d.size:
            raise InputError(
                f"HU calibration: {h.size} HU values but {d.size} densities; need one each"
            )
        if h.size < 2:
            raise InputError("HU calibration: need at least two (HU, density) points")
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(d))):
            raise InputError("HU calibration: HU and density values must be finite")
        if np.any(np.diff(h) <= 0):
            raise InputError("HU calibration: HU values must be strictly increasing")
        if np.any(d < 0):
            raise InputError("HU calibration: densities must be >= 0 g/cm3")
        h.setflags(write=False)
        d.setflags(write=False)
        self.hu = h
        self.density_g_cm3 = d

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> HUCalibration:
        """Read a calibration from a CSV file with the header ``hu,density_g_cm3``.

        Blank lines and lines starting with ``#`` are ignored.

        Parameters
        ----------
        path : str or path-like
            The CSV file.

        Returns
        -------
        HUCalibration

        Raises
        ------
        InputError
            Missing file, wrong header, non-numeric entries, or an invalid table; the
            message names the file (and line).
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise InputError(f"HU calibration file not found: {p}") from None
        except OSError as exc:
            raise InputError(f"cannot read HU calibration file {p}: {exc}") from None
        rows = [
            (lineno, row)
            for lineno, row in enumerate(csv.reader(text.splitlines()), start=1)
            if row and "".join(row).strip() and not row[0].lstrip().startswith("#")
        ]
        if not rows:
            raise InputError(f"HU calibration file {p} is empty")
        header = [c.strip().lower() for c in rows[0][1]]
        if header != ["hu", "density_g_cm3"]:
            raise InputError(
                f"HU calibration file {p}: header must be 'hu,density_g_cm3', "
                f"got {','.join(rows[0][1])!r}"
            )
        hu: list[float] = []
        rho: list[float] = []
        for lineno, row in rows[1:]:
            if len(row) != 2:
                raise InputError(
                    f"HU calibration file {p}, line {lineno}: expected 2 columns, got {len(row)}"
                )
            try:
                hu.append(float(row[0]))
                rho.append(float(row[1]))
            except ValueError:
                raise InputError(
                    f"HU calibration file {p}, line {lineno}: not numbers: {','.join(row)!r}"
                ) from None
        try:
            return cls(hu, rho)
        except InputError as exc:
            raise InputError(f"HU calibration file {p}: {exc}") from None

    def __call__(self, hu: np.ndarray | float) -> np.ndarray:
        """Density in g/cm³ (float32, same shape as ``hu``) for CT numbers ``hu``."""
        x = np.asarray(hu, dtype=np.float64)
        h, d = self.hu, self.density_g_cm3
        out = np.interp(x, h, d)
        lo_slope = (d[1] - d[0]) / (h[1] - h[0])
        hi_slope = (d[-1] - d[-2]) / (h[-1] - h[-2])
        out = np.where(x < h[0], d[0] + lo_slope * (x - h[0]), out)
        out = np.where(x > h[-1], d[-1] + hi_slope * (x - h[-1]), out)
        return np.maximum(out, AIR_DENSITY_G_CM3).astype(np.float32)

    def __repr__(self) -> str:
        return f"HUCalibration(hu={self.hu.tolist()}, density={self.density_g_cm3.tolist()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HUCalibration):
            return NotImplemented
        return bool(
            np.array_equal(self.hu, other.hu)
            and np.array_equal(self.density_g_cm3, other.density_g_cm3)
        )

    __hash__ = None  # type: ignore[assignment]


def hu_to_density(hu: np.ndarray | float, calibration: str | HUCalibration = "paper") -> np.ndarray:
    """Convert CT numbers (HU) to mass density (g/cm³, float32).

    Parameters
    ----------
    hu : array_like
        CT numbers in Hounsfield units, any shape (e.g. ``(z, y, x)`` int16).
    calibration : {"paper"} or HUCalibration
        ``"paper"`` (default) is the bilinear calibration of Li, Fessler et al. (DblurDoseNet):
        ``ρ = 0.00108·HU + 1.02351`` for HU ≤ 0 and ``ρ = 0.00069·HU + 1.03107`` for HU > 0.
        An :class:`HUCalibration` is applied as tabulated.

    Returns
    -------
    numpy.ndarray
        Density in g/cm³, float32, same shape as ``hu``, clipped below at
        :data:`AIR_DENSITY_G_CM3` (0.0012 g/cm³).

    Raises
    ------
    InputError
        Unknown calibration, or non-finite CT numbers.

    References
    ----------
    .. [1] Z. Li et al., Med. Phys. 49, 1216 (2022) (DblurDoseNet), section 2.
    """
    x = np.asarray(hu)
    if x.dtype.kind not in "biuf":
        raise InputError(f"CT numbers must be numeric, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise InputError("CT numbers must be finite (found NaN or inf)")
    if isinstance(calibration, HUCalibration):
        return calibration(x)
    if isinstance(calibration, str) and calibration.strip().lower() == "paper":
        xf = x.astype(np.float32, copy=False)
        rho = np.where(
            xf <= 0,
            np.float32(0.00108) * xf + np.float32(1.02351),
            np.float32(0.00069) * xf + np.float32(1.03107),
        )
        return np.maximum(rho, np.float32(AIR_DENSITY_G_CM3)).astype(np.float32, copy=False)
    raise InputError(
        f"unknown CT calibration {calibration!r}; use 'paper' or an HUCalibration "
        "(e.g. HUCalibration.from_csv(path))"
    )


def density_to_hu(
    density: np.ndarray | float, calibration: str | HUCalibration = "paper"
) -> np.ndarray:
    """Invert :func:`hu_to_density`: mass density (g/cm³) to CT numbers (HU, float32).

    Used to write a CT image for a virtual patient.  The paper's bilinear calibration has a
    gap between 1.02351 (HU = 0⁻) and 1.03107 g/cm³ (HU = 0⁺); densities in the gap map to
    HU 0.  Results are clipped to [-1024, 3071] (the 12-bit CT range).

    Parameters
    ----------
    density : array_like
        Mass density, g/cm³.
    calibration : {"paper"} or HUCalibration
        As in :func:`hu_to_density`; a tabulated calibration is inverted by interpolation.

    Returns
    -------
    numpy.ndarray
        CT numbers, HU, float32.
    """
    rho = np.asarray(density, dtype=np.float64)
    if isinstance(calibration, HUCalibration):
        hu = np.interp(rho, calibration.density_g_cm3, calibration.hu)
    elif isinstance(calibration, str) and calibration.strip().lower() == "paper":
        hu = np.where(
            rho <= 1.02351,
            (rho - 1.02351) / 0.00108,
            np.where(rho >= 1.03107, (rho - 1.03107) / 0.00069, 0.0),
        )
    else:
        raise InputError(f"unknown CT calibration {calibration!r}; use 'paper' or an HUCalibration")
    return np.clip(hu, -1024.0, 3071.0).astype(np.float32)


# ---------------------------------------------------------------------------------------
# density → material
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaterialAssignment:
    """Segmentation of mass density into materials by density thresholds.

    A voxel of density ρ gets material ``names[k]`` for the first k with
    ``ρ < upper_density_g_cm3[k]``.

    Parameters
    ----------
    names : tuple of str
        Material names (keys of :data:`MATERIALS`), at most 255.
    upper_density_g_cm3 : tuple of float
        Exclusive upper density bound of each material, g/cm³; strictly increasing, the last
        one ``inf``.

    Raises
    ------
    InputError
        Unknown names, mismatched lengths, non-increasing thresholds or a last bound that is
        not infinite.
    """

    names: tuple[str, ...]
    upper_density_g_cm3: tuple[float, ...]

    def __post_init__(self) -> None:
        names = tuple(_normalise_name(n) for n in self.names)
        upper = tuple(float(u) for u in self.upper_density_g_cm3)
        if not names:
            raise InputError("material assignment needs at least one material")
        if len(names) > 255:
            raise InputError("material assignment: at most 255 materials (uint8 indices)")
        if len(names) != len(upper):
            raise InputError(
                f"material assignment: {len(names)} names but {len(upper)} density thresholds"
            )
        for n in names:
            get_material(n)
        if any(math.isnan(u) for u in upper) or any(
            b <= a for a, b in zip(upper[:-1], upper[1:], strict=True)
        ):
            raise InputError("material assignment: density thresholds must strictly increase")
        if upper[-1] != math.inf:
            raise InputError("material assignment: the last density threshold must be inf")
        if upper[0] <= 0:
            raise InputError("material assignment: density thresholds must be > 0 g/cm3")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "upper_density_g_cm3", upper)

    @property
    def materials(self) -> tuple[Material, ...]:
        """The :class:`Material` objects, in index order."""
        return tuple(MATERIALS[n] for n in self.names)


#: Default density → material segmentation (upper bounds, g/cm³, exclusive):
#:
#: - ``air`` below 0.05: with the paper's calibration HU ≲ −901.  Lung parenchyma
#:   (HU ≈ −900 … −500, ρ ≈ 0.05 … 0.48) must *not* be called air: its electron density per
#:   gram is 10 % higher (Z/A 0.550 vs 0.499), which changes mass stopping powers by 10 %.
#: - ``lung`` below 0.85 (HU ≈ −160): inflated lung 0.26 g/cm³ (ICRU 44/46), up to
#:   partial-volume voxels with blood and vessels.
#: - ``adipose`` below 0.985 (HU ≈ −36): adipose tissue 0.95 g/cm³ (ICRU 44; CT fat
#:   −150 … −50 HU maps to 0.86 … 0.97 g/cm³).
#: - ``soft_tissue`` below 1.2 (HU ≈ +245): soft tissues and organs 1.0 … 1.07 g/cm³, including
#:   contrast-enhanced parenchyma (≲ 200 HU).
#: - ``cortical_bone`` above (trabecular bone is thereby given cortical-bone composition; the
#:   voxel keeps its own, lower density).
DEFAULT_ASSIGNMENT = MaterialAssignment(
    names=("air", "lung", "adipose", "soft_tissue", "cortical_bone"),
    upper_density_g_cm3=(0.05, 0.85, 0.985, 1.2, math.inf),
)


def assign_materials(
    density: np.ndarray, assignment: MaterialAssignment = DEFAULT_ASSIGNMENT
) -> np.ndarray:
    """Material index of every voxel from its density.

    Parameters
    ----------
    density : array_like
        Mass density in g/cm³, any shape; finite and >= 0.
    assignment : MaterialAssignment, optional
        Thresholds and names (default :data:`DEFAULT_ASSIGNMENT`).

    Returns
    -------
    numpy.ndarray
        uint8 array of the same shape: index into ``assignment.names``.

    Raises
    ------
    InputError
        Non-finite or negative densities.
    """
    rho = np.asarray(density)
    if rho.dtype.kind not in "biuf":
        raise InputError(f"density must be numeric, got dtype {rho.dtype}")
    if rho.size and (not np.all(np.isfinite(rho)) or np.min(rho) < 0):
        raise InputError("density must be finite and >= 0 g/cm3")
    # Compare in the density's own float precision so that "ρ < bound" means what it says.
    bound_dtype = rho.dtype if rho.dtype.kind == "f" else np.float64
    bounds = np.asarray(assignment.upper_density_g_cm3[:-1], dtype=bound_dtype)
    return np.searchsorted(bounds, rho, side="right").astype(np.uint8)
