"""Learned density-specific dose kernels (``mcdose dose --method lvdk``).

A small 3-D CNN maps the CT density around a source voxel to the voxel's dose kernel
(Melodia 2018; Akhavanallaf et al., EJNMMI 48, 670 (2021)), trained on mcdose's own Monte
Carlo kernels (:mod:`mcdose.dataset.kernel_patches`).  The dose of an activity map is the
superposition of every active voxel's predicted kernel (short range) plus the long-range
photon dose by FFT convolution (:mod:`lvdk.superpose`).  See docs/lvdk.md.

Modules: :mod:`lvdk.model` (network), :mod:`lvdk.train` (training, metrics),
:mod:`lvdk.modelfile` (weights files, the shipped model), :mod:`lvdk.superpose` (dose).
torch is imported by these modules, not by ``import lvdk``.
"""

__all__ = ["DEFAULT_MODEL_NAME"]

#: File name of the shipped model (package data of :mod:`lvdk`)
DEFAULT_MODEL_NAME = "lvdk_lu177_4mm.pt"
