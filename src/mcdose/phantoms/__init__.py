"""Procedural virtual patients for Lu-177 radionuclide-therapy dosimetry.

:func:`generate_phantom` draws a random adult torso (lower thorax to iliac crests) from a
seed: body outline with a subcutaneous fat layer and muscle wall, lungs, heart, liver,
spleen, stomach, bowel with visceral fat, kidneys (cortex / medulla), psoas, aorta and vena
cava, spine, ribs and pelvis (cortical shell and spongiosa), and lesions of 0.5–5 cm
(spheres and ellipsoids, some with necrotic cores) in the liver, lymph nodes, mesentery and
bone.  Densities come from ICRU 46 / ICRP 110 with a smooth texture; the activity is
typical of [177Lu]Lu-DOTATATE about 24 h after 7.4 GBq, heterogeneous in lesions.

The anatomy is generated in continuous coordinates (mm) and sampled on any grid
(:data:`PRESETS` or ``shape`` / ``spacing_mm``), so a seed means the same patient at every
resolution.  :func:`write_phantom_case` stores a phantom as a case file;
:func:`phantom_from_images` builds one from a real CT and activity image instead.

Label values and names (docs/DEVELOPING.md): :data:`ORGAN_LABELS`, lesions
``LESION_BASE + k`` named ``lesion_<k>_<host>``.  Tissue densities: :data:`TISSUES`;
uptake model: :data:`UPTAKE_RATIO` and :mod:`mcdose.phantoms._activity`.
"""

from ._activity import BACKGROUND_MBQ_PER_ML, TUMOUR_TO_LIVER, UPTAKE_RATIO
from ._case import phantom_from_images, read_phantom_params, write_phantom_case
from ._generate import PRESETS, Phantom, PhantomPreset, generate_phantom, resolve_grid
from ._tissues import LESION_BASE, ORGAN_LABELS, TISSUES, lesion_name

__all__ = [
    "BACKGROUND_MBQ_PER_ML",
    "LESION_BASE",
    "ORGAN_LABELS",
    "PRESETS",
    "TISSUES",
    "TUMOUR_TO_LIVER",
    "UPTAKE_RATIO",
    "Phantom",
    "PhantomPreset",
    "generate_phantom",
    "lesion_name",
    "phantom_from_images",
    "read_phantom_params",
    "resolve_grid",
    "write_phantom_case",
]
