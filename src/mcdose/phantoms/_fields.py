"""Smooth Gaussian random fields defined in physical space, reproducible per seed.

A field is white noise on a fixed lattice (spacing ``h`` mm, anchored at the anatomy origin)
smoothed by a Gaussian of standard deviation ``sigma`` mm.  The white-noise value of a
lattice node is a hash of ``(seed, stream, i, j, k)``, so the field at a physical point does
not depend on which box is computed, on the grid it is sampled on or on the order of the
computation: the same seed gives the same texture on any grid that uses the same lattice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_TRUNCATE = 3.0  # Gaussian kernel radius in standard deviations

# 64-bit odd constants (splitmix64 / Stafford mix 13 and the golden ratio)
_K_SEED = np.uint64(0x9E3779B97F4A7C15)
_K_STREAM = np.uint64(0xD1B54A32D192ED03)
_K_I = np.uint64(0xAF251AF3B0F025B5)
_K_J = np.uint64(0x94D049BB133111EB)
_K_K = np.uint64(0xBF58476D1CE4E5B9)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array (wrap-around arithmetic)."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def lattice_noise(
    seed: int, stream: int, i: np.ndarray, j: np.ndarray, k: np.ndarray
) -> np.ndarray:
    """Unit-variance, zero-mean uniform white noise at integer lattice nodes (float32).

    ``i``, ``j``, ``k`` are broadcastable integer index arrays along x, y, z.
    """
    base = np.uint64((int(seed) * int(_K_SEED) + int(stream) * int(_K_STREAM)) % 2**64)
    zi = np.asarray(i, dtype=np.int64).astype(np.uint64) * _K_I
    zj = np.asarray(j, dtype=np.int64).astype(np.uint64) * _K_J
    zk = np.asarray(k, dtype=np.int64).astype(np.uint64) * _K_K
    z = (zk + zj) + zi
    z += base
    z = _mix64(z)
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)  # [0, 1)
    return (u - np.float32(0.5)) * np.float32(np.sqrt(12.0))


def _kernel(sigma_nodes: float) -> np.ndarray:
    radius = int(_TRUNCATE * sigma_nodes + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma_nodes) ** 2)
    return w / w.sum()


class LatticeField:
    """A smooth random field with unit variance, sampled over a box in mm.

    Parameters
    ----------
    seed, stream
        Identify the field; different streams of one seed are independent.
    spacing_mm
        Lattice spacing ``h`` in mm.
    sigma_mm
        Standard deviation of the Gaussian smoothing kernel in mm (correlation length).
    lo_mm, hi_mm
        Corners ``(x, y, z)`` in mm of the box where the field will be evaluated.
    """

    def __init__(
        self,
        seed: int,
        stream: int,
        spacing_mm: float,
        sigma_mm: float,
        lo_mm: tuple[float, float, float],
        hi_mm: tuple[float, float, float],
    ) -> None:
        h = float(spacing_mm)
        sig = float(sigma_mm) / h
        w = _kernel(sig)
        radius = (w.size - 1) // 2
        lo = np.floor(np.asarray(lo_mm, dtype=np.float64) / h).astype(np.int64) - 1
        hi = np.ceil(np.asarray(hi_mm, dtype=np.float64) / h).astype(np.int64) + 2
        i = np.arange(lo[0] - radius, hi[0] + radius)
        j = np.arange(lo[1] - radius, hi[1] + radius)
        k = np.arange(lo[2] - radius, hi[2] + radius)
        noise = lattice_noise(seed, stream, i[None, None, :], j[None, :, None], k[:, None, None])
        wf = w.astype(np.float32)
        for axis in range(3):
            noise = ndimage.correlate1d(noise, wf, axis=axis, mode="constant")
        scale = 1.0 / np.sqrt(np.sum(w**2) ** 3)
        inner = (slice(radius, -radius or None),) * 3
        self.values = np.ascontiguousarray(noise[inner] * np.float32(scale))  # (z, y, x)
        self.h = h
        self.first = lo.astype(np.float64)  # lattice index of values[0, 0, 0], (x, y, z)

    def _axis(self, coord_mm: np.ndarray, axis_xyz: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.values.shape[2 - axis_xyz]
        u = np.asarray(coord_mm, dtype=np.float64) / self.h - self.first[axis_xyz]
        u = np.clip(u, 0.0, n - 1.000001)
        i0 = np.floor(u).astype(np.intp)
        return i0, (u - i0).astype(np.float32)

    def on_grid(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """Field on the rectilinear grid ``xs × ys × zs`` (1-D, mm) → ``(nz, ny, nx)`` float32."""
        v = self.values
        iz, wz = self._axis(zs, 2)
        v = v[iz] * (1 - wz)[:, None, None] + v[iz + 1] * wz[:, None, None]
        iy, wy = self._axis(ys, 1)
        v = v[:, iy] * (1 - wy)[None, :, None] + v[:, iy + 1] * wy[None, :, None]
        ix, wx = self._axis(xs, 0)
        v = v[:, :, ix] * (1 - wx) + v[:, :, ix + 1] * wx
        return v

    def at_points(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Field at scattered points (trilinear), float32 with the broadcast shape."""
        x, y, z = np.broadcast_arrays(x, y, z)
        ix, wx = self._axis(x, 0)
        iy, wy = self._axis(y, 1)
        iz, wz = self._axis(z, 2)
        v = self.values
        out = np.zeros(x.shape, dtype=np.float32)
        for dz, fz in ((0, 1 - wz), (1, wz)):
            for dy, fy in ((0, 1 - wy), (1, wy)):
                for dx, fx in ((0, 1 - wx), (1, wx)):
                    out += v[iz + dz, iy + dy, ix + dx] * fz * fy * fx
        return out
