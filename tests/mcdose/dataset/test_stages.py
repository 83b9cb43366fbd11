"""Tests of :mod:`mcdose.dataset.stages`: the stages of one case, in this process.

Tiny phantoms (12 mm voxels), 2000 MC histories, the Gaussian SPECT fallback and small VDK
kernels keep a case at a few seconds; the physics of each stage is tested with its module.
"""

from __future__ import annotations

import json

import h5py
import pytest

from mcdose.dataset import STAGES, case_config, case_stages, derive_seed, run_case
from mcdose.dataset import stages as st
from mcdose.errors import CaseFileError
from mcdose.io.case import read_dataset_attrs, source_fingerprint, validate_case
from mcdose.spect import PAPER_COUNT_LEVELS

FAST = dict(preset="tiny", histories=2000, count_levels=PAPER_COUNT_LEVELS,
            spect_backend="gaussian", device="cpu", vdk_options={"histories": 2000})


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("mcdose-cache")))
        yield


def test_case_config_seeds_and_counts():
    a = case_config(3, seed=10, **FAST)
    assert a.file == "case_0003.h5" and a.index == 3
    assert a.phantom_seed == 13
    assert a.spect_seed == derive_seed(10, 3, "spect")
    assert len({a.spect_seed, a.mc_seed, a.mc_spect_seed}) == 3
    assert a.counts in PAPER_COUNT_LEVELS
    assert case_config(3, seed=10, **FAST) == a  # reproducible
    b = case_config(4, seed=10, **FAST)
    assert b.mc_seed != a.mc_seed and b.spect_seed != a.spect_seed
    assert case_config(3, seed=11, **FAST).mc_seed != a.mc_seed
    levels = {case_config(i, seed=0, **FAST).counts for i in range(40)}
    assert levels == set(PAPER_COUNT_LEVELS)  # all four levels occur
    assert [n for n, _ in case_stages(a)] == ["phantom", "spect", "mc", "vdk"]
    with_mc_spect = case_config(0, seed=0, mc_spect=True, **FAST)
    assert [n for n, _ in case_stages(with_mc_spect)] == list(STAGES)


def test_run_case_runs_then_skips_then_redoes_a_deleted_stage(tmp_path):
    cfg = case_config(0, seed=5, mc_spect=True, **FAST)
    path = tmp_path / cfg.file
    first = run_case(path, cfg)
    assert first.ok, first.error
    assert first.ran == ["phantom", "spect", "mc", "vdk", "mc_spect"]
    for s in first.stages:
        assert s.seconds > 0 and s.peak_rss_bytes > 50 * 2**20 and s.peak_gpu_bytes is None
    validate_case(path, require=("density", "activity", "labels", "spect", "dose/mc",
                                 "dose/mc_uncertainty", "dose/vdk", "dose/mc_spect"))
    assert read_dataset_attrs(path, "dose/mc")["seed"] == cfg.mc_seed
    assert read_dataset_attrs(path, "dose/mc_spect")["seed"] == cfg.mc_spect_seed
    assert read_dataset_attrs(path, "spect")["seed"] == cfg.spect_seed

    again = run_case(path, cfg)
    assert again.ok and again.ran == [] and len(again.skipped) == 5
    assert again.seconds < first.seconds

    with h5py.File(path, "r+") as f:  # lose one stage's output
        del f["dose/vdk"]
    third = run_case(path, cfg)
    assert third.ok and third.ran == ["vdk"]

    more = case_config(0, seed=5, mc_spect=True, **{**FAST, "histories": 3000})
    fourth = run_case(path, more)  # new MC parameters: only the two MC stages rerun
    assert fourth.ok and fourth.ran == ["mc", "mc_spect"]


def test_a_failing_stage_stops_the_case(tmp_path, monkeypatch):
    cfg = case_config(1, seed=0, **FAST)
    path = tmp_path / cfg.file

    def broken(case_path, config):
        raise RuntimeError("MC engine\nexploded")

    monkeypatch.setitem(st.STAGES, "mc", broken)
    res = run_case(path, cfg)
    assert not res.ok and res.error == "mc: RuntimeError: MC engine exploded"
    assert [s.status for s in res.stages] == ["ran", "ran", "failed"]
    assert "Traceback" in res.traceback
    monkeypatch.undo()
    res = run_case(path, cfg)  # resumes at the failed stage
    assert res.ok and res.ran == ["mc", "vdk"] and res.skipped == ["phantom", "spect"]


def test_phantom_of_another_seed_is_an_error_not_overwritten(tmp_path):
    cfg = case_config(0, seed=0, **FAST)
    path = tmp_path / cfg.file
    st.phantom_stage(path, cfg)
    other = case_config(0, seed=1, **FAST)
    with pytest.raises(CaseFileError, match="seed 0.*seed 1"):
        st.phantom_stage(path, other)
    res = run_case(path, other, stages=[("phantom", st.phantom_stage)])
    assert not res.ok and res.error.startswith("phantom: CaseFileError")
    assert st.phantom_stage(path, cfg).skipped


def test_validation_failure_is_reported(tmp_path):
    cfg = case_config(0, seed=0, **FAST)

    def fake_spect(case_path, config):  # claims success but writes nothing
        return st.StageResult("spect", ran=False, seconds=0.0)

    res = run_case(tmp_path / cfg.file, cfg,
                   stages=[("phantom", st.phantom_stage), ("spect", fake_spect)])
    assert not res.ok and res.error.startswith("validate:") and "spect" in res.error


def test_a_new_spect_redoes_vdk_and_mc_spect(tmp_path):
    cfg = case_config(2, seed=0, mc_spect=True, **FAST)
    path = tmp_path / cfg.file
    assert run_case(path, cfg).ok
    other = next(c for c in PAPER_COUNT_LEVELS if c != cfg.counts)
    new = case_config(2, seed=0, mc_spect=True, **{**FAST, "count_levels": (other,)})
    res = run_case(path, new)  # SPECT parameters changed: SPECT and what uses it rerun
    assert res.ok and res.ran == ["spect", "vdk", "mc_spect"], res.ran

    # a run killed right after a new SPECT: the next one finds that VDK / MC-on-SPECT were
    # computed from another SPECT (their parameters hold its fingerprint); nothing is forced
    assert st.spect_stage(path, cfg).ran
    res = run_case(path, cfg)
    assert cfg.force == ()
    assert res.ok and res.ran == ["vdk", "mc_spect"], res.ran
    fingerprint = source_fingerprint(path, "spect")
    for name in ("dose/vdk", "dose/mc_spect"):
        assert json.loads(read_dataset_attrs(path, name)["params"])["source_fingerprint"] == (
            fingerprint)
    assert run_case(path, cfg).ran == []


def test_spect_protocol_option_reaches_the_spect_stage(tmp_path):
    # A campaign can change the SPECT protocol (e.g. fewer views for a quick run); the
    # stage passes it to spect_case, whose recorded parameters show it.
    import json

    from mcdose.dataset import case_config, run_case
    from mcdose.dataset.stages import STAGES
    from mcdose.io.case import read_dataset_attrs

    cfg = case_config(0, seed=3, preset="tiny", histories=200, count_levels=(1e6,),
                      spect_backend="gaussian", spect_protocol={"views": 32, "iterations": 2})
    stages = [(n, f) for n, f in STAGES.items() if n in ("phantom", "spect")]
    run_case(tmp_path / cfg.file, cfg, stages)
    params = read_dataset_attrs(tmp_path / cfg.file, "spect")["params"]
    params = json.loads(params) if isinstance(params, str) else params
    assert params["protocol"]["views"] == 32 and params["protocol"]["iterations"] == 2
