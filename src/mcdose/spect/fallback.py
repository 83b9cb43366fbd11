"""Image-domain SPECT stand-in used when PyTomography (or torch) is not installed.

No projection, attenuation or reconstruction: the activity on the SPECT grid is blurred with
a 3-D Gaussian of the system FWHM at a typical source-collimator distance
(:attr:`SpectProtocol.fallback_distance_mm`, default 150 mm → 14.7 mm FWHM) and Poisson noise
is drawn with the expected counts of each voxel proportional to its blurred activity and
summing to the requested total.  Its noise is *lower* than a real OSEM reconstruction at the
same counts (OSEM amplifies noise), and its resolution does not vary with position; use it
for plumbing and tests, not for training data.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mcdose.spect.protocol import SpectProtocol


def gaussian_spect(
    activity_zyx: np.ndarray,
    pixel_mm: float,
    protocol: SpectProtocol,
    counts: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, float]]:
    """Blur + Poisson stand-in for a SPECT reconstruction on the SPECT grid.

    Parameters
    ----------
    activity_zyx
        MBq per SPECT voxel.
    pixel_mm
        SPECT voxel size (mm).
    protocol
        Supplies the FWHM at :attr:`SpectProtocol.fallback_distance_mm`.
    counts
        Expected total counts.
    rng
        Seeded generator for the Poisson draw.

    Returns
    -------
    estimate : numpy.ndarray
        MBq per SPECT voxel (float64), counts divided by the counts-per-MBq scale.
    details : dict
        ``fwhm_mm`` used and ``counts_detected``.
    """
    fwhm = float(protocol.fwhm_mm(protocol.fallback_distance_mm))
    sigma_px = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / pixel_mm
    blurred = ndimage.gaussian_filter(
        np.asarray(activity_zyx, np.float64), sigma_px, mode="constant", truncate=4.0
    )
    blurred = np.clip(blurred, 0.0, None)
    scale = counts / blurred.sum()
    detected = rng.poisson(blurred * scale)
    return detected / scale, {"fwhm_mm": fwhm, "counts_detected": float(detected.sum())}
