"""Kernel-model files: weights, architecture, voxel size, nuclide and provenance in one file.

A model file is a ``torch.save`` dict, loaded with ``weights_only=True`` (loading never runs
code from the file)::

    format          "lvdk-model"
    format_version  1
    architecture    ModelConfig.to_dict()   (kernel size, channels, depth)
    state_dict      weights and batch-norm statistics (CPU tensors)
    voxel_mm        cubic voxel size the kernels were learned for (mm)
    nuclide         e.g. "Lu-177"
    emitted_keV     energy emitted per decay that the fractions refer to (keV)
    part            "total" (kernels of electrons and photons) or "electron" (the electron
                    emissions only; photons by FFT at dose time); absent: "total"
    training        loss, epochs, data (patch file parameters, histories), metrics
    provenance      mcdose.provenance.provenance(...) + torch version

The shipped model (:data:`lvdk.DEFAULT_MODEL_NAME`, package data) is used when no file is
given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lvdk import DEFAULT_MODEL_NAME
from lvdk.model import KernelNet, ModelConfig, count_parameters
from mcdose.errors import InputError

__all__ = ["FORMAT", "LoadedKernelModel", "default_model_path", "load_kernel_model",
           "save_kernel_model"]  # fmt: skip

FORMAT = "lvdk-model"
FORMAT_VERSION = 1
#: relative tolerance between the grid's voxel size and the model's
VOXEL_RTOL = 0.01


@dataclass
class LoadedKernelModel:
    """A kernel network in eval mode and what it was trained for."""

    net: KernelNet
    voxel_mm: float
    nuclide: str
    emitted_keV: float
    path: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)
    #: "total" (the kernels hold electrons and photons) or "electron" (electrons only: the
    #: photons come from the photon kernels' FFT), see :data:`lvdk.train.PARTS`
    part: str = "total"

    @property
    def size(self) -> int:
        return self.net.config.size

    def check_grid(self, spacing_mm: Any, nuclide: str) -> None:
        """Raise :class:`InputError` unless the grid is cubic at the model's voxel size and
        the nuclide is the model's."""
        from mcdose.nuclides import normalize_nuclide_name

        where = str(self.path or "lvdk model")
        sp = [float(v) for v in spacing_mm]
        if not all(math.isclose(v, self.voxel_mm, rel_tol=VOXEL_RTOL) for v in sp):
            raise InputError(
                f"{where}: learned kernels are for {self.voxel_mm:g} mm cubic voxels, the dose "
                f"grid has {'×'.join(f'{v:g}' for v in sp)} mm (use --grid or another model)"
            )
        if normalize_nuclide_name(nuclide) != normalize_nuclide_name(self.nuclide):
            raise InputError(f"{where}: learned kernels are for {self.nuclide}, not {nuclide}")


def default_model_path() -> Path:
    """Path of the shipped model file (package data of :mod:`lvdk`)."""
    return Path(__file__).resolve().parent / "data" / DEFAULT_MODEL_NAME


def save_kernel_model(path: str | Path, net: KernelNet, *, voxel_mm: float, nuclide: str,
                      emitted_keV: float, part: str = "total",
                      training: dict | None = None) -> Path:  # fmt: skip
    """Write a model file atomically (see module doc)."""
    from mcdose.io.atomic import atomic_path
    from mcdose.provenance import provenance

    path = Path(path)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": net.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "voxel_mm": float(voxel_mm),
        "nuclide": str(nuclide),
        "emitted_keV": float(emitted_keV),
        "part": str(part),
        "parameters": count_parameters(net),
        "training": training or {},
        "provenance": {**provenance(method="lvdk-train"), "torch": str(torch.__version__)},
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return path


def load_kernel_model(path: str | Path | None = None, *, device: str = "cpu"
                      ) -> LoadedKernelModel:  # fmt: skip
    """Load a model file (default: the shipped one).

    Raises
    ------
    InputError
        Missing file, not a model file, newer format, architecture not matching the weights.
    """
    path = Path(path) if path is not None else default_model_path()
    where = str(path)
    if not path.is_file():
        raise InputError(f"{where}: lvdk model file does not exist")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"{where}: not a readable lvdk model file "
                         f"({type(exc).__name__})") from None  # fmt: skip
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise InputError(f"{where}: not an lvdk model file")
    if int(rec.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{where}: model format {rec['format_version']} is newer than this "
                         f"mcdose reads ({FORMAT_VERSION})")  # fmt: skip
    try:
        net = KernelNet(ModelConfig(**rec["architecture"]))
        net.load_state_dict(rec["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise InputError(f"{where}: architecture does not match the weights "
                         f"({str(exc).splitlines()[0][:80]})") from None  # fmt: skip
    part = str(rec.get("part", "total"))  # (files before the option: whole kernels)
    if part not in ("total", "electron"):
        raise InputError(f"{where}: unknown kernel part {part!r}")
    net.eval().to(device)
    return LoadedKernelModel(net, float(rec["voxel_mm"]), str(rec["nuclide"]),
                             float(rec["emitted_keV"]), path,
                             {k: v for k, v in rec.items() if k != "state_dict"},
                             part)  # fmt: skip
