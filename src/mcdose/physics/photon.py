"""Photon interaction sampling: pure scalar functions compiled for CPU and CUDA.

Compton scattering samples the Klein–Nishina law from an inverse-CDF table in (E, ξ);
Rayleigh scattering samples cos θ from an inverse-CDF table built from atomic form factors;
both are rejection-free.  Photoelectric absorption hands the whole photon energy to a
photoelectron (binding energies in tissue are below 4 keV; the atomic relaxation energy is
thereby deposited with the electron — a simplification stated in docs/physics.md).
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from mcdose.physics import layout as L
from mcdose.physics.constants import ELECTRON_REST_ENERGY_KEV
from mcdose.physics.fp import F0, F1, F2, F_TWO_PI
from mcdose.physics.interp import grid_index, lerp_2d, lerp_3d

_INV_MEC2 = np.float32(1.0 / ELECTRON_REST_ENERGY_KEV)  # 1/keV
_NEAR_Z_AXIS = np.float32(1e-20)


@register_jitable
def isotropic_direction(xi1, xi2):
    """Unit vector uniform on the sphere from two uniforms in (0, 1)."""
    w = F2 * xi1 - F1
    s = math.sqrt(max(F0, F1 - w * w))
    phi = F_TWO_PI * xi2
    return s * math.cos(phi), s * math.sin(phi), w


@register_jitable
def rotate_direction(u, v, w, cos_t, phi):
    """Deflect the unit vector (u, v, w) by polar angle θ (given cos θ) and azimuth φ.

    Returns the new unit vector; the usual formula with a special case near the z axis.
    """
    sin_t = math.sqrt(max(F0, F1 - cos_t * cos_t))
    c_phi = math.cos(phi)
    s_phi = math.sin(phi)
    rho2 = u * u + v * v
    if rho2 < _NEAR_Z_AXIS:
        sign = F1 if w >= F0 else -F1
        return sin_t * c_phi, sin_t * s_phi, sign * cos_t
    rho = math.sqrt(rho2)
    un = u * cos_t + sin_t * (u * w * c_phi - v * s_phi) / rho
    vn = v * cos_t + sin_t * (v * w * c_phi + u * s_phi) / rho
    wn = w * cos_t - sin_t * rho * c_phi
    norm = F1 / math.sqrt(un * un + vn * vn + wn * wn)
    return un * norm, vn * norm, wn * norm


@register_jitable
def sample_compton_epsilon(kn_table, params, energy, xi):
    """ε = E'/E of a Compton-scattered photon of energy ``energy`` (keV), Klein–Nishina."""
    i, f = grid_index(
        math.log(energy),
        params[L.P_KN_LOG_E_MIN],
        params[L.P_KN_INV_DLOG_E],
        int(params[L.P_KN_N_E]),
    )
    eps = lerp_2d(kn_table, i, f, xi)
    eps_min = F1 / (F1 + F2 * energy * _INV_MEC2)
    if eps < eps_min:
        eps = eps_min
    if eps > F1:
        eps = F1 + F0 * eps
    return eps


@register_jitable
def compton_cos_theta(energy, eps):
    """Photon scattering cosine for energy ``energy`` (keV) and ε = E'/E (kinematics)."""
    c = F1 - (F1 - eps) / (eps * energy * _INV_MEC2)
    if c < -F1:
        c = F0 * c - F1
    if c > F1:
        c = F1 + F0 * c
    return c


@register_jitable
def compton_electron_direction(energy, eps, u, v, w, up, vp, wp):
    """Direction of the Compton electron from momentum conservation, p_e = k·Ω − k'·Ω'."""
    e1 = energy * eps
    px = energy * u - e1 * up
    py = energy * v - e1 * vp
    pz = energy * w - e1 * wp
    norm = math.sqrt(px * px + py * py + pz * pz)
    if norm <= F0:
        return u, v, w
    return px / norm, py / norm, pz / norm


@register_jitable
def sample_rayleigh_cos(ray_table, params, m, energy, xi):
    """cos θ of a Rayleigh-scattered photon in material ``m`` (form-factor table)."""
    i, f = grid_index(
        math.log(energy),
        params[L.P_RAY_LOG_E_MIN],
        params[L.P_RAY_INV_DLOG_E],
        int(params[L.P_RAY_N_E]),
    )
    c = lerp_3d(ray_table, m, i, f, xi)
    if c < -F1:
        c = F0 * c - F1
    if c > F1:
        c = F1 + F0 * c
    return c
