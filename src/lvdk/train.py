"""Training of :class:`lvdk.model.KernelNet` on the MC kernel patches, and kernel metrics.

Data: a file of :mod:`mcdose.dataset.kernel_patches`.  Inputs are the density of the
kernel box and ``depth`` voxels of context (cropped from the simulated region); targets the
MC energy fractions ``f_o = K_o · m_o / E_emit`` and the escape fraction ``1 − Σ f_o``.
Patches are split by chunk (a chunk's phantom patches come from one virtual patient, so the
held-out chunks hold patients the network never saw).  Every batch is augmented by a random
element of the 48 symmetries of the cube (cubic voxels: reflections and axis exchanges map
a density patch and its kernel alike).

Losses (``loss=``)
    ``"iou"``: Melodia's intersection over union on the kernels, ``1 − Σ min(K̂, K) / Σ max(K̂,
    K)`` per patch; ``"mse"``: mean squared error of the ``N³ + 1`` energy fractions.

Metrics (:func:`kernel_metrics`)
    ``iou`` (as the loss, on the kernels in Gy per decay, over the voxels of density ≥
    0.05 g/cm³ — dose per decay in air is huge and meaningless), ``iou_energy`` (on the
    energy fractions, all voxels), ``iou_off_centre`` (the same
    without the source voxel, which holds ~80 % of the energy at 4 mm and dominates the IoU),
    ``energy_error`` = Σ_o f̂_o − Σ_o f_o (fraction of the emitted energy absorbed in the box,
    predicted minus MC).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvdk.model import KernelNet, ModelConfig

log = logging.getLogger(__name__)

__all__ = ["KernelData", "TrainConfig", "iou", "kernel_metrics", "load_patches", "train"]

KEV_TO_J = 1.602176634e-16
#: voxels below this density (air) are left out of the kernel IoU: their dose per decay is
#: huge and meaningless (tiny mass), as in docs/vdk.md's treatment of air, g/cm³
AIR_CUT_G_CM3 = 0.05


@dataclass
class KernelData:
    """Patches ready for training (numpy float32)."""

    context: np.ndarray  # (n, M, M, M) g/cm³
    fractions: np.ndarray  # (n, N³ + 1) energy fractions (last: escape)
    kernel: np.ndarray  # (n, N, N, N) Gy per decay
    density: np.ndarray  # (n, N, N, N) g/cm³
    uncertainty: np.ndarray  # (n, N, N, N) relative
    chunk: np.ndarray  # (n,)
    kind: np.ndarray  # (n,) 0 phantom 1 synthetic
    info: list
    voxel_mm: float
    emitted_keV: float
    nuclide: str
    part: str = "total"  # "total" or "electron" (see load_patches)

    def subset(self, mask: np.ndarray) -> KernelData:
        idx = np.flatnonzero(mask)
        return KernelData(self.context[idx], self.fractions[idx], self.kernel[idx],
                          self.density[idx], self.uncertainty[idx], self.chunk[idx],
                          self.kind[idx], [self.info[i] for i in idx], self.voxel_mm,
                          self.emitted_keV, self.nuclide, self.part)  # fmt: skip

    def __len__(self) -> int:
        return len(self.chunk)


#: What a model's kernels hold: ``"total"`` — the whole MC kernel (electrons and photons),
#: fractions of the total energy emitted per decay; ``"electron"`` — the electron emissions'
#: part only (β, conversion and Auger electrons, their bremsstrahlung), fractions of the
#: electron energy per decay; the photons are then left to the photon kernels' FFT
#: (:func:`lvdk.superpose.lvdk_dose`).
PARTS = ("total", "electron")


def load_patches(paths: str | Path | list, depth: int, part: str = "total") -> KernelData:
    """Read kernel-patch files (one or several, same size, voxel, pad and nuclide) and derive
    the training arrays (context of ``depth`` voxels) of the kernel ``part`` (:data:`PARTS`).
    Chunk numbers of the k-th file are offset by ``k·100000`` so that they stay distinct."""
    from mcdose.dataset.kernel_patches import read_kernel_patches
    from mcdose.errors import InputError
    from mcdose.nuclides import load_nuclide

    if part not in PARTS:
        raise InputError(f"kernel part must be one of {', '.join(PARTS)}, got {part!r}")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    key_kernel = "kernel" if part == "total" else "kernel_electron"
    parts = []
    ref = None
    for i, path in enumerate(paths):
        d = read_kernel_patches(path, with_region=True)
        p = d["params"]
        key = {k: p[k] for k in ("size", "pad", "voxel_mm", "nuclide")}
        if ref is None:
            ref = key
        elif key != ref:
            raise InputError(f"{path}: patches of another size, pad, voxel or nuclide ({key})")
        d["chunk"] = d["chunk"] + 100000 * i
        parts.append(d)
    p = parts[0]["params"]
    n, pad = int(p["size"]), int(p["pad"])
    if pad < depth:
        raise InputError(f"{paths[0]}: patches have {pad} voxels of surroundings, the model "
                         f"needs {depth}")  # fmt: skip
    cat = {k: np.concatenate([d[k] for d in parts])
           for k in ("density_region", "density", key_kernel, "uncertainty", "chunk", "kind")}
    cat["kernel"] = cat.pop(key_kernel)
    info = [x for d in parts for x in d["info"]]
    a, b = pad - depth, pad + n + depth
    context = cat["density_region"][:, a:b, a:b, a:b].astype(np.float32)
    nuc = load_nuclide(p["nuclide"])
    emitted = nuc.total_energy_per_decay_keV
    if part == "electron":
        emitted -= nuc.photon_energy_per_decay_keV
    voxel_cm3 = (float(p["voxel_mm"]) / 10.0) ** 3
    mass = cat["density"].astype(np.float64) * voxel_cm3 * 1e-3
    f = (cat["kernel"] * mass / KEV_TO_J / emitted).reshape(len(mass), -1)
    esc = np.clip(1.0 - f.sum(axis=1, keepdims=True), 0.0, None)
    fractions = np.concatenate([f, esc], axis=1).astype(np.float32)
    return KernelData(context, fractions, cat["kernel"].astype(np.float32),
                      cat["density"].astype(np.float32), cat["uncertainty"].astype(np.float32),
                      cat["chunk"], cat["kind"], info, float(p["voxel_mm"]), float(emitted),
                      str(p["nuclide"]), part)  # fmt: skip


# --------------------------------------------------------------------------------------
# Symmetries, losses, metrics
# --------------------------------------------------------------------------------------

_SYMMETRIES = [(perm, flips) for perm in itertools.permutations((1, 2, 3))
               for flips in itertools.product((False, True), repeat=3)]  # fmt: skip


def _transform(x: torch.Tensor, sym: tuple) -> torch.Tensor:
    """Apply a cube symmetry to ``(B, Z, Y, X)``."""
    perm, flips = sym
    x = x.permute(0, *perm)
    dims = [i + 1 for i in range(3) if flips[i]]
    return torch.flip(x, dims) if dims else x


def fractions_to_kernel(log_f: torch.Tensor, density: torch.Tensor, emitted_keV: float,
                        voxel_mm: float) -> torch.Tensor:  # fmt: skip
    """Kernel in Gy per decay ``(B, N, N, N)`` from log fractions ``(B, N³ + 1)`` and the
    density of the kernel box ``(B, N, N, N)`` (g/cm³)."""
    n = density.shape[-1]
    mass = density.clamp_min(1e-4) * (voxel_mm / 10.0) ** 3 * 1e-3
    e = torch.exp(log_f[:, :-1]).reshape(-1, n, n, n) * (emitted_keV * KEV_TO_J)
    return e / mass


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ min / Σ max per patch (Melodia's IoU), over all axes but the first."""
    dims = tuple(range(1, pred.ndim))
    return torch.minimum(pred, target).sum(dims) / torch.maximum(pred, target).sum(dims).clamp_min(
        1e-30
    )


