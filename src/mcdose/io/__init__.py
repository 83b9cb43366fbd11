"""Case files (HDF5), image files (SimpleITK) and DICOM.

The public names are re-exported lazily, so ``import mcdose.io.atomic`` or
``import mcdose.io.case`` does not pull in SimpleITK::

    from mcdose.io import Geometry, create_case, read_dataset, read_image
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Geometry": "mcdose.io.case",
    "CaseInfo": "mcdose.io.case",
    "DOSE_DATASETS": "mcdose.io.case",
    "create_case": "mcdose.io.case",
    "dose_attrs": "mcdose.io.case",
    "open_case": "mcdose.io.case",
    "read_case_info": "mcdose.io.case",
    "read_dataset": "mcdose.io.case",
    "read_label_names": "mcdose.io.case",
    "read_slices": "mcdose.io.case",
    "source_fingerprint": "mcdose.io.case",
    "stage_done": "mcdose.io.case",
    "validate_case": "mcdose.io.case",
    "write_datasets": "mcdose.io.case",
    "read_image": "mcdose.io.images",
    "write_image": "mcdose.io.images",
    "resample_to_grid": "mcdose.io.images",
    "read_dicom_metadata": "mcdose.io.dicom",
    "atomic_path": "mcdose.io.atomic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcdose.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
