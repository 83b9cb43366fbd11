"""Tests of the continuous shapes and random fields behind the phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from mcdose.phantoms._fields import LatticeField
from mcdose.phantoms._shapes import Box, Capsule, Ellipsoid, rotation_matrix, sub_ranges


def test_ellipsoid_rotation_and_bbox():
    e = Ellipsoid((10.0, 0.0, 0.0), (30.0, 10.0, 5.0), rotation_matrix(90.0))
    # rotated by 90° about z: the long axis now lies along y
    assert e.inside(np.array([10.0]), np.array([28.0]), np.array([0.0]))[0]
    assert not e.inside(np.array([38.0]), np.array([0.0]), np.array([0.0]))[0]
    np.testing.assert_allclose(e.lo, [0.0, -30.0, -5.0], atol=1e-9)
    np.testing.assert_allclose(e.hi, [20.0, 30.0, 5.0], atol=1e-9)
    # voxelised volume converges to 4/3 π abc
    xs = np.arange(-40, 60, 1.0, dtype=np.float32) + 0.5
    m = e.inside_grid(xs, xs - 10, xs - 10)
    assert m.sum() * 1e-3 == pytest.approx(e.volume_ml(), rel=0.02)


def test_csg_and_capsule():
    box = Box((0, 0, 0), (10, 10, 10))
    cap = Capsule((0, 0, 0), (0, 0, 20), 2.0, 4.0)
    both = box & cap
    np.testing.assert_allclose(both.lo, [0, 0, 0])
    np.testing.assert_allclose(both.hi, [4, 4, 10])
    pts = np.array([[1.0, 1.0, 5.0], [3.5, 0.0, 19.0], [3.5, 0.0, 1.0]]).T
    assert cap.inside(*pts).tolist() == [True, True, False]
    assert (box - cap).inside(*pts).tolist() == [False, False, True]
    xs = np.arange(-20, 20, 1.0)
    assert sub_ranges(box, xs, xs, xs) == ((20, 31), (20, 31), (20, 31))
    assert sub_ranges(box, xs - 100, xs, xs) is None


def test_field_independent_of_box_and_unit_variance():
    big = LatticeField(3, 1, 3.0, 6.0, (-120, -120, -60), (120, 120, 60))
    part = LatticeField(3, 1, 3.0, 6.0, (0, 0, 0), (40, 40, 40))
    xs = np.linspace(0, 40, 17)
    np.testing.assert_array_equal(big.on_grid(xs, xs, xs), part.on_grid(xs, xs, xs))
    pts = big.at_points(xs, xs, xs)
    np.testing.assert_allclose(pts, big.on_grid(xs, xs, xs)[np.arange(17), np.arange(17),
                                                           np.arange(17)], atol=1e-6)
    v = big.values
    assert abs(v.mean()) < 0.1 and v.std() == pytest.approx(1.0, abs=0.1)
    other = LatticeField(4, 1, 3.0, 6.0, (0, 0, 0), (40, 40, 40))
    assert not np.allclose(other.values, part.values)
