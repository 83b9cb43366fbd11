"""Physical constants used by the transport physics (CODATA 2018), in the engine's units.

Energies are in keV and lengths in cm unless the name says otherwise.  The values are plain
module-level floats so that numba-compiled kernels (CPU and CUDA) can read them as
compile-time constants.

References
----------
.. [1] E. Tiesinga, P. J. Mohr, D. B. Newell and B. N. Taylor, "CODATA recommended values of
   the fundamental physical constants: 2018", Rev. Mod. Phys. 93, 025010 (2021);
   https://physics.nist.gov/cuu/Constants/ (exact SI-defining constants: N_A, e, h, c).
"""

from __future__ import annotations

import math

#: Electron rest energy m_e c² in keV (CODATA 2018: 0.51099895000 MeV).
ELECTRON_REST_ENERGY_KEV: float = 510.99895000

#: Classical electron radius r_e in cm (CODATA 2018: 2.8179403262e-15 m).
CLASSICAL_ELECTRON_RADIUS_CM: float = 2.8179403262e-13

#: Fine-structure constant α (CODATA 2018: 7.2973525693e-3).
FINE_STRUCTURE_CONSTANT: float = 7.2973525693e-3

#: Avogadro constant N_A in mol⁻¹ (exact since the 2019 SI redefinition).
AVOGADRO: float = 6.02214076e23

#: Bohr radius a₀ in cm (CODATA 2018: 5.29177210903e-11 m).
BOHR_RADIUS_CM: float = 5.29177210903e-9

#: Reduced Planck constant times c, ħc, in keV·cm (CODATA 2018: 197.3269804 MeV·fm).
HBAR_C_KEV_CM: float = 197.3269804e-10

#: Planck constant times c, hc, in keV·Å (CODATA 2018: 1239.84198 eV·nm); converts a photon
#: energy E in keV to an inverse wavelength 1/λ = E / hc in Å⁻¹.
HC_KEV_ANGSTROM: float = 12.3984198

#: Joules per keV (exact: the elementary charge 1.602176634e-19 C times 1e3).
KEV_TO_J: float = 1.602176634e-16

#: Thomson cross section σ_T = (8π/3) r_e² in cm² (CODATA 2018: 6.6524587321e-29 m²).
THOMSON_CROSS_SECTION_CM2: float = 6.6524587321e-25

#: 2π r_e² m_e c² N_A in MeV cm² mol⁻¹: the prefactor of the Bethe stopping-power formula
#: (multiply by Z/A in mol/g to obtain MeV cm²/g), ICRU Report 37 eq. (2.1).
BETHE_PREFACTOR_MEV_CM2_PER_MOL: float = (
    2.0 * math.pi * CLASSICAL_ELECTRON_RADIUS_CM**2 * ELECTRON_REST_ENERGY_KEV * 1e-3 * AVOGADRO
)

__all__ = [
    "AVOGADRO",
    "BETHE_PREFACTOR_MEV_CM2_PER_MOL",
    "BOHR_RADIUS_CM",
    "CLASSICAL_ELECTRON_RADIUS_CM",
    "ELECTRON_REST_ENERGY_KEV",
    "FINE_STRUCTURE_CONSTANT",
    "HBAR_C_KEV_CM",
    "HC_KEV_ANGSTROM",
    "KEV_TO_J",
    "THOMSON_CROSS_SECTION_CM2",
]
