"""The accuracy goals on the validation cases, measured during training.

The validation pass of :func:`residualnet.train.train` streams every slice of the ``val``
cases once.  :class:`RegionSums` adds up, per case and label value, the sums that make each
region's 3D MDE and NRMSE (of the CNN and of the VDK, against ``dose/mc``)::

    n, Σp, Σv, Σt, Σ(p − t)², Σ(v − t)², Σt²

(``p`` CNN, ``v`` VDK, ``t`` ground truth, normalised doses).  A region is a set of label
values (:func:`residualnet.evaluate.scored_regions` applied to the label values themselves),
so its sums are sums of label rows, and

    MDE = |Σp − Σt| / Σt,        NRMSE = sqrt(Σ(p − t)² / Σt²)

are exactly :func:`mcdose.metrics.mde` and :func:`~mcdose.metrics.nrmse` over the region: the
normalisation multiplies a case's doses by one constant, which both metrics ignore.  The
CNN's slice is post-processed as by :func:`residualnet.infer.predict_case` (clipped at 0,
zero outside the body).  The regions are then summarised and checked against the issue's
goals with the evaluation's own code (:func:`~residualnet.evaluate.summarize`,
:func:`~residualnet.evaluate.accuracy_goals`; VDK as the reference, MC-on-SPECT is not read
during training), so the validation sees the same goals the test report does.

:class:`GoalScore` condenses them: the number of goals missed and the mean ratio of the CNN's
value to its goal's threshold (< 1 where a goal is met).  ``select_by="goals"`` in
:class:`~residualnet.train.TrainConfig` keeps the epoch with the fewest goals missed, ties
broken by the lower mean ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from residualnet.evaluate import (
    accuracy_goals,
    counted_goals,
    goal_ratio,
    scored_regions,
    summarize,
)

__all__ = ["GoalScore", "RegionSums", "SUM_COLUMNS"]

#: columns of a case's per-label sums
SUM_COLUMNS = ("n", "cnn", "vdk", "truth", "cnn_sq_err", "vdk_sq_err", "truth_sq")


@dataclass(frozen=True)
class GoalScore:
    """The validation cases' standing against the accuracy goals.

    Attributes
    ----------
    missed
        Goals not met (of ``total``).
    total
        Goals that could be checked.
    ratio
        Mean over the goals of CNN value / goal threshold (VDK's value, half of it for the
        lesion halving); below 1 where a goal is met.
    goals
        The goals as :func:`residualnet.evaluate.accuracy_goals` gives them.
    """

    missed: int
    total: int
    ratio: float
    goals: tuple[dict[str, Any], ...] = ()

    def key(self) -> tuple[int, float]:
        """Sort key, smaller is better: (goals missed, mean ratio)."""
        return (self.missed, self.ratio)

    def better_than(self, other: GoalScore | None) -> bool:
        """Fewer goals missed, or as many and a lower mean ratio."""
        return other is None or self.key() < other.key()


class RegionSums:
    """Per-case, per-label sums of the validation pass (see the module docstring).

    Parameters
    ----------
    label_names
        Per validation case (in the dataset's case order), its label value → name.
    voxel_ml
        Per case, the volume of a voxel in ml (the lesion size rows).
    device
        Where the sums are accumulated.
    """

    def __init__(self, label_names: Sequence[Mapping[int, str]], voxel_ml: Sequence[float],
                 device: torch.device | str = "cpu"):
        if len(label_names) != len(voxel_ml):
            raise ValueError("one voxel volume per case is needed")
        self.label_names = [dict(names) for names in label_names]
        self.voxel_ml = [float(v) for v in voxel_ml]
        self.n_labels = [max(names, default=0) + 1 for names in self.label_names]
        self._offsets = np.concatenate([[0], np.cumsum(self.n_labels)]).astype(np.int64)
        self.sums = torch.zeros((int(self._offsets[-1]), len(SUM_COLUMNS)),
                                dtype=torch.float64, device=device)

    def reset(self) -> None:
        """Zero the sums (before each validation pass)."""
        self.sums.zero_()

    @torch.no_grad()
    def add(self, case: torch.Tensor, labels: torch.Tensor, pred: torch.Tensor,
            vdk: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of centre slices.

        Parameters
        ----------
        case
            ``(N,)`` case number of each slice.
        labels
            ``(N, 1, H, W)`` label map (float or integer; 0 outside the body).
        pred, vdk, target
            ``(N, 1, H, W)`` normalised CNN output, VDK and ground truth.
        """
        n = labels.shape[0]
        lab = labels.reshape(n, -1).round().long()
        body = lab != 0
        p = (pred.reshape(n, -1).double().clamp_min(0.0)) * body
        v, t = vdk.reshape(n, -1).double(), target.reshape(n, -1).double()
        offsets = torch.as_tensor(self._offsets[:-1], device=lab.device)[case.to(lab.device)]
        limit = torch.as_tensor(self.n_labels, device=lab.device)[case.to(lab.device)]
        if bool((lab >= limit[:, None]).any()) or bool((lab < 0).any()):
            raise ValueError("a label value is not in the case's label names")
        row = (offsets[:, None] + lab).reshape(-1).to(self.sums.device)
        columns = torch.stack([torch.ones_like(t), p, v, t, (p - t) ** 2, (v - t) ** 2, t * t],
                              dim=-1).reshape(-1, len(SUM_COLUMNS))
        self.sums.index_add_(0, row, columns.to(self.sums.device))

    def reduce(self, all_reduce: Callable[[torch.Tensor], None]) -> None:
        """Sum over processes in place (``all_reduce`` e.g. ``torch.distributed.all_reduce``)."""
        all_reduce(self.sums)

    def cases(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per case its regions' metrics, in the structure of ``report.json``'s ``cases``.

        Regions without voxels or with no true dose are left out.
        """
        sums = self.sums.cpu().numpy()
        out: list[dict[str, Any]] = []
        for c, names_c in enumerate(self.label_names):
            rows = sums[self._offsets[c]:self._offsets[c + 1]]
            regions: dict[str, Any] = {}
            for name, member in scored_regions(names_c, np.arange(self.n_labels[c])).items():
                s = dict(zip(SUM_COLUMNS, rows[member].sum(axis=0), strict=True))
                if s["n"] <= 0 or s["truth"] <= 0 or s["truth_sq"] <= 0:
                    continue
                regions[name] = {
                    "voxels": int(s["n"]),
                    "volume_ml": float(s["n"]) * self.voxel_ml[c],
                    **{method: {
                        "mde": abs(s[method] - s["truth"]) / s["truth"],
                        "nrmse": math.sqrt(s[f"{method}_sq_err"] / s["truth_sq"]),
                    } for method in ("vdk", "cnn")},
                }
            out.append({"case": names[c] if names else str(c), "regions": regions})
        return out

    def score(self) -> GoalScore:
        """The goals on the summed cases (see :class:`GoalScore`)."""
        summary = summarize(self.cases(), ["vdk", "cnn"])
        goals = counted_goals({"goals": accuracy_goals(summary)})
        ratios = [goal_ratio(g) for g in goals]
        return GoalScore(
            missed=sum(not g["passed"] for g in goals), total=len(goals),
            ratio=float(np.mean(ratios)) if ratios else math.nan, goals=tuple(goals),
        )
