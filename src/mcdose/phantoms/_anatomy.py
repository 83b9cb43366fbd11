"""Random adult torso anatomy (lower thorax to iliac crests) in continuous coordinates.

:func:`sample_anatomy` draws every anatomical parameter from a ``numpy.random.Generator``
(all lengths in mm, angles in degrees) into a JSON-able dict; :class:`Anatomy` turns it
into solid shapes, in which :mod:`._lesions` places lesions.  Nothing here depends on a
voxel grid, so a seed gives the same anatomy at any resolution.

Frame: x towards the patient's left, y posterior, z superior (DICOM LPS), origin at the
centre of the nominal field of view (``±FOV_HALF_Z_MM`` axially).  Ranges follow adult
reference anatomy (ICRP Publication 89 organ volumes: liver ≈ 1.4–1.8 L, kidneys ≈ 150 mL
each, spleen ≈ 150–250 mL) and typical abdominal CT: they are plausible, not a population
model.

References
----------
.. [ICRP89] ICRP Publication 89, *Basic Anatomical and Physiological Data for Use in
   Radiological Protection: Reference Values*, Ann. ICRP 32(3–4) (2002).
"""

from __future__ import annotations

import numpy as np

from ._lesions import lesion_shapes
from ._shapes import (
    Below,
    Box,
    Capsule,
    Ellipsoid,
    EllipticPrism,
    FieldAbove,
    HalfSpace,
    Implicit,
    PeriodicZ,
    Ribs,
    Shape,
    Torso,
    rotation_matrix,
)
from ._tissues import TISSUE_CODE, lesion_name


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


# --------------------------------------------------------------------------- parameters


