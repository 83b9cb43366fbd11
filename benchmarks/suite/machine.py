"""Description of the machine a benchmark ran on: CPU, memory, GPU, driver, libraries.

Nothing here imports a GPU library: the GPU comes from ``nvidia-smi`` (name, driver,
memory) and library versions from the installed distributions' metadata.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: distributions whose versions are recorded (the first installed of each tuple)
LIBRARIES: dict[str, tuple[str, ...]] = {
    "mcdose": ("mcdose",),
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "numba": ("numba",),
    "numba-cuda": ("numba-cuda",),
    "torch": ("torch",),
    "cupy": ("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x"),
    "pytomography": ("pytomography",),
    "dask": ("dask",),
    "distributed": ("distributed",),
    "h5py": ("h5py",),
    "matplotlib": ("matplotlib",),
}


def library_versions() -> dict[str, str | None]:
    """Installed version of each library of :data:`LIBRARIES` (None: not installed)."""
    out: dict[str, str | None] = {}
    for name, dists in LIBRARIES.items():
        out[name] = None
        for dist in dists:
            try:
                v = version(dist)
            except PackageNotFoundError:
                continue
            out[name] = v if dist == name else f"{v} ({dist})"
            break
    return out


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Physical memory, GiB."""
    try:
        return round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of ``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or parts[0].lower() == "name":
            continue
        mem = re.match(r"([\d.]+)\s*MiB", parts[2])
        gpus.append({
            "name": parts[0],
            "driver": parts[1],
            "memory_GiB": round(float(mem.group(1)) / 1024, 1) if mem else parts[2],
        })  # fmt: skip
    return gpus


def gpus() -> list[dict[str, Any]]:
    """GPUs from ``nvidia-smi`` (empty without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        res = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(res.stdout) if res.returncode == 0 else []


def describe(threads: int | None = None) -> dict[str, Any]:
    """The machine: CPU model and cores, memory, GPUs, Python and library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:
        pass
    return {
        "cpu": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": physical,
        "cpus_usable": usable,
        "threads_used": threads,
        "memory_GiB": memory_gib(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
        "gpus": gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }  # fmt: skip


def slug(info: dict[str, Any]) -> str:
    """Short machine name for file names: ``h100-80gb-hbm3-16c``, ``cpu-2c``."""
    cores = info.get("cpus_usable") or info.get("cpu_logical_cores") or 0
    if info.get("gpus"):
        name = str(info["gpus"][0]["name"]).lower()
        name = re.sub(r"^nvidia\s+", "", name)
        base = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"
    else:
        base = "cpu"
    return f"{base}-{cores}c"


def today() -> str:
    """Local date, ISO format."""
    return dt.date.today().isoformat()
