"""Published figures the benchmarks stand beside, the issues' goals, and the ratios.

Ratios are always **ours / published** in the entry's unit; ``better`` says which way is
good (a time: lower, so a ratio below 1 means we are faster; a rate: higher, so a ratio
above 1 means we are faster).  ``faster_by`` turns either into "how many times faster we
are" (> 1: faster, < 1: slower).

Sources
-------
[Li2022]   Z. Li, J. A. Fessler, J. K. Mikell, S. J. Wilderman, Y. K. Dewaraja, "DblurDoseNet:
           A deep residual learning network for voxel radionuclide dosimetry compensating for
           single-photon emission computerized tomography imaging resolution", Med. Phys. 49
           (2022) 1216–1230, Table III (512×512×130 grid): DPM Monte Carlo 40 min for 10⁹
           histories on one CPU core (Xeon 3.2 GHz); VDK 20 s on a CPU, 10 s on a V100; CNN
           20 min on a CPU, 2 s on a V100 (12 s with the VDK).
[Liu2024]  J. Liu, B. Cheng, Z. Peng, M. Qi, X. Pei, X. G. Xu, "Feasibility study of the GPU
           fast Monte Carlo software ARCHER-NM for individualized β-radionuclide therapy dose
           calculation", Chin. J. Radiol. Med. Prot. 44 (2024) 871–878
           (http://www.cjrmp.net/html/2024/10/20241009.htm): 5×10⁹ Lu-177 decays in 90 s on
           an NVIDIA Titan RTX (≈ 5.6×10⁷ decays/s); GATE > 9 h on 112 threads.
[Jia2011]  X. Jia, X. Gu, Y. J. Graves, M. Folkerts, S. B. Jiang, "GPU-based fast Monte Carlo
           simulation for radiotherapy dose calculation", Phys. Med. Biol. 56 (2011)
           7017–7031: gDPM v2 69–87× faster than DPM on one CPU core (external beams; a
           speed-up, not a Lu-177 rate).
"""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass
from typing import Any

LI2022 = "Li et al., Med. Phys. 49 (2022) 1216, Table III"
LIU2024 = "Liu et al., Chin. J. Radiol. Med. Prot. 44 (2024) 871 (ARCHER-NM)"
JIA2011 = "Jia et al., Phys. Med. Biol. 56 (2011) 7017 (gDPM v2)"


@dataclass(frozen=True)
class Published:
    """A published figure."""

    key: str
    label: str
    value: float
    unit: str
    better: str
    hardware: str
    source: str