def sample_anatomy(rng: np.random.Generator) -> dict:
    """Draw the anatomy (without lesions) as a JSON-able dict of lengths (mm) and angles (°)."""
    h = _u(rng, 0.0, 1.0)  # habitus: 0 slim … 1 large
    p: dict = {"habitus": h}
    p["shift_mm"] = [float(rng.normal(0, 4)), float(rng.normal(0, 4)), float(rng.normal(0, 8))]
    z_d = _u(rng, 70, 105)  # left diaphragm dome
    p["diaphragm"] = {
        "z_left": z_d,
        "z_right": z_d + _u(rng, 10, 25),
        "x_dome": _u(rng, 55, 75),
        "y_dome": _u(rng, -20, 0),
        "rx": _u(rng, 120, 160),
        "ry_post": _u(rng, 80, 110),
        "ry_ant": _u(rng, 130, 180),
    }
    z_crest = z_d - _u(rng, 205, 240)
    p["z_crest"] = z_crest
    p["body"] = {
        "a": float(np.clip(125 + 45 * h + rng.normal(0, 6), 120, 180)),
        "b_ant": float(np.clip(95 + 45 * h + rng.normal(0, 5), 88, 150)),
        "b_post": float(np.clip(88 + 20 * h + rng.normal(0, 4), 80, 115)),
        "n": _u(rng, 2.1, 2.6),
        "chest_taper": _u(rng, 0.05, 0.15),
    }
    p["fat_mm"] = {
        "side": 6 + 28 * h + _u(rng, 0, 6),
        "ant": 8 + 35 * h + _u(rng, 0, 6),
        "post": 6 + 22 * h + _u(rng, 0, 5),
    }
    p["wall_mm"] = {"side": _u(rng, 10, 16), "ant": _u(rng, 8, 14), "post": _u(rng, 12, 20)}
    p["visceral_fat_threshold"] = -0.9 + 0.7 * h  # bowel/soft tissue where field > threshold

    b = p["body"]
    d_vb = _u(rng, 58, 68)  # posterior muscle surface → vertebral body centre
    y_vb = b["b_post"] - p["fat_mm"]["post"] - d_vb
    vbx, vby = _u(rng, 21, 26), _u(rng, 15, 18)
    p["spine"] = {
        "y_body": y_vb,
        "ax": vbx,
        "ay": vby,
        "period": _u(rng, 32, 36),
        "disc": _u(rng, 8, 10),
        "phase": _u(rng, 0, 36),
        "canal_r": _u(rng, 8, 10),
        "arch_r": _u(rng, 15, 18),
        "depth_mm": d_vb,
        "z_bottom": z_crest - 25,
    }
    p["ribs"] = {
        "z0": z_d - _u(rng, 80, 100),
        "pitch": _u(rng, 30, 36),
        "height": _u(rng, 9, 12),
        "drop": _u(rng, 50, 80),
        "half_width": _u(rng, 4, 6),
    }
    r_ao = _u(rng, 9, 13)
    p["vessels"] = {"aorta_r": r_ao, "ivc_r": _u(rng, 10, 13), "aorta_x": _u(rng, 10, 22)}
    p["heart"] = {
        "center": [20 + float(rng.normal(0, 5)), -_u(rng, 25, 40), z_d + _u(rng, 40, 55)],
        "axes": [_u(rng, 55, 68), _u(rng, 42, 52), _u(rng, 50, 60)],
        "yaw": _u(rng, 25, 45),
        "pitch": _u(rng, 10, 25),
    }
    p["mediastinum_half_width"] = _u(rng, 12, 22)

    zr = p["diaphragm"]["z_right"]
    sl = _u(rng, 0.88, 1.12)
    a_cav = b["a"] - p["fat_mm"]["side"] - p["wall_mm"]["side"]
    bant_cav = b["b_ant"] - p["fat_mm"]["ant"] - p["wall_mm"]["ant"]
    p["liver"] = {
        "right_center": [-0.42 * a_cav + _u(rng, -8, 8), _u(rng, -12, 2), zr - _u(rng, 60, 72)],
        "right_axes": [95 * sl, 90 * sl, 85 * sl],
        "left_center": [_u(rng, -10, 10), -0.45 * bant_cav, zr - _u(rng, 35, 50)],
        "left_axes": [65 * sl, 38 * sl, 40 * sl],
        "yaw": float(rng.normal(0, 8)),
        "scale": sl,
    }
    p["spleen"] = {
        "center": [a_cav - _u(rng, 45, 60), _u(rng, 10, 30), z_d - _u(rng, 55, 80)],
        "axes": [_u(rng, 22, 30), _u(rng, 45, 58), _u(rng, 40, 52)],
        "yaw": _u(rng, 30, 50),
        "pitch": _u(rng, -20, 0),
    }
    zk = z_d - _u(rng, 125, 145)
    kidneys = {}
    for side, sign, dz in (("left", 1, 0.0), ("right", -1, -_u(rng, 10, 25))):
        s = _u(rng, 0.9, 1.1)
        kidneys[side] = {
            "center": [sign * _u(rng, 65, 80), y_vb + _u(rng, 5, 15), zk + dz],
            "axes": [27 * s, 23 * s, 55 * s],
            "yaw": sign * _u(rng, 25, 40),
            "pitch": -sign * _u(rng, 8, 18),
            "medulla_scale": _u(rng, 0.58, 0.66),
        }
    p["kidneys"] = kidneys
    p["stomach"] = {
        "center": [_u(rng, 35, 60), -_u(rng, 20, 45), z_d - _u(rng, 50, 75)],
        "axes": [_u(rng, 35, 45), _u(rng, 28, 38), _u(rng, 60, 80)],
        "yaw": _u(rng, -20, 20),
        "pitch": _u(rng, 20, 40),
    }
    p["bowel_top"] = z_d - _u(rng, 90, 110)
    p["psoas"] = {"r_top": _u(rng, 6, 10), "r_bottom": _u(rng, 20, 26)}
    p["pelvis"] = {
        "ilium_cx": _u(rng, 35, 50),
        "ilium_cy": y_vb - _u(rng, 0, 15),
        "ilium_az": _u(rng, 85, 100),
        "ilium_ay": _u(rng, 60, 75),
        "ilium_thickness": _u(rng, 10, 14),
        "sacrum_center": [0.0, y_vb + _u(rng, 0, 10), z_crest - _u(rng, 60, 80)],
        "sacrum_axes": [_u(rng, 40, 50), _u(rng, 20, 26), _u(rng, 55, 70)],
        "sacrum_roll": _u(rng, 20, 35),
    }
    return p


