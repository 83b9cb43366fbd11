"""Solid shapes in continuous coordinates (mm) and their constructive combination.

Every shape answers ``inside(x, y, z)`` for broadcastable coordinate arrays (points or a
rectilinear grid built by broadcasting) and knows an axis-aligned bounding box, so that a
voxeliser only evaluates it where it can be.  Coordinates are the anatomy frame: x towards
the patient's left, y posterior, z superior (DICOM LPS), origin at the centre of the field
of view.  Shapes are plain data plus NumPy; they never touch a voxel grid.
"""

from __future__ import annotations

import abc

import numpy as np

_INF = np.inf


class Shape(abc.ABC):
    """Base class: a solid region of space."""

    #: bounding box corners (x, y, z) in mm; may be infinite
    lo: np.ndarray
    hi: np.ndarray

    @abc.abstractmethod
    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (broadcastable coordinate arrays, mm) inside."""

    def inside_grid(self, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        """``inside`` on the grid ``zs × ys × xs`` (1-D arrays, mm) → bool ``(nz, ny, nx)``."""
        m = self.inside(xs[None, None, :], ys[None, :, None], zs[:, None, None])
        return np.broadcast_to(m, (zs.size, ys.size, xs.size))

    def __and__(self, other: Shape) -> Shape:
        return Intersection(self, other)

    def __or__(self, other: Shape) -> Shape:
        return Union(self, other)

    def __sub__(self, other: Shape) -> Shape:
        return Intersection(self, Not(other))


def _box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def rotation_matrix(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0):
    """Rotation about z (yaw), then y (pitch), then x (roll); returns a 3×3 float64 array."""
    a, b, c = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


class Ellipsoid(Shape):
    """Ellipsoid with centre ``c`` (mm), semi-axes ``r`` (mm) and rotation ``R`` (body → world)."""

    def __init__(self, center, semi_axes, rotation=None) -> None:
        self.c = [float(v) for v in center]
        self.r = [float(v) for v in semi_axes]
        R = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        self.R = R
        # half extent of the rotated ellipsoid along each world axis
        ext = np.sqrt(((R * np.asarray(self.r)[None, :]) ** 2).sum(axis=1))
        self.lo, self.hi = _box(np.asarray(self.c) - ext, np.asarray(self.c) + ext)

    def level(self, x, y, z):
        """Σ (u_i / r_i)² in the body frame (≤ 1 inside)."""
        dx, dy, dz = x - self.c[0], y - self.c[1], z - self.c[2]
        R = self.R
        if np.allclose(R, np.eye(3)):
            return (dx / self.r[0]) ** 2 + (dy / self.r[1]) ** 2 + (dz / self.r[2]) ** 2
        total = 0.0
        for i in range(3):
            u = float(R[0, i]) * dx + float(R[1, i]) * dy + float(R[2, i]) * dz
            total = total + (u / self.r[i]) ** 2
        return total

    def inside(self, x, y, z):
        return self.level(x, y, z) <= 1.0

    def scaled(self, factor: float, shift=(0.0, 0.0, 0.0)) -> Ellipsoid:
        """A concentric (or shifted, mm in the body frame) ellipsoid with scaled semi-axes."""
        c = np.asarray(self.c) + self.R @ np.asarray(shift, dtype=np.float64)
        return Ellipsoid(c, [v * factor for v in self.r], self.R)

    def volume_ml(self) -> float:
        return 4.0 / 3.0 * np.pi * self.r[0] * self.r[1] * self.r[2] / 1000.0


class Capsule(Shape):
    """Tapered tube around the segment ``a → b``, radius ``ra`` at ``a`` and ``rb`` at ``b``."""

    def __init__(self, a, b, ra: float, rb: float | None = None) -> None:
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.ra = float(ra)
        self.rb = float(ra if rb is None else rb)
        r = max(self.ra, self.rb)
        self.lo, self.hi = _box(np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r)

    def inside(self, x, y, z):
        d = self.b - self.a
        dd = float(d @ d)
        px, py, pz = x - float(self.a[0]), y - float(self.a[1]), z - float(self.a[2])
        t = (px * float(d[0]) + py * float(d[1]) + pz * float(d[2])) / dd
        t = np.clip(t, 0.0, 1.0)
        qx, qy, qz = px - t * float(d[0]), py - t * float(d[1]), pz - t * float(d[2])
        r = self.ra + t * (self.rb - self.ra)
        return qx * qx + qy * qy + qz * qz <= r * r


class Box(Shape):
    """Axis-aligned box."""

    def __init__(self, lo, hi) -> None:
        self.lo, self.hi = _box(lo, hi)

    def inside(self, x, y, z):
        lo, hi = self.lo, self.hi
        return (
            (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
        )


class EllipticPrism(Shape):
    """Elliptic cross-section in the xy plane (centre, semi-axes) between ``z0`` and ``z1``."""

    def __init__(self, cx, cy, ax, ay, z0=-_INF, z1=_INF) -> None:
        self.cx, self.cy, self.ax, self.ay = float(cx), float(cy), float(ax), float(ay)
        self.z0, self.z1 = float(z0), float(z1)
        self.lo, self.hi = _box((cx - ax, cy - ay, z0), (cx + ax, cy + ay, z1))

    def inside(self, x, y, z):
        m = ((x - self.cx) / self.ax) ** 2 + ((y - self.cy) / self.ay) ** 2 <= 1.0
        return m & (z >= self.z0) & (z <= self.z1)


class Torso(Shape):
    """Super-elliptic body cross-section whose semi-axes vary smoothly with z.

    ``|x/a(z)|^n + |y/b(z, y)|^n ≤ 1`` with ``b = b_ant`` for y < 0 (anterior) and
    ``b_post`` behind; ``inset`` (mm, each of lateral / anterior / posterior) shrinks it
    (fat layer, muscle wall).  ``a``, ``b_ant``, ``b_post`` are callables of z.
    """

    def __init__(self, a, b_ant, b_post, n: float, inset=(0.0, 0.0, 0.0), zmax_axis=400.0):
        self.a, self.b_ant, self.b_post, self.n = a, b_ant, b_post, float(n)
        self.inset = tuple(float(v) for v in inset)
        zz = np.linspace(-zmax_axis, zmax_axis, 161)
        am = float(np.max(a(zz))) - self.inset[0]
        self.lo, self.hi = _box(
            (-am, -float(np.max(b_ant(zz))) + self.inset[1], -_INF),
            (am, float(np.max(b_post(zz))) - self.inset[2], _INF),
        )

    def inside(self, x, y, z):
        a = self.a(z) - self.inset[0]
        ba = self.b_ant(z) - self.inset[1]
        bp = self.b_post(z) - self.inset[2]
        b = np.where(y < 0, ba, bp)
        return np.abs(x / a) ** self.n + np.abs(y / b) ** self.n <= 1.0


class Below(Shape):
    """Region below (``sign=+1``) or above (``sign=-1``) the surface ``z = f(x, y) + offset``."""

    def __init__(self, f, offset: float = 0.0, sign: int = 1, zlimit: float | None = None):
        self.f, self.offset, self.sign = f, float(offset), int(sign)
        lo, hi = [-_INF] * 3, [_INF] * 3
        if zlimit is not None:  # known bound of the surface: max (below) or min (above)
            if sign > 0:
                hi[2] = float(zlimit) + self.offset
            else:
                lo[2] = float(zlimit) + self.offset
        self.lo, self.hi = _box(lo, hi)

    def inside(self, x, y, z):
        s = self.f(x, y) + self.offset
        return z <= s if self.sign > 0 else z >= s


class Implicit(Shape):
    """``f(x, y, z) <= 0`` for a vectorised function ``f`` (mm), within the box ``lo``–``hi``."""

    def __init__(self, f, lo=(-_INF,) * 3, hi=(_INF,) * 3) -> None:
        self.f = f
        self.lo, self.hi = _box(lo, hi)

    def inside(self, x, y, z):
        return self.f(x, y, z) <= 0


class HalfSpace(Shape):
    """``axis`` coordinate (0=x, 1=y, 2=z) ≥ ``value`` (``keep="above"``) or ≤ (``"below"``)."""

    def __init__(self, axis: int, value: float, keep: str = "above") -> None:
        self.axis, self.value, self.keep = int(axis), float(value), keep
        lo, hi = [-_INF] * 3, [_INF] * 3
        if keep == "above":
            lo[axis] = value
        else:
            hi[axis] = value
        self.lo, self.hi = _box(lo, hi)

    def inside(self, x, y, z):
        c = (x, y, z)[self.axis]
        return c >= self.value if self.keep == "above" else c <= self.value


class PeriodicZ(Shape):
    """``phase = (z - z0) mod period`` in ``[start, stop)`` (vertebrae vs discs)."""

    def __init__(self, z0: float, period: float, start: float, stop: float) -> None:
        self.z0, self.period, self.start, self.stop = map(float, (z0, period, start, stop))
        self.lo, self.hi = _box([-_INF] * 3, [_INF] * 3)

    def inside(self, x, y, z):
        ph = np.mod(z - self.z0, self.period)
        return (ph >= self.start) & (ph < self.stop)


class Ribs(Shape):
    """Rib cage: periodic bands on an elliptic cylinder that descend anteriorly.

    A point at angle ``s = (1 - y/r)/2`` (0 posterior, 1 anterior) lies on a rib when its
    distance to the rib ellipse ``(A, B)`` (centre ``(0, cy)``) is below ``half_width`` and
    ``(z + drop·s - z0) mod pitch`` is below ``height``.  Rib ``k = floor((z + drop·s -
    z0)/pitch)`` exists for ``k ≥ 0`` and reaches anteriorly to ``s_max`` (floating ribs
    0 and 1 stop laterally).  ``shrink`` mm gives the marrow cavity inside the cortex.
    """

    def __init__(self, A, B, cy, z0, pitch, height, drop, half_width, exclude_x, shrink=0.0):
        self.A, self.B, self.cy = float(A), float(B), float(cy)
        self.z0, self.pitch, self.height, self.drop = map(float, (z0, pitch, height, drop))
        self.hw = float(half_width) - shrink
        self.shrink = float(shrink)
        self.exclude_x = float(exclude_x)
        hw = float(half_width)
        self.lo, self.hi = _box(
            (-A - hw, cy - B - hw, z0 - drop), (A + hw, cy + B + hw, _INF)
        )

    def _in_plane(self, x, y):
        yy = y - self.cy
        r = np.sqrt(x * x + yy * yy)
        rho = np.sqrt((x / self.A) ** 2 + (yy / self.B) ** 2)
        dist = r * (1.0 - 1.0 / np.maximum(rho, 1e-6))
        s = 0.5 * (1.0 - yy / np.maximum(r, 1e-6))
        ok = (np.abs(dist) <= self.hw) & (np.abs(x) >= self.exclude_x)
        return ok, s

    def _along_z(self, z, s):
        u = z + self.drop * s - self.z0
        k = np.floor(u / self.pitch)
        ph = u - k * self.pitch
        s_max = np.where(k >= 2, 0.82, 0.5)
        return (
            (k >= 0)
            & (ph >= self.shrink)
            & (ph < self.height - self.shrink)
            & (s <= s_max)
        )

    def inside(self, x, y, z):
        ok, s = self._in_plane(x, y)
        return ok & self._along_z(z, s)

    def inside_grid(self, xs, ys, zs):
        ok, s = self._in_plane(xs[None, :], ys[:, None])
        out = np.zeros((zs.size, ys.size, xs.size), dtype=bool)
        iy, ix = np.nonzero(ok)
        if iy.size:
            out[:, iy, ix] = self._along_z(zs[:, None], s[iy, ix][None, :])
        return out


class FieldAbove(Shape):
    """Where a random field (:class:`~mcdose.phantoms._fields.LatticeField`) exceeds ``t``."""

    def __init__(self, field, threshold: float) -> None:
        self.field, self.t = field, float(threshold)
        self.lo, self.hi = _box([-_INF] * 3, [_INF] * 3)

    def inside(self, x, y, z):
        return self.field.at_points(x, y, z) > self.t

    def inside_grid(self, xs, ys, zs):
        return self.field.on_grid(xs, ys, zs) > self.t


class Not(Shape):
    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.lo, self.hi = _box([-_INF] * 3, [_INF] * 3)

    def inside(self, x, y, z):
        return ~self.shape.inside(x, y, z)

    def inside_grid(self, xs, ys, zs):
        return ~self.shape.inside_grid(xs, ys, zs)


class Intersection(Shape):
    def __init__(self, *shapes: Shape) -> None:
        flat: list[Shape] = []
        for s in shapes:
            flat.extend(s.shapes if isinstance(s, Intersection) else [s])
        self.shapes = flat
        self.lo = np.max([s.lo for s in flat], axis=0)
        self.hi = np.min([s.hi for s in flat], axis=0)

    def inside(self, x, y, z):
        m = self.shapes[0].inside(x, y, z)
        for s in self.shapes[1:]:
            m = m & s.inside(x, y, z)
        return m

    def inside_grid(self, xs, ys, zs):
        m = np.array(self.shapes[0].inside_grid(xs, ys, zs))
        for s in self.shapes[1:]:
            if not m.any():
                break
            m &= s.inside_grid(xs, ys, zs)
        return m


class Union(Shape):
    def __init__(self, *shapes: Shape) -> None:
        flat: list[Shape] = []
        for s in shapes:
            flat.extend(s.shapes if isinstance(s, Union) else [s])
        self.shapes = flat
        self.lo = np.min([s.lo for s in flat], axis=0)
        self.hi = np.max([s.hi for s in flat], axis=0)

    def inside(self, x, y, z):
        m = self.shapes[0].inside(x, y, z)
        for s in self.shapes[1:]:
            m = m | s.inside(x, y, z)
        return m

    def inside_grid(self, xs, ys, zs):
        shape = (zs.size, ys.size, xs.size)
        m = np.zeros(shape, dtype=bool)
        for s in self.shapes:
            sub = sub_ranges(s, xs, ys, zs)
            if sub is None:
                continue
            (z0, z1), (y0, y1), (x0, x1) = sub
            m[z0:z1, y0:y1, x0:x1] |= s.inside_grid(xs[x0:x1], ys[y0:y1], zs[z0:z1])
        return m


def _index_range(coords: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """Indices ``[i0, i1)`` of the sorted 1-D ``coords`` that lie within ``[lo, hi]``."""
    i0 = int(np.searchsorted(coords, lo, side="left"))
    i1 = int(np.searchsorted(coords, hi, side="right"))
    return i0, i1


def sub_ranges(shape: Shape, xs, ys, zs):
    """Index ranges ``((z0, z1), (y0, y1), (x0, x1))`` of the grid inside the shape's box."""
    out = []
    for coords, axis in ((zs, 2), (ys, 1), (xs, 0)):
        i0, i1 = _index_range(coords, shape.lo[axis], shape.hi[axis])
        if i1 <= i0:
            return None
        out.append((i0, i1))
    return tuple(out)

