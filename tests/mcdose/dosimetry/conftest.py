"""Fixtures of the dosimetry tests: a private kernel cache and tiny synthetic patients."""

from __future__ import annotations

import pytest

from tests.mcdose.dosimetry.synthetic import write_patient


@pytest.fixture(scope="session")
def kernel_cache_dir(tmp_path_factory):
    """One kernel cache folder for the whole session (kernels are generated once)."""
    return tmp_path_factory.mktemp("mcdose-cache")


@pytest.fixture(autouse=True)
def _kernel_cache(kernel_cache_dir, monkeypatch):
    """Generated VDK kernels go to the session folder, not the user's cache; the variable
    is set only while a dosimetry test runs."""
    monkeypatch.setenv("MCDOSE_CACHE_DIR", str(kernel_cache_dir))


@pytest.fixture
def patient(tmp_path):
    """A synthetic DICOM patient (CT series + NM SPECT in Bq/ml), axial grids."""
    return write_patient(tmp_path / "patient")