# --------------------------------------------------------------------------- shapes


class Anatomy:
    """Solid shapes of one sampled anatomy (see :func:`build_shapes`)."""

    def __init__(self, p: dict, bowel_field=None) -> None:
        self.p = p
        self.bowel_field = bowel_field
        self.shapes: dict[str, Shape] = {}
        self._build()

    # body profile as functions of z (mm)
    def a(self, z):
        b, zd, zc = self.p["body"], self.p["diaphragm"]["z_left"], self.p["z_crest"]
        chest = 0.04 * np.tanh((z - zd) / 80.0)
        hips = 0.03 * (1 - np.tanh((z - zc) / 50.0))
        return b["a"] * (1 + chest + hips)

    def b_ant(self, z):
        b, zd = self.p["body"], self.p["diaphragm"]["z_left"]
        return b["b_ant"] * (1 - b["chest_taper"] * 0.5 * (1 + np.tanh((z - zd + 30) / 60.0)))

    def b_post(self, z):
        return self.p["body"]["b_post"] + 0.0 * z

    def diaphragm(self, x, y):
        """Height (mm) of the diaphragm: the higher of two paraboloid domes."""
        d = self.p["diaphragm"]
        dy = y - d["y_dome"]
        ry = np.where(dy > 0, d["ry_post"], d["ry_ant"])
        fy = dy * dy / (2 * ry)
        right = d["z_right"] - (x + d["x_dome"]) ** 2 / (2 * d["rx"]) - fy
        left = d["z_left"] - (x - d["x_dome"]) ** 2 / (2 * d["rx"]) - fy
        return np.maximum(left, right)

    def _build(self) -> None:
        p, S = self.p, self.shapes
        b = p["body"]
        n = b["n"]
        fat, wall = p["fat_mm"], p["wall_mm"]
        zmax = max(p["diaphragm"]["z_right"], p["diaphragm"]["z_left"])
        S["body"] = Torso(self.a, self.b_ant, self.b_post, n)
        S["muscle_outer"] = Torso(
            self.a, self.b_ant, self.b_post, n, inset=(fat["side"], fat["ant"], fat["post"])
        )
        inset = (fat["side"] + wall["side"], fat["ant"] + wall["ant"], fat["post"] + wall["post"])
        sp = p["spine"]
        back = EllipticPrism(0.0, p["body"]["b_post"] - fat["post"], 55.0, sp["depth_mm"] + 5)
        cavity = Torso(self.a, self.b_ant, self.b_post, n, inset=inset) - back
        below = Below(self.diaphragm, -4.0, +1, zlimit=zmax)
        above = Below(self.diaphragm, 2.0, -1)
        S["abdomen"] = cavity & below
        S["thorax"] = cavity & Below(self.diaphragm, 0.0, -1)
        if self.bowel_field is not None:
            # bowel loops and mesenteric fat where a smooth random field is above / below a
            # habitus-dependent threshold; behind the bowel (retroperitoneum, upper abdomen)
            # soft tissue and more fat
            q = p["visceral_fat_threshold"]
            S["abdomen_soft"] = S["abdomen"] & FieldAbove(self.bowel_field, q + 0.6)
            y_front = sp["y_body"] - sp["ay"] - 5
            a_c = b["a"] - inset[0]

            def behind_bowel(x, y, z):  # deeper laterally (paracolic gutters)
                return y - (y_front + 70.0 * (x / a_c) ** 2)

            S["bowel"] = (
                S["abdomen"] & HalfSpace(2, p["bowel_top"], "below") & Implicit(behind_bowel)
                & FieldAbove(self.bowel_field, q)
            )

        # psoas muscles, from T12 to the pelvis
        ps, zd = p["psoas"], p["diaphragm"]["z_left"]
        S["psoas"] = Capsule(
            (sp["ax"] + 12, sp["y_body"], zd - 90),
            (sp["ax"] + 35, sp["y_body"] - 25, p["z_crest"] - 80), ps["r_top"], ps["r_bottom"]
        ) | Capsule(
            (-sp["ax"] - 12, sp["y_body"], zd - 90),
            (-sp["ax"] - 35, sp["y_body"] - 25, p["z_crest"] - 80), ps["r_top"], ps["r_bottom"]
        )

        st = p["stomach"]
        S["stomach"] = (
            Ellipsoid(st["center"], st["axes"], rotation_matrix(st["yaw"], st["pitch"]))
            & S["abdomen"]
        )
        lv = p["liver"]
        R = rotation_matrix(lv["yaw"])
        S["liver"] = (
            Ellipsoid(lv["right_center"], lv["right_axes"], R)
            | Ellipsoid(lv["left_center"], lv["left_axes"], R)
        ) & S["abdomen"]
        spl = p["spleen"]
        S["spleen"] = (
            Ellipsoid(spl["center"], spl["axes"], rotation_matrix(spl["yaw"], spl["pitch"]))
            & S["abdomen"]
        )
        for side, k in p["kidneys"].items():
            e = Ellipsoid(k["center"], k["axes"], rotation_matrix(k["yaw"], k["pitch"]))
            sign = 1.0 if side == "left" else -1.0
            med = e.scaled(k["medulla_scale"], shift=(-sign * 3.0, -3.0, 0.0))
            S[f"kidney_{side}_cortex"] = e & S["muscle_outer"]
            S[f"kidney_{side}_medulla"] = med & S["muscle_outer"]
            S[f"kidney_{side}_ellipsoid"] = e

        med_w = p["mediastinum_half_width"]
        S["lung_right"] = S["thorax"] & above & HalfSpace(0, -med_w, "below")
        S["lung_left"] = S["thorax"] & above & HalfSpace(0, med_w, "above")
        hp = p["heart"]
        heart = Ellipsoid(hp["center"], hp["axes"], rotation_matrix(hp["yaw"], hp["pitch"]))
        S["heart"] = heart & Below(self.diaphragm, 0.0, -1)
        S["heart_chambers"] = heart.scaled(0.72) & Below(self.diaphragm, 4.0, -1)

        # vessels
        v = p["vessels"]
        y_ant_spine = sp["y_body"] - sp["ay"]
        r_ao, r_iv = v["aorta_r"], v["ivc_r"]
        zc = p["z_crest"]
        a0 = (v["aorta_x"] + 5, sp["y_body"] - 5, 400.0)
        a1 = (v["aorta_x"], y_ant_spine - r_ao - 2, zd - 80)
        a2 = (v["aorta_x"] * 0.4, y_ant_spine - r_ao - 4, zc + 10)
        i0 = (-22.0, y_ant_spine - r_iv - 3, zc + 5)
        i1 = (-25.0, y_ant_spine - r_iv - 10, p["diaphragm"]["z_right"] - 30)
        i2 = (-15.0, hp["center"][1] + 10, zd + 25)
        vessels = [
            Capsule(a0, a1, r_ao), Capsule(a1, a2, r_ao),
            Capsule(i0, i1, r_iv), Capsule(i1, i2, r_iv),
        ]
        for sign in (1, -1):
            vessels.append(Capsule(a2, (sign * 60.0, y_ant_spine - 20, zc - 110), 0.65 * r_ao))
            vessels.append(Capsule(i0, (sign * 50.0, y_ant_spine - 10, zc - 110), 0.7 * r_iv))
        S["aorta"] = Capsule(a0, a1, r_ao) | Capsule(a1, a2, r_ao)
        S["vessels"] = _union(vessels)

        # spine: vertebral bodies (cortex, spongiosa), discs, arches and processes
        vb = EllipticPrism(0.0, sp["y_body"], sp["ax"], sp["ay"], sp["z_bottom"], 1e4)
        vb_in = EllipticPrism(
            0.0, sp["y_body"], sp["ax"] - 2.5, sp["ay"] - 2.5, sp["z_bottom"], 1e4
        )
        P, disc, ph = sp["period"], sp["disc"], sp["phase"]
        vert = PeriodicZ(ph, P, disc, P)
        vert_in = PeriodicZ(ph, P, disc + 2.0, P - 2.0)
        canal_y = sp["y_body"] + sp["ay"] + sp["canal_r"] + 1.0
        ring = EllipticPrism(0.0, canal_y, sp["arch_r"], sp["arch_r"], sp["z_bottom"], 1e4) - (
            EllipticPrism(0.0, canal_y, sp["canal_r"], sp["canal_r"])
        )
        ring_in = EllipticPrism(
            0.0, canal_y, sp["arch_r"] - 2.0, sp["arch_r"] - 2.0, sp["z_bottom"], 1e4
        ) - EllipticPrism(0.0, canal_y, sp["canal_r"] + 2.0, sp["canal_r"] + 2.0)
        y_tip = p["body"]["b_post"] - fat["post"] - 8.0
        spinous = Box((-4.0, canal_y + sp["arch_r"] - 3, sp["z_bottom"]), (4.0, y_tip, 1e4))
        spinous_in = Box((-2.0, canal_y + sp["arch_r"] - 1, sp["z_bottom"]), (2.0, y_tip - 2, 1e4))
        trans = Box((-42.0, canal_y - 6, sp["z_bottom"]), (42.0, canal_y + 4, 1e4)) - Box(
            (-14.0, -1e4, -1e4), (14.0, 1e4, 1e4)
        )
        trans_phase = PeriodicZ(ph, P, disc + 6.0, P - 6.0)
        S["spine_cortical"] = (vb & vert) | ((ring | spinous) & vert) | (trans & trans_phase)
        S["spine_spongiosa"] = (vb_in & vert_in) | ((ring_in | spinous_in) & vert_in)
        S["spine_discs"] = vb & PeriodicZ(ph, P, 0.0, disc)
        S["vertebral_bodies"] = vb

        # ribs in the muscle wall, descending anteriorly
        rb = p["ribs"]
        zb = p["diaphragm"]["z_left"]
        A = float(self.a(zb)) - fat["side"] - 0.5 * wall["side"]
        y_ant = -(float(self.b_ant(zb)) - fat["ant"] - 0.5 * wall["ant"])
        y_post = canal_y
        cy, B = 0.5 * (y_ant + y_post), 0.5 * (y_post - y_ant)
        kw = dict(
            A=A, B=B, cy=cy, z0=rb["z0"], pitch=rb["pitch"], height=rb["height"],
            drop=rb["drop"], half_width=rb["half_width"], exclude_x=sp["ax"] + 8.0,
        )
        S["ribs_cortical"] = Ribs(**kw) & S["body"]
        S["ribs_spongiosa"] = Ribs(**kw, shrink=1.5) & S["body"]

        # pelvis: iliac wings (ellipsoidal shells) and sacrum
        pv = p["pelvis"]
        cz = zc - pv["ilium_az"]
        wings, wings_in = [], []
        a_hip = float(self.a(zc)) - fat["side"] - wall["side"] - 8.0
        th = pv["ilium_thickness"]
        for sign in (1.0, -1.0):
            cx = sign * pv["ilium_cx"]
            ax = max(a_hip - pv["ilium_cx"], 40.0)
            axes = (ax, pv["ilium_ay"], pv["ilium_az"])
            c = (cx, pv["ilium_cy"], cz)
            part = (
                HalfSpace(0, cx - sign * 0.2 * ax, "above" if sign > 0 else "below")
                & HalfSpace(1, pv["ilium_cy"] - 0.7 * pv["ilium_ay"], "above")
                & HalfSpace(2, zc, "below")
            )
            outer = Ellipsoid(c, axes)
            inner = Ellipsoid(c, [v - th for v in axes])
            wings.append((outer - inner) & part)
            wings_in.append(
                (Ellipsoid(c, [v - 2.0 for v in axes]) - Ellipsoid(c, [v - th + 2.0 for v in axes]))
                & part
            )
        Rs = rotation_matrix(0.0, 0.0, pv["sacrum_roll"])
        sacrum = Ellipsoid(pv["sacrum_center"], pv["sacrum_axes"], Rs)
        sacrum_in = Ellipsoid(pv["sacrum_center"], [v - 2.5 for v in pv["sacrum_axes"]], Rs)
        S["pelvis_cortical"] = (wings[0] | wings[1] | sacrum) & S["body"]
        S["pelvis_spongiosa"] = (wings_in[0] | wings_in[1] | sacrum_in) & S["body"]

    def paint_list(self, lesions: list[dict] | None = None) -> list[tuple[Shape, str, str | None]]:
        """Shapes in painting order as ``(shape, label name, tissue name or None)``.

        Later entries overwrite earlier ones; ``None`` keeps the tissue underneath.
        """
        S = self.shapes
        items: list[tuple[Shape, str, str | None]] = [
            (S["body"], "fat", "adipose"),
            (S["muscle_outer"], "body", "muscle"),
            (S["abdomen"], "fat", "adipose"),
        ]
        if "abdomen_soft" in S:
            items += [(S["abdomen_soft"], "body", "soft_tissue"), (S["bowel"], "bowel", "gi")]
        items += [
            (S["thorax"], "body", "soft_tissue"),
            (S["psoas"], "body", "muscle"),
            (S["stomach"], "stomach", "gi"),
            (S["liver"], "liver", "liver"),
            (S["spleen"], "spleen", "spleen"),
        ]
        for side in ("left", "right"):
            items += [
                (S[f"kidney_{side}_cortex"], f"kidney_{side}_cortex", "kidney"),
                (S[f"kidney_{side}_medulla"], f"kidney_{side}_medulla", "kidney"),
            ]
        items += [
            (S["lung_left"], "lung_left", "lung"),
            (S["lung_right"], "lung_right", "lung"),
            (S["heart"], "body", "muscle"),
            (S["heart_chambers"], "blood_pool", "blood"),
            (S["vessels"], "blood_pool", "blood"),
            (S["spine_discs"], "body", "cartilage"),
            (S["spine_cortical"], "spine", "cortical_bone"),
            (S["spine_spongiosa"], "spine", "spongiosa"),
            (S["ribs_cortical"], "ribs", "cortical_bone"),
            (S["ribs_spongiosa"], "ribs", "spongiosa"),
            (S["pelvis_cortical"], "pelvis", "cortical_bone"),
            (S["pelvis_spongiosa"], "pelvis", "spongiosa"),
        ]
        for les in lesions or []:
            shape, core = lesion_shapes(les, self)
            name = lesion_name(les["k"], les["host"])
            bone = les["host"] in ("spine", "pelvis")
            items.append((shape, name, None if bone else "tumour"))
            if core is not None:
                items.append((core, name, "necrosis"))
        return items


def _union(shapes: list[Shape]) -> Shape:
    out = shapes[0]
    for s in shapes[1:]:
        out = out | s
    return out


def tissue_code(name: str | None) -> int:
    return -1 if name is None else TISSUE_CODE[name]
