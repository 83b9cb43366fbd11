"""Lesions: placement in the sampled anatomy, shapes and necrotic cores.

Lesions are 0.5–5 cm across (issue 5): spheres and ellipsoids, in the liver (most), para-
aortic lymph nodes and the mesentery (host ``body``) and bone (``spine`` / ``pelvis``),
some with a necrotic core.  Placement is rejection sampling in continuous coordinates
against the organ shapes, so it does not depend on any voxel grid.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._shapes import Ellipsoid, Shape

if TYPE_CHECKING:  # pragma: no cover
    from ._anatomy import Anatomy

#: half axial extent (mm) of the anatomy that every preset shows; lesions are kept inside
FOV_HALF_Z_MM = 180.0

#: lesion diameters 0.5–5 cm; the first liver lesion is large enough for 12 mm voxels
LESION_DIAMETER_MM = (5.0, 50.0)
FIRST_LESION_DIAMETER_MM = (28.0, 50.0)


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _logu(rng, lo, hi) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def lesion_shapes(les: dict, anatomy: Anatomy) -> tuple[Shape, Shape | None]:
    """Solid shape of a lesion (clipped to its bone for bone lesions) and its necrotic core."""
    e = Ellipsoid(les["center_mm"], les["semi_axes_mm"], np.asarray(les["rotation"]))
    shape: Shape = e
    if les["host"] == "spine":
        shape = e & anatomy.shapes["vertebral_bodies"]
    elif les["host"] == "pelvis":
        shape = e & anatomy.shapes["pelvis_cortical"]
    core = None
    if les["necrotic_fraction"] > 0:
        core = e.scaled(les["necrotic_fraction"], shift=les["necrotic_shift_mm"]) & shape
    return shape, core


def _test_points(e: Ellipsoid, frac: float = 0.7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and the 6 principal-axis points at ``frac`` of the semi-axes (world mm)."""
    pts = [np.zeros(3)]
    for i in range(3):
        for s in (1.0, -1.0):
            u = np.zeros(3)
            u[i] = s * frac * e.r[i]
            pts.append(u)
    w = np.asarray(e.c)[None, :] + np.asarray(pts) @ e.R.T
    return w[:, 0], w[:, 1], w[:, 2]


def sample_lesions(rng: np.random.Generator, anatomy: Anatomy) -> list[dict]:
    """Place lesions: several in the liver, some lymph nodes / mesenteric masses, some bone.

    Diameters (2 × largest semi-axis) are log-uniform in 5–50 mm; ~40 % spheres, the rest
    ellipsoids with axis ratios 0.6–1 in a random orientation; lesions ≥ 20 mm have a
    necrotic core (30–60 % of the lesion's size) with probability 1/2.
    """
    p, S = anatomy.p, anatomy.shapes
    avoid = [
        S["kidney_left_ellipsoid"], S["kidney_right_ellipsoid"], S["vessels"],
        S["vertebral_bodies"], S["spleen"], S["stomach"],
    ]
    placed: list[tuple[np.ndarray, float]] = []
    lesions: list[dict] = []
    sp, zd, zc = p["spine"], p["diaphragm"]["z_left"], p["z_crest"]
    kid_z = p["kidneys"]["left"]["center"][2]

    def make(diameter: float) -> tuple[list[float], np.ndarray, str]:
        r = diameter / 2.0
        if rng.uniform() < 0.4:
            return [r, r, r], np.eye(3), "sphere"
        axes = [r, r * _u(rng, 0.6, 1.0), r * _u(rng, 0.6, 1.0)]
        return axes, _random_rotation(rng), "ellipsoid"

    def try_place(host, diameter, propose, inside_host, avoid_shapes, tries=150):
        for attempt in range(tries):
            d = diameter if attempt < tries // 2 else diameter * 0.75
            axes, R, kind = make(d)
            c = propose()
            if abs(c[2]) > FOV_HALF_Z_MM - max(axes):
                continue
            e = Ellipsoid(c, axes, R)
            x, y, z = _test_points(e)
            if inside_host is not None and not np.all(inside_host.inside(x, y, z)):
                continue
            if any(np.any(s.inside(x, y, z)) for s in avoid_shapes):
                continue
            if any(np.linalg.norm(np.asarray(c) - pc) < max(axes) + pr + 3 for pc, pr in placed):
                continue
            placed.append((np.asarray(c, dtype=float), max(axes)))
            core_frac, shift = 0.0, [0.0, 0.0, 0.0]
            if 2 * max(axes) >= 20 and rng.uniform() < 0.5:
                core_frac = _u(rng, 0.3, 0.6)
                shift = [float(v) for v in rng.uniform(-0.15, 0.15, 3) * np.asarray(axes)]
            les = {
                "k": len(lesions) + 1,
                "host": host,
                "kind": kind,
                "center_mm": [float(v) for v in c],
                "semi_axes_mm": [float(v) for v in axes],
                "rotation": [[float(v) for v in row] for row in R],
                "diameter_mm": float(2 * max(axes)),
                "necrotic_fraction": core_frac,
                "necrotic_shift_mm": shift,
            }
            lesions.append(les)
            return les
        return None

    liver = S["liver"]
    lo, hi = liver.lo, liver.hi

    def in_liver():
        return [float(v) for v in rng.uniform(lo, hi)]

    n_liver = min(1 + int(rng.poisson(1.5)), 6)
    for i in range(n_liver):
        rng_d = FIRST_LESION_DIAMETER_MM if i == 0 else LESION_DIAMETER_MM
        try_place("liver", _logu(rng, *rng_d), in_liver, liver, avoid, tries=400 if i == 0 else 150)

    # para-aortic lymph nodes
    v = p["vessels"]
    for _ in range(int(rng.integers(0, 3))):
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        d = _logu(rng, 10, 30)

        def near_aorta(d=d, side=side):
            z = _u(rng, zc + 20, kid_z + 30)
            return [
                v["aorta_x"] * 0.7 + side * (v["aorta_r"] + d / 2 + _u(rng, 3, 10)),
                sp["y_body"] - sp["ay"] - v["aorta_r"] + _u(rng, -10, 10),
                z,
            ]

        try_place("body", d, near_aorta, S["abdomen"], avoid + [liver])

    # mesenteric mass
    if rng.uniform() < 0.5:
        y_front = sp["y_body"] - sp["ay"] - 30

        def mesentery():
            return [_u(rng, -60, 60), _u(rng, y_front - 60, y_front), _u(rng, zc, kid_z - 20)]

        try_place("body", _logu(rng, 10, 40), mesentery, S["abdomen"], avoid + [liver])

    # bone lesion
    if rng.uniform() < 0.4:
        if rng.uniform() < 0.7:

            def in_spine():
                return [_u(rng, -5, 5), sp["y_body"] + _u(rng, -4, 4), _u(rng, zc, zd)]

            try_place("spine", _logu(rng, 10, 25), in_spine, None, [])
        else:
            pel = S["pelvis_cortical"]
            plo = np.maximum(pel.lo, [-200, -200, -FOV_HALF_Z_MM])
            phi = np.minimum(pel.hi, [200, 200, FOV_HALF_Z_MM])

            def in_pelvis():
                for _ in range(200):
                    c = rng.uniform(plo, phi)
                    if pel.inside(*[np.asarray([v]) for v in c])[0]:
                        break
                return [float(v) for v in c]

            try_place("pelvis", _logu(rng, 10, 30), in_pelvis, None, [])
    return lesions
