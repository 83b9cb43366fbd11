"""JSON of mcdose's records: NumPy values and paths made plain, atomic files, JSON attributes.

One place for what case-file attributes (``params``, ``provenance``), the dataset manifest,
reports and sidecar files need::

    json.dumps(record, default=json_default)
    write_json(path, record)            # atomic (temporary file + rename), trailing newline
    json_dict(attrs.get("provenance"))  # {} when absent, not JSON or not an object
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.io.atomic import atomic_path

__all__ = ["json_default", "json_dict", "write_json"]


def json_default(obj: Any) -> Any:
    """``default=`` of :func:`json.dumps`: NumPy scalars and arrays, paths, sets (sorted).

    Raises
    ------
    TypeError
        Anything else, as :func:`json.dumps` expects.
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    allow_nan: bool = True,
) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) atomically; return the path.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    obj
        Anything :func:`json_default` makes serialisable.
    indent, sort_keys
        As :func:`json.dumps`.
    allow_nan : bool
        False: refuse NaN / infinity (strict JSON; convert them first).
    """
    path = Path(path)
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan,
                      default=json_default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def json_dict(raw: Any) -> dict[str, Any]:
    """A JSON object given as text (an HDF5 attribute, ...) as a dict; ``{}`` when ``raw``
    is absent, not valid JSON or not an object.  A dict is returned as a copy."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, dict):
        return dict(raw)
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
