"""Evaluation on held-out cases: MDE / NRMSE tables, DVHs, figures, JSON and Markdown report.

For every case of the evaluated split (``test`` by default) the CNN dose is predicted
(:func:`residualnet.infer.predict_case`) and compared with the ground truth ``dose/mc``
(Monte Carlo on the true activity), together with the VDK (``dose/vdk``) and, when the case
has it, Monte Carlo on the SPECT image (``dose/mc_spect``).  Regions are the paper's
(:func:`mcdose.metrics.standard_regions`): healthy liver, liver, each lesion, spleen, left
and right kidney, and the whole body.  MDE and NRMSE follow Li et al., DblurDoseNet, Med.
Phys. 49 (2022) 1216; the summary gives, per region class and method, the mean and range
over cases (over lesions for ``tumour``), as that paper's Tables I and II; each accuracy goal
also gets a bootstrap over the cases (:func:`goal_uncertainty`), how sure the few test cases
make it.

Output folder::

    report.json        everything: per case, per region, per method; summary; goals
    report.md          Tables I and II (%), goals, figures
    slices_<case>.png  axial slice: GT, VDK, (MC-on-SPECT), CNN and their errors
    dvh_<case>.png     cumulative DVHs per region class
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mcdose.errors import CaseFileError, InputError
from mcdose.io.atomic import atomic_path
from mcdose.io.case import read_dataset
from mcdose.io.jsonio import write_json
from mcdose.metrics import (
    cumulative_dvh,
    dvh_metrics,
    mean_deviation,
    nrmse,
    region_class,
    standard_regions,
)
from mcdose.progress import progress_bar
from residualnet.data import inspect_case, read_manifest
from residualnet.infer import predict_case
from residualnet.modelfile import load_model

__all__ = ["EVALUATION_DATASETS", "PAPER_TABLES", "accuracy_goals", "counted_goals", "evaluate",
           "format_summary_table", "goal_ratio", "goal_uncertainty", "region_title",
           "scored_regions", "summarize", "summarize_noise_floor", "truth_nrmse_floor"]

log = logging.getLogger(__name__)

#: datasets every evaluated case needs
EVALUATION_DATASETS = ("spect", "density", "dose/vdk", "dose/mc", "labels")
#: method name -> (dataset, table heading)
METHODS = {"vdk": "VDK", "mc_spect": "MC-on-SPECT", "cnn": "CNN"}
#: summary rows in table order
SUMMARY_CLASSES = ("healthy_liver", "liver", "tumour", "tumour_lt10mm", "tumour_10_20mm",
                   "tumour_lt20mm", "tumour_20mm", "tumour_per_case", "spleen", "kidney_left",
                   "kidney_right", "body")
#: region of every case: the union of its lesions, one value per case (the lesion mean dose
#: weighted by volume); the paper's tables give means over test phantoms
ALL_LESIONS = "tumour_per_case"
#: draws of the goals' bootstrap over cases (:func:`goal_uncertainty`) and their seed
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: rows whose MDE and NRMSE are checked against VDK's (and the NRMSE against MC-on-SPECT's)
GOAL_CLASSES = ("healthy_liver", "liver", "tumour", "spleen", "kidney_left", "kidney_right")
#: The lesion-MDE goals (issue 24, decided by the people steering the project): VDK's lesion
#: MDE halved per case (all lesions of a case as one region) and per lesion for lesions of
#: ≥ 20 mm (≥ 2 × the SPECT's FWHM); for lesions below 20 mm the CNN's MDE below both VDK's
#: and MC-on-SPECT's.  The halving over all lesions is reported, not counted.
#: Rows: (class, factor of the threshold, reference methods).
LESION_GOALS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    (ALL_LESIONS, 0.5, ("vdk",)),
    ("tumour_20mm", 0.5, ("vdk",)),
    ("tumour_lt20mm", 1.0, ("vdk", "mc_spect")),
)
#: row headings where the class name is not enough
CLASS_TITLES = {"tumour_lt10mm": "tumour < 10 mm", "tumour_10_20mm": "tumour 10–20 mm",
                "tumour_lt20mm": "tumour < 20 mm", "tumour_20mm": "tumour ≥ 20 mm",
                ALL_LESIONS: "tumour per case"}


def _sphere_ml(diameter_mm: float) -> float:
    return math.pi / 6.0 * (diameter_mm / 10.0) ** 3


#: lesions of ``tumour_20mm``: equivalent-sphere diameter ≥ 20 mm, i.e. volume ≥ 4.19 ml —
#: lesions well above the SPECT resolution (≈ 11–15 mm FWHM), where partial-volume loss
#: no longer dominates every method's error
LARGE_LESION_ML = _sphere_ml(20.0)
#: lesion size rows: class → [min, max) volume in ml (equivalent-sphere diameters 10, 20 mm)
LESION_SIZE_CLASSES: dict[str, tuple[float, float]] = {
    "tumour_lt10mm": (0.0, _sphere_ml(10.0)),
    "tumour_10_20mm": (_sphere_ml(10.0), LARGE_LESION_ML),
    "tumour_lt20mm": (0.0, LARGE_LESION_ML),
    "tumour_20mm": (LARGE_LESION_ML, math.inf),
}

#: Li et al. (2022) Tables I (MDE) and II (NRMSE), % — VDK, MC-on-SPECT, CNN
#: (as quoted in REFERENCES.md).
PAPER_TABLES: dict[str, dict[str, tuple[float, float, float]]] = {
    "mde": {
        "healthy_liver": (3.2, 1.0, 1.6),
        "liver": (4.0, 2.1, 1.9),
        "tumour": (13.7, 13.2, 5.5),
        "spleen": (4.5, 4.8, 2.7),
        "kidney_left": (2.9, 1.7, 1.3),
        "kidney_right": (5.6, 4.8, 2.1),
    },
    "nrmse": {
        "healthy_liver": (22.3, 22.7, 20.8),
        "liver": (21.6, 21.8, 19.4),
        "tumour": (22.4, 22.3, 17.3),
        "spleen": (17.7, 18.0, 12.9),
        "kidney_left": (21.5, 21.7, 18.3),
        "kidney_right": (21.6, 21.7, 19.3),
    },
}


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "min": float(arr.min()), "max": float(arr.max()),
            "n": int(arr.size)}


def scored_regions(label_names: Any, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The regions a case is scored on: :func:`mcdose.metrics.standard_regions` and, when the
    case has lesions, :data:`ALL_LESIONS` (the union of its lesions).

    Parameters
    ----------
    label_names
        Label value → name (see :func:`~mcdose.metrics.standard_regions`).
    labels
        Integer label array (any shape; e.g. ``np.arange(n)`` gives each label value's
        membership).

    Returns
    -------
    dict[str, ndarray of bool]
        Region name → mask of ``labels``' shape.
    """
    scored = standard_regions(label_names, labels)
    lesions = [m for n, m in scored.items() if region_class(n) == "tumour"]
    if lesions:
        scored[ALL_LESIONS] = np.logical_or.reduce(lesions)
    return scored


