"""Patient dosimetry from a clinical SPECT/CT: ``mcdose dose``.

One module per job:

* :mod:`~mcdose.dosimetry.inputs` — read and validate SPECT and CT, convert SPECT units to
  MBq per voxel, frame-of-reference / overlap / HU checks, the dose grid, resampling, body
  mask;
* :mod:`~mcdose.dosimetry.labels` — organ/lesion labels from a label image or a DICOM
  RTSTRUCT, on the dose grid;
* :mod:`~mcdose.dosimetry.timeintegration` — time-activity fits (mono-, bi-exponential,
  trapezoid) per voxel or per organ, registration of later time points;
* :mod:`~mcdose.dosimetry.methods` — dose rate by VDK, residual CNN or Monte Carlo;
* :mod:`~mcdose.dosimetry.rtdose` — DICOM RT Dose writer;
* :mod:`~mcdose.dosimetry.report` — organ table (CSV/JSON), DVH plot, one-page HTML report;
* :mod:`~mcdose.dosimetry.pipeline` — :func:`run_dosimetry`, the whole chain with atomic
  outputs.

The public names are re-exported lazily (``import mcdose.dosimetry`` stays cheap)::

    from mcdose.dosimetry import run_dosimetry, TimePoint
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_dosimetry": "mcdose.dosimetry.pipeline",
    "DosimetryResult": "mcdose.dosimetry.pipeline",
    "TimePoint": "mcdose.dosimetry.pipeline",
    "METHODS": "mcdose.dosimetry.methods",
    "INTEGRATION_METHODS": "mcdose.dosimetry.timeintegration",
    "load_ct": "mcdose.dosimetry.inputs",
    "load_spect": "mcdose.dosimetry.inputs",
    "load_labels": "mcdose.dosimetry.labels",
    "write_rtdose": "mcdose.dosimetry.rtdose",
    "read_rtdose": "mcdose.dosimetry.rtdose",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcdose.dosimetry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
