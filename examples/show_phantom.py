"""Show central axial and coronal slices of a procedural phantom (density, labels, activity).

Usage::

    python examples/show_phantom.py [--preset small] [--seed 1] [--out FILE.png]

Writes a PNG with three rows (density in g/cm³, labels, activity concentration in MBq/mL on
a log scale) and three columns (axial slice through the largest lesion, axial slice through
the left kidney, coronal slice through the kidneys).
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402

from mcdose.phantoms import generate_phantom  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).resolve().parents[1] / "docs" / "figures" / (
        f"phantom_{args.preset}.png"
    )

    ph = generate_phantom(args.seed, args.preset)
    sx, sy, sz = ph.geometry.spacing_mm
    conc = ph.activity_MBq / ph.geometry.voxel_volume_cm3
    # axial slices through the largest liver lesion and the left kidney, coronal slice
    # through the kidneys' centre
    kid = np.argwhere(ph.mask("kidney_left_cortex"))
    kz, ky, _ = np.rint(kid.mean(axis=0)).astype(int)
    lesions = [v for v, n in ph.label_names.items() if n.startswith("lesion_")]
    biggest = max(lesions, key=lambda v: np.count_nonzero(ph.labels == v))
    lz = int(np.rint(np.argwhere(ph.labels == biggest)[:, 0].mean()))

    names = ph.label_names
    values = sorted(names)
    lut = np.zeros(int(ph.labels.max()) + 1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    idx = lut[ph.labels]
    colors = np.random.default_rng(3).uniform(0.15, 1.0, size=(len(values), 3))
    colors[0] = 0.0
    cmap_labels = ListedColormap(colors)

    ext_ax = (0, ph.shape[2] * sx, ph.shape[1] * sy, 0)
    ext_co = (0, ph.shape[2] * sx, 0, ph.shape[0] * sz)
    fig, axes = plt.subplots(3, 3, figsize=(14, 11), constrained_layout=True)
    rows = [
        ("density (g/cm³)", ph.density, dict(cmap="gray", vmin=0.85, vmax=1.25)),
        ("labels", idx, dict(cmap=cmap_labels, vmin=-0.5, vmax=len(values) - 0.5,
                             interpolation="nearest")),
        ("activity (MBq/mL)", np.where(conc > 0, conc, np.nan),
         dict(cmap="inferno", norm=LogNorm(vmin=3e-3, vmax=3.0))),
    ]
    for r, (title, vol, kw) in enumerate(rows):
        im = axes[r, 0].imshow(vol[lz], extent=ext_ax, **kw)
        axes[r, 1].imshow(vol[kz], extent=ext_ax, **kw)
        axes[r, 2].imshow(vol[::-1, ky, :], extent=ext_co, **kw)
        axes[r, 0].set_title(f"{title}, axial through {names[biggest]}", fontsize=9)
        axes[r, 1].set_title(f"{title}, axial through the left kidney", fontsize=9)
        axes[r, 2].set_title(f"{title}, coronal", fontsize=9)
        if r != 1:
            fig.colorbar(im, ax=axes[r, :], shrink=0.8)
    for ax in axes.ravel():
        ax.set_xlabel("x (mm), patient's left →", fontsize=8)
        ax.tick_params(labelsize=7)
    present = ", ".join(names[v] for v in values[1:])
    fig.suptitle(
        f"mcdose phantom: preset {args.preset}, seed {args.seed}, {ph.shape} voxels (z, y, x); "
        f"total activity {ph.total_activity_MBq:.0f} MBq\n"
        + "\n".join(textwrap.wrap("labels: " + present, 170)),
        fontsize=9,
    )
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
