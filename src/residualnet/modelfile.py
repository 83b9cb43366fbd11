"""Model files: weights + architecture + normalisation + voxel size + provenance, one file.

A model file is a ``torch.save`` dict (loaded with ``weights_only=True``, so loading never
runs code from the file)::

    format          "residualnet-model"
    format_version  1
    architecture    ModelConfig.to_dict()       (pack size, stem, U-Net widths ...)
    state_dict      network weights and batch-norm statistics (CPU tensors)
    normalization   Normalization.to_dict()     (c_A, c_D, density scale, method)
    voxel_mm        [x, y, z] voxel size the network was trained on (mm)
    nuclide         e.g. "Lu-177"
    parameters      number of trainable parameters
    provenance      mcdose.provenance.provenance(...) + torch version, seed, dataset
    training        epochs, best epoch and losses, options (informative)

:func:`load_model` raises :class:`mcdose.errors.InputError` with one line naming the file
for anything it cannot use: a missing file, a file that is not a model file, a newer format
version, an architecture that does not match the weights, or — when the caller says what
it expects — a different voxel size or nuclide.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mcdose.errors import InputError
from mcdose.io.atomic import atomic_path
from mcdose.provenance import provenance
from residualnet.model import ModelConfig, ResidualDoseNet, count_parameters
from residualnet.normalization import Normalization

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadedModel",
    "load_model",
    "model_record",
    "same_nuclide",
    "save_model",
]

FORMAT = "residualnet-model"
FORMAT_VERSION = 1
#: relative tolerance on each voxel dimension when the caller gives an expected voxel size
VOXEL_RTOL = 0.01


@dataclass
class LoadedModel:
    """A network ready for inference (eval mode) and what it was trained for."""

    net: ResidualDoseNet
    config: ModelConfig
    normalization: Normalization
    voxel_mm: tuple[float, float, float]
    nuclide: str
    provenance: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: name of the shipped model (:mod:`residualnet.shipped`) this is, else None; a shipped
    #: model is applied to other grids by resampling to its voxel size
    shipped: str | None = None

    @property
    def parameters(self) -> int:
        return count_parameters(self.net)

    def to(self, device: str | torch.device) -> LoadedModel:
        self.net.to(device)
        return self

    def check_compatible(
        self,
        *,
        voxel_mm: Any = None,
        nuclide: str | None = None,
        voxel_rtol: float = VOXEL_RTOL,
        what: str = "the data",
    ) -> None:
        """Raise ``InputError`` unless data of this voxel size / nuclide suits the model.

        Each voxel dimension (mm) must match the training voxel size within ``voxel_rtol``;
        nuclide spellings are compared with :func:`same_nuclide`.
        """
        where = self.path if self.path is not None else "model"
        if voxel_mm is not None:
            want = _voxel_triple(voxel_mm, "expected voxel size")
            if any(
                abs(a - b) > voxel_rtol * b for a, b in zip(want, self.voxel_mm, strict=True)
            ):
                raise InputError(
                    f"{where}: model trained for voxels of {_fmt(self.voxel_mm)} mm, {what} "
                    f"has {_fmt(want)} mm; resample the images or train a model for this grid"
                )
        if nuclide is not None and not same_nuclide(nuclide, self.nuclide):
            raise InputError(f"{where}: model trained for {self.nuclide}, {what} is {nuclide}")


def _nuclide_key(name: str) -> tuple[str, str, str] | str:
    text = name.strip().replace("_", "-").replace(" ", "")
    for pattern, order in (
        (r"([A-Za-z]{1,2})-?(\d{1,3})(m?)", (0, 1, 2)),
        (r"(\d{1,3})(m?)-?([A-Za-z]{1,2})", (2, 0, 1)),
    ):
        m = re.fullmatch(pattern, text)
        if m:
            groups = m.groups()
            return tuple(groups[i].lower() for i in order)  # type: ignore[return-value]
    return text.lower()


def same_nuclide(a: str, b: str) -> bool:
    """True for two spellings of one nuclide: ``"Lu-177"``, ``"lu177"``, ``"177Lu"``."""
    return _nuclide_key(a) == _nuclide_key(b)


def _voxel_triple(voxel_mm: Any, what: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in voxel_mm)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be 3 numbers (x, y, z) in mm, got {voxel_mm!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{what} must be 3 positive numbers (x, y, z) in mm, got {voxel_mm!r}")
    return values  # type: ignore[return-value]


def model_record(
    net: ResidualDoseNet,
    normalization: Normalization,
    *,
    voxel_mm: Any,
    nuclide: str,
    training: dict[str, Any] | None = None,
    **provenance_extra: Any,
) -> dict[str, Any]:
    """The dict that :func:`save_model` writes (also embedded in checkpoints)."""
    net = getattr(net, "module", net)  # unwrap DDP
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": net.config.to_dict(),
        "state_dict": state,
        "normalization": normalization.to_dict(),
        "voxel_mm": list(_voxel_triple(voxel_mm, "voxel_mm")),
        "nuclide": str(nuclide),
        "parameters": count_parameters(net),
        "provenance": provenance(
            method="residualnet", torch=str(torch.__version__), **provenance_extra
        ),
        "training": dict(training or {}),
    }


def save_model(
    path: str | os.PathLike[str],
    net: ResidualDoseNet,
    normalization: Normalization,
    *,
    voxel_mm: Any,
    nuclide: str,
    training: dict[str, Any] | None = None,
    **provenance_extra: Any,
) -> Path:
    """Write a model file atomically (format in the module docstring).

    Parameters
    ----------
    path
        Destination (``*.pt``); its folder must exist.
    net
        Trained network (a DDP wrapper is unwrapped).
    normalization
        Its normalisation constants.
    voxel_mm
        Training voxel size ``(x, y, z)`` in mm.
    nuclide
        Training nuclide.
    training
        Informative training summary (epochs, losses, options).
    **provenance_extra
        Added to the provenance record (seed, dataset...).
    """
    path = Path(path)
    record = model_record(
        net, normalization, voxel_mm=voxel_mm, nuclide=nuclide, training=training,
        **provenance_extra,
    )
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return path


def _load_record(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a model file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a residualnet model file (not a PyTorch archive)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            f"{path}: not a residualnet model file (it holds Python objects, not a "
            f"weights-only model record)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure means "not a model file"
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = (lines or [type(exc).__name__])[0][:120]
        raise InputError(f"{path}: not a residualnet model file ({reason})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise InputError(
            f"{path}: not a residualnet model file (format {found!r}, expected {FORMAT!r})"
        )
    return record


def load_model(
    path: str | os.PathLike[str],
    *,
    expected_voxel_mm: Any = None,
    expected_nuclide: str | None = None,
    device: str | torch.device = "cpu",
    voxel_rtol: float = VOXEL_RTOL,
) -> LoadedModel:
    """Load a model file for inference.

    Parameters
    ----------
    path
        Model file written by :func:`save_model` (``mcdose train-residual``).
    expected_voxel_mm
        Voxel size ``(x, y, z)`` (mm) of the data it will be applied to; each dimension
        must match the training voxel size within ``voxel_rtol`` (1 %).
    expected_nuclide
        Nuclide of the data (``"Lu-177"``, ``"lu177"`` and ``"177Lu"`` are the same).
    device
        Where to put the network.

    Returns
    -------
    LoadedModel
        Network in eval mode plus normalisation, voxel size, nuclide and provenance.

    Raises
    ------
    InputError
        One line naming the file: missing, not a model file, unsupported format version,
        architecture/weights mismatch, voxel size or nuclide mismatch.
    """
    path = Path(path)
    record = _load_record(path)
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{path}: model file has no valid format_version")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{path}: model format version {version} is newer than this residualnet "
            f"understands ({FORMAT_VERSION}); upgrade mcdose"
        )
    if version < 1:
        raise InputError(f"{path}: unsupported model format version {version}")
    try:
        config = ModelConfig.from_dict(dict(record["architecture"]))
        normalization = Normalization.from_dict(dict(record["normalization"]))
        voxel_mm = _voxel_triple(record["voxel_mm"], "voxel_mm")
        nuclide = str(record["nuclide"])
        state = record["state_dict"]
    except KeyError as exc:
        raise InputError(f"{path}: model file lacks {exc.args[0]!r}") from None
    except (InputError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: incompatible model file: {exc}") from None
    net = ResidualDoseNet(config)
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise InputError(f"{path}: weights do not match the architecture ({first})") from None
    loaded = LoadedModel(
        net=net.eval(),
        config=config,
        normalization=normalization,
        voxel_mm=voxel_mm,
        nuclide=nuclide,
        provenance=dict(record.get("provenance") or {}),
        training=dict(record.get("training") or {}),
        path=path,
    )
    loaded.check_compatible(
        voxel_mm=expected_voxel_mm, nuclide=expected_nuclide, voxel_rtol=voxel_rtol
    )
    return loaded.to(device)


def _fmt(voxel: tuple[float, float, float]) -> str:
    return "×".join(f"{v:g}" for v in voxel)
