"""mcdose.metrics: MDE, NRMSE, DVHs and the paper's evaluation regions.

Definitions from Li, Fessler, Mikell, Wilderman, Dewaraja, "DblurDoseNet", Med. Phys. 49
(2022) 1216 (REFERENCES.md, residual-CNN paper section):
MDE = |mean dose(region) − mean GT(region)| / mean GT(region);
NRMSE = sqrt(mean((x̂ − x)²)) / sqrt(mean(x²)) over the region's voxels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.metrics import (
    body_mask,
    cumulative_dvh,
    dvh_metrics,
    mde,
    mean_deviation,
    nrmse,
    region_class,
    standard_regions,
)


def _volumes():
    truth = np.zeros((1, 2, 3), dtype=np.float32)
    estimate = np.zeros_like(truth)
    mask = np.zeros(truth.shape, dtype=bool)
    truth[0, 0, :] = [1, 2, 3]
    truth[0, 1, 0] = 4
    estimate[0, 0, :] = [2, 2, 3]
    estimate[0, 1, 0] = 5
    mask[0, 0, :] = True
    mask[0, 1, 0] = True
    truth[0, 1, 1:] = 100.0  # outside the mask: must not count
    return estimate, truth, mask


def test_mde_hand_computed():
    estimate, truth, mask = _volumes()
    # region means: estimate 12/4 = 3, truth 10/4 = 2.5 -> |3 - 2.5| / 2.5 = 0.2
    assert mde(estimate, truth, mask) == pytest.approx(0.2, rel=1e-12)
    assert mde(truth, truth, mask) == 0.0
    # symmetric in the sign of the error
    assert mde(2 * truth - estimate, truth, mask) == pytest.approx(0.2, rel=1e-12)


def test_mean_deviation_is_the_signed_mde():
    estimate, truth, mask = _volumes()
    assert mean_deviation(estimate, truth, mask) == pytest.approx(0.2, rel=1e-12)
    assert mean_deviation(2 * truth - estimate, truth, mask) == pytest.approx(-0.2, rel=1e-12)
    with pytest.raises(InputError, match="not positive"):
        mean_deviation(estimate, np.zeros_like(truth), mask)


def test_nrmse_hand_computed():
    estimate, truth, mask = _volumes()
    # errors (1, 0, 0, 1): sqrt(2/4); truth² mean (1 + 4 + 9 + 16)/4 = 7.5
    expected = np.sqrt(0.5) / np.sqrt(7.5)
    assert nrmse(estimate, truth, mask) == pytest.approx(expected, rel=1e-12)
    assert nrmse(truth, truth, mask) == 0.0


def test_metric_errors():
    estimate, truth, mask = _volumes()
    with pytest.raises(InputError, match="empty"):
        mde(estimate, truth, np.zeros_like(mask))
    with pytest.raises(InputError, match="shape"):
        nrmse(estimate[:, :1], truth, mask)
    with pytest.raises(InputError, match="not positive"):
        mde(estimate, np.zeros_like(truth), mask)
    with pytest.raises(InputError, match="zero"):
        nrmse(estimate, np.zeros_like(truth), mask)


def test_cumulative_dvh_values_and_monotone():
    dose = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    mask = np.ones(dose.shape, dtype=bool)
    levels, volume = cumulative_dvh(dose, mask, [0.0, 1.0, 2.0, 2.5, 4.0, 5.0])
    np.testing.assert_allclose(volume, [1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    rng = np.random.default_rng(1)
    dose = rng.gamma(2.0, 1.0, size=(5, 6, 7))
    mask = rng.random(dose.shape) < 0.5
    levels, volume = cumulative_dvh(dose, mask, 50)
    assert levels[0] == 0.0 and levels[-1] == pytest.approx(dose[mask].max())
    assert volume[0] == 1.0
    assert np.all(np.diff(volume) <= 0)
    assert volume[-1] == pytest.approx(1 / mask.sum())  # only the maximum voxel reaches it
    with pytest.raises(InputError):
        cumulative_dvh(dose, mask, [2.0, 1.0])


def test_dvh_metrics():
    dose = np.arange(1, 101, dtype=np.float64).reshape(1, 10, 10)  # 1..100
    mask = np.ones(dose.shape, dtype=bool)
    m = dvh_metrics(dose, mask, v_levels=(50.0, 100.0))
    assert m["D50"] == pytest.approx(50.5)  # median
    assert m["D2"] == pytest.approx(np.percentile(dose, 98))
    assert m["D98"] == pytest.approx(np.percentile(dose, 2))
    assert m["D2"] > m["D50"] > m["D98"]
    assert m["V_50"] == pytest.approx(0.51) and m["V_100"] == pytest.approx(0.01)


def test_standard_regions():
    names = {
        0: "background", 1: "body", 2: "liver", 3: "lesion_1_liver", 4: "lesion_2_body",
        5: "kidney_left_cortex", 6: "kidney_left_medulla", 7: "kidney_right_cortex",
        8: "spleen", 9: "lesion_10_liver",
    }
    labels = np.arange(10, dtype=np.int16).reshape(1, 2, 5)
    regions = standard_regions(names, labels)
    assert list(regions) == [
        "healthy_liver", "liver", "tumour/lesion_1_liver", "tumour/lesion_2_body",
        "tumour/lesion_10_liver", "spleen", "kidney_left", "kidney_right", "body",
    ]

    def values(name):
        return sorted(labels[regions[name]].tolist())

    assert values("healthy_liver") == [2]
    assert values("liver") == [2, 3, 9]  # liver + its lesions, not lesion_2_body
    assert values("tumour/lesion_2_body") == [4]
    assert values("kidney_left") == [5, 6]
    assert values("kidney_right") == [7]
    assert values("spleen") == [8]
    assert values("body") == list(range(1, 10))
    assert region_class("tumour/lesion_1_liver") == "tumour"
    assert region_class("liver") == "liver"
    # JSON string with str keys (as stored in case files); absent organs are left out
    only_liver = standard_regions(json.dumps({"0": "background", "2": "liver"}), labels)
    assert set(only_liver) == {"healthy_liver", "liver", "body"}


def test_body_mask():
    labels = np.array([[[0, 1, 2]]])
    assert body_mask(labels).tolist() == [[[False, True, True]]]
    density = np.array([[[0.0012, 0.26, 1.0]]])  # air, lung, soft tissue
    assert body_mask(density=density).tolist() == [[[False, True, True]]]
    with pytest.raises(InputError):
        body_mask()
