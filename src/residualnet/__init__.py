"""residualnet: the residual CNN of mcdose (DblurDoseNet-style).

A network that learns ``Monte Carlo − VDK`` dose from SPECT activity and CT density, slice
pack by slice pack, and adds it to the VDK dose (Li, Fessler, Mikell, Wilderman, Dewaraja,
Med. Phys. 49 (2022) 1216).  Modules, one job each:

* :mod:`residualnet.model` — the network (:class:`ModelConfig`, :class:`ResidualDoseNet`);
* :mod:`residualnet.normalization` — exact, invertible input/output scaling;
* :mod:`residualnet.data` — manifest, split by case, slice packs streamed from case files;
* :mod:`residualnet.train` — training (Adam, ReduceLROnPlateau, AMP, checkpoints, DDP);
* :mod:`residualnet.losses` — the training losses, their names and defaults (torch is
  imported only when a loss is computed);
* :mod:`residualnet.modelfile` — model files (:func:`save_model`, :func:`load_model`);
* :mod:`residualnet.shipped` — the models shipped with mcdose and their cards (no torch);
* :mod:`residualnet.infer` — whole-volume prediction (:func:`predict_case`);
* :mod:`residualnet.evaluate` — MDE/NRMSE report against Monte Carlo;
* :mod:`residualnet.synthetic` — tiny synthetic case files for tests and smoke runs.

Importing this package does not import torch; the names below are loaded on first use.
Training and evaluation are the functions ``residualnet.train.train`` and
``residualnet.evaluate.evaluate`` (the module names are taken).
Documentation: ``docs/residualnet.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "LoadedModel",
    "ModelConfig",
    "Normalization",
    "ResidualDoseNet",
    "TrainConfig",
    "load_model",
    "predict_case",
    "predict_case_file",
    "save_model",
]

_LAZY = {
    "LoadedModel": "residualnet.modelfile",
    "load_model": "residualnet.modelfile",
    "save_model": "residualnet.modelfile",
    "ModelConfig": "residualnet.model",
    "ResidualDoseNet": "residualnet.model",
    "Normalization": "residualnet.normalization",
    "TrainConfig": "residualnet.train",
    "predict_case": "residualnet.infer",
    "predict_case_file": "residualnet.infer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'residualnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
