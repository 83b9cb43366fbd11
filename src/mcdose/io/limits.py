"""Plausible ranges of the numbers a user gives: refuse the absurd, gate the huge.

Two kinds of limits (documented in ``docs/inputs.md``):

* **physical** -- values no patient or phantom can have: a density of 0 everywhere or above
  :data:`MAX_DENSITY_G_CM3` (osmium, the densest element), voxels smaller than
  :data:`MIN_VOXEL_MM` or larger than :data:`MAX_VOXEL_MM`, split fractions that do not sum
  to 1.  Always refused;
* **resources** -- runs that are possible but would take longer than a day on this machine
  or more memory than it has: ``--histories`` above :data:`LARGE_HISTORIES`, more than
  :data:`LARGE_CASES` phantoms, arrays larger than the memory available.  Refused with the
  estimate and the flag :data:`FORCE_FLAG` that accepts it; above :data:`MAX_HISTORIES`
  (what a 64-bit counter of decays and its seeds can hold) always refused.  Thread counts
  above the cores are lowered to the core count with a warning (no harm done, none
  gained).

Every refusal is an :class:`~mcdose.errors.InputError` with one line naming the flag.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "FORCE_FLAG",
    "LARGE_CASES",
    "LARGE_HISTORIES",
    "MAX_DENSITY_G_CM3",
    "MAX_HISTORIES",
    "MAX_VOXEL_MM",
    "MIN_VOXEL_MM",
    "available_memory_bytes",
    "check_cases",
    "check_density",
    "check_fractions",
    "check_histories",
    "check_memory",
    "check_threads",
    "check_voxel_mm",
    "cpu_count",
]

log = logging.getLogger(__name__)

#: the one flag, in every command, that accepts a run estimated to be very large
FORCE_FLAG = "--force-large"
#: densest element, osmium, 22.59 g/cm³ (CRC Handbook of Chemistry and Physics, 97th ed.)
MAX_DENSITY_G_CM3 = 22.6
#: smallest voxel accepted, mm (1 µm; clinical voxels are 0.5-5 mm)
MIN_VOXEL_MM = 1e-3
#: largest voxel accepted, mm (1 m)
MAX_VOXEL_MM = 1000.0
#: decays above which a run needs FORCE_FLAG (1e10: hours to days on a GPU)
LARGE_HISTORIES = 10**10
#: hard ceiling: decays are counted in int64 and seeds split per batch
MAX_HISTORIES = 2**62
#: phantoms / dataset cases above which FORCE_FLAG is needed
LARGE_CASES = 10_000
#: decays per second assumed for the time estimate (one CPU core, the engine's order of
#: magnitude on a small phantom; benchmarks/results give the measured figures)
ESTIMATE_DECAYS_PER_S_PER_CORE = 2.0e4


def cpu_count() -> int:
    """Cores this process may use (affinity mask where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory_bytes() -> int:
    """Memory available to a new allocation (bytes): MemAvailable, else physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2**40


def _human_time(seconds: float) -> str:
    for unit, size in (("years", 3.15e7), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def check_histories(histories: Any, *, flag: str = "--histories", force: bool = False,
                    threads: int | None = None) -> int:
    """Decays to simulate as an int; refuse the impossible, gate the very large.

    Parameters
    ----------
    histories : int or float
        Requested decays (``1e7`` accepted when it is a whole number).
    flag : str
        Option named in messages.
    force : bool
        :data:`FORCE_FLAG` given: accept up to :data:`MAX_HISTORIES`.
    threads : int, optional
        Cores for the time estimate (default all).

    Raises
    ------
    InputError
        Not a whole positive number, above :data:`MAX_HISTORIES`, or above
        :data:`LARGE_HISTORIES` without ``force`` (with the estimated CPU time).
    """
    try:
        value = float(histories)
    except (TypeError, ValueError):
        raise InputError(f"{flag} {histories!r} is not a number") from None
    if not math.isfinite(value) or value < 1 or not value.is_integer():
        raise InputError(f"{flag} {histories!r} must be a whole number >= 1")
    if value > MAX_HISTORIES:
        raise InputError(f"{flag} {histories!r} exceeds {MAX_HISTORIES:.3g}, the most decays "
                         f"mcdose can count; no run can be that long")
    n = int(histories) if isinstance(histories, (int, np.integer)) else int(value)
    if n > LARGE_HISTORIES and not force:
        cores = threads or cpu_count()
        seconds = n / (ESTIMATE_DECAYS_PER_S_PER_CORE * cores)
        raise InputError(
            f"{flag} {n:.3g} decays would take about {_human_time(seconds)} on {cores} CPU "
            f"core(s) (more than {LARGE_HISTORIES:.0e} decays); pass {FORCE_FLAG} to run it "
            f"anyway"
        )
    return n


def check_cases(count: int, *, flag: str = "--count", force: bool = False,
                bytes_per_case: float | None = None) -> int:
    """Number of cases/phantoms; above :data:`LARGE_CASES` needs ``force``."""
    if count < 1:
        raise InputError(f"{flag} must be >= 1, got {count}")
    if count > LARGE_CASES and not force:
        disk = (f", about {count * bytes_per_case / 1e9:.3g} GB on disk"
                if bytes_per_case else "")
        raise InputError(f"{flag} {count} cases is more than {LARGE_CASES}{disk}; pass "
                         f"{FORCE_FLAG} to make them anyway")
    return int(count)


def check_threads(threads: int | None, *, flag: str = "--threads") -> int | None:
    """Thread count: refuse < 1, lower one above the cores to the core count (warning)."""
    if threads is None:
        return None
    if threads < 1:
        raise InputError(f"{flag} must be >= 1, got {threads}")
    cores = cpu_count()
    if threads > cores:
        log.warning("%s %d is more than the %d core(s) available; using %d", flag, threads,
                    cores, cores)
        return cores
    return int(threads)


def check_voxel_mm(spacing: Sequence[float], *, flag: str = "--voxel-mm") -> tuple[float, ...]:
    """Voxel sizes (mm) between :data:`MIN_VOXEL_MM` and :data:`MAX_VOXEL_MM`."""
    values = tuple(float(v) for v in spacing)
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"{flag}: voxel size {v} mm must be a positive number")
        if v < MIN_VOXEL_MM or v > MAX_VOXEL_MM:
            raise InputError(f"{flag}: voxel size {v:g} mm is outside [{MIN_VOXEL_MM:g}, "
                             f"{MAX_VOXEL_MM:g}] mm; is the unit mm?")
    return values


def check_memory(nbytes: float, *, what: str, flag: str | None = None,
                 force: bool = False) -> None:
    """Refuse an allocation of ``nbytes`` larger than the memory available.

    Above 60 % of the available memory ``force`` is needed; above the available memory
    (swap aside) it is refused even with ``force``.
    """
    avail = available_memory_bytes()
    hint = f" ({flag})" if flag else ""
    if nbytes > avail:
        raise InputError(f"{what}{hint} needs about {nbytes / 2**30:.3g} GiB, more than the "
                         f"{avail / 2**30:.3g} GiB of memory available")
    if nbytes > 0.6 * avail and not force:
        raise InputError(f"{what}{hint} needs about {nbytes / 2**30:.3g} GiB of the "
                         f"{avail / 2**30:.3g} GiB available; pass {FORCE_FLAG} to try")


def check_fractions(fractions: Sequence[float], *, flag: str = "--split",
                    atol: float = 1e-6) -> tuple[float, ...]:
    """Split fractions: each in [0, 1], their sum 1 (within ``atol``)."""
    values = tuple(float(f) for f in fractions)
    if not values or any(not math.isfinite(f) or f < 0 or f > 1 for f in values):
        raise InputError(f"{flag} {values}: split fractions must each be between 0 and 1")
    total = math.fsum(values)
    if abs(total - 1.0) > atol:
        raise InputError(f"{flag} {values}: split fractions sum to {total:.6g}, not 1")
    return values


def check_density(density: np.ndarray, where: str) -> None:
    """Refuse a density map (g/cm³) that is 0 everywhere or above :data:`MAX_DENSITY_G_CM3`.

    Negative and non-finite values are refused by the readers already.
    """
    arr = np.asarray(density)
    if arr.size == 0:
        raise InputError(f"{where}: density map is empty")
    hi = float(np.max(arr))
    if not math.isfinite(hi) or hi > MAX_DENSITY_G_CM3:
        raise InputError(
            f"{where}: density up to {hi:.4g} g/cm3, above {MAX_DENSITY_G_CM3} g/cm3 "
            f"(osmium, the densest element); is this a CT in HU or a density in kg/m3?"
        )
    if hi <= 0.0:
        raise InputError(f"{where}: density is 0 everywhere (vacuum); no dose can be "
                         f"computed")
