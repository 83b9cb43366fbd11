"""Simulated SPECT of a case's true activity: projection, Poisson noise, OSEM, calibration.

Public API
----------
:class:`SpectProtocol`
    Acquisition/reconstruction parameters (views, pixel size, collimator response, OSEM).
:func:`simulate_spect`
    Activity + density → reconstructed SPECT activity on the case grid (MBq per voxel).
:func:`spect_case`
    The same for a case file; writes the ``spect`` dataset.
:data:`PAPER_COUNT_LEVELS`, :func:`choose_count_level`
    The paper's four total count levels and a reproducible per-case choice.

PyTomography (and torch) are imported only when a simulation runs; without them
``backend="auto"`` uses a documented Gaussian-blur + Poisson fallback and warns.
See ``docs/spect.md``.
"""

from mcdose.spect.case import spect_case, spect_params
from mcdose.spect.protocol import PAPER_COUNT_LEVELS, SpectProtocol, choose_count_level
from mcdose.spect.simulate import BACKENDS, simulate_spect

__all__ = [
    "BACKENDS",
    "PAPER_COUNT_LEVELS",
    "SpectProtocol",
    "choose_count_level",
    "simulate_spect",
    "spect_case",
    "spect_params",
]