def truth_nrmse_floor(truth: np.ndarray, truth_sigma: np.ndarray, mask: np.ndarray) -> float:
    """The NRMSE a noise-free, exact dose would score against this noisy truth in a region.

    ``√Σσ² / √ΣD²`` over the region: with ``E[Σ(D̂ − D)²] = Σ(D̂ − μ)² + Σσ²`` for a
    prediction ``D̂`` independent of the truth's noise, every method's NRMSE² carries the
    truth's noise as this floor², so NRMSE differences shrink as the floor grows.

    Parameters
    ----------
    truth
        Reference dose ``D`` (Gy/s).
    truth_sigma
        Its standard error per voxel (Gy/s): ``dose/mc_uncertainty`` (relative) × ``D``.
    mask
        Region (bool, the shape of ``truth``).

    Returns
    -------
    float
        The floor as a fraction (NaN for an empty or zero-dose region).
    """
    d = truth[mask].astype(np.float64)
    s = truth_sigma[mask].astype(np.float64)
    norm = float(np.sum(d * d))
    return math.sqrt(float(np.sum(s * s)) / norm) if norm > 0 else math.nan


def _case_metrics(
    doses: dict[str, np.ndarray], truth: np.ndarray, regions: dict[str, np.ndarray],
    voxel_ml: float, truth_sigma: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, mask in regions.items():
        voxels = int(mask.sum())
        entry: dict[str, Any] = {"voxels": voxels, "volume_ml": voxels * voxel_ml,
                                 "mean_truth_Gy_s": float(truth[mask].mean())}
        if truth_sigma is not None:
            entry["truth_nrmse_floor"] = truth_nrmse_floor(truth, truth_sigma, mask)
        for method, dose in doses.items():
            deviation = mean_deviation(dose, truth, mask)
            entry[method] = {"mde": abs(deviation), "nrmse": nrmse(dose, truth, mask),
                             "mean_deviation": deviation}
        entry["dvh"] = {
            method: dvh_metrics(dose, mask) for method, dose in [("truth", truth), *doses.items()]
        }
        out[name] = entry
    return out


def _in_class(name: str, entry: dict[str, Any], cls: str) -> bool:
    if cls in LESION_SIZE_CLASSES:
        low, high = LESION_SIZE_CLASSES[cls]
        return region_class(name) == "tumour" and low <= entry.get("volume_ml", 0.0) < high
    return region_class(name) == cls


def summarize(cases: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Tables I and II: per summary class and method, mean and range of MDE and NRMSE
    (and of the signed mean deviation, where the cases carry it).

    Parameters
    ----------
    cases
        One dict per case with ``"regions"``: region name → ``{"volume_ml": ..., method:
        {"mde": ..., "nrmse": ..., "mean_deviation": ...}}`` (fractions), as in
        ``report.json``.
    methods
        Methods to summarise (keys of :data:`METHODS`).

    Returns
    -------
    dict
        class → method → metric → ``{"mean", "min", "max", "n"}``; values over cases, over
        lesions for the ``tumour`` rows.
    """
    summary: dict[str, Any] = {}
    for cls in SUMMARY_CLASSES:
        per_method: dict[str, Any] = {}
        for method in methods:
            values: dict[str, list[float]] = {"mde": [], "nrmse": [], "mean_deviation": []}
            for case in cases:
                for name, entry in case["regions"].items():
                    if _in_class(name, entry, cls) and method in entry:
                        for metric in values:
                            if metric in entry[method]:  # reports before mean_deviation
                                values[metric].append(entry[method][metric])
            if values["mde"]:
                per_method[method] = {metric: _stats(v) for metric, v in values.items() if v}
        if per_method:
            summary[cls] = per_method
    return summary


def summarize_noise_floor(cases: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per summary class, mean and range of the truth's NRMSE floor (:func:`truth_nrmse_floor`)
    over the cases (over lesions for ``tumour``) that carry it; classes without it are left out.
    """
    floors: dict[str, dict[str, float]] = {}
    for cls in SUMMARY_CLASSES:
        values = [entry["truth_nrmse_floor"] for case in cases
                  for name, entry in case["regions"].items()
                  if _in_class(name, entry, cls) and math.isfinite(
                      entry.get("truth_nrmse_floor", math.nan))]
        if values:
            floors[cls] = _stats(values)
    return floors


def accuracy_goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The accuracy goals, checked on the mean values of :func:`summarize`'s summary.

    Counted: for every class of :data:`GOAL_CLASSES` the CNN's MDE and NRMSE below VDK's and
    its NRMSE below MC-on-SPECT's (where the cases have it), and the lesion goals of
    :data:`LESION_GOALS` (VDK's MDE halved per case and for lesions ≥ 20 mm; below 20 mm the
    MDE below VDK's and MC-on-SPECT's, or VDK's alone where there is no MC-on-SPECT).
    Reported with ``"extra": True`` and not counted: the halving over all lesions.
    """
    goals: list[dict[str, Any]] = []
    for cls in GOAL_CLASSES:
        row = summary.get(cls)
        if not row or "cnn" not in row or "vdk" not in row:
            continue
        goals += [_goal(cls, row, "mde", ("vdk",)), _goal(cls, row, "nrmse", ("vdk",))]
        if "mc_spect" in row:
            goals.append(_goal(cls, row, "nrmse", ("mc_spect",)))
    for cls, factor, references in LESION_GOALS:
        row = summary.get(cls)
        if not row or "cnn" not in row or "vdk" not in row:
            continue
        goals.append(_goal(cls, row, "mde", tuple(m for m in references if m in row),
                           factor=factor))
    row = summary.get("tumour")
    if row and "cnn" in row and "vdk" in row:
        goals.append({**_goal("tumour", row, "mde", ("vdk",), factor=0.5), "extra": True})
    return goals


def _goal(cls: str, row: dict[str, Any], metric: str, against: tuple[str, ...],
          factor: float = 1.0) -> dict[str, Any]:
    """One goal: the CNN's mean ``metric`` below that of every method of ``against`` (at
    most ``factor`` × it when ``factor`` < 1, as the lesion halving).

    ``against`` gives the goal's ``against`` (the first method) and ``references`` (all);
    the threshold ``reference`` is ``factor`` × the lowest of their means.
    """
    cnn = row["cnn"][metric]["mean"]
    reference = factor * min(row[m][metric]["mean"] for m in against)
    comparison = "<" if factor == 1.0 else "<="
    scale = "" if factor == 1.0 else f"{factor:g} x "
    name = metric.upper()
    return {"goal": f"CNN {name} {comparison} {scale}"
                    + " and ".join(METHODS[m] for m in against) + f" {name}",
            "region": cls, "cnn": cnn, "reference": reference,
            "passed": bool(cnn < reference if comparison == "<" else cnn <= reference),
            "metric": metric, "against": against[0], "references": list(against),
            "factor": factor, "comparison": comparison}


def goal_ratio(goal: dict[str, Any]) -> float:
    """CNN value / goal threshold (``reference``, already × ``factor``); < 1 where met."""
    return goal["cnn"] / goal["reference"] if goal["reference"] > 0 else math.inf


def goal_uncertainty(cases: list[dict[str, Any]], goals: list[dict[str, Any]], *,
                     resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> None:
    """Add to every goal how sure the test cases make it: a bootstrap over cases.

    A goal compares the CNN's mean over a class (over cases, over lesions for the lesion
    rows) with a threshold (``factor`` × the lowest of the reference methods' means).  The
    cases are drawn ``resamples`` times with replacement (all lesions of a drawn case come
    with it) and the ratio CNN / threshold is recomputed on each draw.

    Parameters
    ----------
    cases
        Per-case region metrics, as in ``report.json``.
    goals
        Goals from :func:`accuracy_goals`; each gets, in place, ``ratio`` (CNN /
        threshold), ``ratio_ci95`` (the 2.5 and 97.5 percentiles over the draws) and
        ``met_fraction`` (share of draws where the goal is met).
    resamples, seed
        Draws and the seed of their generator (the result is reproducible).
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(cases), size=(resamples, len(cases))) if cases else None
    for goal in goals:
        cls, metric = goal["region"], goal["metric"]
        references = goal.get("references") or [goal["against"]]
        k = len(references)
        sums = np.zeros((len(cases), k + 2))  # per case: Σ CNN, Σ each reference, count
        for i, case in enumerate(cases):
            for name, entry in case["regions"].items():
                if (_in_class(name, entry, cls) and "cnn" in entry
                        and all(m in entry for m in references)):
                    sums[i] += (entry["cnn"][metric],
                                *(entry[m][metric] for m in references), 1.0)
        goal["ratio"] = goal_ratio(goal)
        if draws is None:
            continue
        picked = sums[draws].sum(axis=1)  # (resamples, k + 2)
        threshold = picked[:, 1:k + 1].min(axis=1)  # the lowest reference (means ∝ sums)
        valid = (picked[:, -1] > 0) & (threshold > 0)
        ratio = picked[valid, 0] / (goal["factor"] * threshold[valid])
        met = ratio < 1.0 if goal["comparison"] == "<" else ratio <= 1.0
        goal["ratio_ci95"] = [float(np.percentile(ratio, 2.5)), float(np.percentile(ratio, 97.5))]
        goal["met_fraction"] = float(met.mean())


def counted_goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals of a report, without the extra (informational) ones."""
    return [g for g in report["goals"] if not g.get("extra")]


# -- figures ------------------------------------------------------------------------------------
def _figure_slice(labels: np.ndarray, regions: dict[str, np.ndarray], truth: np.ndarray) -> int:
    lesions = [m for n, m in regions.items() if region_class(n) == "tumour"]
    if lesions:
        largest = max(lesions, key=lambda m: int(m.sum()))
        return int(round(float(np.nonzero(largest)[0].mean())))
    return int(np.argmax(truth.reshape(truth.shape[0], -1).sum(axis=1)))


def _save_figure(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _slice_figure(path: Path, case: str, z: int, truth: np.ndarray, density: np.ndarray,
                  doses: dict[str, np.ndarray], spacing_mm: tuple[float, float, float]) -> None:
    from matplotlib.figure import Figure

    panels = [("GT (dose/mc)", truth[z])] + [(METHODS[m], d[z]) for m, d in doses.items()]
    errors = [(f"{METHODS[m]} − GT", d[z] - truth[z]) for m, d in doses.items()]
    ncol = len(panels)
    fig = Figure(figsize=(3.2 * ncol, 6.2), dpi=100)
    vmax = max(float(truth[z].max()), 1e-30)
    emax = max([float(np.abs(e).max()) for _, e in errors] + [1e-30])
    aspect = spacing_mm[1] / spacing_mm[0]
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(2, ncol, i + 1)
        im = ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax, aspect=aspect)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="Gy/s" if i == 0 else None)
    ax = fig.add_subplot(2, ncol, ncol + 1)
    im = ax.imshow(density[z], cmap="gray", aspect=aspect)
    ax.set_title("density", fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="g/cm³")
    for i, (title, img) in enumerate(errors):
        ax = fig.add_subplot(2, ncol, ncol + i + 2)
        im = ax.imshow(img, cmap="RdBu_r", vmin=-emax, vmax=emax, aspect=aspect)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"{case}: slice z = {z}", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def _dvh_figure(path: Path, case: str, truth: np.ndarray, doses: dict[str, np.ndarray],
                regions: dict[str, np.ndarray]) -> None:
    from matplotlib.figure import Figure

    groups: dict[str, np.ndarray] = {}
    for name, mask in regions.items():
        cls = region_class(name)
        if cls == "body":
            continue
        groups[cls] = groups[cls] | mask if cls in groups else mask
    if not groups:
        return
    n = len(groups)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.3 * nrow), dpi=100)
    styles = {"truth": ("k", "-"), "vdk": ("tab:blue", "--"), "mc_spect": ("tab:green", ":"),
              "cnn": ("tab:red", "-")}
    for i, (cls, mask) in enumerate(groups.items()):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        top = max(float(d[mask].max()) for d in [truth, *doses.values()])
        for method, dose in [("truth", truth), *doses.items()]:
            levels, volume = cumulative_dvh(dose, mask, 200, max_dose=top)
            color, ls = styles[method]
            label = "GT (MC)" if method == "truth" else METHODS[method]
            ax.plot(levels, 100 * volume, color=color, ls=ls, label=label)
        ax.set_title(cls.replace("_", " ") + (" (all lesions)" if cls == "tumour" else ""),
                     fontsize=9)
        ax.set_xlabel("dose rate (Gy/s)")
        ax.set_ylabel("volume (%)")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(f"{case}: cumulative DVH", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


# -- report ---------------------------------------------------------------------------------------
def _pct(stats: dict[str, float] | None, signed: bool = False) -> str:
    if not stats:
        return "—"
    if signed:
        return (f"{100 * stats['mean']:+.1f} ({100 * stats['min']:+.1f} to "
                f"{100 * stats['max']:+.1f})")
    return f"{100 * stats['mean']:.1f} ({100 * stats['min']:.1f}–{100 * stats['max']:.1f})"


def region_title(cls: str, count: int | None = None) -> str:
    """A region class as the tables name it; lesion classes get their ``count`` of lesions."""
    title = CLASS_TITLES.get(cls, cls.replace("_", " "))
    return f"{title} ({count})" if count is not None and cls.startswith("tumour") else title


def _markdown(report: dict[str, Any]) -> str:
    methods = report["methods"]
    lines = [
        "# Residual CNN evaluation",
        "",
        f"- model: `{report['model']}` ({report['model_parameters']:,} parameters)",
        f"- dataset: `{report['dataset']}`, split `{report['split']}`, "
        f"{len(report['cases'])} case(s): {', '.join(c['case'] for c in report['cases'])}",
        "- reference: `dose/mc` (Monte Carlo on the true activity); MDE and NRMSE as in Li et "
        "al., DblurDoseNet, Med. Phys. 49 (2022) 1216",
        "- values: mean (min–max) over cases, over lesions for *tumour*, in %; paper values "
        "are VDK / MC-on-SPECT / CNN; lesion rows give the number of lesions; *tumour < 10 "
        "mm*, *10–20 mm*, *< 20 mm*, *≥ 20 mm*: the lesions by equivalent-sphere diameter; "
        "*tumour per case*: all lesions of a case as one region, one value per case",
        "- lesion goals: VDK's MDE halved per case and for lesions ≥ 20 mm; below 20 mm the "
        "CNN's MDE below VDK's and MC-on-SPECT's; the halving over all lesions is reported, "
        "not counted",
        "",
    ]
    floors = report.get("truth_noise_floor") or {}
    for metric, title in (("mde", "Mean-dose error (MDE, %) — cf. paper Table I"),
                          ("nrmse", "NRMSE (%) — cf. paper Table II"),
                          ("mean_deviation", "Signed mean-dose deviation (%)")):
        if not any(metric in cell for row in report["summary"].values()
                   for cell in row.values()):
            continue
        lines += [f"## {title}", ""]
        if metric == "mean_deviation":
            lines += ["(D̄_est − D̄_MC) / D̄_MC: the MDE with its sign; negative: the mean dose "
                      "is underestimated.", ""]
        floor_column = metric == "nrmse" and bool(floors)
        if floor_column:
            lines += ["*truth noise*: the NRMSE an exact dose would score against the MC "
                      "truth, from `dose/mc_uncertainty` (√Σσ² / √ΣD²); every method's "
                      "NRMSE² contains its square.", ""]
        header = "| region | " + " | ".join(METHODS[m] for m in methods) + \
            (" | truth noise" if floor_column else "") + " | paper |"
        lines += [header, "|" + "---|" * (len(methods) + 2 + floor_column)]
        for cls, row in report["summary"].items():
            paper = PAPER_TABLES.get(metric, {}).get(cls)
            paper_text = " / ".join(f"{v:.1f}" for v in paper) if paper else "—"
            cells = [_pct(row.get(m, {}).get(metric), signed=metric == "mean_deviation")
                     for m in methods]
            if floor_column:
                cells.append(_pct(floors.get(cls)))
            count = next(iter(row.values())).get(metric, {}).get("n")
            title = region_title(cls, count)
            lines.append(f"| {title} | " + " | ".join(cells) +
                         f" | {paper_text} |")
        lines.append("")
    lines += ["## Goals", ""]
    if any("ratio_ci95" in g for g in report["goals"]):
        lines += ["ratio: CNN / threshold (< 1 met); 95 % CI and share of draws met from "
                  f"{BOOTSTRAP_RESAMPLES} bootstrap draws of the cases (with their lesions), "
                  "how sure the test cases make each goal.", ""]
    for g in report["goals"]:
        mark = "x" if g["passed"] else " "
        extra = " (extra, not counted)" if g.get("extra") else ""
        sure = ""
        if "ratio_ci95" in g:
            low, high = g["ratio_ci95"]
            sure = (f"; ratio {g['ratio']:.2f} (95 % CI {low:.2f}–{high:.2f}, met in "
                    f"{100 * g['met_fraction']:.0f} % of draws)")
        lines.append(f"- [{mark}] {g['goal']} — {region_title(g['region'])}: "
                     f"{100 * g['cnn']:.2f} % vs {100 * g['reference']:.2f} %{sure}{extra}")
    if not report["goals"]:
        lines.append("- (no region with both VDK and CNN)")
    lines += ["", "## Inference time", ""]
    for case in report["cases"]:
        lines.append(f"- {case['case']}: {case['shape']} voxels, "
                     f"{case['inference_seconds']:.2f} s on {report['device']}")
    if report["figures"]:
        lines += ["", "## Figures", ""]
        for fig in report["figures"]:
            lines.append(f"![{fig}]({fig})")
    return "\n".join(lines) + "\n"


def format_summary_table(report: dict[str, Any]) -> str:
    """A compact plain-text table of the summary (mean MDE / NRMSE in %) for the terminal."""
    methods = report["methods"]
    short = {"vdk": "VDK", "mc_spect": "MC-SPECT", "cnn": "CNN"}
    w = 9
    group = w * len(methods)
    rows = [
        f"{'':<16}  {'MDE (%)':^{group}}  {'NRMSE (%)':^{group}}",
        f"{'region':<16}  " + "".join(f"{short[m]:>{w}}" for m in methods) + "  "
        + "".join(f"{short[m]:>{w}}" for m in methods),
    ]
    for cls, row in report["summary"].items():
        cells = []
        for metric in ("mde", "nrmse"):
            text = ""
            for m in methods:
                value = row.get(m, {}).get(metric)
                text += f"{100 * value['mean']:>{w}.1f}" if value else f"{'—':>{w}}"
            cells.append(text)
        rows.append(f"{CLASS_TITLES.get(cls, cls):<16}  " + "  ".join(cells))
    goals = counted_goals(report)
    passed = sum(g["passed"] for g in goals)
    rows.append(f"goals met: {passed}/{len(goals)} (see report.md)")
    return "\n".join(rows)


def evaluate(
    dataset_dir: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    device: str = "auto",
    batch_slices: int | None = None,
    figures: int = 3,
    crop_to_body: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate VDK, MC-on-SPECT and the CNN against ``dose/mc`` on one split.

    Parameters
    ----------
    dataset_dir
        Dataset folder (:mod:`residualnet.data`).
    model_path
        Model file.
    out_dir
        Report folder (created; its parent must exist).
    split
        Which split to evaluate (``"test"``).
    device, batch_slices, crop_to_body
        Passed to :func:`~residualnet.infer.predict_case`.
    figures
        Slice and DVH figures for the first ``figures`` cases.
    progress
        Progress bar over cases.

    Returns
    -------
    dict
        The report (also written as ``report.json``).

    Raises
    ------
    InputError
        No case in the split, a case without a required dataset, a model that does not
        suit the cases (voxel size, nuclide) — checked before anything is written.
    """
    entries = [e for e in read_manifest(dataset_dir) if e.split == split]
    if not entries:
        raise InputError(f"{dataset_dir}: no cases in split '{split}'")
    model = load_model(model_path)
    metas = []
    for entry in entries:
        meta = inspect_case(entry.path, require=EVALUATION_DATASETS)
        if not meta.label_names:
            raise CaseFileError(f"{entry.path}: dataset 'labels' has no 'names' attribute")
        model.check_compatible(voxel_mm=meta.spacing_mm, nuclide=meta.nuclide,
                               what=str(entry.path))
        metas.append(meta)
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise InputError(f"output folder's parent does not exist: {out.parent}")
    out.mkdir(exist_ok=True)

    from residualnet.infer import resolve_device

    dev = resolve_device(device)
    cases: list[dict[str, Any]] = []
    figure_files: list[str] = []
    methods_seen: set[str] = set()
    with progress_bar(len(entries), "evaluating", unit="cases", enabled=progress) as advance:
        for i, (entry, meta) in enumerate(zip(entries, metas, strict=True)):
            path = entry.path
            spect = read_dataset(path, "spect")
            density = read_dataset(path, "density")
            vdk = read_dataset(path, "dose/vdk")
            truth = read_dataset(path, "dose/mc")
            truth_sigma = (read_dataset(path, "dose/mc_uncertainty") * truth
                           if "dose/mc_uncertainty" in meta.datasets else None)
            labels = read_dataset(path, "labels")
            voxel_ml = float(np.prod(meta.spacing_mm)) / 1000.0
            t0 = time.perf_counter()
            cnn = predict_case(model, spect, density, vdk, labels=labels, device=dev,
                               batch_slices=batch_slices, crop_to_body=crop_to_body)
            seconds = time.perf_counter() - t0
            doses = {"vdk": vdk}
            if "dose/mc_spect" in meta.datasets:
                doses["mc_spect"] = read_dataset(path, "dose/mc_spect")
            doses["cnn"] = cnn
            methods_seen.update(doses)
            scored = scored_regions(meta.label_names, labels)
            regions = {n: m for n, m in scored.items() if n != ALL_LESIONS}
            cases.append({
                "case": entry.name,
                "file": str(path),
                "shape": list(meta.shape),
                "inference_seconds": seconds,
                "regions": _case_metrics(doses, truth, scored, voxel_ml, truth_sigma),
            })
            if i < figures:
                z = _figure_slice(labels, regions, truth)
                name = f"slices_{entry.name}.png"
                _slice_figure(out / name, entry.name, z, truth, density, doses, meta.spacing_mm)
                figure_files.append(name)
                name = f"dvh_{entry.name}.png"
                _dvh_figure(out / name, entry.name, truth, doses, regions)
                if (out / name).exists():
                    figure_files.append(name)
            advance(1)
    methods = [m for m in METHODS if m in methods_seen]
    summary = summarize(cases, methods)
    goals = accuracy_goals(summary)
    goal_uncertainty(cases, goals)
    report: dict[str, Any] = {
        "model": str(model_path),
        "model_parameters": model.parameters,
        "model_voxel_mm": list(model.voxel_mm),
        "nuclide": model.nuclide,
        "dataset": str(dataset_dir),
        "split": split,
        "device": str(dev),
        "reference": "dose/mc",
        "methods": methods,
        "metrics": {
            "mde": "|mean(D_est) - mean(D_mc)| / mean(D_mc) over the region (fraction)",
            "nrmse": "sqrt(mean((D_est - D_mc)^2)) / sqrt(mean(D_mc^2)) over the region "
                     "(fraction)",
            "source": "Li et al., DblurDoseNet, Med. Phys. 49 (2022) 1216",
            "truth_nrmse_floor": "sqrt(sum(sigma_mc^2)) / sqrt(sum(D_mc^2)) over the region "
                                 "(fraction): the NRMSE of an exact dose against the noisy "
                                 "truth, sigma_mc = dose/mc_uncertainty x D_mc",
        },
        "summary": summary,
        "truth_noise_floor": summarize_noise_floor(cases),
        "goals": goals,
        "bootstrap": {"over": "cases", "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED},
        "cases": cases,
        "figures": figure_files,
        "paper": PAPER_TABLES,
    }
    write_json(out / "report.json", report, allow_nan=True)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(_markdown(report))
    log.info("evaluation report written to %s", out)
    return report
