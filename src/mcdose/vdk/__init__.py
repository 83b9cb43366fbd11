"""Voxel dose kernels: generation by mcdose's Monte Carlo, FFT convolution, density correction.

The fast baseline of the paper (Li et al., DblurDoseNet, Med. Phys. 49, 1216 (2022)): the
activity map convolved with voxel S-value kernels computed in soft tissue (a 9×9×9 β kernel
and a 99×99×99 photon kernel at 0.98×0.98×3 mm), each voxel then multiplied by
1.04 / local density.

Public API
----------
Kernels (:mod:`mcdose.vdk.kernels`, :mod:`mcdose.vdk.cache`)
    :func:`make_kernel`, :class:`Kernel`, :func:`symmetrize`, :func:`read_kernel`,
    :func:`write_kernel`, :func:`get_kernel` (cached), :func:`kernel_key`, :func:`cache_dir`.
Convolution (:mod:`mcdose.vdk.convolve`)
    :class:`FFTConvolver`, :func:`fft_convolve`, :func:`available_backends`.
Dose (:mod:`mcdose.vdk.dose`)
    :func:`vdk_dose` (single kernel + density correction), :func:`tissue_class_dose`,
    :func:`density_correction`, :func:`classify_tissue`, :func:`vdk_case` (case file →
    ``dose/vdk``), :func:`case_kernels` (the kernel sets of a case grid, cached or
    generated; :data:`DEFAULT_KERNEL_HISTORIES`), :func:`default_kernel_sizes`.

GPU libraries (CuPy, CUDA torch) are imported only when a GPU backend is used.
"""

from mcdose.vdk.cache import cache_dir, get_kernel, kernel_key
from mcdose.vdk.convolve import FFTConvolver, available_backends, fft_convolve
from mcdose.vdk.dose import (
    DEFAULT_KERNEL_HISTORIES,
    DENSITY_FLOOR_G_CM3,
    TISSUE_CLASSES,
    VdkResult,
    case_kernels,
    classify_tissue,
    default_kernel_sizes,
    density_correction,
    tissue_class_dose,
    vdk_case,
    vdk_dose,
)
from mcdose.vdk.kernels import (
    Kernel,
    combine_kernels,
    make_kernel,
    read_kernel,
    symmetrize,
    write_kernel,
)

__all__ = [
    "DEFAULT_KERNEL_HISTORIES",
    "DENSITY_FLOOR_G_CM3",
    "TISSUE_CLASSES",
    "FFTConvolver",
    "Kernel",
    "VdkResult",
    "available_backends",
    "cache_dir",
    "case_kernels",
    "classify_tissue",
    "combine_kernels",
    "default_kernel_sizes",
    "density_correction",
    "fft_convolve",
    "get_kernel",
    "kernel_key",
    "make_kernel",
    "read_kernel",
    "symmetrize",
    "tissue_class_dose",
    "vdk_case",
    "vdk_dose",
    "write_kernel",
]
