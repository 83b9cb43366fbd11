"""Dose by superposition of learned kernels, plus the long-range photon dose by FFT.

For an activity map ``A`` (MBq per voxel) and density ``ρ`` (g/cm³)::

    Ė(t) = Σ_s A(s) · 10⁶ · E_emit · f_{t−s}(s)                        (keV/s, |t − s| ≤ N/2)
    Ḋ(t) = Ė(t) · 1.602176634e-16 / (ρ(t) · V · 1e-3)  +  c(t) · [(A · 10⁶) ⊛ S_γ,tail](t)

with ``f_o(s)`` the network's energy fractions for source ``s`` (:mod:`lvdk.model`) — the
short-range part, β and near photons, in the kernel box ``N³`` — and ``S_γ,tail`` the
soft-tissue photon kernel of :mod:`mcdose.vdk` (Gy per decay) with its central ``N³`` set
to zero: the photon dose beyond the box, by the existing FFT convolution.  A model of the
electrons' part (``part="electron"``, :data:`lvdk.train.PARTS`) learns the electron
emissions' kernel only (fractions of the electron energy per decay); then ``S_γ`` is the
whole photon kernel, nothing cut: the network where the physics depends on the
neighbourhood (β ranges in lung, bone, air), the photon kernels where it hardly does.
``c(t)`` is the photon part's density correction:

``"tissue"`` (default)
    the tissue-class path of :mod:`mcdose.vdk`: each voxel takes the tail of its class's
    photon kernel (lung 0.26, soft tissue 1.04, bone 1.92 g/cm³) × ρ_class/ρ.  Photon dose
    per unit mass hardly depends on density, but it does depend on the medium: bone absorbs
    the scattered and X-ray photons of Lu-177 (55–210 keV) more per gram through the
    photoelectric effect (measured in docs/lvdk.md: the soft-tissue kernel without
    correction gives 0.6–0.7 × MC in bone).
``"none"``
    the soft-tissue kernel's tail without correction.
``"paper"``
    the single-kernel VDK's ``1.04/ρ``.

Cost and memory
---------------
The trunk features ``φ`` are computed once per voxel (convolutionally, in z-slabs); each
active voxel then costs one ``(N³ + 1) × C`` read-out, a softmax and an ``N³`` scatter-add
(``index_add_``).  Sources are processed in chunks of ``chunk_sources``; peak memory is the
features (``C × 4`` bytes per voxel of the padded volume: 1.2 GB for 512×512×130 at C = 8),
the float64 energy map (8 bytes per voxel) and ``chunk_sources × N³ × (C + 3) × 4`` bytes —
well inside 24 GiB for a 512×512×130 patient.  torch runs on the GPU when there is one
(``device="auto"``).

Energy conservation: every source's fractions sum to one with the escape fraction, so the
energy deposited by the short-range part equals ``Σ_s A(s)·10⁶·E_emit·(1 − f_esc(s))`` when
every kernel box lies inside the grid (tested).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from mcdose.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["PHOTON_CORRECTIONS", "lvdk_dose", "photon_tail_kernel", "superpose_kernels"]

KEV_TO_J = 1.602176634e-16
AIR_DENSITY_G_CM3 = 0.0012
PHOTON_CORRECTIONS = ("tissue", "none", "paper")


def _torch_device(device: str | None) -> Any:
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from mcdose.errors import DeviceError

        raise DeviceError("--device cuda requested but torch sees no CUDA GPU")
    return torch.device(device)


def _features(net: Any, rho_padded: Any, out_shape: tuple[int, int, int], slab: int) -> Any:
    """Trunk features ``(V, C)`` (voxel-major) of the padded density, computed in z-slabs."""
    import torch

    d = net.config.depth
    c = net.config.channels
    zo, yo, xo = out_shape
    phi = torch.empty((zo, yo, xo, c), dtype=torch.float32, device=rho_padded.device)
    with torch.no_grad():
        for z0 in range(0, zo, slab):
            z1 = min(zo, z0 + slab)
            x = rho_padded[z0 : z1 + 2 * d][None]
            phi[z0:z1] = net.features(x)[0].permute(1, 2, 3, 0)
    return phi.reshape(-1, c)


def superpose_kernels(
    activity_MBq: np.ndarray,
    density: np.ndarray,
    model: Any,
    *,
    device: str | None = "auto",
    chunk_sources: int | None = None,
    feature_slab: int = 8,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Energy rate (keV/s per voxel) of the short-range learned kernels of every active voxel.

    Parameters
    ----------
    activity_MBq, density : ndarray (z, y, x)
        MBq per voxel (or MBq·s); g/cm³.
    model : lvdk.modelfile.LoadedKernelModel
    device : {"auto", "cpu", "cuda"}
    chunk_sources : int, optional
        Sources per chunk (default 8192 on a CPU, 65536 on a GPU).
    feature_slab : int
        z-slices per slab of the feature computation.

    Returns
    -------
    energy_keV_s : ndarray float64 (z, y, x)
        Energy absorbed per second in each voxel (keV/s; keV per MBq·s for MBq·s input).
    info : dict
        ``sources``, ``escape_fraction_mean`` (activity-weighted), ``device``, ``seconds``.
    """
    import torch

    from mcdose.progress import progress_bar

    t0 = time.perf_counter()
    net = model.net
    dev = _torch_device(device)
    net = net.to(dev).eval()
    n = net.config.size
    h, d = n // 2, net.config.depth
    a = np.asarray(activity_MBq, dtype=np.float32)
    rho = np.asarray(density, dtype=np.float32)
    if a.ndim != 3 or a.shape != rho.shape:
        raise InputError(f"activity and density must be 3-D arrays of one shape, got "
                         f"{a.shape} and {rho.shape}")  # fmt: skip
    nz, ny, nx = a.shape
    shape_h = (nz + 2 * h, ny + 2 * h, nx + 2 * h)
    rho_p = np.pad(rho, h + d, mode="constant", constant_values=AIR_DENSITY_G_CM3)
    rho_t = torch.from_numpy(rho_p).to(dev)
    phi = _features(net, rho_t, shape_h, max(1, int(feature_slab)))
    del rho_t
    sz, sy = shape_h[1] * shape_h[2], shape_h[2]
    r = torch.arange(-h, h + 1, device=dev)
    oz, oy, ox = torch.meshgrid(r, r, r, indexing="ij")
    offsets = (oz * sz + oy * sy + ox).reshape(-1)  # C order, as the network's targets
    src = np.flatnonzero(a > 0)
    zz, yy, xx = np.unravel_index(src, a.shape)
    src_h = torch.from_numpy(((zz + h) * sz + (yy + h) * sy + (xx + h)).astype(np.int64)).to(dev)
    weight = torch.from_numpy(a.ravel()[src].astype(np.float64) * 1e6 * model.emitted_keV).to(dev)
    energy = torch.zeros(int(np.prod(shape_h)), dtype=torch.float64, device=dev)
    if chunk_sources is None:
        chunk_sources = 65536 if dev.type == "cuda" else 8192
    escaped = 0.0
    with torch.no_grad(), progress_bar(len(src), "lvdk kernels", unit="voxels",
                                       enabled=progress) as advance:  # fmt: skip
        for i in range(0, len(src), chunk_sources):
            s = src_h[i : i + chunk_sources]
            tgt = s[:, None] + offsets[None, :]
            logits = net.logits_from_features(phi[s], phi[tgt])
            f = torch.softmax(logits.double(), dim=1)
            w = weight[i : i + chunk_sources]
            energy.index_add_(0, tgt.reshape(-1), (f[:, :-1] * w[:, None]).reshape(-1))
            escaped += float((f[:, -1] * w).sum())
            advance(len(s))
    e = energy.reshape(shape_h)[h : h + nz, h : h + ny, h : h + nx].cpu().numpy()
    total = float(weight.sum()) if len(src) else 0.0
    info = {"sources": int(len(src)), "device": str(dev),
            "escape_fraction_mean": escaped / total if total else 0.0,
            "kernel_seconds": time.perf_counter() - t0}  # fmt: skip
    return e, info


