"""Tests of mcdose.dosimetry.recovery: the RC(volume) curve of the default SPECT protocol.

Reference numbers: docs/spect.md (Validation) measures, with the same simulation, protocol
and phantom, RC = 0.253 (10 mm), 0.434 (13 mm), 0.581 (17 mm), 0.701 (22 mm), 0.760
(28 mm), 0.817 (37 mm) at 10⁹ counts (nearly noise-free, seed 1).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mcdose.dosimetry.recovery import is_lesion, load_recovery_curve
from mcdose.errors import InputError
from tests.helpers import assert_one_line

DOCS_RC = {10.0: 0.253, 13.0: 0.434, 17.0: 0.581, 22.0: 0.701, 28.0: 0.760, 37.0: 0.817}


def _sphere_ml(d_mm):
    return math.pi / 6 * (d_mm / 10) ** 3


def test_shipped_curve_is_the_documented_measurement():
    """The packaged curve reproduces docs/spect.md's noise-free row to its 3 decimals."""
    curve = load_recovery_curve()
    for d, rc in DOCS_RC.items():
        assert curve(_sphere_ml(d)) == pytest.approx(rc, abs=5e-4)
    assert curve.protocol["views"] == 128 and curve.protocol["iterations"] == 16
    assert np.all(np.diff(curve.rc) > 0)  # recovery rises with size


def test_interpolation_and_ends():
    """Log-volume interpolation between measured spheres; held at the ends, flagged."""
    curve = load_recovery_curve()
    v13, v17 = _sphere_ml(13), _sphere_ml(17)
    mid = math.sqrt(v13 * v17)
    assert curve(mid) == pytest.approx(0.5 * (DOCS_RC[13.0] + DOCS_RC[17.0]), abs=1e-3)
    assert curve(0.01) == pytest.approx(curve.rc[0]) and not curve.in_range(0.01)
    assert curve(500.0) == pytest.approx(curve.rc[-1]) and curve.in_range(5.0)


def test_uncertainty_adds_the_volume_term_through_the_slope():
    curve = load_recovery_curve()
    v = _sphere_ml(15)
    own = curve.uncertainty(v, 0.0)
    both = curve.uncertainty(v, 0.3 * v)
    assert own > 0
    # slope dRC/dV between 13 and 17 mm: ΔRC / Δln V / V
    slope = (DOCS_RC[17.0] - DOCS_RC[13.0]) / math.log(_sphere_ml(17) / _sphere_ml(13)) / v
    assert both == pytest.approx(math.hypot(own, slope * 0.3 * v), rel=0.01)


def test_lesion_names():
    assert is_lesion("Lesion") and is_lesion("lesion_1_liver") and is_lesion("tumor_2")
    assert not is_lesion("liver") and not is_lesion("kidney_left")


@pytest.mark.parametrize("doc,words", [({"rc": [0.5, 0.8]}, ["volumes_ml"]),
                                       ({"volumes_ml": [2, 1], "rc": [0.5, 0.8]},
                                        ["increasing"]),
                                       ({"volumes_ml": [1, 2], "rc": [0.5, 2.0]}, ["rc"])])
def test_bad_curve_files(tmp_path, doc, words):
    path = tmp_path / "rc.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as exc:
        load_recovery_curve(path)
    assert_one_line(exc, str(path), *words)
