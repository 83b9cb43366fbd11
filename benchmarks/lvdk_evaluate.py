"""Evaluation of the learned dose kernels (lvdk) beside single-kernel and tissue-class VDK.

Three parts, written to ``benchmarks/results/<date>-cpu-2c-lvdk-evaluation.{json,md}``:

1. **Held-out kernels**: the patches of the held-out chunks of the kernel-patch files
   (:func:`lvdk.train.split_by_chunk`): kernel IoU (Σmin/Σmax over voxels ≥ 0.05 g/cm³),
   energy-fraction IoU and energy error of the learned kernels, and of the single soft-tissue
   kernel (× 1.04/ρ of the target voxel) and the tissue-class kernels (the target's class
   kernel × ρ_class/ρ) cropped to the same box.
2. **Interfaces**: 4 mm grid 32³ of soft tissue (1.04 g/cm³) with a lung (0.26) or bone
   (1.85) block filling x ≥ 64 mm; a 2×2×2-voxel source beside the block.  Monte Carlo
   (electrons and photons run separately) against each method: mean dose ratio in the block's
   voxels 5–19 mm from the nearest source voxel, within 10 mm of it, and per x-distance
   (source footprint).
3. **Phantoms**: case files with ``dose/mc`` (true activity): organ MDE / NRMSE, lung and bone
   mean-dose ratios, and the lung/bone voxels within 10 mm of uptake (activity above 5× the
   body median); wall time of each method on the grid.

Run::

    python benchmarks/lvdk_evaluate.py --patches build/lvdk/patches_4mm.h5 ... \
        --cases build/lvdk/ext_case_0000.h5 [--model src/lvdk/data/lvdk_lu177_4mm.pt]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
VOXEL_MM = 4.0


def machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0], "torch": str(torch.__version__),
            "torch_threads": torch.get_num_threads(),
            "note": "load average given: other jobs may share the cores"}  # fmt: skip


def class_kernels() -> dict:
    """{class: (combined kernel cropped to 61³, density)} at 4 mm from the kernel cache."""
    from mcdose.vdk import TISSUE_CLASSES, case_kernels, combine_kernels

    sets = case_kernels("Lu-177", (VOXEL_MM,) * 3, (96, 88, 112), mode="tissue", device="cpu")
    return {c: (combine_kernels([k.kernel for k in ks]), TISSUE_CLASSES[c][1], ks)
            for c, ks in sets.items()}  # fmt: skip


def _crop(k: np.ndarray, n: int) -> np.ndarray:
    c = k.shape[0] // 2
    h = n // 2
    return k[c - h : c + h + 1, c - h : c + h + 1, c - h : c + h + 1]


# --------------------------------------------------------------------------------------
# 1. held-out kernels
# --------------------------------------------------------------------------------------


def heldout(model, patch_files: list[str], kernels: dict) -> dict:
    from lvdk.train import (
        KEV_TO_J,
        kernel_metrics,
        load_patches,
        metrics_from_kernels,
        split_by_chunk,
    )
    from mcdose.vdk import classify_tissue

    data = load_patches(patch_files, model.net.config.depth)
    _, te = split_by_chunk(data)
    n = te.density.shape[-1]
    rho = np.maximum(te.density.astype(np.float64), 0.05)
    if model.part == "total":
        out = {"patches": len(te), "lvdk": kernel_metrics(model.net, te)}
    else:
        # the network's electron kernel (scored alone, and) plus the tissue-class photon
        # kernel as lvdk_dose adds it: the class of the dose voxel, × ρ_class / ρ
        from lvdk.train import predict_patches

        te_e = split_by_chunk(load_patches(patch_files, model.net.config.depth,
                                           part=model.part))[1]  # fmt: skip
        out = {"patches": len(te), "lvdk_electron_part": kernel_metrics(model.net, te_e)}
        out["lvdk_electron_part"].pop("per_patch", None)
        f = predict_patches(model.net, te_e.context)
        mass = te.density.astype(np.float64) * (te.voxel_mm / 10.0) ** 3 * 1e-3
        k_el = f[:, :-1].reshape(-1, n, n, n) * te_e.emitted_keV * KEV_TO_J / mass
        cls, names = classify_tissue(te.density)
        k_ph = np.zeros_like(k_el)
        for i, name in enumerate(names):
            _, rc, ks = kernels[name]
            m = cls == i
            k_ph[m] = (np.broadcast_to(_crop(ks[1].kernel, n), te.density.shape) * rc / rho)[m]
        out["lvdk"] = metrics_from_kernels(k_el + k_ph, te.kernel.astype(np.float64), te)
    k_single = _crop(kernels["soft_tissue"][0], n)[None] * 1.04 / rho
    out["single_vdk"] = metrics_from_kernels(k_single, te.kernel.astype(np.float64), te)
    cls, names = classify_tissue(te.density)
    k_tissue = np.zeros_like(k_single)
    for i, name in enumerate(names):
        kc, rc, _ = kernels[name]
        m = cls == i
        k_tissue[m] = (np.broadcast_to(_crop(kc, n), te.density.shape) * rc / rho)[m]
    out["tissue_vdk"] = metrics_from_kernels(k_tissue, te.kernel.astype(np.float64), te)
    for k in ("lvdk", "single_vdk", "tissue_vdk"):
        out[k].pop("per_patch", None)
    unc = te.uncertainty[:, n // 2, n // 2, n // 2]
    out["mc_centre_voxel_uncertainty_median"] = float(np.median(unc))
    return out


# --------------------------------------------------------------------------------------
# 2. interfaces
# --------------------------------------------------------------------------------------


def interface_geometry(block_density: float, shape=(32, 32, 32)):
    rho = np.full(shape, 1.04, np.float32)
    rho[:, :, 16:] = block_density
    act = np.zeros(shape, np.float32)
    act[15:17, 15:17, 14:16] = 1.0
    return rho, act


def interface_mc(name: str, rho, act, electron_histories: int, photon_histories: int,
                 cache: Path | None = None):
    """MC dose rate (Gy/s), its variance and seconds; cached in ``cache`` (npz) when given."""
    from mcdose.transport import simulate_dose

    cache = cache or Path(os.environ.get("LVDK_EVAL_CACHE", "build/lvdk"))
    f = cache / f"interface_mc_{name}_e{electron_histories:g}_p{photon_histories:g}.npz"
    if f.exists():
        z = np.load(f)
        return z["mc"], z["var"], float(z["seconds"])
    t = time.perf_counter()
    sp = (VOXEL_MM,) * 3
    parts = [simulate_dose(rho, act, sp, histories=h, seed=11 + i, device="cpu", emissions=e)
             for i, (e, h) in enumerate((("electrons", electron_histories),
                                          ("photons", photon_histories)))]  # fmt: skip
    mc = parts[0].dose_rate_Gy_s.astype(np.float64) + parts[1].dose_rate_Gy_s
    var = sum((p.dose_rate_Gy_s.astype(np.float64) * p.relative_uncertainty) ** 2
              for p in parts)  # fmt: skip
    seconds = time.perf_counter() - t
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, mc=mc, var=var, seconds=seconds)
    return mc, var, seconds


def interfaces(model, kernels: dict, electron_histories: int, photon_histories: int) -> dict:
    from scipy import ndimage

    from lvdk.superpose import lvdk_dose
    from mcdose.vdk import tissue_class_dose, vdk_dose

    res = {}
    for name, rho_b in (("lung", 0.26), ("bone", 1.85)):
        rho, act = interface_geometry(rho_b)
        sp = (VOXEL_MM,) * 3
        mc, var, mc_s = interface_mc(name, rho, act, electron_histories, photon_histories)
        doses = {
            "single_vdk": vdk_dose(act, rho, kernels["soft_tissue"][2], spacing_mm=sp),
            "tissue_vdk": tissue_class_dose(act, rho, {c: v[2] for c, v in kernels.items()},
                                            spacing_mm=sp),  # fmt: skip
            "lvdk": lvdk_dose(act, rho, sp, model=model, device="cpu",
                              photon_kernel={c: v[2][1] for c, v in kernels.items()})[0],
            "lvdk_tail_none": lvdk_dose(act, rho, sp, model=model, photon_correction="none",
                                        photon_kernel=kernels["soft_tissue"][2][1],
                                        device="cpu")[0],
        }  # fmt: skip
        dist = ndimage.distance_transform_edt(act == 0) * VOXEL_MM  # to the nearest source centre
        block = rho == rho_b
        masks = {"5-19mm": block & (dist >= 5) & (dist <= 19),
                 "within_10mm": block & (dist <= 10)}  # fmt: skip
        entry = {"block_density_g_cm3": rho_b, "mc_histories": {"electrons": electron_histories,
                 "photons": photon_histories}, "mc_seconds": mc_s, "regions": {}}  # fmt: skip
        for rname, m in masks.items():
            mmc = float(mc[m].mean())
            sig = float(np.sqrt(var[m].sum()) / m.sum() / mmc)
            entry["regions"][rname] = {
                "voxels": int(m.sum()), "mc_mean_Gy_s": mmc, "mc_relative_error": sig,
                **{k: float(v[m].mean() / mmc) for k, v in doses.items()},
            }  # fmt: skip
        prof = {}
        for x in range(16, 22):
            sel = (slice(15, 17), slice(15, 17), x)
            ref = float(mc[sel].mean())
            prof[f"{(x - 15.5) * VOXEL_MM - 2:.0f}mm"] = {
                "mc_Gy_s": ref,
                "mc_relative_error": float(np.sqrt(var[sel].sum()) / 4 / ref),
                **{k: float(v[sel].mean() / ref) for k, v in doses.items()},
            }  # fmt: skip
        entry["profile_from_interface"] = prof
        res[name] = entry
    return res


# --------------------------------------------------------------------------------------
# 3. phantoms
# --------------------------------------------------------------------------------------


def phantoms(model, kernels: dict, cases: list[str]) -> dict:
    from scipy import ndimage

    from lvdk.superpose import lvdk_dose
    from mcdose.io.case import read_dataset, read_label_names
    from mcdose.metrics import mean_deviation, nrmse, standard_regions
    from mcdose.vdk import tissue_class_dose, vdk_dose

    out = {}
    for path in cases:
        act = read_dataset(path, "activity")
        rho = read_dataset(path, "density")
        mc = read_dataset(path, "dose/mc")
        labels = read_dataset(path, "labels")
        names = read_label_names(path)
        sp = (VOXEL_MM,) * 3
        times, doses = {}, {}
        t = time.perf_counter()
        doses["single_vdk"] = vdk_dose(act, rho, kernels["soft_tissue"][2], spacing_mm=sp)
        times["single_vdk"] = time.perf_counter() - t
        t = time.perf_counter()
        doses["tissue_vdk"] = tissue_class_dose(act, rho, {c: v[2] for c, v in kernels.items()},
                                                spacing_mm=sp)  # fmt: skip
        times["tissue_vdk"] = time.perf_counter() - t
        t = time.perf_counter()
        doses["lvdk"], info = lvdk_dose(act, rho, sp, model=model,
                                        photon_kernel={c: v[2][1] for c, v in kernels.items()},
                                        device="cpu")  # fmt: skip
        times["lvdk"] = time.perf_counter() - t
        regions = standard_regions(names, labels)
        inv = {v: k for k, v in names.items()}
        lung = np.isin(labels, [inv[n] for n in ("lung_left", "lung_right") if n in inv])
        bone = np.isin(labels, [inv[n] for n in ("spine", "ribs", "pelvis") if n in inv])
        body = labels > 0
        hot = act > 5 * np.median(act[body & (act > 0)])
        dist = ndimage.distance_transform_edt(~hot) * VOXEL_MM
        regions.update({"lung": lung, "bone": bone,
                        "lung_within_10mm_of_uptake": lung & (dist <= 10),
                        "bone_within_10mm_of_uptake": bone & (dist <= 10)})  # fmt: skip
        table = {}
        for rname, m in regions.items():
            if m.sum() == 0 or not mc[m].mean() > 0:
                continue
            row = {k: {"mean_deviation": mean_deviation(v, mc, m), "nrmse": nrmse(v, mc, m)}
                   for k, v in doses.items()}
            table[rname] = {"voxels": int(m.sum()), **row}
        out[str(path)] = {"shape": list(act.shape), "active_voxels": int((act > 0).sum()),
                          "seconds": times, "lvdk_info": info, "regions": table}  # fmt: skip
    return out


# --------------------------------------------------------------------------------------


def markdown(res: dict) -> str:
    lines = [f"# lvdk evaluation ({res['date']}, CPU)", "",
             f"Model: `{res['model']}` (kernel part `{res.get('model_part', 'total')}`); "
             f"machine: {res['machine']}", "",
             *([("The network learns the electron emissions' kernel; *lvdk* is that kernel "
                 "plus the tissue-class photon kernel (class of the dose voxel, × ρ_class/ρ), "
                 "as `lvdk_dose` adds them; *lvdk_electron_part* scores the network's "
                 "electron kernel against the MC electron kernel alone. In the interface "
                 "tables *photons uncorrected* takes the soft-tissue photon kernel for "
                 "every voxel."), ""] if res.get("model_part") == "electron" else []),
             "## Held-out kernels", "",
             f"{res['heldout']['patches']} held-out patches (chunks never trained on; the "
             "phantom patches of a chunk come from one virtual patient).  IoU = Σmin/Σmax of "
             "the kernels in Gy per decay over voxels ≥ 0.05 g/cm³; energy IoU on the energy "
             "fractions; energy error = predicted − MC fraction of the emitted energy absorbed "
             "in the 9³ box.", "",
             "| method | IoU mean | IoU p05 | IoU off-centre | energy IoU | |energy error| mean "
             "| IoU phantom / synthetic |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    h = res["heldout"]
    for k in ("lvdk", "lvdk_electron_part", "single_vdk", "tissue_vdk"):
        if k not in h:
            continue
        m = h[k]
        bk = m["by_kind"]
        lines.append(f"| {k} | {m['iou']['mean']:.4f} | {m['iou']['p05']:.4f} | "
                     f"{m['iou_off_centre']['mean']:.4f} | {m['iou_energy']['mean']:.4f} | "
                     f"{m['energy_error']['mean_abs']:.4f} | "
                     f"{bk.get('phantom', {}).get('iou', {}).get('mean', float('nan')):.4f} / "
                     f"{bk.get('synthetic', {}).get('iou', {}).get('mean', float('nan')):.4f} |")
    if "interfaces" in res:
        lines += ["", "## Interfaces (4 mm, 2×2×2-voxel source beside a block)", "",
                  "Mean dose / MC in the block's voxels.", "",
                  "| block | region | voxels | MC ±1σ | single VDK | tissue-class VDK | lvdk | "
                  "lvdk, tail uncorrected |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for b, e in res["interfaces"].items():
            for r, v in e["regions"].items():
                lines.append(f"| {b} | {r} | {v['voxels']} | {100 * v['mc_relative_error']:.1f} %"
                             f" | {v['single_vdk']:.3f} | {v['tissue_vdk']:.3f} | "
                             f"{v['lvdk']:.3f} | {v['lvdk_tail_none']:.3f} |")
            lines += ["", f"{b}: profile along x in the source footprint (distance of the "
                      "voxel centre from the interface):", "",
                      "| x | MC ±1σ | single | tissue | lvdk | lvdk, tail uncorrected |",
                      "|---|---|---|---|---|---|"]
            for x, v in e["profile_from_interface"].items():
                lines.append(f"| {x} | {100 * v['mc_relative_error']:.1f} % | "
                             f"{v['single_vdk']:.3f} | {v['tissue_vdk']:.3f} | {v['lvdk']:.3f} | "
                             f"{v['lvdk_tail_none']:.3f} |")
            lines.append("")
    if res.get("phantoms"):
        lines += ["## Phantoms (true activity, against dose/mc)", ""]
        for path, e in res["phantoms"].items():
            lines += [f"`{path}` {e['shape']}, {e['active_voxels']} active voxels; seconds: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in e["seconds"].items()), "",
                      "| region | voxels | single MDE / NRMSE | tissue MDE / NRMSE | "
                      "lvdk MDE / NRMSE |", "|---|---|---|---|---|"]  # fmt: skip
            for r, v in e["regions"].items():
                cells = [f"{100 * v[k]['mean_deviation']:+.1f} % / {100 * v[k]['nrmse']:.1f} %"
                         for k in ("single_vdk", "tissue_vdk", "lvdk")]  # fmt: skip
                lines.append(f"| {r} | {v['voxels']} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    from lvdk.modelfile import load_kernel_model
    from mcdose.io.jsonio import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", nargs="+", required=True)
    ap.add_argument("--cases", nargs="*", default=[])
    ap.add_argument("--model", default=None)
    ap.add_argument("--electron-histories", type=int, default=500_000)
    ap.add_argument("--photon-histories", type=int, default=5_000_000)
    ap.add_argument("--skip-interfaces", action="store_true")
    ap.add_argument("--tag", default="evaluation")
    args = ap.parse_args()
    model = load_kernel_model(args.model)
    kernels = class_kernels()
    date = dt.date.today().isoformat()
    res = {"date": date, "model": str(model.path), "model_part": model.part,
           "machine": machine(),
           "model_training": model.record.get("training", {})}  # fmt: skip
    t = time.perf_counter()
    res["heldout"] = heldout(model, args.patches, kernels)
    if not args.skip_interfaces:
        res["interfaces"] = interfaces(model, kernels, args.electron_histories,
                                       args.photon_histories)  # fmt: skip
    res["phantoms"] = phantoms(model, kernels, args.cases)
    res["seconds"] = time.perf_counter() - t
    stem = RESULTS / f"{date}-cpu-2c-lvdk-{args.tag}"
    write_json(stem.with_suffix(".json"), res)
    stem.with_suffix(".md").write_text(markdown(res))
    print(json.dumps({k: res["heldout"][k]["iou"] for k in ("lvdk", "single_vdk",
                                                             "tissue_vdk")}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
