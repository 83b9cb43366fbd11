"""Labels (names per docs/DEVELOPING.md) and tissue densities of the procedural phantoms.

A voxel has a *label* (organ or lesion; decides its activity concentration and how the
metrics group it) and a *tissue* (decides its mass density).  Most labels have one tissue;
bones have a cortical shell and spongiosa, lesions can have a necrotic core, the body label
covers muscle, soft tissue and intervertebral discs.

References
----------
.. [ICRU46] ICRU Report 46, *Photon, Electron, Proton and Neutron Interaction Data for Body
   Tissues* (1992): adipose 0.95, blood 1.06, cortical bone 1.92, kidney 1.05, liver 1.06,
   inflated lung 0.26, skeletal muscle 1.05, spleen 1.06, soft tissue 1.03, GI tract 1.03,
   cartilage 1.10 g/cm³.
.. [ICRP110] ICRP Publication 110, *Adult Reference Computational Phantoms*, Ann. ICRP
   39(2) (2009), Table A.2 (media of the reference phantoms; organ densities 1.03–1.06,
   cortical bone 1.92 g/cm³, spongiosa of the trunk 1.0–1.2 g/cm³).
.. [WW86] Woodard H.Q., White D.R., *The composition of body tissues*, Br. J. Radiol. 59
   (1986) 1209–1218: spongiosa (cancellous bone incl. marrow) ≈ 1.18 g/cm³.
.. [NIST] NIST, *Air, dry (near sea level)*, ESTAR/XCOM material 104: 1.205e-3 g/cm³.
"""

from __future__ import annotations

import numpy as np

#: Organ labels (value → name), lesions follow as ``LESION_BASE + k`` named
#: ``lesion_<k>_<host>``.  Names are the convention of docs/DEVELOPING.md.
ORGAN_LABELS: dict[str, int] = {
    "background": 0,
    "body": 1,
    "fat": 2,
    "lung_left": 3,
    "lung_right": 4,
    "liver": 5,
    "spleen": 6,
    "kidney_left_cortex": 7,
    "kidney_left_medulla": 8,
    "kidney_right_cortex": 9,
    "kidney_right_medulla": 10,
    "stomach": 11,
    "bowel": 12,
    "spine": 13,
    "ribs": 14,
    "pelvis": 15,
    "blood_pool": 16,
}
#: label value of lesion k is LESION_BASE + k (k = 1, 2, ...)
LESION_BASE = 100
#: hosts a lesion can be named after
LESION_HOSTS = ("liver", "body", "spine", "pelvis")
BONE_LABELS = ("spine", "ribs", "pelvis")


def lesion_name(k: int, host: str) -> str:
    """Label name of lesion ``k`` (1-based) in ``host``: ``lesion_<k>_<host>``."""
    return f"lesion_{int(k)}_{host}"


#: Tissue name → (code, density g/cm³, relative texture amplitude (1 s.d.), source).
TISSUES: dict[str, tuple[int, float, float, str]] = {
    "air": (0, 0.001205, 0.0, "NIST dry air"),
    "lung": (1, 0.26, 0.12, "ICRU 46 lung (inflated)"),
    "adipose": (2, 0.95, 0.01, "ICRU 46 adipose tissue"),
    "muscle": (3, 1.05, 0.015, "ICRU 46 skeletal muscle"),
    "soft_tissue": (4, 1.03, 0.015, "ICRU 46 soft tissue"),
    "liver": (5, 1.06, 0.015, "ICRU 46 liver"),
    "spleen": (6, 1.06, 0.015, "ICRU 46 spleen"),
    "kidney": (7, 1.05, 0.015, "ICRU 46 kidney"),
    "blood": (8, 1.06, 0.01, "ICRU 46 whole blood"),
    "gi": (9, 1.03, 0.02, "ICRU 46 GI tract (wall and contents)"),
    "cartilage": (10, 1.10, 0.02, "ICRU 46 cartilage (intervertebral discs)"),
    "spongiosa": (11, 1.18, 0.01, "Woodard & White 1986 spongiosa"),
    "cortical_bone": (12, 1.92, 0.03, "ICRU 46 / ICRP 110 cortical bone"),
    "tumour": (13, 1.05, 0.02, "soft-tissue range, ICRP 110 (approximate)"),
    "necrosis": (14, 1.02, 0.01, "fluid-like necrotic core (approximate)"),
}
TISSUE_CODE: dict[str, int] = {k: v[0] for k, v in TISSUES.items()}
TISSUE_DENSITY = np.array([v[1] for v in TISSUES.values()], dtype=np.float32)
TISSUE_TEXTURE = np.array([v[2] for v in TISSUES.values()], dtype=np.float32)

#: Physical bounds of every phantom density (g/cm³): air up to compact bone with texture;
#: inside the range of the paper's bilinear HU→density calibration (HU −1000 … ≈ 1700).
DENSITY_MIN_G_CM3 = 0.001205
DENSITY_MAX_G_CM3 = 2.2
