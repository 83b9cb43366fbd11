"""Residual-CNN inference on 512×512×130: :func:`residualnet.infer.predict_case`.

The paper's architecture (:class:`residualnet.model.ModelConfig` defaults: packs of 11
slices, Conv3d stem, 4-level U-Net with 16 filters, ≈ 1.1 M parameters) with **untrained
weights** (seed 0; the weights do not change the cost).  Inputs: the ``paper`` phantom
(seed 0) — its true activity stands in for the SPECT and a scaled copy for the VDK dose
(the content does not change the cost; the body's extent does, through the crop).

* ``crop``: the default — in-plane crop to the body's bounding box + 32 voxels;
* ``fullslice``: ``crop_to_body=False``, the network on the full 512×512 field.  In the
  ``quick`` suite on a CPU it runs on a sub-volume of 16 slices (one slab) and is scaled to the
  volume's body slices (said in the entry's conditions).
* warm-up, reported separately: on a GPU the first whole-volume call (cuDNN autotuning,
  CUDA context, weights to the device); on a CPU a first call on 16 slices.
* steady state: best of the following calls; weights are copied, batch norm fused and moved
  to the device inside every call (part of what a user pays per case).
* On a GPU ``amp="auto"`` runs bf16 autocast; the ``full`` suite also times float32.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .common import (
    Context,
    PeakMemory,
    entry,
    gpu_name,
    grid_conditions,
    guarded,
    phantom,
    release_gpu_memory,
    skipped,
    torch_cuda_reason,
)

PARAMS = {
    "quick": {"cpu_repeat": 2, "gpu_repeat": 3, "cpu_subvolume": 16, "fp32": False},
    "full": {"cpu_repeat": 1, "gpu_repeat": 5, "cpu_subvolume": None, "fp32": True},
}
WARMUP_SLICES = 16


class _Inputs:
    def __init__(self) -> None:
        ph = phantom("paper")
        self.ph = ph
        self.spect = ph.activity_MBq.astype(np.float32, copy=False)
        self.density = ph.density
        self.vdk = (ph.activity_MBq * np.float32(1e-3)).astype(np.float32)
        self.labels = ph.labels
        body = ph.labels != 0
        self.body_slices = int(body.any(axis=(1, 2)).sum())
        ys = np.flatnonzero(body.any(axis=(0, 2)))
        xs = np.flatnonzero(body.any(axis=(0, 1)))
        self.body_bbox_yx = [int(ys[-1] - ys[0] + 1), int(xs[-1] - xs[0] + 1)]

    def sub(self, z0: int, z1: int) -> dict[str, np.ndarray]:
        return {"spect": self.spect[z0:z1], "density": self.density[z0:z1],
                "vdk": self.vdk[z0:z1], "labels": self.labels[z0:z1]}  # fmt: skip

    def full(self) -> dict[str, np.ndarray]:
        return self.sub(0, self.spect.shape[0])


def _model():
    from residualnet.model import ModelConfig, build_model, count_parameters
    from residualnet.normalization import Normalization

    net = build_model(ModelConfig(), seed=0).eval()
    return net, Normalization(spect_scale=1.0, dose_scale=1.0), count_parameters(net)


def _predict(net, norm, arrays: dict, device: str, crop: bool, amp: str) -> float:
    from residualnet.infer import predict_case

    t0 = time.perf_counter()
    predict_case(net, arrays["spect"], arrays["density"], arrays["vdk"], labels=arrays["labels"],
                 normalization=norm, device=device, crop_to_body=crop, amp=amp)  # fmt: skip
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _cond(inp: _Inputs, device: str, threads, crop: bool, amp: str, params: int, **kw) -> dict:
    return {**grid_conditions(inp.ph), "device": device, "threads": threads,
            "gpu": gpu_name() if device == "cuda" else None, "backend": "torch",
            "crop_to_body": crop, "crop_margin": 32 if crop else None,
            "body_bbox_yx": inp.body_bbox_yx, "body_slices": inp.body_slices, "amp": amp,
            "weights": f"untrained (seed 0), {params} parameters",
            "inputs": "phantom activity as SPECT stand-in", **kw}  # fmt: skip


def _cpu(ctx: Context) -> list[dict]:
    import torch

    torch.set_num_threads(ctx.threads)
    p = PARAMS[ctx.suite]
    inp = _Inputs()
    net, norm, params = _model()
    nz = inp.spect.shape[0]
    zc = nz // 2
    out = []
    # warm-up on 16 slices, then the whole volume
    ctx.log(f"  cnn/cpu: warm-up on {WARMUP_SLICES} slices")
    sub = inp.sub(zc - WARMUP_SLICES // 2, zc + WARMUP_SLICES // 2)
    warm = _predict(net, norm, sub, "cpu", True, "off")
    times = []
    with PeakMemory() as mem:
        for _ in range(ctx.repeats(p["cpu_repeat"])):
            ctx.log("  cnn/cpu: 512×512×130, body crop")
            times.append(_predict(net, norm, inp.full(), "cpu", True, "off"))
    best = min(times)
    per_slice = best / max(1, inp.body_slices)
    out.append(entry(
        "cnn.cpu.paper.crop", "CNN inference, 512×512×130, body crop (CPU)", best, "s",
        conditions=_cond(inp, "cpu", ctx.threads, True, "off", params),
        stat={"all_s": times, "per_slice_s": per_slice,
              "warmup_first_call_overhead_s": warm - per_slice * WARMUP_SLICES},
        warmup_s=warm, warmup_note=f"first call on {WARMUP_SLICES} slices",
        memory=mem.result(), published=("cnn_cpu",), goal="cnn_cpu", headline=True,
    ))  # fmt: skip
    n = p["cpu_subvolume"]
    if n and n < nz:
        ctx.log(f"  cnn/cpu: full 512×512 slices on a {n}-slice sub-volume")
        with PeakMemory() as mem:
            t = _predict(net, norm, inp.sub(zc - n // 2, zc - n // 2 + n), "cpu", False, "off")
        value = t * inp.body_slices / n
        how = f"measured on {n} slices ({t:.1f} s), scaled to {inp.body_slices} body slices"
    else:
        ctx.log("  cnn/cpu: 512×512×130, full slices")
        with PeakMemory() as mem:
            t = value = _predict(net, norm, inp.full(), "cpu", False, "off")
        how = "measured on the whole volume"
    out.append(entry(
        "cnn.cpu.paper.fullslice", "CNN inference, 512×512×130, full 512×512 slices (CPU)",
        value, "s", conditions=_cond(inp, "cpu", ctx.threads, False, "off", params, how=how),
        stat={"measured_s": t}, memory=mem.result(), published=("cnn_cpu",),
        note=how + "; the goal (#6) is judged on the default, body-cropped inference",
    ))  # fmt: skip
    return out


def _gpu(ctx: Context) -> list[dict]:
    p = PARAMS[ctx.suite]
    inp = _Inputs()
    net, norm, params = _model()
    variants = [("crop", True, "auto"), ("fullslice", False, "auto")]
    if p["fp32"]:
        variants.append(("crop_fp32", True, "off"))
    out = []
    for tag, crop, amp in variants:
        ctx.log(f"  cnn/cuda: {tag}")
        with PeakMemory(gpu=True) as mem:
            warm = _predict(net, norm, inp.full(), "cuda", crop, amp)
            times = [_predict(net, norm, inp.full(), "cuda", crop, amp)
                     for _ in range(ctx.repeats(p["gpu_repeat"]))]
        amp_used = "bf16" if amp == "auto" else "off (float32)"
        title = {"crop": "body crop", "fullslice": "full 512×512 slices",
                 "crop_fp32": "body crop, float32"}[tag]  # fmt: skip
        out.append(entry(
            f"cnn.cuda.paper.{tag}", f"CNN inference, 512×512×130, {title} (GPU)", min(times),
            "s", conditions=_cond(inp, "cuda", None, crop, amp_used, params),
            stat={"all_s": times, "median_s": float(np.median(times))}, warmup_s=warm,
            warmup_note="first whole-volume call (cuDNN autotune, context, weights)",
            memory=mem.result(), published=("cnn_v100",),
            goal="cnn_gpu" if tag == "crop" else None, headline=tag == "crop",
        ))  # fmt: skip
        release_gpu_memory()
    return out


def run(ctx: Context) -> list[dict[str, Any]]:
    """CNN entries for the devices ``ctx`` asks for."""
    out: list[dict] = []
    if ctx.want_cpu:
        out += guarded("cnn.cpu.paper.crop", "CNN inference (CPU)", lambda: _cpu(ctx),
                       unit="s", published=("cnn_cpu",), goal="cnn_cpu", headline=True)
    if ctx.want_gpu:
        reason = torch_cuda_reason()
        if reason:
            out.append(skipped("cnn.cuda.paper.crop", "CNN inference, 512×512×130 (GPU)",
                               reason, unit="s", published=("cnn_v100",), goal="cnn_gpu",
                               headline=True))  # fmt: skip
        else:
            out += guarded("cnn.cuda.paper.crop", "CNN inference (GPU)", lambda: _gpu(ctx),
                           unit="s", published=("cnn_v100",), goal="cnn_gpu", headline=True)
    return out
