"""The benchmark suite's bookkeeping: ratios, goals, machine description, results files,
Markdown / PNG / README rendering and run.py's arguments — with fake measurements (nothing
here is timed)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import run as runpy_mod
from benchmarks.suite import common, machine, reference, report
from benchmarks.suite.common import Context, entry, failed, guarded, linear_fit, skipped

# -- reference: published figures, ratios, goals ------------------------------------------


def test_published_figures_match_the_papers():
    p = reference.PUBLISHED
    # Li et al. 2022 Table III: DPM 40 min per 1e9 histories on one core
    assert p["dpm_time_1e9"].value == 2400.0
    assert math.isclose(p["dpm_rate_core"].value, 1e9 / 2400.0)
    # ARCHER-NM: 5e9 decays in 90 s (≈ 5.6e7 decays/s)
    assert math.isclose(p["archer_rate"].value, 5.56e7, rel_tol=1e-3)
    assert (p["vdk_cpu"].value, p["vdk_v100"].value) == (20.0, 10.0)
    assert (p["cnn_cpu"].value, p["cnn_v100"].value, p["cnn_vdk_v100"].value) == (1200, 2, 12)


def test_ratio_is_ours_over_published_and_faster_by_reads_both_ways():
    time_pub = reference.PUBLISHED["vdk_cpu"]  # 20 s, lower is better
    rate_pub = reference.PUBLISHED["archer_rate"]  # higher is better
    assert reference.ratio(2.0, 20.0) == 0.1
    assert reference.faster_by(2.0, time_pub) == pytest.approx(10.0)
    assert reference.faster_by(40.0, time_pub) == pytest.approx(0.5)
    assert reference.faster_by(2 * rate_pub.value, rate_pub) == pytest.approx(2.0)
    assert reference.ratio(None, 20.0) is None
    assert reference.ratio(float("nan"), 20.0) is None


def test_goals_pass_fail_and_scope():
    g = reference.GOALS
    ok = reference.evaluate_goal(g["vdk_cpu"], 1.5, {"threads": 2})
    assert ok["pass"] is True and "note" not in ok and ok["issue"] == 4
    assert reference.evaluate_goal(g["vdk_cpu"], 2.5, {"threads": 2})["pass"] is False
    other = reference.evaluate_goal(g["vdk_cpu"], 1.5, {"threads": 16})
    assert other["pass"] is True and "2 CPU cores" in other["note"]
    gpu = reference.evaluate_goal(g["mc_gpu_time_1e9"], 4.0, {"gpu": "NVIDIA H100 80GB HBM3"})
    assert gpu["pass"] is True and "note" not in gpu
    a100 = reference.evaluate_goal(g["mc_gpu_time_1e9"], 4.0, {"gpu": "NVIDIA A100"})
    assert "H100/H200" in a100["note"]
    assert reference.evaluate_goal(g["mc_cpu_rate_core"], 5e5, {})["pass"] is True
    assert reference.evaluate_goal(g["mc_cpu_rate_core"], None, {})["pass"] is None


def test_entry_attaches_published_ratios_and_goal():
    e = entry("vdk.cpu.paper.scipy.single", "VDK", 0.5, "s", conditions={"threads": 2},
              published=("vdk_cpu",), goal="vdk_cpu", headline=True)  # fmt: skip
    assert e["status"] == "ok" and e["group"] == "vdk"
    (p,) = e["published"]
    assert p["ratio"] == pytest.approx(0.025) and p["faster_by"] == pytest.approx(40.0)
    assert p["source"].startswith("Li et al.")
    assert e["goal"]["pass"] is True
    with pytest.raises(ValueError, match="unit"):
        entry("x.y", "bad", 1.0, "decays/s", published=("vdk_cpu",))
    with pytest.raises(ValueError):
        entry("x.y", "bad", 1.0, "s", better="sideways")


def test_skipped_failed_and_guarded_entries():
    s = skipped("mc.cuda.paper.rate", "MC (GPU)", "no GPU", unit="decays/s",
                published=("archer_rate",), goal="mc_gpu_rate")  # fmt: skip
    assert s["status"] == "skipped" and s["reason"] == "no GPU" and s["value"] is None
    assert s["published"][0]["ratio"] is None and s["goal"]["pass"] is None
    f = failed("vdk.x", "VDK", RuntimeError("boom"))
    assert f["status"] == "error" and f["reason"] == "RuntimeError: boom"

    def boom():
        raise OSError("disk full")

    (g,) = guarded("cnn.cpu.paper.crop", "CNN", boom)
    assert g["status"] == "error" and "disk full" in g["reason"]
    assert guarded("a.b", "ok", lambda: [{"name": "a.b"}]) == [{"name": "a.b"}]


def test_derive_pipeline_sums_cnn_and_best_vdk():
    es = [
        entry("cnn.cuda.paper.crop", "CNN", 0.4, "s"),
        entry("vdk.cuda.paper.cupy.single", "VDK", 0.15, "s"),
        entry("vdk.cuda.paper.torch-cuda.single", "VDK", 0.25, "s"),
        entry("vdk.cuda.paper.cupy.tissue", "VDK tissue", 0.05, "s"),  # not a single kernel
    ]
    (p,) = reference.derive_pipeline(es)
    assert p["name"] == "pipeline.cuda.cnn_plus_vdk" and p["value"] == pytest.approx(0.55)
    assert p["conditions"]["vdk"] == "vdk.cuda.paper.cupy.single"
    assert p["published"][0]["value"] == 12.0
    assert reference.derive_pipeline(es[:1]) == []


def test_refresh_recomputes_ratios():
    e = entry("vdk.cpu.paper.scipy.single", "VDK", 4.0, "s", published=("vdk_cpu",),
              goal="vdk_cpu", conditions={"threads": 2})  # fmt: skip
    e["published"][0]["ratio"] = 123.0
    e["value"] = 1.0
    r = reference.refresh(e)
    assert r["published"][0]["ratio"] == pytest.approx(0.05) and r["goal"]["pass"] is True


# -- common ------------------------------------------------------------------------------


def test_linear_fit_and_summary():
    a, b = linear_fit([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])
    assert a == pytest.approx(1.0) and b == pytest.approx(2.0)
    assert linear_fit([1.0, 1.0], [2.0, 3.0]) is None
    s = common.summarize([3.0, 1.0, 2.0])
    assert s["best_s"] == 1.0 and s["median_s"] == 2.0 and s["repeats"] == 3


def test_sci():
    assert [common.sci(x) for x in (1e6, 2e5, 1.6e6, 10**9)] == ["10⁶", "2×10⁵", "1.6×10⁶",
                                                                 "10⁹"]


def test_context_devices_and_repeats():
    assert Context(device="auto").want_cpu and Context(device="auto").want_gpu
    assert not Context(device="cpu").want_gpu and not Context(device="cuda").want_cpu
    assert Context(repeat=None).repeats(3) == 3 and Context(repeat=7).repeats(3) == 7


def test_peak_memory_reports_host_rss():
    with common.PeakMemory() as mem:
        block = bytearray(8 * 2**20)
    res = mem.result()
    assert res["peak_host_MB"] >= res["start_host_MB"] > 0
    assert "peak_gpu_MB" not in res
    del block
    merged = common.merge_memory({"peak_host_MB": 10.0, "start_host_MB": 5.0},
                                 {"peak_host_MB": 20.0, "start_host_MB": 4.0, "x": None})
    assert merged == {"peak_host_MB": 20.0, "start_host_MB": 4.0, "x": None}


# -- machine -----------------------------------------------------------------------------

SMI = """name, driver_version, memory.total [MiB]
NVIDIA H100 80GB HBM3, 570.124.06, 81559 MiB
"""


def test_parse_nvidia_smi_and_slug():
    (g,) = machine.parse_nvidia_smi(SMI)
    assert g == {"name": "NVIDIA H100 80GB HBM3", "driver": "570.124.06", "memory_GiB": 79.6}
    assert machine.slug({"gpus": [g], "cpus_usable": 16}) == "h100-80gb-hbm3-16c"
    assert machine.slug({"gpus": [], "cpus_usable": 2}) == "cpu-2c"
    assert machine.parse_nvidia_smi("") == []


def test_describe_lists_the_libraries(monkeypatch):
    monkeypatch.setattr(machine, "gpus", lambda: [])
    info = machine.describe(threads=2)
    for lib in ("mcdose", "numpy", "numba", "numba-cuda", "torch", "cupy", "scipy",
                "pytomography", "dask"):
        assert lib in info["libraries"]
    assert info["libraries"]["numpy"] is not None
    assert info["threads_used"] == 2 and info["cpu"] and info["gpus"] == []
    json.dumps(info)


# -- report ------------------------------------------------------------------------------


def _record(entries, date="2026-01-02", slug="cpu-2c", finished="2026-01-02T10:00:00+00:00"):
    return {
        "date": date,
        "machine_slug": slug,
        "machine": {"cpu": "Test CPU", "cpus_usable": 2, "memory_GiB": 8.0, "gpus": [],
                    "python": "3.11", "libraries": {"numpy": "2.0"}},
        "runs": [{"suite": "quick", "device": "auto", "argv": ["benchmarks/run.py"],
                  "wall_s": 1.0, "finished": finished}],
        "entries": entries,
    }  # fmt: skip


def _fake_entries():
    return [
        entry("mc.cpu.paper.t2.rate_per_core", "MC decays/s per core", 1.5e5, "decays/s",
              better="higher", conditions={"grid_zyx": [130, 512, 512], "threads": 2},
              published=("dpm_rate_core",), goal="mc_cpu_rate_core", headline=True),
        entry("vdk.cpu.paper.scipy.single", "VDK scipy", 0.7, "s", warmup_s=1.6,
              conditions={"threads": 2}, memory={"peak_host_MB": 1100.0},
              published=("vdk_cpu",), goal="vdk_cpu", headline=True),
        entry("cnn.cpu.paper.crop", "CNN crop", 58.0, "s", conditions={"threads": 2},
              published=("cnn_cpu",), goal="cnn_cpu", headline=True),
        skipped("cnn.cuda.paper.crop", "CNN (GPU)", "no GPU here", unit="s",
                published=("cnn_v100",), goal="cnn_gpu", headline=True),
        entry("dataset.cpu.small.cases_per_hour", "Dataset", 120.0, "cases/h",
              better="higher", headline=True),
    ]  # fmt: skip


def test_merge_replaces_same_name_and_derives_pipeline():
    old = _record(_fake_entries())
    new = _record([entry("vdk.cpu.paper.scipy.single", "VDK scipy", 0.5, "s",
                         published=("vdk_cpu",))])  # fmt: skip
    m = report.merge(old, new)
    names = [e["name"] for e in m["entries"]]
    assert names.count("vdk.cpu.paper.scipy.single") == 1
    assert next(e for e in m["entries"] if e["name"].startswith("vdk"))["value"] == 0.5
    assert len(m["runs"]) == 2 and m["schema"] == report.SCHEMA
    pipe = next(e for e in m["entries"] if e["name"] == "pipeline.cpu.cnn_plus_vdk")
    assert pipe["value"] == pytest.approx(58.5)
    groups = [e["group"] for e in m["entries"]]
    assert groups == sorted(groups, key=report.GROUP_ORDER.index)


def test_save_latest_and_render(tmp_path):
    out = tmp_path / "results"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nintro\n\n## Documentation\n\n* docs\n")
    (out).mkdir()
    (out / "2026-01-01-vdk-cpu.json").write_text('{"benchmark": "vdk"}')  # an older format
    p1 = report.save(_record(_fake_entries()), out)
    assert p1.name == "2026-01-02-cpu-2c.json"
    p2 = report.save(_record(_fake_entries()[:2], date="2026-01-05", slug="h100-16c",
                             finished="2026-01-05T10:00:00+00:00"), out)  # fmt: skip
    assert report.latest(out) == [p2, p1]
    done = report.render(p1, readme)
    md = done["markdown"].read_text()
    assert "| MC decays/s per core |" in md and "skipped: no GPU here" in md
    assert "✅ pass" in md and "❌ miss" in md  # 58 s ≤ 90 s passes; 1.5e5 < 4e5 misses
    assert done["png"].stat().st_size > 1000
    text = readme.read_text()
    assert text.index("## Benchmarks") < text.index("## Documentation")
    section = text[text.index(report.README_START):text.index(report.README_END)]
    assert "**h100-16c**" in section and "**cpu-2c**" in section
    assert section.index("h100-16c") < section.index("cpu-2c")  # newest first
    assert "results/2026-01-02-cpu-2c.md" in section
    # skipped headline rows leave the README table for one line
    assert "| CNN (GPU) |" not in section
    assert "Not measured here (no GPU here): CNN (GPU)." in section
    # rendering again changes nothing
    report.render(p1, readme)
    assert readme.read_text() == text
    data = json.loads(p1.read_text())
    assert data["schema_version"] == report.SCHEMA_VERSION


def test_update_readme_text_markers():
    text = "# t\n\n## Commands\n\nx\n\n## Documentation\n\n* d\n"
    once = report.update_readme_text(text, "TABLE 1")
    assert once.count(report.README_START) == 1 and "TABLE 1" in once
    assert once.index("## Benchmarks") > once.index("## Commands")
    twice = report.update_readme_text(once, "TABLE 2")
    assert "TABLE 1" not in twice and "TABLE 2" in twice and twice.count("## Benchmarks") == 1
    assert twice.endswith("## Documentation\n\n* d\n")
    assert report.update_readme_text("# t\n", "T").endswith(report.README_END + "\n")
    with pytest.raises(ValueError):
        report.update_readme_text(f"# t\n{report.README_START}\n", "T")


@pytest.mark.parametrize(("value", "text"), [(0.5, "0.5"), (1234.4, "1234"), (58.25, "58.2"),
                                             (2.0e5, "2.00×10⁵"), (4.17e-4, "4.17×10⁻⁴"),
                                             (None, "–"), (0, "0")])  # fmt: skip
def test_fmt_number(value, text):
    assert report.fmt_number(value) == text


def test_fmt_helpers():
    assert report.fmt_value(240.0, "s") == "240 s (4 min)"
    assert report.fmt_memory({"peak_host_MB": 2048.0, "torch_peak_MB": 300.0}) == (
        "host 2.00 GB / GPU 300 MB")
    assert report.fmt_ratio({"ratio": 0.1, "faster_by": 10.0}) == "0.1 (10× faster)"
    assert report.fmt_ratio({"ratio": 4.0, "faster_by": 0.25}) == "4 (4× slower)"
    assert report.fmt_goal(None) == "–"
    cond = report.fmt_conditions({"grid_zyx": [130, 512, 512], "histories": 200000,
                                  "threads": 1, "device": "cpu"})  # fmt: skip
    assert cond == "512×512×130, 2.0×10⁵ histories, 1 thread, cpu"


# -- run.py ------------------------------------------------------------------------------


def test_run_arguments():
    a = runpy_mod.parse_args([])
    assert (a.suite, a.device, a.only, a.render) == ("quick", "auto", list(common.GROUPS), None)
    a = runpy_mod.parse_args(["--suite", "full", "--device", "cuda", "--only", "mc, vdk,mc",
                              "--dataset-histories", "1e9", "--cpu-threads", "2"])
    assert a.only == ["mc", "vdk"] and a.dataset_histories == 10**9 and a.cpu_threads == 2
    assert runpy_mod.parse_args(["--render"]).render == "latest"
    ctx = runpy_mod._context(runpy_mod.parse_args(["--dataset-cases", "3"]))
    assert ctx.options["dataset_cases"] == 3 and ctx.threads >= 1


@pytest.mark.parametrize("argv", [["--only", "mc,gpu"], ["--suite", "huge"],
                                  ["--device", "tpu"], ["--cpu-threads", "0"],
                                  ["--dataset-histories", "1.5"], ["--machine", "a/b"],
                                  ["--mc-budget-s", "-1"]])  # fmt: skip
def test_run_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        runpy_mod.parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_run_render_only(tmp_path, capsys):
    out = tmp_path / "res"
    assert runpy_mod.main(["--render", "--out", str(out), "--no-readme"]) == 2
    assert "no results file" in capsys.readouterr().err
    path = report.save(_record(_fake_entries()), out)
    readme = tmp_path / "README.md"
    readme.write_text("# r\n\n## Documentation\n")
    assert runpy_mod.main(["--render", "--out", str(out), "--readme", str(readme)]) == 0
    assert path.with_suffix(".md").exists() and report.README_START in readme.read_text()
    assert runpy_mod.main(["--render", str(tmp_path / "nope.json")]) == 2


def test_gpu_groups_skip_without_a_gpu():
    if common.numba_cuda_reason() is None or common.torch_cuda_reason() is None:
        pytest.skip("a GPU is present")
    from benchmarks.suite import cnn, dataset, mc

    ctx = Context(suite="full", device="cuda", threads=1, log=lambda m: None)
    for run in (mc.run, cnn.run, dataset.run):
        es = run(ctx)
        assert es and all(e["status"] == "skipped" for e in es)
    # the full campaign on a CPU is a GPU measurement unless told otherwise
    (d,) = dataset.run(Context(suite="full", device="cpu", threads=1, log=lambda m: None))
    assert d["status"] == "skipped" and "GPU measurement" in d["reason"]


def test_dataset_settings():
    from benchmarks.suite import dataset

    q = dataset.settings(Context(suite="quick", device="cpu"))
    assert q == {**dataset.PARAMS["quick"], "device": "cpu"}
    o = dataset.settings(Context(suite="quick", device="cpu",
                                 options={"dataset_cases": 3, "dataset_preset": "tiny"}))
    assert (o["cases"], o["preset"]) == (3, "tiny")


# -- the GPU code paths with fake measurements (no GPU needed, nothing timed) ------------


class _FakeGeometry:
    spacing_mm = (0.98, 0.98, 3.0)


class _FakePhantom:
    def __init__(self, shape=(130, 512, 512)):
        import numpy as np

        self.density = np.zeros((1, 1, 1), np.float32)
        self.density = np.broadcast_to(self.density, shape)
        self.activity_MBq = self.density
        self.geometry = _FakeGeometry()


def _fake_run(rate=1e8, fixed=0.5):
    def run_once(ph, histories, device, threads):
        t = fixed + histories / rate
        return {"histories": histories, "elapsed_s": t, "setup_s": 0.1, "wall_s": t + 1,
                "postprocess_s": 0.9, "decays_per_s": histories / t, "energy_imbalance": 0.0,
                "memory": {"peak_host_MB": 100.0, "peak_gpu_MB": 900.0}}  # fmt: skip

    return run_once


def test_mc_gpu_flow_with_fake_runs(monkeypatch):
    from benchmarks.suite import mc

    monkeypatch.setattr(mc, "phantom", lambda preset: _FakePhantom())
    monkeypatch.setattr(mc, "run_once", _fake_run(rate=2.5e8, fixed=0.5))
    monkeypatch.setattr(mc, "gpu_name", lambda: "NVIDIA H200")
    monkeypatch.setattr(mc, "jit_subprocess", lambda *a, **k: {
        "first_setup_s": 40.0, "second_setup_s": 0.2, "import_s": 1.0})
    ctx = Context(suite="full", device="cuda", threads=16, log=lambda m: None)
    es = {e["name"]: e for e in mc._device_entries(ctx, "cuda")}
    assert all(e["status"] == "ok" for e in es.values())
    # the CUDA kernels are cached too (cuda.jit(cache=True)): cold and cached first calls
    assert es["mc.cuda.jit.cold"]["value"] == 40.0 and es["mc.cuda.jit.cached"]["headline"]
    rate = es["mc.cuda.paper.rate"]
    assert rate["value"] == pytest.approx(2.5e8) and rate["goal"]["pass"] is True
    t9 = es["mc.cuda.paper.gpu.time_1e9"]
    assert t9["value"] == pytest.approx(4.5) and t9["conditions"]["how"] == "measured"
    assert t9["goal"]["pass"] is True and "note" not in t9["goal"]
    assert [p["key"] for p in t9["published"]] == ["archer_time_1e9", "dpm_time_1e9"]
    assert es["mc.cuda.paper.speedup_vs_dpm"]["value"] == pytest.approx(2.5e8 * 2400 / 1e9)
    assert {"mc.cuda.grid.tiny", "mc.cuda.grid.paper"} <= set(es)


def test_mc_gpu_budget_skips_the_longest_run(monkeypatch):
    from benchmarks.suite import mc

    monkeypatch.setattr(mc, "phantom", lambda preset: _FakePhantom())
    monkeypatch.setattr(mc, "run_once", _fake_run(rate=2e6, fixed=0.5))  # 10⁹ would take 500 s
    monkeypatch.setattr(mc, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(mc, "jit_subprocess", lambda *a, **k: {
        "first_setup_s": 40.0, "second_setup_s": 0.2})
    ctx = Context(suite="full", device="cuda", threads=16, log=lambda m: None,
                  options={"mc_budget_s": 100})
    es = {e["name"]: e for e in mc._device_entries(ctx, "cuda")}
    assert es["mc.cuda.paper.gpu.h1e+09"]["status"] == "skipped"
    assert "budget" in es["mc.cuda.paper.gpu.h1e+09"]["reason"]
    t9 = es["mc.cuda.paper.gpu.time_1e9"]
    assert t9["value"] == pytest.approx(500.5) and t9["conditions"]["how"].startswith("extrap")
    assert t9["goal"]["pass"] is False


def test_mc_cpu_flow_with_fake_runs(monkeypatch):
    from benchmarks.suite import mc

    monkeypatch.setattr(mc, "phantom", lambda preset: _FakePhantom())
    monkeypatch.setattr(mc, "run_once", _fake_run(rate=5e5, fixed=1.0))
    monkeypatch.setattr(mc, "jit_subprocess", lambda *a, **k: {
        "first_setup_s": 18.0, "second_setup_s": 0.02})
    ctx = Context(suite="quick", device="cpu", threads=2, log=lambda m: None)
    es = {e["name"]: e for e in mc._device_entries(ctx, "cpu")}
    assert es["mc.cpu.jit.cached"]["value"] == 18.0
    per_core = es["mc.cpu.paper.t2.rate_per_core"]
    assert per_core["value"] == pytest.approx(2.5e5) and per_core["headline"]
    assert es["mc.cpu.paper.t1.rate_per_core"]["headline"]
    assert es["mc.cpu.paper.t1.time_1e9"]["value"] == pytest.approx(2001.0)
    assert es["mc.cpu.paper.t1.time_1e9"]["published"][0]["faster_by"] > 1


def test_vdk_gpu_entries_with_fake_bench(monkeypatch):
    from benchmarks.suite import vdk

    def fake_bench(name, shape, voxel, sizes, repeat, tissue, workers):
        out = {"backend": name, "mode": "full", "padded_shape": [1, 2, 3], "chunks": 1,
               "estimated_MB": 1.0, "cold_s": 1.0, "warm_best_s": 0.1, "warm_median_s": 0.12,
               "warm_all_s": [0.1, 0.12], "memory": {"cupy_pool_peak_MB": 5000.0}}
        if tissue:
            out.update(tissue_cold_s=2.0, tissue_warm_best_s=0.3, tissue_warm_median_s=0.3,
                       tissue_warm_all_s=[0.3], tissue_memory={})
        return out  # fmt: skip

    monkeypatch.setattr(vdk, "bench", fake_bench)
    monkeypatch.setattr(vdk, "_reason", lambda name: None)
    monkeypatch.setattr(vdk, "gpu_name", lambda: "NVIDIA H200")
    ctx = Context(suite="full", device="cuda", threads=16, log=lambda m: None)
    es = {e["name"]: e for e in vdk.run(ctx)}
    cupy = es["vdk.cuda.paper.cupy.single"]
    assert cupy["value"] == 0.1 and cupy["warmup_s"] == 1.0 and cupy["goal"]["pass"] is True
    assert cupy["published"][0]["key"] == "vdk_v100"
    assert {"vdk.cuda.paper.torch-cuda.tissue", "vdk.cuda.spect.cupy.single"} <= set(es)
    assert es["vdk.cuda.spect.cupy.single"]["published"] == []
    assert "51×51×51 photon" in es["vdk.cuda.spect.cupy.single"]["conditions"]["kernels"]


def test_cnn_gpu_entries_with_fake_predict(monkeypatch):
    from benchmarks.suite import cnn

    class FakeInputs:
        ph = _FakePhantom()
        body_slices = 130
        body_bbox_yx = [300, 400]

        def full(self):
            return {}

    calls = []
    monkeypatch.setattr(cnn, "_Inputs", FakeInputs)
    monkeypatch.setattr(cnn, "_model", lambda: (None, None, 1_106_737))
    monkeypatch.setattr(cnn, "gpu_name", lambda: "NVIDIA H100")
    monkeypatch.setattr(cnn, "_predict", lambda net, norm, arrays, device, crop, amp:
                        calls.append((crop, amp)) or (3.0 if len(calls) == 1 else 0.4))
    ctx = Context(suite="full", device="cuda", threads=16, log=lambda m: None)
    es = {e["name"]: e for e in cnn._gpu(ctx)}
    crop = es["cnn.cuda.paper.crop"]
    assert crop["value"] == 0.4 and crop["warmup_s"] == 3.0 and crop["goal"]["pass"] is True
    assert crop["conditions"]["amp"] == "bf16"
    assert es["cnn.cuda.paper.fullslice"]["goal"] is None
    assert es["cnn.cuda.paper.crop_fp32"]["conditions"]["amp"] == "off (float32)"
    assert (False, "auto") in calls and (True, "off") in calls


def test_run_main_with_fake_groups(tmp_path, monkeypatch):
    import benchmarks.suite as suite

    def ok(ctx):
        return [entry("vdk.cpu.paper.scipy.single", "VDK", 0.7, "s", published=("vdk_cpu",),
                      conditions={"threads": ctx.threads}, headline=True)]  # fmt: skip

    def broken(ctx):
        raise RuntimeError("no such library")

    monkeypatch.setattr(suite, "modules", lambda: {"mc": broken, "vdk": ok, "cnn": ok,
                                                   "dataset": ok})  # fmt: skip
    monkeypatch.setattr(machine, "gpus", lambda: [])
    readme = tmp_path / "README.md"
    readme.write_text("# r\n\n## Documentation\n")
    out = tmp_path / "res"
    argv = ["--only", "mc,vdk", "--out", str(out), "--readme", str(readme), "--machine", "m1",
            "--cpu-threads", "2"]
    assert runpy_mod.main(argv) == 1  # one group failed; the other still ran
    (path,) = out.glob("*-m1.json")
    data = json.loads(path.read_text())
    by = {e["name"]: e for e in data["entries"]}
    assert by["mc.run"]["status"] == "error" and "no such library" in by["mc.run"]["reason"]
    assert by["vdk.cpu.paper.scipy.single"]["conditions"]["threads"] == 2
    assert len(data["runs"]) == 1 and data["runs"][0]["groups_done"] == ["mc", "vdk"]
    assert path.with_suffix(".md").exists() and path.with_suffix(".png").exists()
    assert "| VDK |" in readme.read_text()
    # a second run on the same day merges: one entry per name, two runs
    assert runpy_mod.main(["--only", "vdk", *argv[2:]]) == 0
    data = json.loads(path.read_text())
    assert len(data["runs"]) == 2
    assert [e["name"] for e in data["entries"]].count("vdk.cpu.paper.scipy.single") == 1
    assert runpy_mod.main(["--only", "vdk", "--fresh", *argv[2:]]) == 0
    assert len(json.loads(path.read_text())["runs"]) == 1


def test_mc_jit_only_measures_cold_and_cached_first_calls(monkeypatch):
    from benchmarks.suite import mc

    calls = []

    def fake_jit(device, cache_dir, threads, timeout=420):
        calls.append(cache_dir)
        return {"first_setup_s": 12.0 if len(calls) == 1 else 0.9, "second_setup_s": 0.1}

    monkeypatch.setattr(mc, "jit_subprocess", fake_jit)
    monkeypatch.setattr(mc, "run_once", lambda *a, **k: pytest.fail("no transport runs"))
    ctx = Context(suite="quick", device="cpu", threads=2, log=lambda m: None,
                  options={"mc_jit_only": True})  # fmt: skip
    es = {e["name"]: e for e in mc._device_entries(ctx, "cpu")}
    assert set(es) == {"mc.cpu.jit.cold", "mc.cpu.jit.cached"}
    assert (es["mc.cpu.jit.cold"]["value"], es["mc.cpu.jit.cached"]["value"]) == (12.0, 0.9)
    # the second process reads the cache folder the first one wrote
    assert len(calls) == 2 and calls[0] == calls[1]
    assert runpy_mod.parse_args(["--only", "mc", "--mc-jit-only"]).mc_jit_only


def test_cache_files_counts_numba_index_and_data(tmp_path):
    from benchmarks.suite import mc

    (tmp_path / "a").mkdir()
    for name in ("a/k.nbi", "a/k.1.nbc", "a/other.txt"):
        (tmp_path / name).write_text("x")
    assert mc.cache_files(str(tmp_path)) == 2


def _static_report(regs=150, stack=3296):
    from mcdose.transport import ptx

    def rec(kernel, arch, r, st, tpb):
        cc = (int(arch[3]), int(arch[4]))
        return {"kernel": kernel, "arch": arch, "threads_per_block": tpb,
                "registers_per_thread": r, "stack_frame_bytes": st, "spill_store_bytes": 0,
                "spill_load_bytes": 0, "shared_bytes": 0,
                "occupancy": ptx.occupancy(r, tpb, 0, cc),
                "ptx_instructions": {"instructions": 9359, "f64": 2284, "f32": 41,
                                     "f64_arith": 1187, "f32_arith": 5},
                "compile_s": {"ptx": 24.1, "ptxas": 11.4}}  # fmt: skip

    return {"schema": report.STATIC_SCHEMA, "date": "2026-12-02", "created": "T1",
            "ptxas_version": "V13.5.37",
            "kernels": [rec("transport_kernel", "sm_90", regs, stack, 128),
                        rec("accumulate_kernel", "sm_90", 18, 0, 256)]}  # fmt: skip


def test_static_table_marks_the_goals():
    text = report.static_table(_static_report())
    tk, acc = [ln for ln in text.splitlines() if ln.startswith("| transport") or
               ln.startswith("| accumulate")]  # fmt: skip
    assert "| 150 |" in tk and "18.75 %" in tk and "❌ registers, stack, occupancy" in tk
    assert "2284 / 41" in tk
    assert "✅ all" in acc and "100.00 %" in acc
    ok = report.static_goals(_static_report(regs=64, stack=512)["kernels"][0])
    assert all(ok.values())


def test_readme_says_gpu_rows_unmeasured_and_shows_static_figures(tmp_path):
    cpu = {"entries": [entry("mc.cpu.jit.cold", "MC first call", 12.0, "s", headline=True)]}
    text = report.readme_section([(cpu, "benchmarks/results/x")],
                                 (_static_report(), "benchmarks/results/y"))  # fmt: skip
    assert "GPU rows: unmeasured" in text and "gpu_check.sh" in text
    assert "| transport_kernel | sm_90 | 128 | 150 | 3296 B |" in text
    gpu = {"entries": [entry("mc.cuda.paper.rate", "MC GPU", 1e8, "decays/s")]}
    text = report.readme_section([(cpu, "a"), (gpu, "b")], None)
    assert "unmeasured" not in text
    # the newest static file of a folder (others are not static reports)
    for name, created in (("2026-12-01-cpu-2c-gpu-static.json", "T0"),
                          ("2026-12-02-cpu-2c-gpu-static.json", "T1")):
        rep = _static_report()
        rep["date"], rep["created"] = name[:10], created
        (tmp_path / name).write_text(json.dumps(rep))
    (tmp_path / "2026-12-03-cpu-2c.json").write_text("{}")
    assert report.latest_static(tmp_path).name == "2026-12-02-cpu-2c-gpu-static.json"
