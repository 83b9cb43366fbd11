"""Fixtures for the mcdose.vdk tests: a private kernel cache and small Monte Carlo kernels."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_kernel_cache(tmp_path, monkeypatch):
    """Every test gets its own kernel cache (nothing is written to the user's cache)."""
    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def small_kernel():
    """Lu-177, 4 mm cubic voxels, 5³, soft tissue 1.04 g/cm³, 20 000 histories per part."""
    from mcdose.vdk import make_kernel

    return make_kernel("Lu-177", 4.0, 5, histories=20_000, seed=7, device="cpu")
