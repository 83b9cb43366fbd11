"""Shared pytest configuration: GPU detection, the CUDA-simulator subprocess helper and a
fast session end."""

from __future__ import annotations

import functools
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MCDOSE_NO_PROGRESS", "1")


@functools.cache
def cuda_gpu_available() -> bool:
    """True when numba-cuda is installed and sees a real GPU (never under the simulator)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # numba-cuda missing or no driver
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Collect the garbage once, then freeze the survivors out of later collections.

    After the session pytest collects five more times to report finalizer errors
    (``PytestUnraisableExceptionWarning``); with numba, torch, SimpleITK... loaded a worker
    holds ~10⁶ objects and each full collection takes ~1 s.  Under ``pytest -n`` those
    collections run after the worker has told xdist it finished, and execnet sends a
    worker still busy 5 s after being asked to stop a SIGINT: the KeyboardInterrupt then
    surfaced inside hypothesis' gc callback as an unraisable-exception warning.  This
    collection runs before the worker reports (finalizer errors of garbage from the tests
    are still reported); the objects alive now stay alive until exit, so freezing them
    (``gc.freeze``) makes pytest's final collections nearly free.
    """
    gc.collect()
    gc.freeze()


def run_under_cudasim(code: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python with ``NUMBA_ENABLE_CUDASIM=1`` and return the result.

    The simulator must be enabled before numba is imported, hence the separate process.
    """
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", MCDOSE_NO_PROGRESS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )
