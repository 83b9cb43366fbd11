"""Provenance recorded in every output file: software versions, time, host."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

from mcdose import __version__


def _maybe_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def provenance(**extra: object) -> dict[str, object]:
    """Return a JSON-serialisable description of the software that produced a result.

    Parameters
    ----------
    **extra
        Additional key/value pairs to record (seed, histories, method, ...).

    Returns
    -------
    dict
        ``software`` ("mcdose"), ``software_version``, ``python``, ``numpy``, ``numba``,
        ``platform``, ``created_utc`` and every key of ``extra``.
    """
    info: dict[str, object] = {
        "software": "mcdose",
        "software_version": __version__,
        "python": sys.version.split()[0],
        "numpy": _maybe_version("numpy"),
        "numba": _maybe_version("numba"),
        "platform": platform.platform(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info
