"""Lung / soft-tissue interface: VDK (single kernel, tissue classes) against Monte Carlo.

Usage::

    python examples/vdk_interface.py [--histories 2000000] [--voxel-mm 2] [--out FILE.png]

A slab phantom: soft tissue (1.04 g/cm³) for x < 0, lung (0.26 g/cm³) for x ≥ 0, 48 mm
across in y and z.  Two activity distributions of Lu-177:

* A — active tissue next to inactive lung (a liver dome or a tumour against the lung);
* B — the same activity per voxel on both sides (uptake in lung too).

For each, the Monte Carlo dose (electrons and photons run separately, for the breakdown) is
compared with the VDK of the paper (one soft-tissue kernel, × 1.04/ρ) and with tissue-class
kernels (lung and soft-tissue kernels, each voxel taking its own class).  Profiles are the
mean over the central 12 × 12 voxels of each x plane.  Writes the figure (default
``docs/figures/vdk_interface.png``) and prints the table quoted in ``docs/vdk.md``.
Kernels come from the kernel cache (generated on first use, 10⁶ histories per part).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mcdose.materials import DEFAULT_ASSIGNMENT, assign_materials  # noqa: E402
from mcdose.transport import simulate_dose  # noqa: E402
from mcdose.vdk import tissue_class_dose, vdk_dose  # noqa: E402
from mcdose.vdk.dose import TISSUE_CLASSES, case_kernels  # noqa: E402


def phantom(voxel_mm: float, scenario: str):
    """Density (g/cm³) and activity (MBq per voxel) of the slab phantom."""
    n_lat = int(round(48 / voxel_mm))
    nx = int(round(80 / voxel_mm))
    shape = (n_lat, n_lat, nx)
    density = np.full(shape, 1.04, np.float32)
    density[..., nx // 2 :] = 0.26
    activity = np.zeros(shape, np.float32)
    activity[..., : nx // 2] = 1.0
    if scenario == "B":
        activity[...] = 1.0
    return density, activity


def profiles(voxel_mm: float, scenario: str, histories: int, seed: int) -> dict:
    density, activity = phantom(voxel_mm, scenario)
    spacing = (voxel_mm,) * 3
    materials = assign_materials(density)
    mc = {}
    for part in ("electrons", "photons"):
        r = simulate_dose(density, activity, spacing, histories=histories, seed=seed,
                          materials=materials, material_names=DEFAULT_ASSIGNMENT.names,
                          emissions=part, progress=True)  # fmt: skip
        mc[part] = (r.dose_rate_Gy_s.astype(np.float64),
                    r.relative_uncertainty.astype(np.float64))  # fmt: skip
        seed += 1
    sets = case_kernels("Lu-177", spacing, density.shape, mode="tissue",
                        classes=("lung", "soft_tissue"), progress=True)  # fmt: skip
    single = vdk_dose(activity, density, sets["soft_tissue"], spacing_mm=spacing)
    tissue = tissue_class_dose(activity, density, sets, spacing_mm=spacing)
    parts = {
        "single_e": vdk_dose(activity, density, sets["soft_tissue"][:1]),
        "single_p": vdk_dose(activity, density, sets["soft_tissue"][1:]),
    }
    n = density.shape[1]
    core = (slice(n // 4, n - n // 4), slice(n // 4, n - n // 4))

    def prof(a):
        return np.asarray(a, np.float64)[core].mean(axis=(0, 1))

    def prof_err(dose, rel):
        return np.sqrt(((dose * rel)[core] ** 2).sum(axis=(0, 1))) / (
            dose[core].shape[0] * dose[core].shape[1]
        )

    mc_total = mc["electrons"][0] + mc["photons"][0]
    err = np.hypot(prof_err(*mc["electrons"]), prof_err(*mc["photons"]))
    nx = density.shape[2]
    x = (np.arange(nx) - nx // 2 + 0.5) * voxel_mm
    return {
        "x_mm": x,
        "mc": prof(mc_total),
        "mc_err": err,
        "mc_e": prof(mc["electrons"][0]),
        "mc_p": prof(mc["photons"][0]),
        "single": prof(single),
        "tissue": prof(tissue),
        "single_e": prof(parts["single_e"]),
        "single_p": prof(parts["single_p"]),
        "density": density[0, 0],
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, default=2_000_000)
    parser.add_argument("--voxel-mm", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).resolve().parents[1] / "docs" / "figures" / (
        "vdk_interface.png"
    )
    assert set(TISSUE_CLASSES) >= {"lung", "soft_tissue"}
    results = {s: profiles(args.voxel_mm, s, args.histories, args.seed) for s in ("A", "B")}

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [2, 1]})  # fmt: skip
    titles = {"A": "A: active tissue | inactive lung", "B": "B: equal activity per voxel"}
    for col, (s, r) in enumerate(results.items()):
        x = r["x_mm"]
        ax = axes[0, col]
        ax.axvspan(0, x[-1] + args.voxel_mm / 2, color="0.92", lw=0)
        ax.errorbar(x, r["mc"], yerr=r["mc_err"], fmt="k.", ms=4, label="MC (total)")
        ax.plot(x, r["mc_e"], "k:", lw=1, label="MC electrons")
        ax.plot(x, r["mc_p"], "k--", lw=1, label="MC photons")
        ax.plot(x, r["single"], "C3-", lw=1.5, label="VDK single kernel × 1.04/ρ")
        ax.plot(x, r["tissue"], "C0-", lw=1.5, label="VDK tissue classes")
        ax.set_yscale("log")
        ax.set_title(titles[s])
        ax.set_ylabel("dose rate (Gy/s per MBq/voxel)")
        if col == 0:
            ax.legend(loc="lower left", fontsize=8)
        ax = axes[1, col]
        ax.axvspan(0, x[-1] + args.voxel_mm / 2, color="0.92", lw=0)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.fill_between(x, 1 - r["mc_err"] / r["mc"], 1 + r["mc_err"] / r["mc"], color="0.7",
                        lw=0, label="MC ±1σ")  # fmt: skip
        ax.plot(x, r["single"] / r["mc"], "C3-", label="single")
        ax.plot(x, r["tissue"] / r["mc"], "C0-", label="tissue classes")
        ax.text(0.98, 0.95, "lung 0.26 g/cm³", transform=ax.transAxes, ha="right", va="top")
        ax.text(0.02, 0.95, "soft tissue 1.04 g/cm³", transform=ax.transAxes, va="top")
        ax.set_yscale("log")
        ax.set_ylim(0.2, 10)
        ax.set_xlabel("x (mm); interface at 0")
        ax.set_ylabel("VDK / MC")
    fig.suptitle(f"Lu-177 at a lung / soft-tissue interface, {args.voxel_mm:g} mm voxels, "
                 f"{args.histories:.0e} MC histories per part")  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)

    for s, r in results.items():
        print(f"\nscenario {s}: x (mm), MC total (Gy/s), ±%, MC electron share, "
              "single/MC, tissue/MC")
        for i in range(len(r["x_mm"])):
            if abs(r["x_mm"][i]) > 16:
                continue
            print(f"{r['x_mm'][i]:6.1f} {r['mc'][i]:10.4g} {100 * r['mc_err'][i] / r['mc'][i]:5.1f}"
                  f" {r['mc_e'][i] / r['mc'][i]:5.2f} {r['single'][i] / r['mc'][i]:6.3f}"
                  f" {r['tissue'][i] / r['mc'][i]:6.3f}")  # fmt: skip
        deep = r["x_mm"] > 10
        print(f"lung beyond 10 mm: single/MC {r['single'][deep].sum() / r['mc'][deep].sum():.3f}"
              f", tissue/MC {r['tissue'][deep].sum() / r['mc'][deep].sum():.3f}; photon share "
              f"of MC {r['mc_p'][deep].sum() / r['mc'][deep].sum():.2f}")  # fmt: skip
        deep_t = r["x_mm"] < -10
        print(f"tissue beyond 10 mm: single/MC "
              f"{r['single'][deep_t].sum() / r['mc'][deep_t].sum():.4f}")  # fmt: skip
    print(f"\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
