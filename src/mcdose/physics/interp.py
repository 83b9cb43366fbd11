"""Table lookups on grids uniform in a logarithm (pure scalar functions for CPU and CUDA)."""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from mcdose.physics.fp import F0, F1


@register_jitable
def grid_index(log_value, log_min, inv_dlog, n):
    """Cell index and fraction of ``log_value`` on a uniform grid of ``n`` points.

    Values outside the grid are clamped to its ends.

    Returns
    -------
    i : int
        Lower grid point, 0 ≤ i ≤ n − 2.
    f : float
        Fraction between point i and i + 1, in [0, 1].
    """
    x = (log_value - log_min) * inv_dlog
    if x <= F0:
        return 0, F0 * x
    top = n - 1
    if x >= np.float32(top):
        return top - 1, F1 + F0 * x
    i = int(x)
    return i, x - np.float32(i)


@register_jitable
def lerp_mat(mat_tab, m, q, i, f):
    """Linear interpolation of ``mat_tab[m, q, :]`` at cell (i, f)."""
    return mat_tab[m, q, i] * (F1 - f) + mat_tab[m, q, i + 1] * f


@register_jitable
def lerp_2d(table, i, f, xi):
    """Bilinear interpolation of ``table[i:i+2, :]`` at row fraction f and column ξ ∈ [0, 1]."""
    n_xi = table.shape[1]
    x = xi * np.float32(n_xi - 1)
    j = int(x)
    if j >= n_xi - 1:
        j = n_xi - 2
    g = x - np.float32(j)
    a = table[i, j] * (F1 - g) + table[i, j + 1] * g
    b = table[i + 1, j] * (F1 - g) + table[i + 1, j + 1] * g
    return a * (F1 - f) + b * f


@register_jitable
def lerp_3d(table, m, i, f, xi):
    """Bilinear interpolation of ``table[m, i:i+2, :]`` at row fraction f and column ξ."""
    n_xi = table.shape[2]
    x = xi * np.float32(n_xi - 1)
    j = int(x)
    if j >= n_xi - 1:
        j = n_xi - 2
    g = x - np.float32(j)
    a = table[m, i, j] * (F1 - g) + table[m, i, j + 1] * g
    b = table[m, i + 1, j] * (F1 - g) + table[m, i + 1, j + 1] * g
    return a * (F1 - f) + b * f


@register_jitable
def safe_log(x):
    """Natural logarithm with a floor at 1e-300 (avoids −inf for zero inputs)."""
    if x < 1e-300:
        x = 1e-300
    return math.log(x)
