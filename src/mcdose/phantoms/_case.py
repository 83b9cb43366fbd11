"""Writing phantoms as case files, and building a case from a real CT and activity image."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from mcdose.errors import InputError

from ._generate import MODEL, MODEL_VERSION, Phantom

log = logging.getLogger(__name__)

#: body outline of a real CT: density above this (g/cm³), holes filled slice by slice
BODY_DENSITY_THRESHOLD_G_CM3 = 0.2

def write_phantom_case(
    phantom: Phantom,
    path: str | os.PathLike[str],
    nuclide: str = "Lu-177",
    *,
    overwrite: bool = False,
) -> Path:
    """Write a phantom as an mcdose case file (atomically).

    Datasets ``density`` (g/cm³), ``activity`` (MBq per voxel) and ``labels`` (with
    ``names``); root attributes ``phantom`` (JSON of ``phantom.params``), ``seed``,
    ``source`` and ``provenance``.

    Parameters
    ----------
    phantom : Phantom
    path : path-like
        Destination ``*.h5``; its folder must exist.
    nuclide : str
        Nuclide of the activity (default Lu-177).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    from mcdose.io.case import create_case
    from mcdose.provenance import provenance

    params = phantom.params
    seed = params.get("seed")
    source = params.get("source", "phantom")
    prov = provenance(
        method="phantom" if source == "phantom" else "images",
        seed=seed,
        preset=params.get("preset"),
        model=f"{MODEL}-{MODEL_VERSION}" if source == "phantom" else None,
    )
    attrs: dict[str, Any] = {"phantom": json.dumps(params, sort_keys=True), "source": source}
    if seed is not None:
        attrs["seed"] = int(seed)
    return create_case(
        path,
        geometry=phantom.geometry,
        nuclide=nuclide,
        density=phantom.density,
        activity=phantom.activity_MBq,
        labels=phantom.labels,
        label_names=phantom.label_names,
        attrs=attrs,
        overwrite=overwrite,
        provenance=prov,
    )


def read_phantom_params(path: str | os.PathLike[str]) -> dict:
    """The ``phantom`` parameters stored in a case file (empty dict when absent)."""
    from mcdose.io.case import read_case_info
    from mcdose.io.jsonio import json_dict

    return json_dict(read_case_info(path).attrs.get("phantom"))


def body_mask_from_density(density: np.ndarray) -> np.ndarray:
    """Body outline of a CT density map: above 0.2 g/cm³, holes (lungs, bowel gas) filled."""
    mask = density > BODY_DENSITY_THRESHOLD_G_CM3
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask


def phantom_from_images(
    ct_path: str | os.PathLike[str],
    activity_path: str | os.PathLike[str],
    *,
    calibration: Any = "paper",
    activity_units: str = "Bq/ml",
    labels_path: str | os.PathLike[str] | None = None,
    label_names: dict[int, str] | None = None,
) -> Phantom:
    """Build a case from a real CT and a (high-resolution) activity image, on the CT grid.

    Parameters
    ----------
    ct_path : path-like
        CT in HU (NIfTI / NRRD / MHA / DICOM folder).
    activity_path : path-like
        Activity image (e.g. PET or a voxelised activity map) on any grid overlapping the CT.
    calibration : "paper", path of a CSV (``hu,density_g_cm3``) or HUCalibration
        HU → density conversion (:func:`mcdose.materials.hu_to_density`).
    activity_units : {"Bq/ml", "kBq/ml", "MBq/ml", "Bq", "kBq", "MBq"}
        Units of the activity image: a concentration, or an amount per voxel of that image.
        The concentration is resampled (trilinear) onto the CT grid and multiplied by the CT
        voxel volume.  Negative values (reconstruction noise) are set to zero.
    labels_path : path-like, optional
        Label image (nearest-neighbour resampled to the CT grid).  Without it the labels
        are ``background`` / ``body`` (density > 0.2 g/cm³, holes filled).
    label_names : dict of int to str, optional
        Names of the values of ``labels_path`` (default ``label_<value>``, 0 = background).

    Returns
    -------
    Phantom
        Activity is zero outside the body (label 0).  ``params`` records the sources.

    Raises
    ------
    InputError
        Unreadable images, unknown units or calibration, an activity image that does not
        overlap the CT.
    """
    from mcdose.io.images import read_image, resample_to_grid
    from mcdose.materials import HUCalibration, hu_to_density
    from mcdose.units import activity_to_mbq_per_ml, parse_activity_unit

    parse_activity_unit(activity_units, "activity_units")  # before reading any image
    if isinstance(calibration, str | os.PathLike) and str(calibration).lower() != "paper":
        calibration = HUCalibration.from_csv(calibration)

    hu, geometry = read_image(ct_path)
    density = hu_to_density(hu, calibration)
    del hu
    act, act_geometry = read_image(activity_path)
    conc = activity_to_mbq_per_ml(act, activity_units, act_geometry.voxel_volume_cm3)
    del act
    n_neg = int(np.count_nonzero(conc < 0))
    if n_neg:
        log.info("%s: %d negative activity voxels set to zero", activity_path, n_neg)
        np.maximum(conc, 0, out=conc)
    total_in = float(conc.sum(dtype=np.float64) * act_geometry.voxel_volume_cm3)
    conc_ct = resample_to_grid(conc, act_geometry, geometry, density.shape, "linear", 0.0)
    activity = (conc_ct * np.float32(geometry.voxel_volume_cm3)).astype(np.float32)
    if total_in > 0 and not np.any(activity > 0):
        raise InputError(f"{activity_path}: the activity image does not overlap the CT {ct_path}")

    if labels_path is not None:
        lab, lab_geometry = read_image(labels_path, dtype=None)
        if lab.dtype.kind not in "iub":
            if not np.all(lab == np.round(lab)):
                raise InputError(f"{labels_path}: labels must be integers")
            lab = lab.astype(np.int32)
        labels = resample_to_grid(lab, lab_geometry, geometry, density.shape, "nearest", 0)
        if labels.min() < np.iinfo(np.int16).min or labels.max() > np.iinfo(np.int16).max:
            raise InputError(f"{labels_path}: label values do not fit int16")
        labels = labels.astype(np.int16)
        present = [int(v) for v in np.unique(labels)]
        names = {v: f"label_{v}" for v in present}
        names[0] = "background"
        if label_names:
            names.update({int(k): str(v) for k, v in label_names.items() if int(k) in names})
    else:
        labels = body_mask_from_density(density).astype(np.int16)
        names = {0: "background", 1: "body"} if labels.any() else {0: "background"}
    activity[labels == 0] = 0.0

    params = {
        "source": "images",
        "ct": str(ct_path),
        "activity": str(activity_path),
        "activity_units": activity_units,
        "calibration": calibration if isinstance(calibration, str) else repr(calibration),
        "labels": None if labels_path is None else str(labels_path),
        "activity_in_image_MBq": total_in,
        "total_activity_MBq": float(activity.sum(dtype=np.float64)),
        "shape_zyx": [int(n) for n in density.shape],
        "spacing_mm": list(geometry.spacing_mm),
        "origin_mm": list(geometry.origin_mm),
    }
    return Phantom(density.astype(np.float32), activity, labels, names, geometry, params)
