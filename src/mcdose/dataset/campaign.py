"""Build a dataset of case files on Dask: :func:`build_dataset`.

One Dask task per case runs the case's stages in order (:func:`mcdose.dataset.stages.run_case`),
so a case never has two stages in flight and cases run in parallel on the workers.  Every
stage writes atomically and is skipped when its output is already there, so a rerun resumes
where the last one stopped and a worker that dies loses only the stage it was running (Dask
reschedules the task; the finished stages are skipped).

Workers:

* by default an embedded :class:`distributed.LocalCluster` of process workers
  (``workers`` of them; one per GPU when CUDA GPUs are visible, each worker seeing only its
  own GPU through ``CUDA_VISIBLE_DEVICES`` and advertising the Dask resource ``GPU=1``);
* or any running Dask scheduler (``scheduler="tcp://host:8786"``), for instance one started
  by dask-jobqueue's ``SLURMCluster`` (see ``docs/dataset.md``).  When the workers there
  advertise a ``GPU`` resource every case task asks for ``GPU=1``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.dataset import manifest as mf
from mcdose.dataset.stages import (
    STAGES,
    CaseConfig,
    CaseResult,
    StageResult,
    case_stages,
    prepare_kernels,
    run_case,
)
from mcdose.errors import DeviceError, InputError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_HISTORIES",
    "DatasetSummary",
    "build_dataset",
    "case_config",
    "case_file_name",
    "derive_seed",
    "local_gpu_ids",
]

DEFAULT_HISTORIES = 10**6
DEVICES = ("auto", "cpu", "cuda")
#: stream numbers of :func:`derive_seed`
SEED_STREAMS = {"spect": 1, "mc": 2, "mc_spect": 3}
_MB = 1024.0**2
#: the manifest is rewritten after a finished case at most this often (and at the end)
MANIFEST_INTERVAL_S = 2.0


# --------------------------------------------------------------------------------------
# Per-case parameters
# --------------------------------------------------------------------------------------


def case_file_name(index: int) -> str:
    """``case_0000.h5``, ``case_0001.h5``, ..."""
    return f"case_{index:04d}.h5"


def derive_seed(seed: int, index: int, stream: str) -> int:
    """A per-case seed of a stage, reproducible from the campaign seed and case index.

    ``numpy.random.SeedSequence([seed, index, k]).generate_state(1, uint32)[0]`` with
    ``k`` = 1 (SPECT), 2 (MC on the true activity), 3 (MC on the SPECT): independent
    streams that do not overlap the phantom seeds ``seed + index``.
    """
    k = SEED_STREAMS[stream]
    state = np.random.SeedSequence([int(seed), int(index), k]).generate_state(1, np.uint32)
    return int(state[0])


def _count_levels(counts: float | Sequence[float] | None) -> tuple[float, ...]:
    from mcdose.spect import PAPER_COUNT_LEVELS

    if counts is None:
        return tuple(float(c) for c in PAPER_COUNT_LEVELS)
    levels = (counts,) if np.isscalar(counts) else tuple(counts)  # type: ignore[arg-type]
    try:
        levels = tuple(float(c) for c in levels)
    except (TypeError, ValueError):
        raise InputError(f"counts must be positive numbers, got {counts!r}") from None
    if not levels or not all(np.isfinite(c) and c > 0 for c in levels):
        raise InputError(f"counts must be positive numbers, got {counts!r}")
    return levels


def case_config(
    index: int,
    *,
    seed: int,
    preset: str,
    histories: int,
    count_levels: Sequence[float],
    nuclide: str = "Lu-177",
    batches: int = 10,
    device: str = "auto",
    spect_backend: str = "auto",
    mc_spect: bool = False,
    vdk_options: dict[str, Any] | None = None,
    spect_protocol: dict[str, Any] | None = None,
) -> CaseConfig:
    """The parameters of case ``index`` of a campaign (seeds and SPECT count level).

    The phantom seed is ``seed + index`` (as ``mcdose phantom``); SPECT and MC seeds come
    from :func:`derive_seed`; the count level is
    :func:`mcdose.spect.choose_count_level` of the SPECT seed among ``count_levels``.
    """
    from mcdose.spect import choose_count_level

    spect_seed = derive_seed(seed, index, "spect")
    return CaseConfig(
        index=int(index),
        file=case_file_name(index),
        preset=preset,
        nuclide=nuclide,
        phantom_seed=int(seed) + int(index),
        spect_seed=spect_seed,
        counts=choose_count_level(spect_seed, tuple(count_levels)),
        mc_seed=derive_seed(seed, index, "mc"),
        mc_spect_seed=derive_seed(seed, index, "mc_spect"),
        histories=int(histories),
        batches=int(batches),
        device=device,
        spect_backend=spect_backend,
        mc_spect=bool(mc_spect),
        vdk_options=dict(vdk_options or {}),
        spect_protocol=dict(spect_protocol or {}),
    )


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


def _fmt_s(seconds: float) -> str:
    if seconds < 0.05:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@dataclass
class DatasetSummary:
    """What :func:`build_dataset` did.

    Attributes
    ----------
    out_dir, manifest_path : Path
    results : list of CaseResult
        One per case of this run, by case index.
    stages : tuple of str
        The stages of a case, in order.
    seconds : float
        Wall time of the whole campaign, s (cluster start-up included).
    startup_seconds : float
        Wall time until the workers were ready, s.
    workers : int
        Workers that ran the campaign (at the start).
    scheduler : str
        Address of the scheduler.
    splits : dict
        Case file → split.
    """

    out_dir: Path
    manifest_path: Path
    results: list[CaseResult]
    stages: tuple[str, ...]
    seconds: float
    startup_seconds: float = 0.0
    workers: int = 0
    scheduler: str = ""
    splits: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def completed(self) -> int:
        return sum(r.ok for r in self.results)

    def stage_results(self, stage: str) -> list[StageResult]:
        """The results of one stage over the cases that attempted it."""
        return [s for r in self.results for s in r.stages if s.stage == stage]

    def stage_stats(self) -> dict[str, dict[str, Any]]:
        """Per stage: ran / skipped / failed counts, seconds and peak memory of the runs."""
        out: dict[str, dict[str, Any]] = {}
        for stage in self.stages:
            res = self.stage_results(stage)
            ran = [s for s in res if s.ran]
            secs = [s.seconds for s in ran]
            rss = [s.peak_rss_bytes for s in ran if s.peak_rss_bytes]
            grew = [s.peak_rss_bytes - s.start_rss_bytes for s in ran
                    if s.peak_rss_bytes and s.start_rss_bytes]
            gpu = [s.peak_gpu_bytes for s in ran if s.peak_gpu_bytes]
            out[stage] = {
                "ran": len(ran),
                "skipped": sum(s.skipped for s in res),
                "failed": sum(s.error is not None for s in res),
                "mean_s": float(np.mean(secs)) if secs else None,
                "max_s": float(np.max(secs)) if secs else None,
                "total_s": float(np.sum(secs)) if secs else 0.0,
                "peak_rss_MB": max(rss) / _MB if rss else None,
                "peak_rss_increase_MB": max(grew) / _MB if grew else None,
                "peak_gpu_MB": max(gpu) / _MB if gpu else None,
            }
        return out

    @property
    def cases_per_hour(self) -> float | None:
        """Completed cases per hour of campaign wall time (None when none completed)."""
        if not self.completed or self.seconds <= 0:
            return None
        return 3600.0 * self.completed / self.seconds

    def tables(self, max_rows: int = 40) -> list[Any]:
        """Rich tables: one row per case (failed cases first, at most ``max_rows``), and
        per stage totals."""
        from rich.table import Table

        cases = Table(title=f"dataset {self.out_dir}", title_justify="left")
        cases.add_column("case", no_wrap=True)
        cases.add_column("split", no_wrap=True)
        for stage in self.stages:
            cases.add_column(stage, justify="right", no_wrap=True)
        cases.add_column("total", justify="right", no_wrap=True)
        errors = any(r.error for r in self.results)
        if errors:
            cases.add_column("error", overflow="fold", style="red", min_width=20)
        ordered = sorted(self.results, key=lambda r: (r.ok, r.index))
        for r in ordered[:max_rows]:
            cells = []
            for stage in self.stages:
                s = r.stage(stage)
                if s is None:
                    cells.append("[dim]-[/dim]")
                elif s.error is not None:
                    cells.append("[red]FAILED[/red]")
                elif s.ran:
                    cells.append(_fmt_s(s.seconds))
                else:
                    cells.append("[dim]skip[/dim]")
            row = [r.file[:-3] if r.file.endswith(".h5") else r.file,
                   self.splits.get(r.file, ""), *cells, _fmt_s(r.seconds)]
            cases.add_row(*row, *([r.error or ""] if errors else []))
        if len(ordered) > max_rows:
            cases.caption = f"... {len(ordered) - max_rows} more cases in {self.manifest_path}"

        totals = Table(title="stages", title_justify="left")
        for col in ("stage", "ran", "skipped", "failed", "mean", "max", "peak RSS",
                    "peak GPU"):
            totals.add_column(col, justify="left" if col == "stage" else "right")
        for stage, st in self.stage_stats().items():
            totals.add_row(
                stage, str(st["ran"]), str(st["skipped"]), str(st["failed"]),
                _fmt_s(st["mean_s"]) if st["mean_s"] is not None else "-",
                _fmt_s(st["max_s"]) if st["max_s"] is not None else "-",
                f"{st['peak_rss_MB']:.0f} MB" if st["peak_rss_MB"] else "-",
                f"{st['peak_gpu_MB']:.0f} MB" if st["peak_gpu_MB"] else "-",
            )
        rate = self.cases_per_hour
        totals.caption = (
            f"{self.completed}/{len(self.results)} cases complete in {_fmt_s(self.seconds)} "
            f"on {self.workers} worker(s)"
            + (f", {rate:.3g} cases/hour" if rate else "")
        )
        return [cases, totals]

    def print(self, console: Any = None, max_rows: int = 40) -> None:
        """Print :meth:`tables` on ``console`` (a rich Console; default stderr)."""
        import sys

        from rich.console import Console

        console = console or Console(file=sys.stderr)
        for t in self.tables(max_rows):
            console.print(t)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "manifest": str(self.manifest_path),
            "cases": [r.to_dict() for r in self.results],
            "stages": list(self.stages),
            "seconds": self.seconds,
            "startup_seconds": self.startup_seconds,
            "workers": self.workers,
            "completed": self.completed,
            "failed": len(self.failed),
            "cases_per_hour": self.cases_per_hour,
            "stage_stats": self.stage_stats(),
        }


# --------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------


def local_gpu_ids() -> list[str]:
    """IDs of the CUDA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` entries when
    set, else ``0 … n-1``); empty without CUDA."""
    from mcdose.transport.devices import cuda_available

    if not cuda_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    from numba import cuda

    return [str(i) for i in range(len(cuda.gpus))]


def _worker_env(threads: int) -> dict[str, str]:
    # the MC (numba) and SPECT (torch) use this many threads per worker
    return {
        "NUMBA_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "MCDOSE_NO_PROGRESS": "1",
    }


def _local_cluster(
    workers: int,
    threads_per_worker: int,
    gpu_ids: Sequence[str],
    *,
    processes: bool = True,
    dashboard_address: str | None = None,
) -> Any:
    """Start the embedded cluster: ``workers`` CPU workers, or one worker per GPU id."""
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    cores = os.cpu_count() or 1
    if not gpu_ids:
        env = _worker_env(max(1, cores // workers))
        kwargs: dict[str, Any] = {"env": env} if processes else {}
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            dashboard_address=dashboard_address or ":0",
            scheduler_kwargs={"dashboard": dashboard_address is not None},
            silence_logs=logging.ERROR,
            **kwargs,
        )
    # one process per GPU, each seeing only its GPU (dask-cuda's LocalCUDACluster does the
    # same); the resource lets tasks ask for GPU=1
    from distributed.system import MEMORY_LIMIT

    threads = max(1, cores // len(gpu_ids))
    spec = {
        f"gpu-{gid}": {
            "cls": Nanny,
            "options": {
                "host": "127.0.0.1",
                "nthreads": threads_per_worker,
                "env": {**_worker_env(threads), "CUDA_VISIBLE_DEVICES": str(gid)},
                "resources": {"GPU": 1},
                "memory_limit": int(MEMORY_LIMIT // len(gpu_ids)),
                "silence_logs": logging.ERROR,
                "dashboard": False,
            },
        }
        for gid in gpu_ids
    }
    scheduler = {
        "cls": Scheduler,
        "options": {
            "host": "127.0.0.1",
            "dashboard": dashboard_address is not None,
            "dashboard_address": dashboard_address or ":0",
        },
    }
    return SpecCluster(workers=spec, scheduler=scheduler, silence_logs=logging.ERROR)


def _workers_have_gpu_resource(client: Any) -> bool:
    info = client.scheduler_info(n_workers=-1)["workers"]
    return any("GPU" in (w.get("resources") or {}) for w in info.values())


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


class _Progress:
    """A rich bar over cases and one over stages, fed by worker events and results."""

    def __init__(self, n_cases: int, planned: dict[int, tuple[str, ...]], enabled: bool):
        from mcdose.progress import progress_enabled

        self.enabled = progress_enabled(enabled)
        self.planned = planned
        self._lock = threading.Lock()
        self._done: dict[int, set[str]] = {i: set() for i in planned}
        self._finished: set[int] = set()
        self._running: dict[int, str] = {}
        self._bar: Any = None
        if not self.enabled:
            return
        import sys

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}", style="dim"),
            console=Console(file=sys.stderr),
        )
        self._cases = self._bar.add_task("cases", total=n_cases, note="")
        self._stages = self._bar.add_task(
            "stages", total=sum(len(v) for v in planned.values()), note="starting workers"
        )

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._stages, note=text)

    def _running_note(self) -> str:
        items = sorted(self._running.items())
        text = ", ".join(f"{case_file_name(i)[:-3]} {s}" for i, s in items[:3])
        if len(items) > 3:
            text += f" +{len(items) - 3}"
        return text

    def event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Handler of the workers' ``log_event`` messages (runs on the client's thread)."""
        if self._bar is None:
            return
        _, msg = event
        case, stage, what = msg.get("case"), msg.get("stage"), msg.get("event")
        with self._lock:
            if case not in self._done or case in self._finished:
                return
            if what == "start":
                self._running[case] = stage
            elif stage not in self._done[case]:
                self._done[case].add(stage)
                self._running.pop(case, None)
                self._bar.advance(self._stages, 1)
            self.note(self._running_note())

    def case_finished(self, case: int) -> None:
        with self._lock:
            if case in self._finished:
                return
            self._finished.add(case)
            self._running.pop(case, None)
            if self._bar is not None:
                missing = len(self.planned[case]) - len(self._done[case])
                self._bar.advance(self._stages, max(missing, 0))
                self._bar.advance(self._cases, 1)
                self.note(self._running_note())


# --------------------------------------------------------------------------------------
# Manifest entries
# --------------------------------------------------------------------------------------


def _stage_record(s: StageResult) -> dict[str, Any]:
    if s.error is not None:
        return {"status": "failed", "error": s.error}
    if not s.ran:  # keep the timing of the run that computed it
        return {"status": "done"}
    return {
        "status": "done",
        "seconds": round(s.seconds, 3),
        "peak_rss_MB": round(s.peak_rss_bytes / _MB, 1) if s.peak_rss_bytes else None,
        "peak_gpu_MB": round(s.peak_gpu_bytes / _MB, 1) if s.peak_gpu_bytes else None,
    }


def _case_entry(cfg: CaseConfig, split: str, planned: Sequence[str],
                result: CaseResult | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "file": cfg.file,
        "split": split,
        "seed": cfg.phantom_seed,
        "index": cfg.index,
        "preset": cfg.preset,
        "spect_seed": cfg.spect_seed,
        "counts": cfg.counts,
        "mc_seed": cfg.mc_seed,
        "mc_spect_seed": cfg.mc_spect_seed if cfg.mc_spect else None,
        "histories": cfg.histories,
    }
    stages: dict[str, dict[str, Any]] = {}
    if result is None:
        stages = {s: {"status": "pending"} for s in planned}
        entry.update(complete=False, error=None)
    else:
        for s in planned:
            r = result.stage(s)
            stages[s] = {"status": "pending"} if r is None else _stage_record(r)
        entry.update(complete=result.ok, error=result.error, worker=result.worker)
    entry["stages"] = stages
    return entry


# --------------------------------------------------------------------------------------
# The campaign
# --------------------------------------------------------------------------------------


def _check_args(cases, preset, seed, histories, batches, workers, scheduler,
                threads_per_worker, device, spect_backend) -> None:
    from mcdose.phantoms import PRESETS

    def positive_int(value: Any, name: str, minimum: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")

    positive_int(cases, "cases")
    positive_int(seed, "seed", 0)
    positive_int(histories, "histories")
    positive_int(batches, "batches", 2)
    positive_int(threads_per_worker, "threads_per_worker")
    if workers is not None:
        positive_int(workers, "workers")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if workers is not None and scheduler is not None:
        raise InputError("give either workers (a local cluster) or scheduler, not both")
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    from mcdose.spect import BACKENDS

    if spect_backend not in BACKENDS:
        raise InputError(
            f"spect_backend must be one of {', '.join(BACKENDS)}, got {spect_backend!r}"
        )


def build_dataset(
    out_dir: str | os.PathLike[str],
    *,
    cases: int,
    preset: str = "small",
    seed: int = 0,
    histories: int = DEFAULT_HISTORIES,
    mc_spect: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int = 1,
    progress: bool = True,
    device: str = "auto",
    counts: float | Sequence[float] | None = None,
    spect_backend: str = "auto",
    batches: int = 10,
    nuclide: str = "Lu-177",
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    vdk_options: dict[str, Any] | None = None,
    spect_protocol: dict[str, Any] | None = None,
    processes: bool = True,
    dashboard_address: str | None = None,
    stages: Sequence[tuple[str, Callable[..., StageResult]]] | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> DatasetSummary:
    """Build (or resume) a dataset of ``cases`` case files in ``out_dir`` on Dask.

    Each case ``case_{i:04d}.h5`` goes through phantom → SPECT → MC on the true activity
    (``dose/mc``) → VDK on the SPECT (``dose/vdk``) → optionally MC on the SPECT
    (``dose/mc_spect``); ``out_dir/manifest.json`` records the parameters, software
    versions, each case's seeds, split and stage status (:mod:`mcdose.dataset.manifest`).
    Rerunning skips every finished stage; a failed case is reported without stopping
    the others.

    Parameters
    ----------
    out_dir
        Dataset folder (created if needed).
    cases
        Number of cases (indices ``0 … cases-1``).
    preset : {"paper", "small", "tiny"}
        Phantom grid (:data:`mcdose.phantoms.PRESETS`).
    seed
        Campaign seed: phantom ``i`` uses ``seed + i``; the SPECT and MC seeds and the
        split derive from it (:func:`derive_seed`).
    histories
        MC histories (decays) per MC stage.
    mc_spect
        Also run the MC on the SPECT (``dose/mc_spect``).
    workers
        Workers of the embedded local cluster (processes, ``threads_per_worker`` threads
        each).  Default: one per visible GPU, else 1 (the CPU MC uses every core).  With
        GPUs, at most one worker per GPU.
    scheduler
        Address of a running Dask scheduler to use instead of a local cluster.
    threads_per_worker
        Dask threads (concurrent cases) per worker.
    progress
        Show a progress bar over cases and stages (stderr).
    device : {"auto", "cpu", "cuda"}
        MC device on the workers.
    counts
        SPECT total counts: None picks one of the paper's four levels per case, a number
        fixes it, a sequence gives the levels to pick from
        (:func:`mcdose.spect.choose_count_level` of the case's SPECT seed).
    spect_backend : {"auto", "pytomography", "gaussian"}
        SPECT simulator.
    batches
        MC batches (uncertainty estimate).
    nuclide
        Nuclide of the phantoms' activity.
    split_fractions
        Train / val / test fractions (split by case, :func:`manifest.split_by_case`).
    vdk_options
        Extra keyword arguments of :func:`mcdose.vdk.vdk_case`.
    spect_protocol
        :class:`mcdose.spect.SpectProtocol` fields to change from the paper's protocol
        (e.g. ``{"views": 60, "iterations": 6}`` for a quick campaign).
    processes
        Local workers are processes (default); False runs them as threads of this process
        (debugging).
    dashboard_address
        Serve the Dask dashboard of the local cluster there (e.g. ``":8787"``); None: off.
    stages
        ``(name, function)`` pairs replacing the default stages (testing, custom chains).
    on_case
        Called in this process with each :class:`CaseResult` as it arrives.

    Returns
    -------
    DatasetSummary
        Per-case results (``summary.failed`` lists failed cases) and timings.

    Raises
    ------
    InputError
        Bad parameters, or ``out_dir`` holds a dataset made with another preset, seed or
        nuclide.
    DeviceError
        ``device="cuda"`` on a local cluster without a CUDA GPU.
    """
    from distributed import Client, as_completed

    t_start = time.perf_counter()
    _check_args(cases, preset, seed, histories, batches, workers, scheduler,
                threads_per_worker, device, spect_backend)
    mf.split_by_case([], fractions=split_fractions)  # bad fractions: refused before any work
    if spect_protocol:
        from mcdose.spect import SpectProtocol

        try:
            SpectProtocol(**spect_protocol)  # validate before any worker starts
        except TypeError as exc:
            raise InputError(f"spect_protocol: {exc}") from None
    from mcdose.nuclides import normalize_nuclide_name
    from mcdose.phantoms import PRESETS

    nuclide = normalize_nuclide_name(nuclide)
    levels = _count_levels(counts)

    # -- workers
    gpu_ids: list[str] = []
    if scheduler is None:
        if device != "cpu":
            gpu_ids = local_gpu_ids()
        if device == "cuda" and not gpu_ids:
            raise DeviceError("device='cuda' but no CUDA GPU is visible on this machine")
        if gpu_ids:
            if workers is not None and workers > len(gpu_ids):
                log.warning("%d workers asked for but %d GPUs: one worker per GPU",
                            workers, len(gpu_ids))
            gpu_ids = gpu_ids[: workers or len(gpu_ids)]
            n_workers = len(gpu_ids)
        else:
            n_workers = workers or 1

    out = Path(out_dir)
    from mcdose.io.outputs import check_output_folder

    check_output_folder(out, flag="OUT_DIR", create=True)  # read-only: refused before work

    configs = [
        case_config(i, seed=seed, preset=preset, histories=histories, count_levels=levels,
                    nuclide=nuclide, batches=batches, device=device,
                    spect_backend=spect_backend, mc_spect=mc_spect, vdk_options=vdk_options,
                    spect_protocol=spect_protocol)
        for i in range(cases)
    ]
    stage_lists = {
        c.index: list(stages) if stages is not None else case_stages(c) for c in configs
    }
    planned = {i: tuple(n for n, _ in v) for i, v in stage_lists.items()}
    order = list(STAGES)
    stage_names = tuple(sorted(
        dict.fromkeys(n for p in planned.values() for n in p),
        key=lambda n: order.index(n) if n in order else len(order),
    ))

    # -- manifest: parameters, splits (kept from an earlier run), pending entries
    pre = PRESETS[preset]
    parameters = {
        "cases": cases,
        "preset": preset,
        "shape_zyx": list(pre.shape_zyx),
        "spacing_mm": list(pre.spacing_mm_xyz),
        "seed": seed,
        "nuclide": nuclide,
        "histories": histories,
        "batches": batches,
        "mc_spect": bool(mc_spect),
        "device": device,
        "count_levels": list(levels),
        "spect_backend": spect_backend,
        "vdk_options": dict(vdk_options or {}),
        "spect_protocol": dict(spect_protocol or {}),
        "split_fractions": list(split_fractions),
        "split_seed": seed,
        "stages": list(stage_names),
        "seed_rules": {
            "phantom": "seed + index",
            "spect, mc, mc_spect": "numpy.random.SeedSequence([seed, index, k])"
            ".generate_state(1, uint32)[0], k = 1, 2, 3",
            "counts": "mcdose.spect.choose_count_level(spect_seed, count_levels)",
        },
    }
    existing = mf.read_manifest(out)
    if existing is not None:
        mf.check_compatible(existing, parameters, out / mf.MANIFEST_NAME)
        parameters["cases"] = max(cases, int(existing["parameters"].get("cases", 0)))
        manifest = existing
        manifest["parameters"] = parameters
        manifest["software"] = mf.software_versions()
    else:
        manifest = mf.new_manifest(parameters)
    known = mf.entries(manifest)
    fresh = mf.split_by_case([c.file[:-3] for c in configs], seed=seed,
                             fractions=split_fractions)
    splits = {
        c.file: known.get(c.file, {}).get("split") or fresh[c.file[:-3]] for c in configs
    }
    splits = {f: s if s in mf.SPLITS else fresh[f[:-3]] for f, s in splits.items()}
    pending = []
    for c in configs:
        entry = known.get(c.file, {})
        done = {k for k, v in entry.get("stages", {}).items() if v.get("status") == "done"}
        if not entry.get("complete") or not set(planned[c.index]) <= done:
            e = _case_entry(c, splits[c.file], planned[c.index], None)
            e["stages"] = {k: v for k, v in e["stages"].items() if k not in done}
            pending.append(e)
    mf.merge_cases(manifest, pending)
    # written once the workers are up: a run that fails to start leaves no manifest (and an
    # earlier run's manifest as it was)
    manifest_path = out / mf.MANIFEST_NAME

    for tmp in out.glob(".case_*.tmp.h5"):  # left by a killed writer
        log.info("removing stale temporary file %s", tmp)
        tmp.unlink(missing_ok=True)

    results: dict[int, CaseResult] = {}
    topic = f"mcdose-dataset-{uuid.uuid4().hex[:12]}"
    cluster = None
    client = None
    with _Progress(cases, planned, progress) as bar:
        try:
            if scheduler is None:
                cluster = _local_cluster(n_workers, threads_per_worker, gpu_ids,
                                         processes=processes,
                                         dashboard_address=dashboard_address)
                client = Client(cluster)
                client.wait_for_workers(n_workers)
                use_gpu_resource = bool(gpu_ids)
            else:
                client = Client(scheduler)
                bar.note(f"waiting for a worker at {scheduler}")
                client.wait_for_workers(1)
                use_gpu_resource = _workers_have_gpu_resource(client)
            n_running = len(client.scheduler_info(n_workers=-1)["workers"])
            startup = time.perf_counter() - t_start
            mf.write_manifest(out, manifest)
            bar.note("")
            if bar.enabled:
                client.subscribe_topic(topic, bar.event)
            resources = {"GPU": 1} if use_gpu_resource else None
            kernels = None
            if stages is None and any("vdk" in p for p in planned.values()):
                # ahead of the cases (highest priority), not waited for: a case reaching
                # VDK first finds the kernel cached, or generates it itself
                kernels = client.submit(prepare_kernels, configs[0], pure=False,
                                        resources=resources, priority=1,
                                        key=f"mcdose-kernels-{topic[-12:]}")
            futures = {}
            for c in configs:
                fut = client.submit(
                    run_case,
                    str(out / c.file),
                    c,
                    stages,
                    event_topic=topic if bar.enabled else None,
                    key=f"mcdose-case-{c.index:04d}-{topic[-12:]}",
                    pure=False,
                    resources=resources,
                    priority=-c.index,
                )
                futures[fut] = c
            last_write = time.monotonic()
            for fut in as_completed(list(futures)):
                c = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # the worker died (KilledWorker) or similar
                    text = " ".join(str(exc).split())
                    res = CaseResult(
                        index=c.index,
                        file=c.file,
                        planned=planned[c.index],
                        error=f"worker: {type(exc).__name__}: {text}"[:500],
                    )
                results[c.index] = res
                bar.case_finished(c.index)
                if res.error:
                    log.warning("%s failed: %s", c.file, res.error)
                mf.merge_cases(
                    manifest, [_case_entry(c, splits[c.file], planned[c.index], res)]
                )
                if time.monotonic() - last_write > MANIFEST_INTERVAL_S or res.error:
                    mf.write_manifest(out, manifest)
                    last_write = time.monotonic()
                if on_case is not None:
                    on_case(res)
                fut.release()
            mf.write_manifest(out, manifest)
            if kernels is not None:
                if kernels.status == "error":
                    log.warning("kernel preparation failed: %s", kernels.exception())
                kernels.release()
            address = client.scheduler.address
        finally:
            if client is not None:
                if bar.enabled:
                    try:
                        client.unsubscribe_topic(topic)
                    except Exception:  # pragma: no cover - already closed
                        pass
                client.close()
            if cluster is not None:
                cluster.close()

    return DatasetSummary(
        out_dir=out,
        manifest_path=manifest_path,
        results=[results[c.index] for c in configs],
        stages=stage_names,
        seconds=time.perf_counter() - t_start,
        startup_seconds=startup,
        workers=n_running,
        scheduler=str(address),
        splits=splits,
    )
