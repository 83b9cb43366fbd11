"""The training losses of the residual CNN, and their names and defaults.

``TrainConfig.loss`` (:mod:`residualnet.train`) picks one; :func:`training_loss` computes it
on a batch of normalised doses (``(N, 1, H, W)``: prediction ``D̂``, truth ``D``, VDK, body
mask, labels):

``mse``
    ``mean (D̂ − D)²`` over the slice (the paper's loss).
``body``
    The squared error weighted 1 inside the body and ``outside_weight`` outside.
``poisson``
    The squared error inside the body weighted by ``1 / (VDK̂ + poisson_floor)``
    (:func:`poisson_term`): a Monte Carlo tally's variance grows with the dose, so this is
    the maximum-likelihood weighting of the noisy target, and it keeps the lesions (≈ 1 in
    normalised units) from drowning the healthy tissue (≈ 0.01) as the plain MSE does.
``organ``, ``mde``
    The MSE plus ``organ_weight`` × the squared (``organ``) or absolute (``mde``) relative
    error of every labelled region's mean dose per slice (:func:`region_mean_error`), the
    per-slice form of the paper's MDE.
``poisson-mde``
    The Poisson term plus the ``mde`` region term; with ``nrmse_weight`` > 0 also a region
    NRMSE term, over the truth's energy (:func:`region_nrmse`, ``nrmse_reference="truth"``)
    or, squared, over the VDK's (:func:`region_relative_mse`, ``"vdk"``, organs only: the
    shipped recipe; its weights come from the inputs alone, so its minimiser is the truth's
    conditional mean).  Measured effects of each: docs/residualnet.md.

The names and defaults need no torch (the command line reads them); torch is imported when
a loss is computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["LESION_LABEL_BASE", "LOSSES", "NRMSE_FLOOR_DEFAULT", "NRMSE_REFERENCES",
           "REGION_LOSS_DEFAULTS", "poisson_term", "region_mean_error", "region_nrmse",
           "region_relative_mse", "training_loss"]

#: ``TrainConfig.loss`` choices
LOSSES = ("mse", "body", "poisson", "organ", "mde", "poisson-mde")
#: (organ_weight, organ_floor) defaults of the region-mean losses
REGION_LOSS_DEFAULTS = {"organ": (1e-2, 0.05), "mde": (1e-3, 0.01), "poisson-mde": (2e-2, 0.01)}
#: ``TrainConfig.nrmse_floor`` default: the healthy liver's normalised dose
NRMSE_FLOOR_DEFAULT = 0.05
#: ``TrainConfig.nrmse_reference`` choices: what the NRMSE term's voxel errors are divided by
NRMSE_REFERENCES = ("truth", "vdk")
#: label ids from this value up are lesions (the phantoms' ``mcdose.phantoms.LESION_BASE``,
#: kept here so that the loss does not import the phantom generator)
LESION_LABEL_BASE = 100


def _torch() -> Any:
    import torch

    return torch


def _region_groups(pred: Tensor, labels: Tensor, min_voxels: int,
                   lesion_weight: float, lesion_min_voxels: int | None,
                   lesion_base: int) -> tuple[Tensor, Tensor, int, Tensor,
                                               Tensor]:
    """The (slice, label) groups shared by the region terms.

    Returns the flat group index of every voxel, the voxel count per group, the number of
    groups, the mask of qualifying groups (label ≠ 0, enough voxels), and the weight of each
    qualifying group (``lesion_weight`` for lesions, else 1).
    """
    n = pred.shape[0]
    lab = labels.reshape(n, -1).round().long()
    n_labels = int(lab.max()) + 1 if lab.numel() else 1
    index = (_torch().arange(n, device=lab.device)[:, None] * n_labels + lab).reshape(-1)
    size = n * n_labels
    count = _torch().zeros(size, device=pred.device).index_add_(
        0, index, _torch().ones(index.numel(), device=pred.device))
    lesion_min = min_voxels if lesion_min_voxels is None else lesion_min_voxels
    is_lesion = (_torch().arange(n_labels, device=pred.device) >= lesion_base).repeat(n)
    keep = count >= _torch().where(is_lesion, float(lesion_min), float(min_voxels))
    keep.view(n, n_labels)[:, 0] = False
    weight = _torch().where(is_lesion[keep], float(lesion_weight), 1.0)
    return index, count, size, keep, weight


def region_mean_error(pred: Tensor, target: Tensor, labels: Tensor,
                      floor: float, min_voxels: int, power: int = 2, lesion_weight: float = 1.0,
                      lesion_min_voxels: int | None = None,
                      lesion_base: int = LESION_LABEL_BASE) -> Tensor:
    """Mean squared (or absolute) relative error of the per-slice region means.

    The region term of ``loss="organ"`` (``power=2``) and ``loss="mde"`` (``power=1``).

    Parameters
    ----------
    pred, target
        ``(N, 1, H, W)`` predicted and true normalised dose.
    labels
        ``(N, 1, H, W)`` label map (float or integer; 0 = outside the body, left out).
    floor
        Normalised dose added to the true mean in the denominator.
    min_voxels
        Regions with fewer voxels in a slice are left out.
    power
        2: squared relative error; 1: absolute relative error.
    lesion_weight
        Weight of a lesion's (label ≥ ``lesion_base``) term; other regions weigh 1.
    lesion_min_voxels
        ``min_voxels`` for lesions (None: ``min_voxels``).
    lesion_base
        First lesion label.

    Returns
    -------
    Tensor
        Scalar weighted mean over the qualifying (slice, label ≠ 0) pairs of
        ``|(D̄_pred − D̄_GT) / (D̄_GT + floor)|^power``; 0 when no region qualifies.
    """
    p, t = pred.reshape(-1).float(), target.reshape(-1).float()
    index, count, size, keep, weight = _region_groups(
        pred, labels, min_voxels, lesion_weight, lesion_min_voxels, lesion_base)
    if not bool(keep.any()):
        return p.sum() * 0.0
    sum_pred = _torch().zeros(size, device=p.device).index_add_(0, index, p)
    sum_true = _torch().zeros(size, device=p.device).index_add_(0, index, t)
    mean_pred, mean_true = sum_pred[keep] / count[keep], sum_true[keep] / count[keep]
    relative = (mean_pred - mean_true) / (mean_true + floor)
    error = relative.abs() if power == 1 else relative**2
    return (weight * error).sum() / weight.sum().clamp_min(1e-12)


def _region_energy_ratio(pred: Tensor, target: Tensor, reference: Tensor,
                         labels: Tensor, floor: float, min_voxels: int,
                         lesion_weight: float, lesion_min_voxels: int | None,
                         lesion_base: int) -> tuple[Tensor | None, Tensor]:
    """``Σ (D̂ − D)² / Σ (R² + floor²)`` of every qualifying (slice, region) pair and its
    weight (see :func:`_region_groups`); ``(None, weight)`` when no pair qualifies."""
    p, t = pred.reshape(-1).float(), target.reshape(-1).float()
    r = reference.reshape(-1).float()
    index, count, size, keep, weight = _region_groups(
        pred, labels, min_voxels, lesion_weight, lesion_min_voxels, lesion_base)
    if not bool(keep.any()):
        return None, weight
    squared_error = _torch().zeros(size, device=p.device).index_add_(0, index, (p - t) ** 2)
    squared_ref = _torch().zeros(size, device=p.device).index_add_(0, index, r**2)
    return squared_error[keep] / (squared_ref[keep] + count[keep] * floor**2), weight


def region_nrmse(pred: Tensor, target: Tensor, labels: Tensor, floor: float,
                 min_voxels: int, lesion_weight: float = 1.0,
                 lesion_min_voxels: int | None = None,
                 lesion_base: int = LESION_LABEL_BASE, eps: float = 1e-6) -> Tensor:
    """Mean per-slice region NRMSE: the term that ``TrainConfig.nrmse_weight`` weighs.

    For every (slice, region) pair that qualifies as in :func:`region_mean_error`,
    ``√(Σ (D̂ − D)² / Σ (D² + floor²) + eps)`` over the region's voxels in the slice — the
    paper's NRMSE of that region, restricted to one slice — then the weighted mean over the
    pairs.  Unlike a voxel-wise MSE, every region's *relative* voxel error counts alike,
    whatever its dose level; unlike the region-mean term, it sees how the dose is spread
    inside the region, not only its mean.

    Parameters
    ----------
    pred, target, labels, min_voxels, lesion_weight, lesion_min_voxels, lesion_base
        As in :func:`region_mean_error`.
    floor
        Normalised dose whose square is added per voxel to the denominator (keeps the
        near-zero regions from dominating).
    eps
        Added under the square root (finite gradient at zero error).

    Returns
    -------
    Tensor
        Scalar (dimensionless); 0 when no region qualifies.
    """
    ratio, weight = _region_energy_ratio(pred, target, target, labels, floor, min_voxels,
                                         lesion_weight, lesion_min_voxels, lesion_base)
    if ratio is None:
        return pred.float().sum() * 0.0
    return (weight * _torch().sqrt(ratio + eps)).sum() / weight.sum().clamp_min(1e-12)


def region_relative_mse(pred: Tensor, target: Tensor, reference: Tensor,
                        labels: Tensor, floor: float, min_voxels: int,
                        lesion_weight: float = 1.0, lesion_min_voxels: int | None = None,
                        lesion_base: int = LESION_LABEL_BASE) -> Tensor:
    """Mean per-slice region squared error relative to a reference dose's energy.

    For every (slice, region) pair that qualifies as in :func:`region_mean_error`,
    ``Σ (D̂ − D)² / Σ (R² + floor²)`` over the region's voxels in the slice, then the weighted
    mean over the pairs: the square of :func:`region_nrmse` with the reference ``R`` (the
    VDK estimate, an input of the network) in place of the truth ``D`` in the denominator.
    Every voxel's squared error is weighed by a factor that does not depend on the truth, so
    the term's minimiser is the conditional mean of the truth given the inputs, as for a
    plain MSE, while every region's relative error counts alike whatever its dose level.

    Parameters
    ----------
    pred, target, labels, min_voxels, lesion_weight, lesion_min_voxels, lesion_base
        As in :func:`region_mean_error`.
    reference
        ``(N, 1, H, W)`` normalised reference dose (the VDK).
    floor
        Normalised dose whose square is added per voxel to the denominator.

    Returns
    -------
    Tensor
        Scalar (dimensionless); 0 when no region qualifies.
    """
    ratio, weight = _region_energy_ratio(pred, target, reference.float().clamp_min(0.0),
                                         labels, floor, min_voxels, lesion_weight,
                                         lesion_min_voxels, lesion_base)
    if ratio is None:
        return pred.float().sum() * 0.0
    return (weight * ratio).sum() / weight.sum().clamp_min(1e-12)


def poisson_term(pred: Tensor, target: Tensor, body: Tensor,
                  vdk: Tensor, config: Any) -> Tensor:
    weight = body / (vdk.float().clamp_min(0.0) + config.poisson_floor)
    return (weight * (pred - target) ** 2).sum() / body.sum().clamp_min(1.0)


def training_loss(pred: Tensor, target: Tensor, body: Tensor, vdk: Tensor,
          config: Any, labels: Tensor | None = None) -> Tensor:
    """The training loss on normalised doses: ``config.loss`` with its options.

    ``config`` is a :class:`residualnet.train.TrainConfig` (read for ``loss``,
    ``poisson_floor``, ``outside_weight``, ``organ_*``, ``lesion_*``, ``nrmse_*``).  ``labels``
    (the regions of the region losses) default to the body mask.
    """
    pred = pred.float()
    if config.loss == "mse":
        return _torch().nn.functional.mse_loss(pred, target)
    if config.loss in REGION_LOSS_DEFAULTS:
        regions = body if labels is None else labels
        voxels = (poisson_term(pred, target, body, vdk, config) if config.loss == "poisson-mde"
                  else _torch().nn.functional.mse_loss(pred, target))
        total = voxels + config.organ_weight * region_mean_error(
            pred, target, regions, config.organ_floor, config.organ_min_voxels,
            power=2 if config.loss == "organ" else 1, lesion_weight=config.lesion_weight,
            lesion_min_voxels=config.lesion_min_voxels,
        )
        if config.nrmse_weight > 0 and config.nrmse_reference == "vdk":
            total = total + config.nrmse_weight * region_relative_mse(
                pred, target, vdk, regions, config.nrmse_floor, config.organ_min_voxels,
                lesion_weight=0.0)
        elif config.nrmse_weight > 0:
            total = total + config.nrmse_weight * region_nrmse(
                pred, target, regions, config.nrmse_floor, config.organ_min_voxels,
                lesion_weight=config.lesion_weight, lesion_min_voxels=config.lesion_min_voxels)
        return total
    if config.loss == "poisson":
        return poisson_term(pred, target, body, vdk, config)
    weight = body + config.outside_weight * (1.0 - body)
    return (weight * (pred - target) ** 2).sum() / weight.sum().clamp_min(1e-12)
