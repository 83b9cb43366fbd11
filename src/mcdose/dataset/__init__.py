"""Training datasets: many case files built on Dask, with a manifest.

:func:`build_dataset` chains, for each case, phantom → SPECT → Monte Carlo on the true
activity (``dose/mc``) → VDK on the SPECT (``dose/vdk``) → optionally Monte Carlo on the
SPECT (``dose/mc_spect``), one case file each, and writes ``manifest.json`` (generation
parameters, software versions, per-case seeds, train/val/test split and stage status).
It runs on an embedded :class:`distributed.LocalCluster` or on any Dask scheduler, resumes
where it stopped and skips finished stages.  See ``docs/dataset.md``.

Public API
----------
:func:`build_dataset`, :class:`DatasetSummary`
    The campaign.
:data:`STAGES`, :func:`run_case`, :class:`CaseConfig`, :class:`CaseResult`, :class:`StageResult`
    The stages of one case and their runner.
:func:`case_config`, :func:`derive_seed`
    Per-case parameters and seeds.
:func:`read_manifest`, :func:`split_by_case`, :data:`MANIFEST_NAME`
    The manifest.
"""

from mcdose.dataset.campaign import (
    DEFAULT_HISTORIES,
    DatasetSummary,
    build_dataset,
    case_config,
    case_file_name,
    derive_seed,
)
from mcdose.dataset.manifest import MANIFEST_NAME, read_manifest, split_by_case
from mcdose.dataset.stages import (
    STAGES,
    CaseConfig,
    CaseResult,
    StageResult,
    case_stages,
    run_case,
)

__all__ = [
    "DEFAULT_HISTORIES",
    "MANIFEST_NAME",
    "STAGES",
    "CaseConfig",
    "CaseResult",
    "DatasetSummary",
    "StageResult",
    "build_dataset",
    "case_config",
    "case_file_name",
    "case_stages",
    "derive_seed",
    "read_manifest",
    "run_case",
    "split_by_case",
]