def photon_tail_kernel(photon_kernel: np.ndarray, size: int) -> np.ndarray:
    """The photon kernel (Gy per decay) with its central ``size³`` box set to zero
    (``size`` 0: nothing cut)."""
    k = np.array(photon_kernel, dtype=np.float32, copy=True)
    if size <= 0:
        return k
    cz, cy, cx = (s // 2 for s in k.shape)
    h = size // 2
    k[max(0, cz - h) : cz + h + 1, max(0, cy - h) : cy + h + 1, max(0, cx - h) : cx + h + 1] = 0
    return k


def lvdk_dose(
    activity_MBq: np.ndarray,
    density: np.ndarray,
    spacing_mm: Any,
    *,
    model: Any = None,
    nuclide: str = "Lu-177",
    photon_kernel: Any = None,
    photon_correction: str = "tissue",
    kernel_histories: int | None = None,
    device: str = "auto",
    chunk_sources: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Absorbed-dose rate (Gy/s) by learned kernels + FFT photon tail (see module doc).

    Parameters
    ----------
    activity_MBq : ndarray (z, y, x)
        MBq per voxel (MBq·s for a dose in Gy).
    density : ndarray (z, y, x)
        g/cm³.
    spacing_mm : (x, y, z)
        Voxel size, mm; must be cubic and equal the model's.
    model : LoadedKernelModel or path, optional
        Default: the shipped model.
    nuclide : str
    photon_kernel : mcdose.vdk.Kernel or dict of class → Kernel, optional
        Photon kernel(s) at the grid spacing: one per tissue class for ``"tissue"``, the
        soft-tissue one otherwise; default from the kernel cache (generated by MC if
        missing, :func:`mcdose.vdk.case_kernels`).
    photon_correction : {"tissue", "none", "paper"}
        Density correction of the photon tail (see module doc).
    kernel_histories : int, optional
        Decays of a photon kernel that must be generated (β-part convention of
        :func:`mcdose.vdk.case_kernels`; photons get 10×).
    device : {"auto", "cpu", "cuda"}
        torch device of the kernels; FFT backend chosen alike.
    chunk_sources : int, optional
    progress : bool

    Returns
    -------
    dose_rate_Gy_s : ndarray float32 (z, y, x)
    info : dict
        Model, sources, escape fraction, photon kernel, seconds of each part.
    """
    from lvdk.modelfile import LoadedKernelModel, load_kernel_model
    from mcdose.vdk import DEFAULT_KERNEL_HISTORIES, FFTConvolver, case_kernels, tissue_class_dose

    if photon_correction not in PHOTON_CORRECTIONS:
        raise InputError(f"photon_correction must be one of {', '.join(PHOTON_CORRECTIONS)}, "
                         f"got {photon_correction!r}")  # fmt: skip
    if not isinstance(model, LoadedKernelModel):
        model = load_kernel_model(model)
    model.check_grid(spacing_mm, nuclide)
    a = np.ascontiguousarray(activity_MBq, dtype=np.float32)
    rho = np.ascontiguousarray(density, dtype=np.float32)
    if a.shape != rho.shape or a.ndim != 3:
        raise InputError(f"activity and density must be 3-D arrays of one shape, got "
                         f"{a.shape} and {rho.shape}")  # fmt: skip
    if not (np.isfinite(a).all() and np.isfinite(rho).all()) or a.min() < 0 or rho.min() < 0:
        raise InputError("activity and density must be finite and non-negative")
    t0 = time.perf_counter()
    energy, info = superpose_kernels(a, rho, model, device=device, chunk_sources=chunk_sources,
                                     progress=progress)  # fmt: skip
    voxel_cm3 = float(np.prod([float(s) / 10.0 for s in spacing_mm]))
    mass_kg = np.maximum(rho.astype(np.float64), 1e-4) * voxel_cm3 * 1e-3
    dose = (energy * KEV_TO_J / mass_kg).astype(np.float32)
    t1 = time.perf_counter()
    # the network's box holds the near photons too, unless it learned the electrons alone
    box = model.size if model.part == "total" else 0
    hist = DEFAULT_KERNEL_HISTORIES if kernel_histories is None else int(kernel_histories)
    if photon_correction == "tissue":
        if photon_kernel is None:
            sets = case_kernels(nuclide, spacing_mm, a.shape, mode="tissue", histories=hist,
                                device=device, progress=progress)  # fmt: skip
            photon_kernel = {c: ks[1] for c, ks in sets.items()}
        if not isinstance(photon_kernel, dict):
            raise InputError("photon_correction 'tissue' needs one photon kernel per class")
        tails = {c: dataclasses.replace(k, kernel=photon_tail_kernel(k.kernel, box),
                                        kernel_electron=None, kernel_photon=None,
                                        uncertainty=None)
                 for c, k in photon_kernel.items()}  # fmt: skip
        dose += tissue_class_dose(a, rho, tails, spacing_mm=spacing_mm)
        described = {c: k.describe() for c, k in photon_kernel.items()}
        photon_kernel = None
    elif photon_kernel is None:
        photon_kernel = case_kernels(nuclide, spacing_mm, a.shape, mode="single",
                                     histories=hist, device=device,
                                     progress=progress)["soft_tissue"][1]  # fmt: skip
    if photon_kernel is not None:
        described = photon_kernel.describe()
        tail = photon_tail_kernel(photon_kernel.kernel, box)
        conv = FFTConvolver(tail, backend="auto")
    if photon_kernel is None:
        pass
    elif photon_correction == "paper":
        (d_tail,) = conv.convolve(a, nonnegative=True, factor=photon_kernel.density_g_cm3 * 1e6,
                                  divide_by=rho, floor=0.05)  # fmt: skip
    else:
        (d_tail,) = conv.convolve(a, nonnegative=True, factor=1e6)
    if photon_kernel is not None:
        dose += np.asarray(d_tail, dtype=np.float32)
    info.update({
        "model": str(model.path) if model.path else None,
        "model_voxel_mm": model.voxel_mm,
        "kernel_size": model.size,
        "kernel_part": model.part,
        "photon_kernel": described,
        "photon_correction": photon_correction,
        "photon_tail_seconds": time.perf_counter() - t1,
        "seconds": time.perf_counter() - t0,
    })  # fmt: skip
    return dose, info
