"""The stages of a dataset case, in order, and the per-case runner.

A case goes through ``phantom → spect → mc → vdk → mc_spect`` (the last only when asked).
Each stage is a top-level, picklable function ``(case_path, config) -> StageResult`` that
calls the library's own stage function (:func:`mcdose.phantoms.write_phantom_case`,
:func:`mcdose.spect.spect_case`, :func:`mcdose.transport.simulate_case`,
:func:`mcdose.vdk.vdk_case`), measures its wall time and peak memory, and says whether it
ran or was skipped because its output was already in the case file with the same
parameters.  Every library stage writes atomically (a temporary copy renamed over the case
file), so a process killed mid-stage leaves the case as it was before that stage, and the
next run redoes only that stage.

:func:`run_case` runs the stages of one case in order (so one case never has two stages in
flight), stops at the first failure and validates the finished case file.  It is the unit
of work that :func:`mcdose.dataset.build_dataset` sends to a Dask worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mcdose.errors import CaseFileError
from mcdose.resources import PeakMemory

log = logging.getLogger(__name__)

__all__ = [
    "STAGES",
    "STAGE_OUTPUTS",
    "CaseConfig",
    "CaseResult",
    "StageResult",
    "case_stages",
    "mc_spect_stage",
    "mc_stage",
    "phantom_stage",
    "prepare_kernels",
    "run_case",
    "spect_stage",
    "vdk_stage",
]

#: stage name -> the dataset(s) it writes (checked by the final validation)
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "phantom": ("density", "activity", "labels"),
    "spect": ("spect",),
    "mc": ("dose/mc", "dose/mc_uncertainty"),
    "vdk": ("dose/vdk",),
    "mc_spect": ("dose/mc_spect", "dose/mc_spect_uncertainty"),
}

#: seconds between two memory samples while a stage runs


# --------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseConfig:
    """Everything the stages of one case need; picklable, so it travels to Dask workers.

    :func:`mcdose.dataset.campaign.case_config` derives it from the campaign parameters and
    the case index; the manifest records every field.

    Attributes
    ----------
    index : int
        Case number ``i`` (file ``case_{i:04d}.h5``).
    file : str
        Case file name, relative to the dataset folder.
    preset : str
        Phantom grid (:data:`mcdose.phantoms.PRESETS`).
    nuclide : str
        Nuclide of the activity.
    phantom_seed : int
        Seed of :func:`mcdose.phantoms.generate_phantom` (campaign seed + ``index``).
    spect_seed : int
        Seed of the SPECT noise (:func:`mcdose.spect.spect_case`).
    counts : float
        Expected total SPECT counts of this case.
    mc_seed, mc_spect_seed : int
        Seeds of the Monte Carlo on the true activity and on the SPECT.
    histories : int
        Monte Carlo histories (decays) per MC stage.
    batches : int
        Batches of the MC uncertainty estimate.
    device : {"auto", "cpu", "cuda"}
        MC device.
    spect_backend : {"auto", "pytomography", "gaussian"}
        SPECT simulator (:func:`mcdose.spect.simulate_spect`).
    mc_spect : bool
        Run the MC on the SPECT (``dose/mc_spect``) as a last stage.
    vdk_options : dict
        Extra keyword arguments of :func:`mcdose.vdk.vdk_case` (e.g. a kernel file).
    spect_protocol : dict
        Fields of :class:`mcdose.spect.SpectProtocol` that differ from its defaults (the
        paper's protocol), e.g. fewer views for a quick campaign; empty: the defaults.
    force : tuple of str
        Stages to recompute even when their output is there with the same parameters.
    """

    index: int
    file: str
    preset: str
    nuclide: str
    phantom_seed: int
    spect_seed: int
    counts: float
    mc_seed: int
    mc_spect_seed: int
    histories: int
    batches: int = 10
    device: str = "auto"
    spect_backend: str = "auto"
    mc_spect: bool = False
    vdk_options: dict[str, Any] = field(default_factory=dict)
    spect_protocol: dict[str, Any] = field(default_factory=dict)
    force: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageResult:
    """What one stage did on one case.

    Attributes
    ----------
    stage : str
        Stage name (``phantom``, ``spect``, ``mc``, ``vdk``, ``mc_spect``).
    ran : bool
        True when the stage computed and wrote its output; False when it was skipped
        because the output was already there with the same parameters.
    seconds : float
        Wall time of the stage, s (including a skip's check).
    peak_rss_bytes : int or None
        Peak resident memory of the worker process during the stage, bytes (what the
        process already held included; see ``start_rss_bytes``).
    peak_gpu_bytes : int or None
        Peak memory in use on the worker's GPU during the stage, bytes (the whole device as
        the CUDA driver reports it, so it includes the context); None without a GPU.
    error : str or None
        One line ``ExceptionType: message`` when the stage failed.
    start_rss_bytes : int or None
        Resident memory of the worker process when the stage started, bytes.
    """

    stage: str
    ran: bool
    seconds: float
    peak_rss_bytes: int | None = None
    peak_gpu_bytes: int | None = None
    error: str | None = None
    start_rss_bytes: int | None = None

    @property
    def skipped(self) -> bool:
        return not self.ran and self.error is None

    @property
    def status(self) -> str:
        """``"ran"``, ``"skipped"`` or ``"failed"``."""
        if self.error is not None:
            return "failed"
        return "ran" if self.ran else "skipped"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CaseResult:
    """The outcome of :func:`run_case` for one case.

    Attributes
    ----------
    index, file
        The case.
    stages : list of StageResult
        The stages that were attempted, in order (a failed stage is the last one).
    planned : tuple of str
        Every stage the case should go through.
    error : str or None
        One line when the case failed (a stage raised, the final validation failed or the
        worker running it was lost).
    traceback : str or None
        The full traceback of ``error`` (for logs).
    worker : str or None
        Address of the Dask worker that ran it.
    seconds : float
        Wall time of the whole case on the worker, s.
    """

    index: int
    file: str
    stages: list[StageResult] = field(default_factory=list)
    planned: tuple[str, ...] = ()
    error: str | None = None
    traceback: str | None = None
    worker: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.stages) == len(self.planned)

    @property
    def ran(self) -> list[str]:
        return [s.stage for s in self.stages if s.ran]

    @property
    def skipped(self) -> list[str]:
        return [s.stage for s in self.stages if s.skipped]

    def stage(self, name: str) -> StageResult | None:
        for s in self.stages:
            if s.stage == name:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# --------------------------------------------------------------------------------------
# Measuring a stage
# --------------------------------------------------------------------------------------


def _wants_gpu(config: CaseConfig) -> bool:
    if config.device == "cpu":
        return False
    from mcdose.transport.devices import cuda_available

    return cuda_available()


@contextlib.contextmanager
def _measured(stage: str, config: CaseConfig) -> Iterator[dict[str, Any]]:
    """Time a stage and sample its memory; the body sets ``out["ran"]``."""
    out: dict[str, Any] = {"ran": True}
    t0 = time.perf_counter()
    with PeakMemory(gpu=_wants_gpu(config)) as mem:
        yield out
    out["result"] = StageResult(
        stage=stage,
        ran=bool(out["ran"]),
        seconds=time.perf_counter() - t0,
        peak_rss_bytes=mem.peak_rss or None,
        peak_gpu_bytes=mem.peak_gpu,
        start_rss_bytes=mem.start_rss or None,
    )


# --------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------


def phantom_stage(case_path: str | os.PathLike[str], config: CaseConfig) -> StageResult:
    """Generate the case's virtual patient (``density``, ``activity``, ``labels``).

    Skipped when the case file exists and was generated with the same seed, preset and
    nuclide.

    Raises
    ------
    CaseFileError
        The case file exists but holds another phantom (other seed / preset / nuclide).
    """
    from mcdose.phantoms import generate_phantom, read_phantom_params, write_phantom_case

    path = Path(case_path)
    with _measured("phantom", config) as out:
        if path.exists():
            from mcdose.io.case import read_case_info

            info = read_case_info(path)
            params = read_phantom_params(path)
            found = (params.get("seed"), params.get("preset"), info.nuclide)
            wanted = (config.phantom_seed, config.preset, config.nuclide)
            if found != wanted:
                raise CaseFileError(
                    f"{path}: exists with phantom seed {found[0]}, preset {found[1]}, "
                    f"nuclide {found[2]}; this campaign wants seed {wanted[0]}, preset "
                    f"{wanted[1]}, nuclide {wanted[2]} (use another folder)"
                )
            out["ran"] = False
        else:
            phantom = generate_phantom(config.phantom_seed, config.preset)
            write_phantom_case(phantom, path, config.nuclide)
    return out["result"]


def spect_stage(case_path: str | os.PathLike[str], config: CaseConfig) -> StageResult:
    """Simulate the case's SPECT (``spect``) with :func:`mcdose.spect.spect_case`."""
    from mcdose.spect import SpectProtocol, spect_case

    protocol = SpectProtocol(**config.spect_protocol) if config.spect_protocol else None
    with _measured("spect", config) as out:
        ret = spect_case(
            case_path,
            seed=config.spect_seed,
            counts=config.counts,
            protocol=protocol,
            backend=config.spect_backend,
            overwrite="spect" in config.force,
        )
        out["ran"] = not bool(ret.get("skipped", False))
    return out["result"]


def _mc(stage: str, source: str, seed: int, case_path: Any, config: CaseConfig) -> StageResult:
    from mcdose.transport import simulate_case

    with _measured(stage, config) as out:
        ret = simulate_case(
            case_path,
            source=source,
            histories=config.histories,
            seed=seed,
            device=config.device,
            batches=config.batches,
            force=stage in config.force,
        )
        out["ran"] = ret is not None
    return out["result"]


def mc_stage(case_path: str | os.PathLike[str], config: CaseConfig) -> StageResult:
    """Monte Carlo on the true activity (``dose/mc``, the ground truth)."""
    return _mc("mc", "activity", config.mc_seed, case_path, config)


def mc_spect_stage(case_path: str | os.PathLike[str], config: CaseConfig) -> StageResult:
    """Monte Carlo on the SPECT (``dose/mc_spect``, the paper's comparison)."""
    return _mc("mc_spect", "spect", config.mc_spect_seed, case_path, config)


def vdk_stage(case_path: str | os.PathLike[str], config: CaseConfig) -> StageResult:
    """Voxel-dose-kernel convolution of the SPECT (``dose/vdk``), :func:`mcdose.vdk.vdk_case`.

    The kernels come from the kernel cache (generated by Monte Carlo on first use);
    ``config.vdk_options`` are passed on (e.g. ``histories``, ``kernels``,
    ``kernel_files``); ``device`` defaults to the campaign's device.
    """
    from mcdose.vdk import vdk_case

    options = {"device": config.device, **config.vdk_options}
    with _measured("vdk", config) as out:
        ret = vdk_case(case_path, source="spect", force="vdk" in config.force, **options)
        out["ran"] = ret is not None
    return out["result"]


def prepare_kernels(config: CaseConfig) -> list[str]:
    """Generate (or find) the VDK kernels of the campaign's grid in the kernel cache.

    The campaign runs this once, ahead of the cases, so that workers do not all generate
    the same kernel when their first case reaches the VDK stage.  Returns one line per
    kernel (:meth:`mcdose.vdk.Kernel.describe`); an empty list when ``vdk_options`` names
    kernel files.
    """
    from mcdose.phantoms import PRESETS
    from mcdose.vdk import case_kernels

    opts = {"device": config.device, **config.vdk_options}
    if opts.get("kernel_files"):
        return []
    pre = PRESETS[config.preset]
    kw = {k: opts[k] for k in ("histories", "seed", "device", "cache") if k in opts}
    sets = case_kernels(config.nuclide, pre.spacing_mm_xyz, pre.shape_zyx,
                        mode=opts.get("kernels", "single"), **kw)
    return [str(k.describe()) for ks in sets.values() for k in ks]


StageFunction = Callable[[Any, CaseConfig], StageResult]

#: the ordered stages (``mc_spect`` only runs when ``CaseConfig.mc_spect``)
STAGES: dict[str, StageFunction] = {
    "phantom": phantom_stage,
    "spect": spect_stage,
    "mc": mc_stage,
    "vdk": vdk_stage,
    "mc_spect": mc_spect_stage,
}


def case_stages(config: CaseConfig) -> list[tuple[str, StageFunction]]:
    """The stages a case goes through, in order."""
    return [(n, f) for n, f in STAGES.items() if n != "mc_spect" or config.mc_spect]


# --------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _emit(topic: str | None, msg: dict[str, Any]) -> None:
    """Tell the campaign's client about progress (no-op outside a Dask worker)."""
    if not topic:
        return
    try:
        from distributed import get_worker

        get_worker().log_event(topic, msg)
    except Exception:  # not on a worker, or the scheduler went away
        pass


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:
        return None


def run_case(
    case_path: str | os.PathLike[str],
    config: CaseConfig,
    stages: Sequence[tuple[str, StageFunction]] | None = None,
    *,
    event_topic: str | None = None,
) -> CaseResult:
    """Run the stages of one case in order; never raises for a failing stage.

    Parameters
    ----------
    case_path
        The case file (created by the first stage).
    config
        The case's parameters.
    stages
        ``(name, function)`` pairs; default :func:`case_stages`.
    event_topic
        On a Dask worker, publish ``{"case", "stage", "event"}`` messages under this topic
        (``Worker.log_event``) when a stage starts and ends; the campaign's progress bar
        subscribes to it.

    Returns
    -------
    CaseResult
        The stages attempted; at the first failure the remaining stages are not run and
        ``error`` holds one line.  When every stage succeeded the case file is validated
        (:func:`mcdose.io.case.validate_case`, voxel values read only when a stage ran).

    Notes
    -----
    A stage is skipped when its output is there with the same parameters; the parameters
    of ``mc``, ``vdk`` and ``mc_spect`` include a fingerprint of the dataset they are
    computed from (:func:`mcdose.io.case.source_fingerprint`), so a recomputed ``spect``
    (in this call or an earlier, interrupted one) makes ``vdk`` and ``mc_spect`` run again.
    """
    from mcdose.io.case import validate_case

    path = Path(case_path)
    stages = list(case_stages(config) if stages is None else stages)
    result = CaseResult(
        index=config.index,
        file=config.file,
        planned=tuple(n for n, _ in stages),
        worker=_worker_address(),
    )
    t_case = time.perf_counter()
    for name, func in stages:
        _emit(event_topic, {"case": config.index, "stage": name, "event": "start"})
        t0 = time.perf_counter()
        try:
            sr = func(path, config)
        except Exception as exc:
            sr = StageResult(name, ran=False, seconds=time.perf_counter() - t0,
                             error=_one_line(exc))
            result.stages.append(sr)
            result.error = f"{name}: {sr.error}"
            result.traceback = traceback.format_exc()
            log.warning("%s: stage %s failed: %s", path, name, sr.error)
            _emit(event_topic, {"case": config.index, "stage": name, "event": "failed"})
            break
        result.stages.append(sr)
        _emit(event_topic, {"case": config.index, "stage": name, "event": sr.status})
    if result.error is None:
        required = [d for name, _ in stages for d in STAGE_OUTPUTS.get(name, ())]
        try:
            validate_case(path, require=required, check_values=bool(result.ran))
        except Exception as exc:
            result.error = f"validate: {_one_line(exc)}"
            result.traceback = traceback.format_exc()
    result.seconds = time.perf_counter() - t_case
    return result
