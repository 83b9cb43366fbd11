"""Slice packs streamed from HDF5 case files: manifest, split by case, packs, augmentation.

A *dataset* is a folder of case files (``*.h5``, layout in ``ARCHITECTURE.md``) and a
``manifest.json``::

    {"cases": [{"file": "case_0000.h5", "split": "train"}, ...], ...}

Each entry names a case file relative to the folder and its split, ``"train"``, ``"val"`` or
``"test"``; other keys (seed, preset, counts...) are kept but not read.  Without a manifest the
``*.h5`` files of the folder are split *by case* (never by slice) deterministically from a
seed, 70/15/15 (:func:`split_by_case`, the rule of the dataset factory's manifest,
:func:`mcdose.dataset.manifest.split_by_case`, imported from there).

Nothing reads a whole case: a training item is a *block* of consecutive centre slices of one
case, read as one slab of SPECT and density (the block plus ``(P − 1) / 2`` slices each side,
edge-replicated at the volume ends) and the block's slices of VDK, ground truth (``dose/mc``)
and labels, so a batch costs a few dozen slice reads per dataset whatever the case size.
Open files are cached per process (DataLoader workers open their own).

Augmentation (training only): per block, a random rotation by a multiple of 90° in-plane
(multiples of 180° for non-square slices) and random flips of y and x, applied identically to
every channel, slice, the VDK, the target and the body mask.  The random choice depends only on
(seed, epoch, case, first slice), so results do not depend on the number of workers or ranks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mcdose.dataset.manifest import MANIFEST_NAME, SPLITS, split_by_case
from mcdose.errors import CaseFileError, InputError
from mcdose.io.case import open_case, read_case_info, read_label_names
from mcdose.metrics import BODY_DENSITY_THRESHOLD_G_CM3
from residualnet.normalization import CaseScale, Normalization

__all__ = [
    "MANIFEST_NAME",
    "SPLITS",
    "BlockBatchSampler",
    "CaseEntry",
    "CaseMeta",
    "SlicePackDataset",
    "augment",
    "augmentation_params",
    "batch_packs",
    "case_scale",
    "collate_blocks",
    "inspect_case",
    "pack_indices",
    "packs_from_slab",
    "read_manifest",
    "read_slab",
    "split_by_case",
]

log = logging.getLogger(__name__)

#: datasets a training case needs
TRAINING_DATASETS = ("spect", "density", "dose/vdk", "dose/mc")
#: voxel datasets whose shapes must agree
VOXEL_DATASETS = ("spect", "density", "dose/vdk", "dose/mc", "dose/mc_spect", "labels")
#: slices read per chunk when streaming over a whole case
STREAM_CHUNK = 16


# -- dataset folder ------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseEntry:
    """One case of a dataset: its file and split."""

    path: Path
    split: str

    @property
    def name(self) -> str:
        return self.path.stem


def read_manifest(
    dataset_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> list[CaseEntry]:
    """The cases of a dataset folder with their splits.

    Parameters
    ----------
    dataset_dir
        Folder with case files and, optionally, ``manifest.json`` (format in the module
        docstring).
    seed, fractions
        Used only without a manifest (:func:`split_by_case`).

    Returns
    -------
    list of CaseEntry
        In manifest order (sorted by file name without a manifest).

    Raises
    ------
    InputError
        The folder does not exist, holds no case files, or the manifest is malformed or
        names a missing file.
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise InputError(f"dataset folder not found: {folder}")
    manifest = folder / MANIFEST_NAME
    if manifest.exists():
        try:
            data = json.loads(manifest.read_text())
            cases = data["cases"]
            if not isinstance(cases, list):
                raise TypeError("'cases' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{manifest}: not a valid manifest ({exc})") from None
        entries = []
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or "file" not in case:
                raise InputError(f"{manifest}: case {i} has no 'file'")
            split = case.get("split")
            if split not in SPLITS:
                raise InputError(
                    f"{manifest}: case {case['file']!r} has split {split!r}, expected one of "
                    f"{', '.join(SPLITS)}"
                )
            path = folder / str(case["file"])
            if not path.is_file():
                raise InputError(f"{manifest}: case file {case['file']!r} not found")
            entries.append(CaseEntry(path, split))
        if not entries:
            raise InputError(f"{manifest}: lists no cases")
        return entries
    files = sorted(p for p in folder.glob("*.h5") if not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: no case files (*.h5) and no {MANIFEST_NAME}")
    splits = split_by_case([p.stem for p in files], seed=seed, fractions=fractions)
    log.info("%s: no %s; split %d cases by seed %d", folder, MANIFEST_NAME, len(files), seed)
    return [CaseEntry(p, splits[p.stem]) for p in files]


# -- one case file ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseMeta:
    """What training and inference need to know about a case file without reading arrays."""

    path: Path
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    nuclide: str
    datasets: tuple[str, ...]
    label_names: dict[int, str] | None


def inspect_case(path: str | os.PathLike[str], require: Sequence[str] = ()) -> CaseMeta:
    """Read a case file's geometry, nuclide and dataset names; check ``require`` datasets.

    Raises
    ------
    CaseFileError
        Not a case file (see :func:`mcdose.io.case.read_case_info`), a required dataset
        missing, or a voxel dataset whose shape differs from the grid.
    """
    path = Path(path)
    info = read_case_info(path)
    for name in require:
        if not info.has(name):
            raise CaseFileError(f"{path}: dataset '{name}' is missing")
    if info.shape is None:
        raise CaseFileError(f"{path}: holds no voxel datasets")
    with open_case(path) as f:
        for name in VOXEL_DATASETS:
            if info.has(name) and tuple(f[name].shape) != info.shape:
                raise CaseFileError(
                    f"{path}: dataset '{name}' has shape {tuple(f[name].shape)}, "
                    f"expected {info.shape}"
                )
    label_names = read_label_names(path) if info.has("labels") else None
    return CaseMeta(
        path=path,
        shape=info.shape,
        spacing_mm=info.geometry.spacing_mm,
        nuclide=info.nuclide,
        datasets=info.datasets,
        label_names=label_names,
    )


def case_scale(path: str | os.PathLike[str]) -> CaseScale:
    """Stream over a case's ``spect`` (and ``dose/vdk``) for the normalisation statistics.

    Raises
    ------
    CaseFileError
        ``spect`` missing, not finite, or summing to zero.
    """
    path = Path(path)
    with open_case(path) as f:
        if "spect" not in f:
            raise CaseFileError(f"{path}: dataset 'spect' is missing")
        spect = f["spect"]
        vdk = f["dose/vdk"] if "dose/vdk" in f else None
        total, spect_max, vdk_max = 0.0, 0.0, 0.0
        for z0 in range(0, spect.shape[0], STREAM_CHUNK):
            chunk = np.asarray(spect[z0 : z0 + STREAM_CHUNK], dtype=np.float64)
            if not np.isfinite(chunk).all():
                raise CaseFileError(f"{path}: dataset 'spect' holds non-finite values")
            total += float(chunk.sum())
            spect_max = max(spect_max, float(chunk.max()))
            if vdk is not None:
                vchunk = np.asarray(vdk[z0 : z0 + STREAM_CHUNK], dtype=np.float64)
                if not np.isfinite(vchunk).all():
                    raise CaseFileError(f"{path}: dataset 'dose/vdk' holds non-finite values")
                vdk_max = max(vdk_max, float(vchunk.max()))
    if not total > 0:
        raise CaseFileError(f"{path}: dataset 'spect' sums to {total}; it must be positive")
    return CaseScale(
        spect_sum_MBq=total,
        spect_max_fraction=spect_max / total,
        vdk_max_Gy_s_per_MBq=vdk_max / total if vdk is not None else math.nan,
    )


# -- packs -------------------------------------------------------------------------------------
def pack_indices(center: int, depth: int, pack_size: int) -> np.ndarray:
    """Slice indices of the pack centred on ``center``, edge-replicated at the volume ends.

    ``pack_indices(0, 130, 11)`` is ``[0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]``.
    """
    if not 0 <= center < depth:
        raise IndexError(f"slice {center} outside a volume of {depth} slices")
    half = (pack_size - 1) // 2
    return np.clip(np.arange(center - half, center + half + 1), 0, depth - 1)


def read_slab(dataset: h5py.Dataset | np.ndarray, z0: int, z1: int, half: int) -> np.ndarray:
    """Slices ``z0 − half … z1 + half − 1`` of a ``(z, y, x)`` array, edge-replicated.

    Reads the in-range part once (one contiguous h5py read) and repeats the end slices.
    Returns a new float32 array ``(z1 − z0 + 2·half, y, x)`` (never a view of ``dataset``).
    """
    depth = dataset.shape[0]
    if not 0 <= z0 < z1 <= depth:
        raise IndexError(f"slices {z0}:{z1} outside a volume of {depth} slices")
    lo, hi = max(z0 - half, 0), min(z1 + half, depth)
    if isinstance(dataset, np.ndarray):  # always return a new array, never a view
        block = np.array(dataset[lo:hi], dtype=np.float32)
    else:
        block = np.asarray(dataset[lo:hi], dtype=np.float32)
    index = np.clip(np.arange(z0 - half, z1 + half), 0, depth - 1) - lo
    if index[0] == 0 and index[-1] == block.shape[0] - 1 and block.shape[0] == index.size:
        return block
    return block[index]


def augmentation_params(rng: np.random.Generator, square: bool) -> tuple[int, bool, bool]:
    """Random ``(k, flip_y, flip_x)``: rotation by ``k·90°`` (k even if not square), flips."""
    k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    return k, bool(rng.integers(2)), bool(rng.integers(2))


def augment(array: np.ndarray, k: int, flip_y: bool, flip_x: bool) -> np.ndarray:
    """Rotate by ``k·90°`` in the (y, x) plane, then flip y and/or x (the last two axes)."""
    out = np.rot90(array, k, axes=(-2, -1)) if k % 4 else array
    if flip_y:
        out = out[..., ::-1, :]
    if flip_x:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


class SlicePackDataset(Dataset):
    """Training items streamed from case files.

    An item is addressed by a tuple ``(case, z0, z1, epoch)`` (from
    :class:`BlockBatchSampler`) and covers the centre slices ``z0 … z1 − 1`` of case number
    ``case``; ``epoch`` seeds the augmentation.  An integer index ``i`` addresses the
    ``i``-th slice of all cases (a block of one).

    Item (dict of tensors, float32 but ``case``; ``n = z1 − z0``, ``h = (P − 1) / 2``):

    * ``slab`` ``(2, n + 2h, H, W)``: normalised SPECT and density of slices
      ``z0 − h … z1 + h − 1``, edge-replicated; :func:`packs_from_slab` makes the ``n``
      packs ``(n, 2, P, H, W)`` (on the training device, saving host memory and transfer);
    * ``vdk`` ``(n, 1, H, W)``: normalised VDK of the centre slices;
    * ``target`` ``(n, 1, H, W)``: normalised ground truth (``dose/mc``);
    * ``body`` ``(n, 1, H, W)``: 1 inside the body (labels ≠ 0, else density > 0.05 g/cm³).
    * ``labels`` ``(n, 1, H, W)``: the label map as float32 (exact below 2²⁴; the body mask
      when the case has no labels), for the region term of the region losses
      (``organ``, ``mde``, ``poisson-mde``);
    * ``case`` ``(n,)`` int64: the case number of each centre slice (the validation's
      per-case region sums, :mod:`residualnet.validation`).

    With ``augment`` one random rotation/flip is drawn per item (block) and applied to all
    of its arrays.

    Parameters
    ----------
    paths
        Case files (all with ``spect``, ``density``, ``dose/vdk``, ``dose/mc``).
    normalization
        The model's normalisation constants.
    pack_size
        Slices per pack (odd).
    scales
        Per-case statistics (:func:`case_scale`), computed when None.
    augment
        Random rotations/flips.
    seed
        Seed of the augmentation.
    target
        Ground-truth dataset name.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        normalization: Normalization,
        pack_size: int,
        *,
        scales: Sequence[CaseScale] | None = None,
        augment: bool = False,
        seed: int = 0,
        target: str = "dose/mc",
    ):
        self.paths = [Path(p) for p in paths]
        self.normalization = normalization
        self.pack_size = int(pack_size)
        self.half = (self.pack_size - 1) // 2
        self.augment = augment
        self.seed = int(seed)
        self.target = target
        self.metas = [
            inspect_case(p, require=("spect", "density", "dose/vdk", target)) for p in self.paths
        ]
        self.scales = list(scales) if scales is not None else [case_scale(p) for p in self.paths]
        if len(self.scales) != len(self.paths):
            raise InputError("one CaseScale per case file is needed")
        self.depths = [m.shape[0] for m in self.metas]
        self._offsets = np.concatenate([[0], np.cumsum(self.depths)])
        self._files: dict[int, h5py.File] = {}
        self._stack = contextlib.ExitStack()
        self._pid = os.getpid()

    # pickling for DataLoader workers (spawn): open files stay behind
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_files"] = {}
        state["_stack"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._stack = contextlib.ExitStack()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def blocks(self, block_slices: int) -> list[tuple[int, int, int]]:
        """All ``(case, z0, z1)`` blocks of at most ``block_slices`` consecutive slices."""
        out = []
        for case, depth in enumerate(self.depths):
            for z0 in range(0, depth, block_slices):
                out.append((case, z0, min(z0 + block_slices, depth)))
        return out

    def _file(self, case: int) -> h5py.File:
        if self._pid != os.getpid():  # forked worker: handles of the parent are not ours
            self._files, self._stack = {}, contextlib.ExitStack()
            self._pid = os.getpid()
        f = self._files.get(case)
        if f is None:
            f = self._files[case] = self._stack.enter_context(open_case(self.paths[case]))
        return f

    def close(self) -> None:
        """Close the open case files of this process."""
        self._stack.close()
        self._files = {}

    def __getitem__(self, index: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        if isinstance(index, tuple):
            case, z0, z1 = (int(v) for v in index[:3])
            epoch = int(index[3]) if len(index) > 3 else 0
        else:
            i = int(index)
            if not 0 <= i < len(self):
                raise IndexError(i)
            case = int(np.searchsorted(self._offsets, i, side="right") - 1)
            z0 = i - int(self._offsets[case])
            z1, epoch = z0 + 1, 0
        return self.read_block(case, z0, z1, epoch)

    def read_block(self, case: int, z0: int, z1: int, epoch: int = 0) -> dict[str, torch.Tensor]:
        """Slab and centre slices for ``z0 … z1 − 1`` of case ``case`` (see the class doc)."""
        f = self._file(case)
        norm, scale = self.normalization, self.scales[case]
        total = scale.spect_sum_MBq
        spect = read_slab(f["spect"], z0, z1, self.half)
        density = read_slab(f["density"], z0, z1, self.half)
        spect *= np.float32(norm.spect_factor(total))
        density *= np.float32(norm.density_factor())
        dose_factor = np.float32(norm.dose_factor(total))
        vdk = np.asarray(f["dose/vdk"][z0:z1], dtype=np.float32) * dose_factor
        target = np.asarray(f[self.target][z0:z1], dtype=np.float32) * dose_factor
        if "labels" in f:
            labels = np.asarray(f["labels"][z0:z1])
            body = labels != 0
        else:
            body = density[self.half : self.half + z1 - z0] > BODY_DENSITY_THRESHOLD_G_CM3
            labels = body
        arrays = [np.stack([spect, density]), vdk[:, None], target[:, None],
                  body[:, None].astype(np.float32), labels[:, None].astype(np.float32)]
        if self.augment:
            rng = np.random.default_rng((self.seed, epoch, case, z0))
            params = augmentation_params(rng, spect.shape[-1] == spect.shape[-2])
            arrays = [augment(a, *params) for a in arrays]
        slab, vdk, target, body, labels = (
            torch.from_numpy(np.ascontiguousarray(a)) for a in arrays
        )
        return {"slab": slab, "vdk": vdk, "target": target, "body": body, "labels": labels,
                "case": torch.full((z1 - z0,), case, dtype=torch.long)}


def packs_from_slab(slab: torch.Tensor, pack_size: int) -> torch.Tensor:
    """``(2, n + P − 1, H, W)`` slab → ``(n, 2, P, H, W)`` packs (a copy)."""
    windows = slab.unfold(1, pack_size, 1)  # (2, n, H, W, P)
    return windows.permute(1, 0, 4, 2, 3).contiguous()


def collate_blocks(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Batch of blocks: ``slabs`` a list (one per block), the rest concatenated."""
    batch: dict[str, Any] = {"slabs": [item["slab"] for item in items]}
    for key in ("vdk", "target", "body", "labels", "case"):
        batch[key] = torch.cat([item[key] for item in items])
    return batch


def batch_packs(slabs: Sequence[torch.Tensor], pack_size: int) -> torch.Tensor:
    """Packs ``(N, 2, P, H, W)`` of a batch's slabs (call after moving them to the device)."""
    return torch.cat([packs_from_slab(s, pack_size) for s in slabs])


class BlockBatchSampler(Sampler[list[tuple[int, int, int, int]]]):
    """Batches of slice blocks: shuffled per epoch, grouped by slice shape, split by rank.

    Each case is cut into blocks of ``block_slices`` consecutive slices; an epoch shuffles the
    blocks (``numpy.random.default_rng((seed, epoch))``), fills batches of at most
    ``batch_size`` slices from blocks of one in-plane shape, shuffles the batches and gives
    rank ``r`` of ``world_size`` the batches ``r, r + world_size, …``.  For training
    (``even=True``) every rank gets the same number of batches (the tail is dropped), as DDP
    needs.  Batches are lists of ``(case, z0, z1, epoch)``.

    Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        dataset: SlicePackDataset,
        batch_size: int,
        *,
        block_slices: int = 8,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even: bool = True,
    ):
        if batch_size < 1 or block_slices < 1:
            raise InputError("batch_size and block_slices must be positive")
        self.batch_size = int(batch_size)
        self.block_slices = min(int(block_slices), self.batch_size)
        self.blocks = dataset.blocks(self.block_slices)
        self.shapes = [tuple(m.shape[1:]) for m in dataset.metas]
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.even = even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[tuple[int, int, int, int]]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.blocks)) if self.shuffle else range(len(self.blocks))
        open_batches: dict[tuple[int, ...], tuple[list, int]] = {}
        batches: list[list[tuple[int, int, int, int]]] = []
        for b in order:
            case, z0, z1 = self.blocks[b]
            shape = self.shapes[case]
            items, count = open_batches.get(shape, ([], 0))
            if count + (z1 - z0) > self.batch_size and items:
                batches.append(items)
                items, count = [], 0
            items = items + [(case, z0, z1, self.epoch)]
            count += z1 - z0
            open_batches[shape] = (items, count)
        batches += [items for items, _ in open_batches.values() if items]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int, int, int]]]:
        batches = self._all_batches()
        if self.even:
            per_rank = len(batches) // self.world_size
            batches = batches[: per_rank * self.world_size]
        yield from batches[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self._all_batches())
        if self.even:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))
