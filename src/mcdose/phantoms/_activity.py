"""Activity model: Lu-177 DOTATATE about 24 h after 7.4 GBq.

Concentrations are drawn per case as ratios to the background soft tissue (``body``), whose
concentration is itself drawn in :data:`BACKGROUND_MBQ_PER_ML`.  The ranges are approximate
and chosen so that absolute concentrations at 24 h land where published SPECT/CT dosimetry
of [177Lu]Lu-DOTATATE puts them: kidneys ≈ 0.5–1 MBq/mL (renal cortex above medulla,
proximal-tubule reabsorption), spleen ≈ 0.2–0.6 MBq/mL, normal liver ≈ 0.1–0.25 MBq/mL,
somatostatin-receptor-positive tumours ≈ 0.5–4 MBq/mL (tumour-to-liver 5–20, Krenning
grade ≥ 3), blood, marrow, bowel and muscle low, lungs and fat lowest.  The total activity
in an abdominal field of view comes out at ≈ 1–2.5 GBq (whole-body retention at 24 h is
≈ 40–60 % of 7.4 GBq, about half of it in this field of view).

Lesions are heterogeneous: their concentration is modulated by a log-normal random field
(σ 0.2–0.5) and necrotic cores hold no activity.

References
----------
.. [K01] D.J. Kwekkeboom et al., "[177Lu-DOTA0,Tyr3]octreotate: comparison with
   [111In-DTPA0]octreotide in patients", Eur. J. Nucl. Med. 28 (2001) 1319–1325
   (uptake at 24 h in kidneys, spleen, liver and tumours, % injected activity).
.. [S13] M. Sandström et al., "Individualized dosimetry of kidney and bone marrow in
   patients undergoing 177Lu-DOTA-octreotate treatment", J. Nucl. Med. 54 (2013) 33–41.
.. [C06] M. Cremonesi et al., "Dosimetry in peptide radionuclide receptor therapy: a
   review", J. Nucl. Med. 47 (2006) 1467–1475 (kidney, spleen, liver, tumour doses).
.. [H18] H. Hänscheid et al., "Dose mapping after endoradiotherapy with
   177Lu-DOTATATE/DOTATOC by a single measurement after 4 days", J. Nucl. Med. 59 (2018)
   75–81 (organ and tumour kinetics).
.. [M26] M. Ljungberg et al., "MIRD Pamphlet No. 26: joint EANM/MIRD guidelines for
   quantitative 177Lu SPECT applied for dosimetry of radiopharmaceutical therapy",
   J. Nucl. Med. 57 (2016) 151–162.
"""

from __future__ import annotations

import numpy as np

from ._tissues import LESION_BASE, ORGAN_LABELS

#: background soft-tissue concentration range at ~24 h (MBq/mL) — approximate
BACKGROUND_MBQ_PER_ML = (0.02, 0.03)

#: concentration ratio to background (min, max), drawn uniformly per case — approximate,
#: see the module references.  Kidney cortex > medulla; the ranges keep the mean renal
#: concentration above spleen and spleen above liver.
UPTAKE_RATIO: dict[str, tuple[float, float]] = {
    "body": (1.0, 1.0),
    "fat": (0.2, 0.4),
    "lung": (0.15, 0.3),
    "liver": (4.0, 8.0),
    "spleen": (10.0, 18.0),
    "kidney_cortex": (22.0, 34.0),
    "kidney_medulla": (10.0, 17.0),
    "stomach": (2.0, 4.0),
    "bowel": (1.5, 3.0),
    "spine": (1.5, 2.5),  # red marrow in the vertebral spongiosa
    "ribs": (1.0, 1.5),
    "pelvis": (1.2, 2.0),
    "blood_pool": (1.2, 2.0),
}
#: tumour-to-normal-liver concentration ratio, log-uniform per lesion
TUMOUR_TO_LIVER = (5.0, 20.0)
#: tumours are at least this multiple of the renal cortex (SSTR-positive lesions eligible
#: for PRRT take up more than the kidneys; keeps the ordering the evaluation relies on)
TUMOUR_MIN_TO_KIDNEY_CORTEX = 1.3
#: compact bone holds little activity (ratio to background)
CORTICAL_BONE_RATIO = 0.2
#: log-normal heterogeneity (σ of ln concentration): lesions per lesion, organs fixed
LESION_HETEROGENEITY_SIGMA = (0.2, 0.5)
ORGAN_HETEROGENEITY_SIGMA = 0.08
HETEROGENEOUS_ORGANS = (
    "liver", "spleen", "kidney_left_cortex", "kidney_right_cortex",
    "kidney_left_medulla", "kidney_right_medulla",
)