def kernel_metrics(model: KernelNet, data: KernelData, batch: int = 256) -> dict[str, Any]:
    """Kernel IoU, off-centre IoU and energy error of ``model`` on ``data`` (per patch and
    summaries: mean, median, 5th percentile; by kind)."""
    pred = predict_patches(model, data.context, batch=batch)
    return metrics_from_fractions(pred, data)


def metrics_from_fractions(pred_f: np.ndarray, data: KernelData) -> dict[str, Any]:
    """Metrics of predicted fractions ``(n, N³ + 1)`` against the MC kernels of ``data``."""
    n = data.density.shape[-1]
    mass = data.density.astype(np.float64) * (data.voxel_mm / 10.0) ** 3 * 1e-3
    k_pred = pred_f[:, :-1].reshape(-1, n, n, n) * data.emitted_keV * KEV_TO_J / mass
    k_mc = data.kernel.astype(np.float64)
    return metrics_from_kernels(k_pred, k_mc, data)


def metrics_from_kernels(k_pred: np.ndarray, k_mc: np.ndarray, data: KernelData) -> dict:
    """Metrics of predicted kernels (Gy per decay) against the MC kernels."""
    n = k_mc.shape[-1]
    c = n // 2
    mass = data.density.astype(np.float64) * (data.voxel_mm / 10.0) ** 3 * 1e-3
    body = (data.density >= AIR_CUT_G_CM3).reshape(len(k_mc), -1)
    mn = np.minimum(k_pred, k_mc).reshape(len(k_mc), -1) * body
    mx = np.maximum(k_pred, k_mc).reshape(len(k_mc), -1) * body
    iou_v = mn.sum(1) / mx.sum(1)
    ef_p = (k_pred * mass).reshape(len(k_mc), -1)
    ef_m = (k_mc * mass).reshape(len(k_mc), -1)
    iou_energy = np.minimum(ef_p, ef_m).sum(1) / np.maximum(ef_p, ef_m).sum(1)
    centre = c * n * n + c * n + c
    mn[:, centre] = 0
    mx[:, centre] = 0
    iou_off = mn.sum(1) / mx.sum(1)
    e_pred = (k_pred * mass).reshape(len(k_mc), -1).sum(1) / KEV_TO_J / data.emitted_keV
    e_mc = (k_mc * mass).reshape(len(k_mc), -1).sum(1) / KEV_TO_J / data.emitted_keV
    err = e_pred - e_mc

    def summary(v: np.ndarray) -> dict[str, float]:
        if v.size == 0:
            return {}
        return {"mean": float(v.mean()), "median": float(np.median(v)),
                "p05": float(np.percentile(v, 5)), "min": float(v.min())}  # fmt: skip

    out: dict[str, Any] = {"patches": len(k_mc), "iou": summary(iou_v),
                           "iou_off_centre": summary(iou_off),
                           "iou_energy": summary(iou_energy),
                           "energy_error": {"mean": float(err.mean()),
                                            "mean_abs": float(np.abs(err).mean()),
                                            "max_abs": float(np.abs(err).max())},
                           "by_kind": {}}  # fmt: skip
    for kind, name in ((0, "phantom"), (1, "synthetic")):
        m = data.kind == kind
        if m.any():
            out["by_kind"][name] = {"patches": int(m.sum()), "iou": summary(iou_v[m]),
                                    "iou_off_centre": summary(iou_off[m]),
                                    "iou_energy": summary(iou_energy[m]),
                                    "energy_error_mean_abs": float(np.abs(err[m]).mean())}
    out["per_patch"] = {"iou": iou_v.tolist(), "iou_off_centre": iou_off.tolist(),
                        "energy_error": err.tolist()}  # fmt: skip
    return out


