"""Tests of :mod:`mcdose.dataset.manifest` (format, split by case, merge, atomic writes)."""

from __future__ import annotations

import json

import pytest

from mcdose.dataset import manifest as mf
from mcdose.errors import InputError
from tests.helpers import assert_one_line


def _names(n):
    return [f"case_{i:04d}" for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 20, 101])
def test_split_is_by_case_deterministic_and_near_70_15_15(n):
    a = mf.split_by_case(_names(n), seed=3)
    assert a == mf.split_by_case(list(reversed(_names(n))), seed=3)  # order of names
    assert set(a) == set(_names(n)) and set(a.values()) <= set(mf.SPLITS)
    counts = {s: sum(v == s for v in a.values()) for s in mf.SPLITS}
    if n >= 3:
        assert counts["train"] >= 1 and counts["val"] >= 1 and counts["test"] >= 1
    if n >= 20:  # rounding only
        assert abs(counts["train"] - 0.7 * n) <= 1 and abs(counts["test"] - 0.15 * n) <= 1.5
    if n >= 10:
        assert mf.split_by_case(_names(n), seed=4) != a  # the seed matters


def test_split_agrees_with_residualnet():
    data = pytest.importorskip("residualnet.data")  # needs torch
    assert data.split_by_case is mf.split_by_case  # one rule, one place
    assert (data.MANIFEST_NAME, data.SPLITS) == (mf.MANIFEST_NAME, mf.SPLITS)
    for n in (3, 5, 12):
        for seed in (0, 7):
            assert mf.split_by_case(_names(n), seed=seed) == data.split_by_case(
                _names(n), seed=seed
            )


@pytest.mark.parametrize(("fractions", "n", "expected"), [
    ((0, 0, 1), 5, (0, 0, 5)),       # an external test set: every case held out
    ((1, 0, 0), 4, (4, 0, 0)),
    ((0, 1, 1), 3, (0, 2, 1)),
    ((0.9, 0.1, 0), 3, (2, 1, 0)),   # a non-zero split gets a case, a zero one none
    ((0.9, 0.05, 0.05), 3, (1, 1, 1)),
    ((0, 0.98, 0.02), 3, (0, 2, 1)),  # test takes its case from val when train has none
])  # fmt: skip
def test_zero_fractions_get_no_case_and_others_at_least_one(fractions, n, expected):
    a = mf.split_by_case(_names(n), seed=1, fractions=fractions)
    assert tuple(sum(v == s for v in a.values()) for s in ("train", "val", "test")) == expected


def test_bad_fractions():
    with pytest.raises(InputError):
        mf.split_by_case(_names(3), fractions=(0.5, -0.1, 0.6))


def test_write_read_round_trip_is_atomic(tmp_path):
    m = mf.new_manifest({"preset": "tiny", "seed": 1})
    assert m["format"] == "mcdose-dataset" and m["version"] == 1
    assert m["software"]["mcdose"] and m["software"]["numpy"] and m["software"]["dask"]
    assert "torch" in m["software"] and "numba" in m["software"]
    mf.merge_cases(m, [{"file": "case_0000.h5", "split": "test", "complete": True}])
    path = mf.write_manifest(tmp_path, m)
    assert path == tmp_path / mf.MANIFEST_NAME
    assert [p.name for p in tmp_path.iterdir()] == [mf.MANIFEST_NAME]  # no temporary left
    back = mf.read_manifest(tmp_path)
    assert back["cases"] == [{"file": "case_0000.h5", "split": "test", "complete": True,
                              "stages": {}}]
    assert back["parameters"] == {"preset": "tiny", "seed": 1}
    assert mf.read_manifest(tmp_path / "nothing-here") is None


def test_read_rejects_foreign_or_newer_manifests(tmp_path):
    p = tmp_path / mf.MANIFEST_NAME
    p.write_text("{not json")
    with pytest.raises(InputError) as e:
        mf.read_manifest(tmp_path)
    assert_one_line(e, "manifest.json", "not a valid manifest")
    p.write_text(json.dumps({"cases": []}))  # e.g. residualnet's synthetic manifest
    with pytest.raises(InputError) as e:
        mf.read_manifest(tmp_path)
    assert_one_line(e, "mcdose-dataset")
    p.write_text(json.dumps({"format": "mcdose-dataset", "version": 99, "cases": []}))
    with pytest.raises(InputError) as e:
        mf.read_manifest(tmp_path)
    assert_one_line(e, "version 99")


def test_merge_keeps_splits_and_stage_timings():
    m = mf.new_manifest({})
    mf.merge_cases(m, [
        {"file": "case_0001.h5", "split": "val", "complete": False,
         "stages": {"phantom": {"status": "done", "seconds": 2.0}, "mc": {"status": "failed"}}},
        {"file": "case_0000.h5", "split": "train", "complete": True, "stages": {}},
    ])
    assert [e["file"] for e in m["cases"]] == ["case_0000.h5"]
    assert [e["file"] for e in m["incomplete"]] == ["case_0001.h5"]
    # a rerun: the split stays, a skipped stage keeps its timing, mc now done
    mf.merge_cases(m, [{"file": "case_0001.h5", "split": "test", "complete": True,
                        "stages": {"phantom": {"status": "done"},
                                   "mc": {"status": "done", "seconds": 5.0}}}])
    assert m["incomplete"] == []
    e = m["cases"][1]
    assert e["file"] == "case_0001.h5" and e["split"] == "val"
    assert e["stages"]["phantom"] == {"status": "done", "seconds": 2.0}
    assert e["stages"]["mc"] == {"status": "done", "seconds": 5.0}


def test_check_compatible_names_the_parameter():
    old = {"parameters": {"preset": "tiny", "seed": 0, "nuclide": "Lu-177", "histories": 10}}
    mf.check_compatible(old, {"preset": "tiny", "seed": 0, "nuclide": "Lu-177",
                              "histories": 99})  # histories may change
    with pytest.raises(InputError) as e:
        mf.check_compatible(old, {"preset": "small", "seed": 0}, "d/manifest.json")
    assert_one_line(e, "d/manifest.json", "preset='tiny'", "'small'")
