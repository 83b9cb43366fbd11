"""Tests of :func:`mcdose.dataset.build_dataset` on real Dask clusters of process workers.

Tiny phantoms, 2000 MC histories, the Gaussian SPECT fallback and small VDK kernels; the MC
engine's compiled kernels are cached on disk, so a worker process compiles at most once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import h5py
import pytest

from mcdose.dataset import build_dataset, read_manifest
from mcdose.dataset import stages as st
from mcdose.dataset.campaign import _local_cluster, _Progress
from mcdose.errors import DeviceError, InputError
from mcdose.io.case import validate_case
from tests.helpers import assert_one_line

FAST = dict(preset="tiny", histories=2000, spect_backend="gaussian", device="cpu",
            vdk_options={"histories": 2000}, progress=False)
ALL = ("density", "activity", "labels", "spect", "dose/mc", "dose/mc_uncertainty", "dose/vdk")


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    # set before any worker process starts: workers inherit the environment
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("mcdose-cache")))
        yield


@pytest.fixture(scope="module")
def scheduler():
    """An external scheduler with one process worker (as a SLURM cluster would be)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_two_local_workers_build_resume_and_redo_one_stage(tmp_path, monkeypatch):
    monkeypatch.delenv("MCDOSE_NO_PROGRESS", raising=False)  # exercise the event path
    out = tmp_path / "ds"
    first = build_dataset(out, cases=3, workers=2, mc_spect=True, **{**FAST, "progress": True})
    assert first.ok, [r.error for r in first.results]
    assert first.workers == 2
    assert [r.file for r in first.results] == ["case_0000.h5", "case_0001.h5", "case_0002.h5"]
    for r in first.results:
        assert r.ran == ["phantom", "spect", "mc", "vdk", "mc_spect"]
        validate_case(out / r.file, require=ALL + ("dose/mc_spect",))
    stats = first.stage_stats()
    assert stats["mc"]["ran"] == 3 and stats["mc"]["peak_rss_MB"] > 50

    m = read_manifest(out)
    assert m["format"] == "mcdose-dataset" and m["version"] == 1
    assert m["parameters"]["histories"] == 2000 and m["parameters"]["preset"] == "tiny"
    assert m["software"]["dask"] and m["incomplete"] == []
    assert [e["file"] for e in m["cases"]] == [r.file for r in first.results]
    assert sorted(e["split"] for e in m["cases"]) == ["test", "train", "val"]
    e0 = m["cases"][0]
    assert e0["seed"] == 0 and e0["complete"] is True and e0["mc_seed"] > 0
    assert e0["stages"]["mc"]["status"] == "done" and e0["stages"]["mc"]["seconds"] > 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []

    second = build_dataset(out, cases=3, workers=2, mc_spect=True, **FAST)
    assert second.ok and all(r.ran == [] for r in second.results)
    assert sum(r.seconds for r in second.results) < sum(r.seconds for r in first.results)
    assert read_manifest(out)["cases"][0]["stages"]["mc"] == e0["stages"]["mc"]

    with h5py.File(out / "case_0001.h5", "r+") as f:
        del f["dose/vdk"]
    third = build_dataset(out, cases=3, workers=2, mc_spect=True, **FAST)
    assert third.ok
    assert [r.ran for r in third.results] == [[], ["vdk"], []]

    # the CNN's reader agrees on files and splits
    data = pytest.importorskip("residualnet.data")
    entries = data.read_manifest(out)
    assert [(e.path.name, e.split) for e in entries] == [
        (e["file"], e["split"]) for e in m["cases"]
    ]


def test_failed_case_is_reported_others_complete_rerun_completes(tmp_path, scheduler):
    out = tmp_path / "ds"
    real_mc = st.mc_stage

    def mc_failing_for_case_1(case_path, config):  # pickled by value for the worker
        if config.index == 1:
            raise RuntimeError("simulated crash")
        return real_mc(case_path, config)

    stages = [("phantom", st.phantom_stage), ("spect", st.spect_stage),
              ("mc", mc_failing_for_case_1), ("vdk", st.vdk_stage)]
    seen = []
    s = build_dataset(out, cases=3, scheduler=scheduler, stages=stages, on_case=seen.append,
                      **FAST)
    assert not s.ok and [r.file for r in s.failed] == ["case_0001.h5"]
    assert s.failed[0].error == "mc: RuntimeError: simulated crash"
    assert sorted(r.index for r in seen) == [0, 1, 2]
    assert s.results[0].ok and s.results[2].ok
    m = read_manifest(out)
    assert [e["file"] for e in m["cases"]] == ["case_0000.h5", "case_0002.h5"]
    (bad,) = m["incomplete"]
    assert bad["file"] == "case_0001.h5" and bad["error"].startswith("mc: RuntimeError")
    assert bad["stages"]["mc"]["status"] == "failed"
    assert bad["stages"]["vdk"] == {"status": "pending"}
    split_before = bad["split"]

    again = build_dataset(out, cases=3, scheduler=scheduler, **FAST)
    assert again.ok
    assert again.results[1].ran == ["mc", "vdk"]
    assert again.results[1].skipped == ["phantom", "spect"]
    assert [r.ran for r in (again.results[0], again.results[2])] == [[], []]
    m = read_manifest(out)
    assert m["incomplete"] == [] and len(m["cases"]) == 3
    assert m["cases"][1]["split"] == split_before


