"""float32 constants for the transport kernels.

The kernels run in single precision (positions within the grid, directions, energies, cross
sections and table values are float32; PHYSICS.md "On the GPU"), which halves the registers
a value costs on a GPU and uses the hardware's single-precision transcendental units.  numba
types a Python float literal as float64, and float32 ∘ float64 is float64, so a bare ``1.0``
in a kernel would silently promote everything after it: kernels write these constants (and
``np.float32(i)`` for integers) instead.  The only float64 left in a history is the
conversion of an energy to fixed-point tally units (:func:`mcdose.transport.history.to_fixed`),
where 2²⁰ units per keV exceed float32's 24-bit mantissa.
"""

from __future__ import annotations

import math

import numpy as np

F = np.float32
F0 = np.float32(0.0)
F1 = np.float32(1.0)
F2 = np.float32(2.0)
FHALF = np.float32(0.5)
F_TWO_PI = np.float32(2.0 * math.pi)
#: "Infinitely far": a distance (cm) larger than any grid.
F_FAR = np.float32(1e30)
