"""Tests of mcdose.units: activity units to MBq per voxel / MBq/ml."""

from __future__ import annotations

import numpy as np
import pytest

from mcdose.errors import InputError
from mcdose.units import (
    ACTIVITY_UNITS,
    activity_to_mbq_per_ml,
    activity_to_mbq_per_voxel,
    parse_activity_unit,
)
from tests.helpers import assert_one_line


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("MBq", (False, 1.0)), ("kBq", (False, 1e-3)), ("Bq", (False, 1e-6)),
        ("MBq/ml", (True, 1.0)), ("kBq/ml", (True, 1e-3)), ("Bq/ml", (True, 1e-6)),
        ("bq/cm3", (True, 1e-6)), ("BQML", (True, 1e-6)), ("kBq/mL", (True, 1e-3)),
        (" mbq / ml ", (True, 1.0)), ("MBQML", (True, 1.0)),
    ],
)
def test_parse_activity_unit(unit, expected):
    assert parse_activity_unit(unit) == expected


@pytest.mark.parametrize("unit", ["Ci", "ml", "Bq/l", "", "counts", "MBq/ml/ml"])
def test_unknown_units_are_refused_listing_the_choices(unit):
    with pytest.raises(InputError) as err:
        parse_activity_unit(unit, "--activity-units")
    assert_one_line(err, "--activity-units", repr(unit), *ACTIVITY_UNITS)


def test_conversions_between_amount_and_concentration():
    voxel_ml = 0.064  # 4 mm cubes
    values = np.array([[[0.0, 1.0, 2.5e6]]], np.float32)
    # 2.5e6 Bq/ml in a 0.064 ml voxel = 0.16 MBq
    got = activity_to_mbq_per_voxel(values, "Bq/ml", voxel_ml)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[[0.0, 0.064e-6, 0.16]]], rtol=1e-6)
    np.testing.assert_allclose(activity_to_mbq_per_voxel(values, "kBq", voxel_ml),
                               values * 1e-3, rtol=1e-7)
    np.testing.assert_allclose(activity_to_mbq_per_ml(values, "MBq", voxel_ml),
                               values / 0.064, rtol=1e-6)
    np.testing.assert_allclose(activity_to_mbq_per_ml(values, "kBq/ml", voxel_ml),
                               values * 1e-3, rtol=1e-7)
    # round trip, and integer input gives float32
    back = activity_to_mbq_per_voxel(activity_to_mbq_per_ml(values, "MBq", voxel_ml),
                                     "MBq/ml", voxel_ml)
    np.testing.assert_allclose(back, values, rtol=1e-6)
    assert activity_to_mbq_per_voxel(np.arange(3), "MBq", 1.0).dtype == np.float32
    assert activity_to_mbq_per_voxel(values.astype(np.float64), "MBq", 1.0).dtype == np.float64
