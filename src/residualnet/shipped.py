"""The models that ship with mcdose: package data in ``residualnet/models/``, each with its card.

Every shipped model is three files with one stem::

    <name>.pt      the model file (residualnet.modelfile format, loaded weights-only)
    <name>.json    its model card as data: training data, recipe, compute, external-set
                   evaluation, intended use and limits (written by
                   ``benchmarks/residualnet_ship.py``)
    <name>.md      the same card for people

``mcdose dose --method cnn`` without ``--model`` uses :data:`DEFAULT_MODEL`: its inputs are
resampled to the model's voxel size and the dose brought back to the dose grid
(:func:`mcdose.dosimetry.methods.compute_dose_rate`).  ``mcdose models`` lists them.

No torch here: listing the models and reading their cards needs none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcdose.errors import InputError

__all__ = ["DEFAULT_MODEL", "MODELS_DIR", "ShippedModel", "file_sha256", "shipped_model",
           "shipped_models"]

#: folder of the shipped models (package data)
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: the model ``mcdose dose --method cnn`` uses when no ``--model`` is given
DEFAULT_MODEL = "lu177-4mm-medium-v2"


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its files and its card.

    Attributes
    ----------
    name
        The stem of its files, e.g. ``"lu177-4mm-medium-v2"``.
    path
        The model file (``.pt``).
    card
        The card (``.json``) as a dict.
    card_markdown
        The card for people (``.md``), or ``""`` when missing.
    """

    name: str
    path: Path
    card: dict[str, Any]
    card_markdown: str = ""

    @property
    def nuclide(self) -> str:
        return str(self.card.get("nuclide", ""))

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) the model was trained for, mm."""
        x, y, z = (float(v) for v in self.card.get("voxel_mm", (0.0, 0.0, 0.0)))
        return (x, y, z)

    def summary(self) -> str:
        """One line: name, nuclide, voxel, goals met on the external set, file size."""
        goals = self.card.get("evaluation", {}).get("goals_met")
        met = f", external set: {goals}" if goals else ""
        size = self.path.stat().st_size / 1e6 if self.path.exists() else float("nan")
        voxel = "×".join(f"{v:g}" for v in self.voxel_mm)
        default = " (default)" if self.name == DEFAULT_MODEL else ""
        return (f"{self.name}{default}: {self.nuclide}, {voxel} mm voxels{met}; "
                f"{self.path} ({size:.1f} MB)")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(card_path: Path) -> ShippedModel:
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{card_path}: unreadable model card ({exc})") from None
    name = card_path.stem
    md = card_path.with_suffix(".md")
    return ShippedModel(name=name, path=card_path.with_suffix(".pt"), card=card,
                        card_markdown=md.read_text(encoding="utf-8") if md.exists() else "")


def shipped_models(folder: Path | None = None) -> list[ShippedModel]:
    """The shipped models that have both a model file and a card, by name."""
    folder = MODELS_DIR if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    return [_load(p) for p in sorted(folder.glob("*.json")) if p.with_suffix(".pt").exists()]


def shipped_model(name: str | None = None, folder: Path | None = None) -> ShippedModel:
    """A shipped model by name (default :data:`DEFAULT_MODEL`).

    Raises
    ------
    InputError
        No such model in this install (one line, naming the ones there are).
    """
    name = DEFAULT_MODEL if name is None else name
    models = {m.name: m for m in shipped_models(folder)}
    if name not in models:
        there = ", ".join(models) or "none"
        raise InputError(f"no shipped residual-CNN model {name!r} in this install (shipped: "
                         f"{there}); give --model MODEL (a file from mcdose train-residual)")
    return models[name]
