"""The dataset manifest: ``OUT_DIR/manifest.json``.

Format (``version`` 1)::

    {
      "format": "mcdose-dataset",
      "version": 1,
      "created_utc": "2026-...", "updated_utc": "2026-...",
      "parameters": {"cases": 20, "preset": "small", "seed": 0, "histories": 1000000, ...},
      "software": {"mcdose": "...", "numpy": "...", "numba": "...", "torch": "...",
                   "dask": "...", "distributed": "...", ...},
      "cases": [
        {"file": "case_0000.h5", "split": "train", "seed": 0, "index": 0,
         "spect_seed": ..., "counts": 3000000.0, "mc_seed": ..., "mc_spect_seed": ...,
         "complete": true, "error": null,
         "stages": {"phantom": {"status": "done", "seconds": 0.9, "peak_rss_MB": 310.2,
                                "peak_gpu_MB": null}, ...}},
        ...
      ],
      "incomplete": [ ...same entries, "complete": false, "error": "mc: ..." ... ]
    }

``cases`` lists only the cases whose every stage is done, so that a reader
(:func:`residualnet.data.read_manifest` reads ``file`` and ``split``) never meets a missing
file or dataset; ``incomplete`` holds the others (failed, not yet run) with their stage
status.  ``seed`` is the phantom seed.  The split is by case (never by slice), decided
once: an entry keeps the split it was first given, so growing a dataset never moves a case
between train, val and test.

The manifest is rewritten atomically (:func:`mcdose.io.atomic.atomic_path`) as cases
finish, and merged on resume: entries of cases outside the current run are kept.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import InputError

__all__ = [
    "FORMAT",
    "MANIFEST_NAME",
    "SPLITS",
    "VERSION",
    "check_compatible",
    "merge_cases",
    "new_manifest",
    "read_manifest",
    "software_versions",
    "split_by_case",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
FORMAT = "mcdose-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
#: parameters that define the case files themselves; a resumed campaign must not change them
IDENTITY_PARAMETERS = ("preset", "seed", "nuclide")

_SOFTWARE = ("mcdose", "numpy", "numba", "numba-cuda", "scipy", "h5py", "torch", "pytomography",
             "dask", "distributed")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def software_versions() -> dict[str, str | None]:
    """Versions of the software that builds a dataset (None for a package not installed).

    Keys: ``python``, ``platform`` and ``mcdose``, ``numpy``, ``numba``, ``numba-cuda``,
    ``scipy``, ``h5py``, ``torch``, ``pytomography``, ``dask``, ``distributed``.  Read from
    the installed package metadata (nothing is imported).
    """
    out: dict[str, str | None] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for name in _SOFTWARE:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def split_by_case(
    names: Sequence[str],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> dict[str, str]:
    """Assign whole cases to train / val / test, deterministically from ``seed``.

    The names are sorted, shuffled by ``numpy.random.default_rng(seed)`` and cut at
    ``round(n·f_train)`` and ``round(n·(f_train + f_val))``; with three or more cases each
    split with a non-zero fraction gets at least one case, and a split with fraction 0
    gets none: ``(0, 0, 1)`` puts every case in test (an external test set).
    :func:`residualnet.data.read_manifest` uses this function to split a folder without a
    manifest, so both give the same split of the same case names and seed.

    Parameters
    ----------
    names : sequence of str
        Case names (e.g. file stems).
    seed : int
        Seed of the shuffle.
    fractions : 3 non-negative floats
        Train, val, test fractions (normalised to sum 1).

    Returns
    -------
    dict
        name → ``"train"`` | ``"val"`` | ``"test"``.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
        raise InputError(f"split fractions must be three non-negative numbers, got {fractions}")
    total = float(sum(fractions))
    f_train, f_val, _ = (f / total for f in fractions)
    ordered = sorted(set(names))
    n = len(ordered)
    order = np.random.default_rng(seed).permutation(n)
    n_train = round(n * f_train)
    n_val = round(n * f_val)
    if n >= 3:
        n_test = n - n_train - n_val
        if fractions[1] > 0 and n_val == 0:
            n_val, n_train = 1, n_train - 1
        if fractions[2] > 0 and n_test == 0:
            if n_train > 1:  # test's case comes from train while it has one to spare
                n_train -= 1
            else:
                n_val -= 1
        if fractions[0] > 0:
            n_train = max(n_train, 1)
    splits: dict[str, str] = {}
    for rank, index in enumerate(order):
        split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        splits[ordered[index]] = split
    return splits