def _ratio_key(label: str) -> str:
    if label.startswith("lung_"):
        return "lung"
    if label.startswith("kidney_"):
        return "kidney_" + label.rsplit("_", 1)[1]
    return label


def sample_uptake(rng: np.random.Generator, lesions: list[dict]) -> dict:
    """Draw concentrations (MBq/mL) for every organ label and lesion; JSON-able dict.

    Also stores ``tumour_to_liver``, ``heterogeneity_sigma`` and ``concentration_MBq_per_ml``
    in each lesion dict.
    """
    bg = float(rng.uniform(*BACKGROUND_MBQ_PER_ML))
    ratio: dict[str, float] = {}
    for key, (lo, hi) in UPTAKE_RATIO.items():
        if key.startswith("kidney_"):
            continue
        ratio[key] = float(rng.uniform(lo, hi))
    for side in ("left", "right"):
        for part in ("cortex", "medulla"):
            ratio[f"kidney_{side}_{part}"] = float(rng.uniform(*UPTAKE_RATIO[f"kidney_{part}"]))
    conc = {}
    for name in ORGAN_LABELS:
        if name == "background":
            conc[name] = 0.0
            continue
        key = name if name in ratio else _ratio_key(name)
        conc[name] = bg * ratio[key]
    floor = TUMOUR_MIN_TO_KIDNEY_CORTEX * max(
        conc["kidney_left_cortex"], conc["kidney_right_cortex"]
    )
    lo, hi = np.log(TUMOUR_TO_LIVER[0]), np.log(TUMOUR_TO_LIVER[1])
    for les in lesions:
        t2l = float(np.exp(rng.uniform(lo, hi)))
        les["tumour_to_liver"] = t2l
        les["heterogeneity_sigma"] = float(rng.uniform(*LESION_HETEROGENEITY_SIGMA))
        les["concentration_MBq_per_ml"] = max(t2l * conc["liver"], floor)
    return {
        "background_MBq_per_ml": bg,
        "ratio_to_background": ratio,
        "concentration_MBq_per_ml": conc,
        "cortical_bone_MBq_per_ml": bg * CORTICAL_BONE_RATIO,
        "organ_heterogeneity_sigma": ORGAN_HETEROGENEITY_SIGMA,
        "model": "Lu-177 DOTATATE ~24 h after 7.4 GBq (approximate; see mcdose.phantoms)",
    }


def lookup_tables(uptake: dict, lesions: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per-label-value concentration (MBq/mL) and log-normal σ, float32 arrays."""
    n = LESION_BASE + 1 + max([les["k"] for les in lesions], default=0)
    conc = np.zeros(n, dtype=np.float32)
    sigma = np.zeros(n, dtype=np.float32)
    for name, value in ORGAN_LABELS.items():
        conc[value] = uptake["concentration_MBq_per_ml"][name]
        if name in HETEROGENEOUS_ORGANS:
            sigma[value] = uptake["organ_heterogeneity_sigma"]
    for les in lesions:
        conc[LESION_BASE + les["k"]] = les["concentration_MBq_per_ml"]
        sigma[LESION_BASE + les["k"]] = les["heterogeneity_sigma"]
    return conc, sigma
