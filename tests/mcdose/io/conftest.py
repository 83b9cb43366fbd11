"""Fixtures for the mcdose.io tests (tiny grids, deterministic)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mcdose.io.case import Geometry
from tests.helpers import make_case


@pytest.fixture
def case_path(tmp_path: Path) -> Path:
    """A valid 6x8x10 case with activity, labels, spect, dose/mc, dose/vdk, uncertainty."""
    return make_case(tmp_path, spect=True, doses=("dose/mc", "dose/vdk", "dose/mc_uncertainty"))


@pytest.fixture
def rotated_geometry() -> Geometry:
    """Anisotropic spacing, non-zero origin, rotation of 30 degrees about z then 10 about x."""
    cz, sz = math.cos(math.radians(30)), math.sin(math.radians(30))
    cx, sx = math.cos(math.radians(10)), math.sin(math.radians(10))
    rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]]
    rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]]
    m = [[sum(rz[i][k] * rx[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    return Geometry((0.8, 1.25, 3.0), (-12.5, 30.0, 104.25), tuple(v for row in m for v in row))