def new_manifest(parameters: Mapping[str, Any], software: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """An empty manifest for a campaign with these parameters."""
    now = _now()
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_utc": now,
        "updated_utc": now,
        "parameters": dict(parameters),
        "software": dict(software_versions() if software is None else software),
        "cases": [],
        "incomplete": [],
    }


def read_manifest(dataset_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a dataset folder, or None when it has none.

    Raises
    ------
    InputError
        The file is not valid JSON, not an ``mcdose-dataset`` manifest, or of a newer
        version.
    """
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a valid manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not an {FORMAT} manifest (no \"format\": \"{FORMAT}\")")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise InputError(
            f"{path}: manifest version {data.get('version')!r} is not supported "
            f"(this mcdose reads version {VERSION})"
        )
    for key in ("cases", "incomplete"):
        entries = data.setdefault(key, [])
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("file"), str) for e in entries
        ):
            raise InputError(f"{path}: '{key}' must be a list of entries with a 'file'")
    data.setdefault("parameters", {})
    data.setdefault("software", {})
    return data


def write_manifest(dataset_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temporary file + rename); return its path."""
    from mcdose.io.jsonio import write_json

    data = dict(manifest)
    data["updated_utc"] = _now()
    return write_json(Path(dataset_dir) / MANIFEST_NAME, data)


def check_compatible(existing: Mapping[str, Any], parameters: Mapping[str, Any],
                     where: str | os.PathLike[str] = "") -> None:
    """Raise when a resumed campaign would change what the case files are.

    ``preset``, ``seed`` and ``nuclide`` must equal those of the existing manifest; other
    parameters (histories, count levels, devices...) may change, and the stages they
    affect are recomputed.

    Raises
    ------
    InputError
        One line naming the first parameter that differs.
    """
    old = existing.get("parameters", {})
    for key in IDENTITY_PARAMETERS:
        if key in old and key in parameters and old[key] != parameters[key]:
            raise InputError(
                f"{where}: the dataset was built with {key}={old[key]!r}, not "
                f"{parameters[key]!r}; use another folder or the same {key}"
            )


def entries(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every case entry of a manifest (complete or not), by file name."""
    out: dict[str, dict[str, Any]] = {}
    for key in ("cases", "incomplete"):
        for e in manifest.get(key, []):
            out[str(e["file"])] = dict(e)
    return out


def merge_cases(manifest: dict[str, Any], updates: Iterable[Mapping[str, Any]]
                ) -> dict[str, Any]:
    """Merge case entries into a manifest (in place) and return it.

    An update replaces the entry of the same ``file`` key by key: its ``split`` is kept
    when the entry already had one, and ``stages`` are merged stage by stage and key by key
    (a skipped stage's record, ``{"status": "done"}``, keeps the timing of the run that
    computed it).  Entries are
    then sorted by file name into ``cases`` (``complete`` is true) and ``incomplete``.
    """
    by_file = entries(manifest)
    for upd in updates:
        upd = dict(upd)
        name = str(upd["file"])
        old = by_file.get(name, {})
        merged = {**old, **upd}
        if old.get("split") in SPLITS:
            merged["split"] = old["split"]
        stages = {k: dict(v) for k, v in old.get("stages", {}).items()}
        for stage, record in upd.get("stages", {}).items():
            stages[stage] = {**stages.get(stage, {}), **record}
        merged["stages"] = stages
        by_file[name] = merged
    ordered = [by_file[k] for k in sorted(by_file)]
    manifest["cases"] = [e for e in ordered if e.get("complete")]
    manifest["incomplete"] = [e for e in ordered if not e.get("complete")]
    return manifest
