"""Which compute devices exist, without importing CUDA code into a CPU-only process."""

from __future__ import annotations

import functools
import os


@functools.cache
def cuda_available() -> bool:
    """True when numba-cuda is installed and sees a GPU (never under the CUDA simulator)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # broken driver installs raise from is_available
        return False
