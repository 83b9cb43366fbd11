"""Monte Carlo transport of radionuclide decays through voxelised density maps.

Public API: :func:`simulate_dose` (arrays in, dose rate out), :func:`simulate_case`
(case file in, ``dose/mc`` out), :class:`TransportOptions`, :class:`DoseResult`.
The CUDA driver is imported only when ``device`` resolves to ``"cuda"``.
"""

from mcdose.transport.case import simulate_case
from mcdose.transport.setup import TransportOptions
from mcdose.transport.simulate import DoseResult, simulate_dose

__all__ = ["DoseResult", "TransportOptions", "simulate_case", "simulate_dose"]
