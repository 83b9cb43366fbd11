"""residualnet.data: manifest and split by case, edge-replicated packs, aligned augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mcdose.errors import CaseFileError, InputError
from mcdose.io.case import read_dataset
from residualnet.data import (
    BlockBatchSampler,
    SlicePackDataset,
    augment,
    case_scale,
    collate_blocks,
    pack_indices,
    packs_from_slab,
    read_manifest,
    read_slab,
    split_by_case,
)
from residualnet.normalization import fit_normalization


def test_pack_indices_edge_replicated():
    assert pack_indices(0, 130, 11).tolist() == [0] * 6 + [1, 2, 3, 4, 5]
    assert pack_indices(1, 130, 11).tolist() == [0] * 5 + [1, 2, 3, 4, 5, 6]
    assert pack_indices(129, 130, 11).tolist() == [124, 125, 126, 127, 128] + [129] * 6
    assert pack_indices(60, 130, 11).tolist() == list(range(55, 66))
    assert pack_indices(0, 1, 5).tolist() == [0] * 5
    with pytest.raises(IndexError):
        pack_indices(130, 130, 11)


def test_read_slab_matches_pack_indices(tiny_dataset):
    volume = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 2, 3)
    for z0, z1 in ((0, 3), (2, 5), (4, 7), (0, 7)):
        slab = read_slab(volume, z0, z1, 2)
        for j, z in enumerate(range(z0, z1)):
            np.testing.assert_array_equal(slab[j : j + 5], volume[pack_indices(z, 7, 5)])
    slab = read_slab(volume, 0, 2, 2)
    slab += 1  # a new array, never a view of the input
    assert volume[0, 0, 0] == 0
    # from an h5py dataset: the same slices
    import h5py

    case = sorted(tiny_dataset.glob("*.h5"))[0]
    spect = read_dataset(case, "spect")
    with h5py.File(case, "r") as f:  # slices 7..13 of 12 -> 7, 8, 9, 10, 11, 11, 11
        expected = spect[np.clip(np.arange(7, 14), 0, 11)]
        np.testing.assert_array_equal(read_slab(f["spect"], 9, 12, 2), expected)


def test_split_by_case_is_deterministic_and_by_file(tmp_path):
    names = [f"case_{i:03d}" for i in range(20)]
    a = split_by_case(names, seed=4)
    assert a == split_by_case(list(reversed(names)), seed=4)
    assert a != split_by_case(names, seed=5)
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 14, "val": 3, "test": 3}
    small = split_by_case(["a", "b", "c"], seed=0)
    assert sorted(small.values()) == ["test", "train", "val"]
    # without a manifest: the files of the folder, each in exactly one split
    for name in names[:10]:
        (tmp_path / f"{name}.h5").write_bytes(b"")
    entries = read_manifest(tmp_path, seed=1)
    assert sorted(e.name for e in entries) == names[:10]
    assert {e.split for e in entries} == {"train", "val", "test"}
    assert entries == read_manifest(tmp_path, seed=1)


def test_manifest(tiny_dataset, tmp_path):
    entries = read_manifest(tiny_dataset)
    assert [e.split for e in entries] == ["train", "train", "val", "test"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"cases": [{"file": "x.h5", "split": "dev"}]}))
    with pytest.raises(InputError, match="split 'dev'"):
        read_manifest(bad)
    (bad / "manifest.json").write_text(json.dumps({"cases": [{"file": "x.h5", "split": "test"}]}))
    with pytest.raises(InputError, match="not found"):
        read_manifest(bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="manifest"):
        read_manifest(bad)
    with pytest.raises(InputError, match="not found"):
        read_manifest(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no case files"):
        read_manifest(empty)


def _dataset(tiny_dataset, augment_=False):
    paths = [e.path for e in read_manifest(tiny_dataset)[:2]]
    scales = [case_scale(p) for p in paths]
    norm = fit_normalization(scales)
    return SlicePackDataset(paths, norm, 5, scales=scales, augment=augment_, seed=0), norm, scales


def test_block_packs_equal_replicated_packs(tiny_dataset):
    ds, norm, scales = _dataset(tiny_dataset)
    path = ds.paths[1]
    spect, density = read_dataset(path, "spect"), read_dataset(path, "density")
    vdk, mc = read_dataset(path, "dose/vdk"), read_dataset(path, "dose/mc")
    labels = read_dataset(path, "labels")
    total = scales[1].spect_sum_MBq
    depth = spect.shape[0]
    for z0, z1 in ((0, 4), (8, depth)):  # both volume ends
        item = ds[(1, z0, z1, 0)]
        packs = packs_from_slab(item["slab"], 5)
        assert packs.shape == (z1 - z0, 2, 5, *spect.shape[1:])
        for j, z in enumerate(range(z0, z1)):
            idx = pack_indices(z, depth, 5)
            np.testing.assert_allclose(packs[j, 0].numpy(), spect[idx] * norm.spect_factor(total),
                                       rtol=1e-6)
            np.testing.assert_array_equal(packs[j, 1].numpy(), density[idx])
        np.testing.assert_allclose(item["vdk"][:, 0].numpy(),
                                   vdk[z0:z1] * norm.dose_factor(total), rtol=1e-6)
        np.testing.assert_allclose(item["target"][:, 0].numpy(),
                                   mc[z0:z1] * norm.dose_factor(total), rtol=1e-6)
        np.testing.assert_array_equal(item["body"][:, 0].numpy(), labels[z0:z1] != 0)
        np.testing.assert_array_equal(item["labels"][:, 0].numpy(), labels[z0:z1])
    # integer index: one slice of all cases, in order
    assert len(ds) == 2 * depth
    one = ds[depth + 3]
    torch.testing.assert_close(one["vdk"], ds[(1, 3, 4, 0)]["vdk"])
    ds.close()


def _ops():
    return [(k, fy, fx) for k in range(4) for fy in (False, True) for fx in (False, True)]


def test_augmentation_keeps_arrays_aligned(tiny_dataset):
    plain, _, _ = _dataset(tiny_dataset)
    aug, _, _ = _dataset(tiny_dataset, augment_=True)
    seen = set()
    for epoch in range(6):
        ref = plain[(0, 3, 7, epoch)]
        out = aug[(0, 3, 7, epoch)]
        # find the transform from the SPECT/density slab, then check it maps the VDK,
        # the target and the body mask the same way
        matches = [op for op in _ops() if np.array_equal(augment(ref["slab"].numpy(), *op),
                                                         out["slab"].numpy())]
        assert matches, "augmented slab is not a rotation/flip of the original"
        op = matches[0]
        seen.add(op)
        for key in ("vdk", "target", "body"):
            np.testing.assert_array_equal(augment(ref[key].numpy(), *op), out[key].numpy())
        # deterministic for (seed, epoch, case, slice)
        torch.testing.assert_close(aug[(0, 3, 7, epoch)]["slab"], out["slab"])
    assert len(seen) > 1


def test_block_batch_sampler(tiny_dataset):
    ds, _, _ = _dataset(tiny_dataset)
    full = BlockBatchSampler(ds, 8, block_slices=4, seed=0)
    full.set_epoch(0)
    batches = list(full)
    blocks = [b for batch in batches for b in batch]
    assert sorted((c, z0, z1) for c, z0, z1, _ in blocks) == sorted(ds.blocks(4))
    assert all(sum(z1 - z0 for _, z0, z1, _ in batch) <= 8 for batch in batches)
    full.set_epoch(1)
    assert list(full) != batches  # reshuffled every epoch
    full.set_epoch(0)
    assert list(full) == batches  # and reproducible
    ranks = [BlockBatchSampler(ds, 8, block_slices=4, seed=0, rank=r, world_size=2)
             for r in range(2)]
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(ranks[0])
    flat = [tuple(b) for part in parts for batch in part for b in batch]
    assert len(flat) == len(set(flat))  # disjoint
    batch = collate_blocks([ds[b] for b in parts[0][0]])
    assert len(batch["slabs"]) == len(parts[0][0])
    assert batch["vdk"].shape[0] == sum(z1 - z0 for _, z0, z1, _ in parts[0][0])


def test_missing_dataset_is_one_clear_error(tiny_dataset, tmp_path):
    from mcdose.io.case import Geometry, create_case

    path = create_case(tmp_path / "c.h5", geometry=Geometry((4.0, 4.0, 4.0)), nuclide="Lu-177",
                       density=np.ones((4, 8, 8), np.float32))
    norm = fit_normalization([case_scale(read_manifest(tiny_dataset)[0].path)])
    with pytest.raises(CaseFileError, match="'spect' is missing"):
        SlicePackDataset([path], norm, 5)
