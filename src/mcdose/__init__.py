"""mcdose: patient-specific absorbed dose for radionuclide therapy.

Three engines answer the same question at different cost: a Monte Carlo transport engine
(:mod:`mcdose.transport`), voxel dose kernels (:mod:`mcdose.vdk`) and a residual CNN
(the separate :mod:`residualnet` package).  Everything is in keV, cm, g/cm³ and s unless a
name says otherwise; arrays are ``(z, y, x)`` and spacings ``(x, y, z)`` in mm.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mcdose")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