_DPM_S_PER_1E9 = 40 * 60.0
PUBLISHED: dict[str, Published] = {
    p.key: p
    for p in (
        Published("dpm_rate_core", "DPM (Li 2022)", 1e9 / _DPM_S_PER_1E9, "decays/s",
                  "higher", "1 CPU core, Xeon 3.2 GHz", LI2022 + ": 40 min per 10⁹ histories"),
        Published("dpm_time_1e9", "DPM (Li 2022)", _DPM_S_PER_1E9, "s", "lower",
                  "1 CPU core, Xeon 3.2 GHz", LI2022 + ": 40 min per 10⁹ histories"),
        Published("archer_rate", "ARCHER-NM (Liu 2024)", 5e9 / 90.0, "decays/s", "higher",
                  "Titan RTX", LIU2024 + ": 5×10⁹ decays in 90 s"),
        Published("archer_time_1e9", "ARCHER-NM (Liu 2024)", 90.0 / 5.0, "s", "lower",
                  "Titan RTX", LIU2024 + ": 5×10⁹ decays in 90 s"),
        Published("gdpm_speedup", "gDPM v2 over DPM (Jia 2011)", 78.0, "× DPM core", "higher",
                  "Tesla C2050 vs 1 CPU core", JIA2011 + ": 69–87× (mid-range 78×)"),
        Published("vdk_cpu", "VDK (Li 2022)", 20.0, "s", "lower", "CPU", LI2022),
        Published("vdk_v100", "VDK (Li 2022)", 10.0, "s", "lower", "V100", LI2022),
        Published("cnn_cpu", "CNN (Li 2022)", 20 * 60.0, "s", "lower", "CPU", LI2022),
        Published("cnn_v100", "CNN (Li 2022)", 2.0, "s", "lower", "V100", LI2022),
        Published("cnn_vdk_v100", "CNN + VDK (Li 2022)", 12.0, "s", "lower", "V100",
                  LI2022),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Goal:
    """A target an issue sets."""

    key: str
    issue: int
    text: str
    op: str  # "<=" or ">="
    target: float
    unit: str
    #: condition under which the goal is defined: "h100" (an H100/H200), "2cores", None
    scope: str | None = None


GOALS: dict[str, Goal] = {
    g.key: g
    for g in (
        Goal("mc_gpu_time_1e9", 3, "10⁹ decays on 512×512×130 ≤ 5 s on one H100/H200",
             "<=", 5.0, "s", "h100"),
        Goal("mc_gpu_rate", 3, "≥ 2×10⁸ decays/s on one H100/H200 (10⁹ in 5 s)",
             ">=", 2e8, "decays/s", "h100"),
        Goal("mc_cpu_rate_core", 22, "CPU driver ≥ 4.2×10⁵ decays/s per core (DPM's rate)",
             ">=", 4.2e5, "decays/s", None),
        Goal("vdk_gpu", 4, "VDK 512×512×130, 99³+9³ kernels ≤ 0.2 s on one H100/H200",
             "<=", 0.2, "s", "h100"),
        Goal("vdk_cpu", 4, "VDK 512×512×130, 99³+9³ kernels ≤ 2 s on 2 CPU cores",
             "<=", 2.0, "s", "2cores"),
        Goal("cnn_gpu", 6, "CNN inference 512×512×130 ≤ 0.5 s on a GPU", "<=", 0.5, "s",
             None),
        Goal("cnn_cpu", 6, "CNN inference 512×512×130 ≤ 90 s on 2 CPU cores", "<=", 90.0,
             "s", "2cores"),
    )
}  # fmt: skip

_OPS = {"<=": operator.le, ">=": operator.ge}


def ratio(ours: float | None, published: float) -> float | None:
    """``ours / published`` (None when either is missing or not finite)."""
    if ours is None or not math.isfinite(ours) or not published:
        return None
    return ours / published


def faster_by(ours: float | None, pub: Published) -> float | None:
    """How many times faster we are than ``pub`` (> 1: faster)."""
    r = ratio(ours, pub.value)
    if r is None or r == 0:
        return None
    return r if pub.better == "higher" else 1.0 / r


def goal_scope_note(goal: Goal, conditions: dict[str, Any]) -> str | None:
    """Why the goal's figure was not measured under its own conditions (None: it was)."""
    if goal.scope == "h100":
        gpu = str(conditions.get("gpu") or "")
        if not any(t in gpu.upper() for t in ("H100", "H200")):
            return f"goal defined for an H100/H200; measured on {gpu or 'another device'}"
    if goal.scope == "2cores":
        threads = conditions.get("threads")
        if threads is not None and int(threads) != 2:
            return f"goal defined for 2 CPU cores; measured with {threads} threads"
    return None


def evaluate_goal(goal: Goal, value: float | None, conditions: dict[str, Any]) -> dict:
    """``{issue, text, target, op, unit, pass, note}``; ``pass`` None when not measured."""
    out: dict[str, Any] = {"key": goal.key, "issue": goal.issue, "text": goal.text,
                           "target": goal.target, "op": goal.op, "unit": goal.unit,
                           "pass": None}  # fmt: skip
    if value is None or not math.isfinite(value):
        return out
    out["pass"] = bool(_OPS[goal.op](value, goal.target))
    note = goal_scope_note(goal, conditions)
    if note:
        out["note"] = note
    return out


def attach(e: dict[str, Any], *, published: tuple[str, ...] = (), goal: str | None = None
           ) -> dict[str, Any]:  # fmt: skip
    """Add the published figures (with ratios) and the goal to an entry, in place."""
    value = e.get("value")
    pubs = []
    for key in published:
        p = PUBLISHED[key]
        if e.get("unit") and p.unit != e["unit"]:
            raise ValueError(f"{e['name']}: unit {e['unit']!r} differs from {key}'s {p.unit!r}")
        d = asdict(p)
        d["ratio"] = ratio(value, p.value)
        d["faster_by"] = faster_by(value, p)
        pubs.append(d)
    e["published"] = pubs
    e["goal"] = evaluate_goal(GOALS[goal], value, e.get("conditions", {})) if goal else None
    return e


def refresh(e: dict[str, Any]) -> dict[str, Any]:
    """Recompute ratios and the goal of an entry (e.g. one read back from a JSON file)."""
    keys = tuple(p["key"] for p in e.get("published") or [] if p.get("key") in PUBLISHED)
    goal = (e.get("goal") or {}).get("key")
    return attach(e, published=keys, goal=goal if goal in GOALS else None)


def derive_pipeline(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Derived entries: CNN + VDK on the same device (the paper's 12 s on a V100).

    Taken from the best VDK and the body-cropped CNN of the given entries (the same results
    file), GPU and CPU separately.
    """
    from .common import entry

    by_name = {e["name"]: e for e in entries if e.get("status") == "ok"}
    out = []
    for dev in ("cuda", "cpu"):
        cnn = by_name.get(f"cnn.{dev}.paper.crop")
        vdks = [e for e in by_name.values()
                if e["name"].startswith(f"vdk.{dev}.paper.") and e["name"].endswith(".single")]
        if not cnn or not vdks:
            continue
        vdk = min(vdks, key=lambda e: e["value"])
        total = cnn["value"] + vdk["value"]
        cond = {"device": dev, "cnn": cnn["name"], "vdk": vdk["name"],
                "gpu": cnn["conditions"].get("gpu"), "threads": cnn["conditions"].get("threads")}
        out.append(entry(
            f"pipeline.{dev}.cnn_plus_vdk", f"CNN + VDK dose, 512×512×130 ({dev.upper()})",
            total, "s", conditions=cond, published=("cnn_vdk_v100",) if dev == "cuda" else (),
            headline=dev == "cuda",
            note="sum of the two steady-state times (the CNN's input VDK computed on the same "
                 "device)",
        ))  # fmt: skip
    return out
