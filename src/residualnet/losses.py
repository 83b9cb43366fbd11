"""Names and default parameters of the training losses (no torch: the command line reads them).

The losses themselves are in :mod:`residualnet.train` (``TrainConfig.loss``).
"""

from __future__ import annotations

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
