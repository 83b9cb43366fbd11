"""The device check's pieces on the CPU: benchmarks/suite/gpu_check.py with device=cpu on a
tiny phantom (real transport, fresh-process compiles faked), its JUnit reading, and
benchmarks/gpu_check.sh's arguments."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.suite import gpu_check, mc

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_driver_runs_on_the_cpu(tmp_path, monkeypatch):
    # the fresh-process first calls are measured elsewhere (mc's tests); here they are faked
    calls = []

    def fake_jit(device, cache_dir, threads, timeout=420):
        calls.append(device)
        return {"first_setup_s": 20.0 if len(calls) == 1 else 1.0, "second_setup_s": 0.1}

    monkeypatch.setattr(mc, "jit_subprocess", fake_jit)
    junit = tmp_path / "gpu-tests.xml"
    junit.write_text(
        '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1">'
        '<testcase classname="a" name="t1"/><testcase classname="a" name="t2"/>'
        '<testcase classname="a" name="t3"><skipped/></testcase></testsuite></testsuites>'
    )
    rc = gpu_check.main(["--device", "cpu", "--preset", "tiny", "--histories", "4000",
                         "--probe", "1000", "--agreement-histories", "4000", "--cpu-threads",
                         "1", "--junit", str(junit), "--out", str(tmp_path), "--no-readme",
                         "--machine", "test-cpu"])  # fmt: skip
    assert rc == 0
    (path,) = tmp_path.glob("*-test-cpu.json")
    es = {e["name"]: e for e in json.loads(path.read_text())["entries"]}
    assert es["tests.gpu"]["value"] == 2 and es["tests.gpu"]["stat"]["skipped"] == 1
    assert (es["mc.cpu.jit.cold"]["value"], es["mc.cpu.jit.cached"]["value"]) == (20.0, 1.0)
    t = es["mc.cpu.tiny.check.time"]
    assert t["status"] == "ok" and t["conditions"]["how"] == "measured" and t["value"] > 0
    rate = es["mc.cpu.tiny.check.rate"]
    assert rate["value"] == pytest.approx(4000 / t["value"])
    # CPU against CPU, same seed: identical doses, so every voxel agrees
    a = es["mc.cpu.agreement"]
    assert a["value"] == 1.0 and a["stat"]["passed"] and a["stat"]["total_ratio"] == 1.0
    assert a["stat"]["voxels_compared"] > 0
    assert path.with_suffix(".md").is_file()


def test_gpu_check_extrapolates_past_the_budget(monkeypatch):
    monkeypatch.setattr(mc, "jit_subprocess", lambda *a, **k: {"first_setup_s": 1.0,
                                                               "second_setup_s": 0.1})
    runs = []

    def fake_run(ph, n, device, threads):
        runs.append(n)
        t = n / 1e6
        return {"histories": n, "elapsed_s": t, "setup_s": 0.1, "wall_s": t, "decays_per_s": 1e6,
                "energy_imbalance": 0.0, "memory": {}, "postprocess_s": 0.0}  # fmt: skip

    monkeypatch.setattr(mc, "run_once", fake_run)
    monkeypatch.setattr(gpu_check, "phantom", lambda preset: mc.phantom("tiny"))
    ctx = gpu_check.Context(device="cpu", threads=1, log=lambda m: None)
    es = {e["name"]: e for e in gpu_check.mc_entries(ctx, "cpu", "tiny", 10**9, 10**6, 100.0)}
    assert 10**9 not in runs  # predicted 1000 s > 100 s: not started
    assert es["mc.cpu.tiny.check.h1e+09"]["status"] == "skipped"
    t9 = es["mc.cpu.tiny.check.time_1e9"]
    assert t9["value"] == pytest.approx(1000.0) and t9["conditions"]["how"].startswith("extrap")


def test_junit_entry_lists_failures(tmp_path):
    p = tmp_path / "j.xml"
    p.write_text('<testsuite tests="2" failures="1" errors="0" skipped="0">'
                 '<testcase classname="m" name="ok"/><testcase classname="m" name="bad">'
                 '<failure message="x"/></testcase></testsuite>')  # fmt: skip
    (e,) = gpu_check.junit_entry(p)
    assert e["value"] == 1 and e["stat"]["failed"] == ["m::bad"]
    (missing,) = gpu_check.junit_entry(tmp_path / "none.xml")
    assert missing["status"] == "skipped"


def test_gpu_check_sh_arguments():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
    ok = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--dry-run" in ok.stdout and "--fetch-wheels" in ok.stdout
