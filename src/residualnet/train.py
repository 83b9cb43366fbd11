"""Training of the residual CNN: Adam, ReduceLROnPlateau, MSE, checkpoints, DDP.

``train(dataset_dir, out, TrainConfig(...))`` — also ``mcdose train-residual`` and
``python -m residualnet.train`` — trains on the ``train`` split of a dataset folder
(:mod:`residualnet.data`), monitors the ``val`` split, and writes next to ``out``:

* ``out`` (e.g. ``model.pt``): the model file (:mod:`residualnet.modelfile`) of the best
  validation epoch — lowest loss, or with ``select_by="goals"`` best against the accuracy
  goals (:mod:`residualnet.validation`) — rewritten atomically whenever validation improves;
* ``model.ckpt``: the checkpoint of the last finished epoch (weights, optimiser, scheduler,
  AMP scaler, history, normalisation), rewritten atomically every epoch; ``resume=True``
  (``--resume``) continues from it and reproduces the uninterrupted run;
* ``model.log.csv``: one row per epoch (train/val loss, learning rate, seconds);
* ``model.loss.png``: the loss curves (drawn when training ends).

With ``ema_decay > 0`` an exponential moving average of the weights is kept; validation, the
model file and the choice of the best epoch use the averaged weights.

Recipe (DblurDoseNet, Li et al. 2022): Adam with lr 1e-3, ReduceLROnPlateau on the
validation loss, MSE on the normalised dose (or the body-weighted MSE, ``loss="body"``),
batch 32; early stopping after ``early_stopping`` epochs without improvement.  All random
choices derive from ``seed`` (weights, per-epoch shuffling and augmentation), so a run is
reproducible on a given device and a resumed run continues exactly.

Several GPUs: run under ``torchrun`` (one process per GPU)::

    torchrun --nproc_per_node=4 -m residualnet.train DATASET --out model.pt --epochs 200
    torchrun --nproc_per_node=4 -m mcdose_cli.main train-residual DATASET --out model.pt

Each process reads its share of the batches (so the effective batch is
``world_size × batch_size``), gradients are averaged by DDP (NCCL on GPUs, gloo on CPUs),
losses are all-reduced, and rank 0 alone writes files.  AMP: bf16 autocast on GPUs that
support it, otherwise fp16 with a gradient scaler; none on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mcdose.errors import InputError, McdoseError
from mcdose.io.atomic import atomic_path
from mcdose.progress import progress_bar
from residualnet.data import (
    TRAINING_DATASETS,
    BlockBatchSampler,
    CaseEntry,
    SlicePackDataset,
    batch_packs,
    case_scale,
    collate_blocks,
    inspect_case,
    read_manifest,
)
from residualnet.infer import resolve_device
from residualnet.losses import (
    LOSSES,
    NRMSE_FLOOR_DEFAULT,
    NRMSE_REFERENCES,
    REGION_LOSS_DEFAULTS,
    training_loss,
)
from residualnet.model import ModelConfig, ResidualDoseNet, build_model, count_parameters
from residualnet.modelfile import model_record, same_nuclide
from residualnet.normalization import CaseScale, Normalization, fit_normalization
from residualnet.validation import GoalScore, RegionSums

__all__ = ["TrainConfig", "TrainResult", "main", "output_paths", "train"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "residualnet-checkpoint"
CHECKPOINT_VERSION = 1
#: ways to choose the best epoch (see :class:`TrainConfig` ``select_by``)
SELECT_BY = ("loss", "goals")
#: log columns of the validation goals (:mod:`residualnet.validation`)
GOAL_COLUMNS = ("val_goals_missed", "val_goals", "val_goal_ratio")


@dataclass
class TrainConfig:
    """Training options (defaults: the paper's recipe).

    Attributes
    ----------
    epochs
        Total epochs (a resumed run continues up to this number).
    batch_size
        Slices per batch and process (32).
    lr
        Initial Adam learning rate (1e-3).
    loss
        ``"mse"`` (paper), ``"body"``, ``"poisson"``, ``"organ"``, ``"mde"``,
        ``"poisson-mde"``: :mod:`residualnet.losses` defines each.  The labels are used by
        the loss only; the network sees SPECT and density alone.
    outside_weight
        ``loss="body"``: weight of the voxels outside the body.
    poisson_floor
        Poisson weight ``1 / (VDK̂ + poisson_floor)``: bounds it in air and far tissue;
        0.01 is about the body's median normalised dose.
    organ_weight, organ_floor
        Region losses: weight of the region-mean term, and the normalised dose added to the
        true region mean in its denominator; None: the loss's defaults
        (``residualnet.losses.REGION_LOSS_DEFAULTS``: 0.01 / 0.05 for ``organ``, 0.001 /
        0.01 for ``mde``, 0.02 / 0.01 for ``poisson-mde``).
    organ_min_voxels
        Region losses: regions with fewer voxels in a slice are left out (their mean is
        mostly Monte Carlo noise).
    lesion_weight, lesion_min_voxels
        Region losses: weight of a lesion's term (labels from
        ``residualnet.losses.LESION_LABEL_BASE`` up) against an organ's, and its voxel
        threshold (None: ``organ_min_voxels``; at 4 mm a lesion below ≈ 9 mm never has 4
        voxels in a slice).
    nrmse_weight, nrmse_floor, nrmse_reference
        Region losses: weight of the region NRMSE term (0: off), the normalised dose whose
        square is added per voxel to its denominator (0.05, the healthy liver's), and what
        it divides by: ``"truth"`` (:func:`residualnet.losses.region_nrmse`) or ``"vdk"``
        (:func:`residualnet.losses.region_relative_mse`, organs only; unbiased, the shipped
        recipe at weight 0.02).  Measured effects: docs/residualnet.md.
    ema_decay
        Exponential moving average of the weights (Polyak averaging), 0 = off.  After every
        optimiser step ``w̄ ← d·w̄ + (1 − d)·w`` with ``d = min(ema_decay, (1 + t)/(10 + t))``
        at step ``t`` (the warm-up lets the average forget the random initialisation);
        batch-norm statistics are averaged alike.  The averaged weights are validated and
        saved.  Averaging over the last ~1/(1 − d) steps removes part of the weights' step-to-
        step noise, which the Monte Carlo noise of the targets keeps high.
    select_by
        How the best epoch (the model file, early stopping) is chosen: ``"loss"`` the lowest
        validation loss; ``"goals"`` the validation cases' standing against the accuracy
        goals (:mod:`residualnet.validation`: fewest goals missed, then the lowest mean ratio
        of CNN value to goal threshold), which needs labels in the validation cases.  The
        learning-rate schedule follows the validation loss either way.
    lr_factor, lr_patience, min_lr
        ReduceLROnPlateau: multiply the learning rate by ``lr_factor`` after ``lr_patience``
        epochs without validation improvement, not below ``min_lr``.
    early_stopping
        Stop after this many epochs without validation improvement (0: never).
    seed
        Seed of weights, shuffling and augmentation.
    split_seed
        Seed of the by-case split when the dataset has no manifest.
    augment
        Random in-plane rotations/flips of training blocks.
    workers
        DataLoader worker processes per training process.
    block_slices
        Consecutive slices read together (I/O locality); a batch holds
        ``batch_size / block_slices`` blocks.
    amp
        ``"auto"`` (bf16 or fp16 on CUDA, off on CPU), ``"bf16"``, ``"fp16"``, ``"off"``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``; under torchrun each process uses
        ``cuda:LOCAL_RANK``.
    max_batches
        Cap on training batches per epoch (None: all), for smoke runs.
    single_constant
        Paper's single normalisation constant (see :mod:`residualnet.normalization`).
    sync_batchnorm
        Synchronise batch-norm statistics across DDP processes.
    model
        Architecture.
    """

    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    loss: str = "mse"
    outside_weight: float = 0.1
    poisson_floor: float = 0.01
    organ_weight: float | None = None
    organ_floor: float | None = None
    organ_min_voxels: int = 4
    lesion_weight: float = 1.0
    lesion_min_voxels: int | None = None
    nrmse_weight: float = 0.0
    nrmse_floor: float = NRMSE_FLOOR_DEFAULT
    nrmse_reference: str = "truth"
    ema_decay: float = 0.0
    select_by: str = "loss"
    lr_factor: float = 0.5
    lr_patience: int = 5
    min_lr: float = 1e-6
    early_stopping: int = 20
    seed: int = 0
    split_seed: int = 0
    augment: bool = True
    workers: int = 2
    block_slices: int = 8
    amp: str = "auto"
    device: str = "auto"
    max_batches: int | None = None
    single_constant: bool = False
    sync_batchnorm: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        weight, floor = REGION_LOSS_DEFAULTS.get(self.loss, REGION_LOSS_DEFAULTS["organ"])
        if self.organ_weight is None:
            self.organ_weight = weight
        if self.organ_floor is None:
            self.organ_floor = floor
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be positive"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (self.outside_weight >= 0, "outside_weight must be >= 0"),
            (self.poisson_floor > 0, "poisson_floor must be positive"),
            (self.organ_weight >= 0, "organ_weight must be >= 0"),
            (self.organ_floor > 0, "organ_floor must be positive"),
            (self.organ_min_voxels >= 1, "organ_min_voxels must be >= 1"),
            (self.lesion_weight >= 0, "lesion_weight must be >= 0"),
            (self.lesion_min_voxels is None or self.lesion_min_voxels >= 1,
             "lesion_min_voxels must be >= 1"),
            (self.nrmse_weight >= 0, "nrmse_weight must be >= 0"),
            (self.nrmse_floor > 0, "nrmse_floor must be positive"),
            (self.nrmse_reference in NRMSE_REFERENCES,
             f"nrmse_reference must be one of {', '.join(NRMSE_REFERENCES)}"),
            (self.nrmse_weight == 0 or self.loss in REGION_LOSS_DEFAULTS,
             f"nrmse_weight needs a region loss ({', '.join(REGION_LOSS_DEFAULTS)})"),
            (0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
            (self.select_by in SELECT_BY, f"select_by must be one of {', '.join(SELECT_BY)}"),
            (0 < self.lr_factor < 1, "lr_factor must be in (0, 1)"),
            (self.lr_patience >= 0, "lr_patience must be >= 0"),
            (self.early_stopping >= 0, "early_stopping must be >= 0"),
            (self.workers >= 0, "workers must be >= 0"),
            (self.block_slices >= 1, "block_slices must be >= 1"),
            (self.amp in ("auto", "bf16", "fp16", "off"), "amp must be auto, bf16, fp16 or off"),
            (self.max_batches is None or self.max_batches >= 1, "max_batches must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_path: Path
    checkpoint_path: Path
    log_path: Path
    plot_path: Path
    epochs_run: int
    best_epoch: int
    best_loss: float
    stopped_early: bool
    parameters: int
    history: list[dict[str, float]]
    normalization: Normalization
    net: ResidualDoseNet | None = field(default=None, repr=False)
    best_score: GoalScore | None = None


def output_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """Files written for model ``out``: ``model``, ``checkpoint``, ``log``, ``plot``."""
    out = Path(out)
    if out.suffix == ".ckpt":
        raise InputError(f"{out}: the model file may not end in .ckpt (that is the checkpoint)")
    return {
        "model": out,
        "checkpoint": out.with_suffix(".ckpt"),
        "log": out.with_suffix(".log.csv"),
        "plot": out.with_suffix(".loss.png"),
    }


# -- distributed ------------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str) -> _Dist:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return _Dist(device=resolve_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    return _Dist(dist.get_rank(), dist.get_world_size(), dev, owns)


def _all_reduce_sum(values: list[float], ctx: _Dist) -> list[float]:
    if not ctx.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def _broadcast(obj: Any, ctx: _Dist) -> Any:
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(ctx: _Dist) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


@torch.no_grad()
def _ema_update(average: torch.nn.Module, net: torch.nn.Module, decay: float, step: int) -> None:
    """One step of the weights' moving average (see :class:`TrainConfig` ``ema_decay``)."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for mean, value in zip(average.state_dict().values(), net.state_dict().values(), strict=True):
        if mean.dtype.is_floating_point:
            mean.mul_(d).add_(value.detach().to(mean.dtype), alpha=1.0 - d)
        else:
            mean.copy_(value)


def _amp_setup(amp: str, device: torch.device) -> tuple[Any, bool]:
    """(autocast context factory, use GradScaler)."""
    if amp == "auto":
        if device.type != "cuda":
            return (lambda: nullcontext()), False
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "off":
        return (lambda: nullcontext()), False
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return (lambda: torch.autocast(device.type, dtype=dtype)), (
        amp == "fp16" and device.type == "cuda"
    )


def _scale_to_list(s: CaseScale) -> list[float]:
    return [s.spect_sum_MBq, s.spect_max_fraction, s.vdk_max_Gy_s_per_MBq]


def _check_cases(entries: list[CaseEntry]) -> tuple[tuple[float, float, float], str]:
    """All cases have the training datasets, one voxel size and one nuclide."""
    voxel: tuple[float, float, float] | None = None
    nuclide: str | None = None
    for entry in entries:
        meta = inspect_case(entry.path, require=TRAINING_DATASETS)
        if voxel is None:
            voxel, nuclide = meta.spacing_mm, meta.nuclide
            continue
        if any(abs(a - b) > 1e-3 * b for a, b in zip(meta.spacing_mm, voxel, strict=True)):
            raise InputError(
                f"{entry.path}: voxel size {meta.spacing_mm} mm differs from {voxel} mm of "
                f"the other cases; one model is trained for one voxel size"
            )
        if not same_nuclide(meta.nuclide, nuclide or ""):
            raise InputError(f"{entry.path}: nuclide {meta.nuclide} differs from {nuclide}")
    assert voxel is not None and nuclide is not None
    return voxel, nuclide


def _region_sums(val_entries: list[CaseEntry], config: TrainConfig,
                 device: torch.device) -> RegionSums | None:
    """Region sums of the validation cases, or None where they have no label names."""
    metas = [inspect_case(e.path) for e in val_entries]
    unlabelled = [e.name for e, m in zip(val_entries, metas, strict=True) if not m.label_names]
    if config.select_by == "goals" and (not val_entries or unlabelled):
        raise InputError(
            "select_by='goals' needs validation cases with labels and label names"
            + (f"; without: {', '.join(unlabelled[:3])}" if unlabelled else "")
        )
    if not val_entries or unlabelled:
        return None
    return RegionSums(
        [m.label_names for m in metas],
        [math.prod(m.spacing_mm) / 1000.0 for m in metas], device=device,
    )


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    columns = ["epoch", "train_loss", "val_loss", "lr", "seconds", "best"]
    columns += [c for c in GOAL_COLUMNS if any(c in row for row in history)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in columns})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _plot_losses(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", ms=3, label="train")
    val = [row["val_loss"] for row in history]
    if any(math.isfinite(v) for v in val):
        ax.plot(epochs, val, "s-", ms=3, label="validation")
    if all(v > 0 for v in [row["train_loss"] for row in history] + [v for v in val if
                                                                     math.isfinite(v)]):
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised dose², MSE)")
    ax.set_title("residual CNN training")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, config: TrainConfig) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"cannot resume: checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(f"{path}: not a residualnet checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a residualnet checkpoint")
    if state.get("format_version", 0) > CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version is newer than this residualnet")
    if state["model_config"] != config.model.to_dict():
        raise InputError(
            f"{path}: checkpoint has a different architecture ({state['model_config']}); "
            f"resume with the same model options"
        )
    return state