@torch.no_grad()
def predict_patches(model: KernelNet, context: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted energy fractions ``(n, N³ + 1)`` of context patches (float64)."""
    model.eval()
    out = []
    for i in range(0, len(context), batch):
        x = torch.from_numpy(np.ascontiguousarray(context[i : i + batch]))
        out.append(torch.exp(model(x)).double().numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Training options.

    Attributes
    ----------
    loss : {"iou", "mse"}
    epochs, batch_size : int
    lr : float
        Adam learning rate (cosine decay to 5 % over the epochs).
    seed : int
    model : ModelConfig
    """

    loss: str = "mse"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def _loss(name: str, log_f: torch.Tensor, f: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    if name == "mse":
        return ((torch.exp(log_f) - f) ** 2).mean() * 1e4
    if name == "iou":
        n = rho.shape[-1]
        pred = torch.exp(log_f[:, :-1]).reshape(-1, n, n, n) / rho.clamp_min(1e-4)
        tgt = f[:, :-1].reshape(-1, n, n, n) / rho.clamp_min(1e-4)
        return (1.0 - iou(pred, tgt)).mean()
    raise ValueError(f"loss must be 'iou' or 'mse', got {name!r}")


def train(data: KernelData, config: TrainConfig, *, validation: KernelData | None = None,
          log_every: int = 5) -> tuple[KernelNet, dict[str, Any]]:  # fmt: skip
    """Train a :class:`KernelNet`; the prior is initialised to the log mean training fractions.

    Returns
    -------
    model : KernelNet (eval mode)
    history : dict
        Per-epoch training loss and (with ``validation``) validation IoU; seconds.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = KernelNet(config.model)
    with torch.no_grad():
        model.prior.copy_(torch.log(torch.from_numpy(data.fractions.mean(0)).clamp_min(1e-9)))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * max(1, len(data) // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.05 * config.lr)
    ctx = torch.from_numpy(data.context)
    frac = torch.from_numpy(data.fractions)
    n, d = config.model.size, config.model.depth
    hist: dict[str, list] = {"loss": [], "val_iou": [], "val_iou_off_centre": []}
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(len(data))
        total = 0.0
        nb = 0
        for i in range(0, len(order) - config.batch_size + 1, config.batch_size):
            idx = torch.from_numpy(order[i : i + config.batch_size])
            sym = _SYMMETRIES[rng.integers(len(_SYMMETRIES))]
            x = _transform(ctx[idx], sym)
            k = frac[idx, :-1].reshape(-1, n, n, n)
            k = _transform(k, sym).reshape(len(idx), -1)
            f = torch.cat([k, frac[idx, -1:]], dim=1)
            rho = x[:, d : d + n, d : d + n, d : d + n]
            loss = _loss(config.loss, model(x), f, rho)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            nb += 1
        hist["loss"].append(total / max(nb, 1))
        if validation is not None and (epoch % log_every == log_every - 1
                                       or epoch == config.epochs - 1):  # fmt: skip
            m = kernel_metrics(model, validation)
            hist["val_iou"].append((epoch + 1, m["iou"]["mean"]))
            hist["val_iou_off_centre"].append((epoch + 1, m["iou_off_centre"]["mean"]))
            log.info("epoch %d loss %.4g val IoU %.4f off-centre %.4f", epoch + 1,
                     hist["loss"][-1], m["iou"]["mean"], m["iou_off_centre"]["mean"])  # fmt: skip
    hist["seconds"] = time.perf_counter() - t0
    model.eval()
    return model, hist


def split_by_chunk(data: KernelData, every: int = 7) -> tuple[KernelData, KernelData]:
    """Train / held-out split: chunks with ``chunk % every == every − 1`` are held out."""
    held = (data.chunk % every) == every - 1
    return data.subset(~held), data.subset(held)


def main(argv: list[str] | None = None) -> None:
    """``python -m lvdk.train PATCHES.h5... --out MODEL.pt``: train with both losses on the
    same split, evaluate both on the held-out chunks and save the chosen one."""
    import argparse
    import json

    from lvdk.modelfile import save_kernel_model
    from mcdose.io.jsonio import write_json

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("patches", nargs="+")
    ap.add_argument("--out", required=True, help="model file to write (the chosen loss)")
    ap.add_argument("--report", required=True, help="JSON with both runs' metrics")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--losses", default="mse,iou")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", choices=PARTS, default="total",
                    help="kernel the network learns: the whole MC kernel, or the electrons' "
                         "part (photons by FFT at dose time)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data = load_patches(args.patches, ModelConfig().depth, part=args.part)
    tr, te = split_by_chunk(data)
    log.info("patches: %d train, %d held out", len(tr), len(te))
    runs: dict[str, Any] = {}
    models = {}
    for loss in args.losses.split(","):
        cfg = TrainConfig(loss=loss, epochs=args.epochs, seed=args.seed)
        model, hist = train(tr, cfg, validation=te)
        m = kernel_metrics(model, te)
        runs[loss] = {"config": cfg.to_dict(), "history": hist, "held_out": m}
        models[loss] = model
        log.info("%s: held-out IoU %.4f (off-centre %.4f), |energy error| %.4f", loss,
                 m["iou"]["mean"], m["iou_off_centre"]["mean"], m["energy_error"]["mean_abs"])
    chosen = max(runs, key=lambda k: runs[k]["held_out"]["iou"]["mean"])
    params = [json.loads(json.dumps(read_params(p))) for p in args.patches]
    training = {"loss": chosen, "part": args.part, "epochs": args.epochs,
                "patch_files": [str(p) for p in args.patches], "patch_params": params,
                "train_patches": len(tr),
                "held_out_patches": len(te),
                "held_out": {k: v for k, v in runs[chosen]["held_out"].items()
                             if k != "per_patch"}}  # fmt: skip
    save_kernel_model(args.out, models[chosen], voxel_mm=data.voxel_mm, nuclide=data.nuclide,
                      emitted_keV=data.emitted_keV, part=data.part,
                      training=training)  # fmt: skip
    write_json(args.report, {"chosen": chosen, "runs": runs, "train_patches": len(tr),
                             "held_out_patches": len(te), "patch_params": params})  # fmt: skip


def read_params(path: str | Path) -> dict:
    """The ``params`` of a kernel-patch file."""
    import json

    import h5py

    with h5py.File(path, "r", locking=False) as f:
        return json.loads(f.attrs["params"])


if __name__ == "__main__":
    main()