def test_killed_worker_loses_only_the_running_stage(tmp_path, scheduler):
    out = tmp_path / "ds"
    marker = tmp_path / "killed-once"
    real_mc = st.mc_stage

    def mc_killing_its_worker_once(case_path, config):
        if not os.path.exists(marker):
            Path(marker).write_text("x")
            os._exit(1)  # the worker process dies mid-stage; the nanny restarts it
        return real_mc(case_path, config)

    stages = [("phantom", st.phantom_stage), ("mc", mc_killing_its_worker_once)]
    s = build_dataset(out, cases=1, scheduler=scheduler, stages=stages, **FAST)
    assert marker.exists()
    assert s.ok, s.results[0].error
    # the retried task found the phantom done and redid only the MC
    assert s.results[0].skipped == ["phantom"] and s.results[0].ran == ["mc"]


def test_gpu_workers_see_one_gpu_each():
    # the spec of the GPU cluster, started without GPUs: env and resources per worker
    from distributed import Client

    with _local_cluster(2, 1, ["3", "5"]) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        seen = client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
        assert sorted(seen.values()) == ["3", "5"]
        threads = client.run(lambda: os.environ["NUMBA_NUM_THREADS"])
        assert set(threads.values()) == {str(max(1, (os.cpu_count() or 1) // 2))}
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert [w["resources"] for w in workers] == [{"GPU": 1}, {"GPU": 1}]


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(InputError) as e:
        build_dataset(tmp_path, cases=1, workers=2, scheduler="tcp://x:1")
    assert_one_line(e, "workers", "scheduler")
    with pytest.raises(InputError, match="preset"):
        build_dataset(tmp_path, cases=1, preset="huge")
    with pytest.raises(InputError, match="cases"):
        build_dataset(tmp_path, cases=0)
    with pytest.raises(InputError, match="counts"):
        build_dataset(tmp_path, cases=1, counts=[-1.0])
    with pytest.raises(InputError, match="spect_backend"):
        build_dataset(tmp_path, cases=1, spect_backend="magic")
    assert list(tmp_path.iterdir()) == []


def test_no_gpu_for_device_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr("mcdose.dataset.campaign.local_gpu_ids", lambda: [])
    with pytest.raises(DeviceError, match="cuda"):
        build_dataset(tmp_path / "ds", cases=1, preset="tiny", device="cuda", progress=False)
    assert not (tmp_path / "ds").exists()


def test_resume_with_another_preset_is_refused(tmp_path):
    from mcdose.dataset import manifest as mf

    mf.write_manifest(tmp_path, mf.new_manifest({"preset": "small", "seed": 0,
                                                 "nuclide": "Lu-177"}))
    with pytest.raises(InputError) as e:
        build_dataset(tmp_path, cases=1, **FAST)
    assert_one_line(e, "manifest.json", "preset='small'", "'tiny'")


def test_progress_counts_stages_and_cases(monkeypatch):
    monkeypatch.delenv("MCDOSE_NO_PROGRESS", raising=False)
    planned = {0: ("phantom", "mc"), 1: ("phantom", "mc")}
    with _Progress(2, planned, enabled=True) as bar:
        t = time.time()
        bar.event((t, {"case": 0, "stage": "phantom", "event": "start"}))
        bar.event((t, {"case": 0, "stage": "phantom", "event": "ran"}))
        bar.event((t, {"case": 0, "stage": "phantom", "event": "ran"}))  # a retry
        tasks = {task.description: task for task in bar._bar.tasks}
        assert tasks["stages"].completed == 1
        bar.case_finished(1)  # a failed case: its stages count as finished
        bar.case_finished(1)
        bar.event((t, {"case": 1, "stage": "mc", "event": "ran"}))  # late event
        assert tasks["stages"].completed == 3 and tasks["cases"].completed == 1