# -- the loop -----------------------------------------------------------------------------------
def train(
    dataset_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the residual CNN on a dataset folder (see the module docstring).

    Parameters
    ----------
    dataset_dir
        Folder of case files and ``manifest.json`` (:mod:`residualnet.data`).
    out
        Model file to write; checkpoint, CSV log and loss plot go next to it
        (:func:`output_paths`).
    config
        Options; default :class:`TrainConfig` ().
    resume
        Continue from the checkpoint next to ``out`` up to ``config.epochs``.
    overwrite
        Start afresh even if a model or checkpoint exists at ``out``.
    progress
        Progress bars (rank 0).
    on_epoch
        Called (rank 0) with each epoch's log row.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Bad dataset (no training cases, missing datasets, mixed voxel sizes), existing
        output without ``resume``/``overwrite``, missing or incompatible checkpoint.
    """
    config = config or TrainConfig()
    paths = output_paths(out)
    if not paths["model"].parent.is_dir():
        raise InputError(f"output folder does not exist: {paths['model'].parent}")
    if not resume and not overwrite:
        for key in ("model", "checkpoint"):
            if paths[key].exists():
                raise InputError(
                    f"{paths[key]} exists; pass --resume to continue training or "
                    f"--overwrite to start again"
                )
    entries = read_manifest(dataset_dir, seed=config.split_seed)
    train_entries = [e for e in entries if e.split == "train"]
    val_entries = [e for e in entries if e.split == "val"]
    if not train_entries:
        raise InputError(f"{dataset_dir}: no training cases (split 'train')")
    voxel_mm, nuclide = _check_cases(train_entries + val_entries)
    state = _load_checkpoint(paths["checkpoint"], config) if resume else None

    ctx = _setup_distributed(config.device)
    try:
        return _train(
            ctx, config, paths, train_entries, val_entries, voxel_mm, nuclide, state,
            dataset_dir=Path(dataset_dir), progress=progress, on_epoch=on_epoch,
        )
    finally:
        if ctx.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    ctx: _Dist,
    config: TrainConfig,
    paths: dict[str, Path],
    train_entries: list[CaseEntry],
    val_entries: list[CaseEntry],
    voxel_mm: tuple[float, float, float],
    nuclide: str,
    state: dict[str, Any] | None,
    *,
    dataset_dir: Path,
    progress: bool,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> TrainResult:
    device = ctx.device
    all_entries = train_entries + val_entries
    # normalisation statistics: from the checkpoint, else computed by rank 0 and broadcast
    if state is not None:
        stored = state["scales"]
        missing = [e.name for e in all_entries if e.name not in stored]
        scales_by_name = {k: CaseScale(*v) for k, v in stored.items()}
        if missing:
            raise InputError(
                f"{paths['checkpoint']}: the dataset has cases the checkpoint does not know "
                f"({', '.join(missing[:3])}); resume with the same dataset"
            )
        normalization = Normalization.from_dict(state["normalization"])
    else:
        scales_by_name = (
            {e.name: case_scale(e.path) for e in all_entries} if ctx.main else None
        )
        scales_by_name = _broadcast(scales_by_name, ctx)
        normalization = fit_normalization(
            [scales_by_name[e.name] for e in train_entries],
            single_constant=config.single_constant,
        )

    pack = config.model.pack_size
    train_set = SlicePackDataset(
        [e.path for e in train_entries], normalization, pack,
        scales=[scales_by_name[e.name] for e in train_entries],
        augment=config.augment, seed=config.seed,
    )
    val_set = (
        SlicePackDataset(
            [e.path for e in val_entries], normalization, pack,
            scales=[scales_by_name[e.name] for e in val_entries], augment=False,
        )
        if val_entries
        else None
    )
    train_sampler = BlockBatchSampler(
        train_set, config.batch_size, block_slices=config.block_slices, shuffle=True,
        seed=config.seed, rank=ctx.rank, world_size=ctx.world_size, even=True,
    )
    if len(train_sampler) == 0:
        raise InputError(
            f"{dataset_dir}: too few training slices for {ctx.world_size} process(es) "
            f"with batch size {config.batch_size}"
        )
    loader_kw: dict[str, Any] = {
        "num_workers": config.workers,
        "collate_fn": collate_blocks,
        "pin_memory": device.type == "cuda",
        "persistent_workers": config.workers > 0,
    }
    train_loader = DataLoader(train_set, batch_sampler=train_sampler, **loader_kw)
    val_sampler = val_loader = None
    if val_set is not None:
        val_sampler = BlockBatchSampler(
            val_set, config.batch_size, block_slices=config.block_slices, shuffle=False,
            rank=ctx.rank, world_size=ctx.world_size, even=False,
        )
        val_loader = DataLoader(val_set, batch_sampler=val_sampler, **loader_kw)
    else:
        log.warning("no validation cases: the training loss drives the schedule")
    region_sums = _region_sums(val_entries, config, device)

    net: ResidualDoseNet = build_model(config.model, seed=config.seed)
    if state is not None:
        net.load_state_dict(state["model_state"])
    net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        net.unet.to(memory_format=torch.channels_last)
    # the moving average of the weights (None: off); what is validated and saved
    average: ResidualDoseNet | None = None
    ema_steps = 0
    if config.ema_decay > 0:
        average = copy.deepcopy(net)
        average.requires_grad_(False)
        if state is not None and state.get("ema_state") is not None:
            average.load_state_dict(state["ema_state"])
            ema_steps = int(state.get("ema_steps", 0))
        elif state is not None:
            log.warning("the checkpoint has no weight average: it starts from the current weights")
    evaluated: ResidualDoseNet = average if average is not None else net
    model: torch.nn.Module = net
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if config.sync_batchnorm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience,
        min_lr=config.min_lr,
    )
    autocast, use_scaler = _amp_setup(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    start_epoch, best_loss, best_epoch, bad_epochs = 0, math.inf, -1, 0
    best_score: GoalScore | None = None
    history: list[dict[str, float]] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        if use_scaler and state.get("scaler_state"):
            scaler.load_state_dict(state["scaler_state"])
        start_epoch = int(state["epoch"])
        best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        bad_epochs = int(state["bad_epochs"])
        history = [dict(row) for row in state["history"]]
        if state.get("best_score") is not None:
            missed, total, ratio = state["best_score"]
            best_score = GoalScore(int(missed), int(total), float(ratio))

    parameters = count_parameters(net)
    training_info = {
        "config": config.to_dict(),
        "dataset": str(dataset_dir),
        "train_cases": [e.name for e in train_entries],
        "val_cases": [e.name for e in val_entries],
        "world_size": ctx.world_size,
    }
    if ctx.main:
        log.info(
            "training %d parameters on %d train / %d val cases, %s x %d process(es)",
            parameters, len(train_entries), len(val_entries), device, ctx.world_size,
        )

    stopped_early = False
    epoch = start_epoch
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(config.seed * 100003 + epoch)
        train_sampler.set_epoch(epoch)
        model.train()
        n_batches = len(train_sampler)
        if config.max_batches is not None:
            n_batches = min(n_batches, config.max_batches)
        totals = [0.0, 0.0]
        with progress_bar(
            n_batches, f"epoch {epoch + 1}/{config.epochs}", unit="batches",
            enabled=progress and ctx.main,
        ) as advance:
            for i, batch in enumerate(train_loader):
                if i >= n_batches:
                    break
                packs = batch_packs(
                    [s.to(device, non_blocking=True) for s in batch["slabs"]], pack
                )
                vdk = batch["vdk"].to(device, non_blocking=True)
                target = batch["target"].to(device, non_blocking=True)
                body = batch["body"].to(device, non_blocking=True)
                labels = batch["labels"].to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    pred = model(packs, vdk)
                loss = training_loss(pred, target, body, vdk, config, labels)
                finite = bool(torch.isfinite(loss))
                if not finite and not use_scaler:
                    raise FloatingPointError(f"training loss is {loss.item()} at epoch {epoch + 1}")
                scaler.scale(loss).backward()
                scaler.step(optimizer)  # fp16: the scaler skips steps with inf/NaN gradients
                scaler.update()
                if average is not None:
                    _ema_update(average, net, config.ema_decay, ema_steps)
                    ema_steps += 1
                if finite:
                    totals[0] += float(loss.detach()) * len(target)
                    totals[1] += len(target)
                advance(1)
        train_sum, train_n = _all_reduce_sum(totals, ctx)
        train_loss = train_sum / max(train_n, 1.0)

        val_loss = math.nan
        score: GoalScore | None = None
        if val_loader is not None:
            # the bare network, not the DDP wrapper: ranks may hold different numbers of
            # validation batches, so nothing here may be a collective operation
            evaluated.eval()
            totals = [0.0, 0.0]
            if region_sums is not None:
                region_sums.reset()
            with torch.no_grad():
                for batch in val_loader:
                    packs = batch_packs([s.to(device) for s in batch["slabs"]], pack)
                    target = batch["target"].to(device)
                    with autocast():
                        pred = evaluated(packs, batch["vdk"].to(device))
                    vdk, labels = batch["vdk"].to(device), batch["labels"].to(device)
                    body = batch["body"].to(device)
                    loss = training_loss(pred, target, body, vdk, config, labels)
                    totals[0] += float(loss) * len(target)
                    totals[1] += len(target)
                    if region_sums is not None:
                        region_sums.add(batch["case"], labels, pred, vdk, target)
            val_sum, val_n = _all_reduce_sum(totals, ctx)
            val_loss = val_sum / max(val_n, 1.0)
            if region_sums is not None:
                if ctx.enabled:
                    region_sums.reduce(torch.distributed.all_reduce)
                score = region_sums.score()

        monitor = val_loss if val_loader is not None else train_loss
        scheduler.step(monitor)
        if config.select_by == "goals" and score is not None:
            improved = score.better_than(best_score)
        else:
            improved = monitor < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs, best_score = monitor, epoch + 1, 0, score
        else:
            bad_epochs += 1
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "best": int(improved),
        }
        if score is not None:
            row.update(val_goals_missed=score.missed, val_goals=score.total,
                       val_goal_ratio=score.ratio)
        history.append(row)
        stop = config.early_stopping > 0 and bad_epochs >= config.early_stopping
        if ctx.main:
            info = dict(
                training_info, epochs=epoch + 1, best_epoch=best_epoch, best_loss=best_loss,
                history=history,
                best_val_goals=None if best_score is None else list(best_score.goals),
            )
            if improved:
                record = model_record(
                    evaluated, normalization, voxel_mm=voxel_mm, nuclide=nuclide, training=info,
                    seed=config.seed,
                )
                _save_checkpoint(paths["model"], record)
            _save_checkpoint(
                paths["checkpoint"],
                {
                    "format": CHECKPOINT_FORMAT,
                    "format_version": CHECKPOINT_VERSION,
                    "epoch": epoch + 1,
                    "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                    "ema_state": None if average is None else {
                        k: v.detach().cpu() for k, v in average.state_dict().items()
                    },
                    "ema_steps": ema_steps,
                    "optimizer_state": optimizer.state_dict(),
                    "scheduler_state": scheduler.state_dict(),
                    "scaler_state": scaler.state_dict() if use_scaler else {},
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "best_score": None if best_score is None else [
                        best_score.missed, best_score.total, best_score.ratio],
                    "bad_epochs": bad_epochs,
                    "history": history,
                    "normalization": normalization.to_dict(),
                    "scales": {k: _scale_to_list(v) for k, v in scales_by_name.items()},
                    "train_config": config.to_dict(),
                    "model_config": config.model.to_dict(),
                    "voxel_mm": list(voxel_mm),
                    "nuclide": nuclide,
                },
            )
            _write_log(paths["log"], history)
            goals = "" if score is None else (
                f" goals missed {score.missed}/{score.total} ratio {score.ratio:.3f}")
            log.info(
                "epoch %d/%d train %.4g val %.4g%s lr %.2g%s", epoch + 1, config.epochs,
                train_loss, val_loss, goals, row["lr"], " *" if improved else "",
            )
            if on_epoch is not None:
                on_epoch(row)
        if stop:
            stopped_early = True
            break
    if ctx.main:
        _plot_losses(paths["plot"], history)
    _barrier(ctx)
    train_set.close()
    if val_set is not None:
        val_set.close()
    return TrainResult(
        model_path=paths["model"],
        checkpoint_path=paths["checkpoint"],
        log_path=paths["log"],
        plot_path=paths["plot"],
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_loss=best_loss,
        stopped_early=stopped_early,
        parameters=parameters,
        history=history,
        normalization=normalization,
        net=evaluated,
        best_score=best_score,
    )


# -- command line (torchrun entry point) ----------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m residualnet.train`` (same names as ``mcdose train-residual``)."""
    p = argparse.ArgumentParser(
        prog="python -m residualnet.train",
        description="Train the residual CNN (run under torchrun for several GPUs).",
    )
    d = TrainConfig()
    p.add_argument("dataset_dir")
    p.add_argument("--out", required=True, help="model file to write (e.g. model.pt)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--loss", choices=LOSSES, default=d.loss)
    p.add_argument("--region-weight", type=float, default=None)
    p.add_argument("--region-floor", type=float, default=None)
    p.add_argument("--lesion-weight", type=float, default=d.lesion_weight)
    p.add_argument("--lesion-min-voxels", type=int, default=None)
    p.add_argument("--nrmse-weight", type=float, default=d.nrmse_weight)
    p.add_argument("--nrmse-floor", type=float, default=d.nrmse_floor)
    p.add_argument("--nrmse-reference", choices=NRMSE_REFERENCES, default=d.nrmse_reference)
    p.add_argument("--ema", type=float, default=d.ema_decay)
    p.add_argument("--select-by", choices=SELECT_BY, default=d.select_by)
    p.add_argument("--early-stopping", type=int, default=d.early_stopping)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default=d.amp)
    p.add_argument("--device", default=d.device)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--width", type=int, default=d.model.unet_width)
    p.add_argument("--levels", type=int, default=d.model.unet_levels)
    p.add_argument("--pack-size", type=int, default=d.model.pack_size)
    p.add_argument("--stem-channels", type=int, default=d.model.stem_channels[0])
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--single-constant", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m residualnet.train``."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(message)s")
    try:
        model_cfg = ModelConfig(
            pack_size=args.pack_size, unet_width=args.width, unet_levels=args.levels,
            stem_channels=(args.stem_channels,) * 3,
        )
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, loss=args.loss,
            organ_weight=args.region_weight, organ_floor=args.region_floor, ema_decay=args.ema,
            lesion_weight=args.lesion_weight, lesion_min_voxels=args.lesion_min_voxels,
            nrmse_weight=args.nrmse_weight, nrmse_floor=args.nrmse_floor,
            nrmse_reference=args.nrmse_reference,
            select_by=args.select_by, early_stopping=args.early_stopping, seed=args.seed,
            workers=args.workers, amp=args.amp, device=args.device, augment=not args.no_augment,
            model=model_cfg, max_batches=args.max_batches, single_constant=args.single_constant,
        )
        result = train(args.dataset_dir, args.out, config, resume=args.resume,
                       overwrite=args.overwrite, progress=rank == 0)
    except McdoseError as exc:
        print(f"residualnet.train: error: {exc}", file=sys.stderr)
        return 2
    if rank == 0:
        print(f"model {result.model_path}: best epoch {result.best_epoch}, "
              f"loss {result.best_loss:.4g}, {result.parameters} parameters")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
