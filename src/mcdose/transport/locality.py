"""Order a chunk of decays by their source voxel, so that neighbours run one after another.

The CPU engine's time goes mostly to memory: the density map and the per-thread tally of the
paper phantom (34 M voxels) are hundreds of megabytes, and a decay's first reads of both miss
every cache.  Run in history order, consecutive decays start anywhere in the active volume;
run in voxel order, a chunk sweeps the volume once and decays in the same or neighbouring
voxels share the cache lines (and memory pages) of their density, materials and tally.

The order changes nothing else: each history draws from its own random stream, and the
tally is integer (exact, associative), so the dose is bit for bit that of history order.

A *key* packs a history's voxel above its position in the chunk,
``key = voxel << CHUNK_BITS | i``; :func:`sort_keys_by_voxel` is a stable least-significant-
digit radix sort on the voxel bits alone (the positions are already ascending), in
preallocated scratch, so the caller can run without numba's allocating runtime.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

#: Bits for a history's position in its chunk: chunks hold at most ``2**CHUNK_BITS`` decays.
CHUNK_BITS = 20

#: Digit width of the radix sort (counts array of ``2**RADIX_BITS`` entries).
RADIX_BITS = 11

_POSITION_MASK = (1 << CHUNK_BITS) - 1
_DIGIT_MASK = (1 << RADIX_BITS) - 1


@register_jitable
def pack_key(voxel, position):
    """Key of the decay at ``position`` in its chunk that starts in flat voxel ``voxel``."""
    return (np.int64(voxel) << CHUNK_BITS) | np.int64(position)


@register_jitable
def key_voxel(key):
    """Flat voxel index stored in ``key``."""
    return key >> CHUNK_BITS


@register_jitable
def key_position(key):
    """Position in the chunk stored in ``key``."""
    return key & _POSITION_MASK


@register_jitable
def sort_keys_by_voxel(keys, scratch, counts, m, voxel_bits):
    """Sort ``keys[:m]`` by voxel, stably, in place.

    Parameters
    ----------
    keys : int64[≥ m]
        Keys from :func:`pack_key`; sorted on return.
    scratch : int64[≥ m]
        Work space, overwritten.
    counts : int64[2**RADIX_BITS]
        Work space, overwritten.
    m : int
        Number of keys.
    voxel_bits : int
        Bits needed for the largest voxel index (``int(n_voxels - 1).bit_length()``).
    """
    src = keys
    dst = scratch
    shift = CHUNK_BITS
    end = CHUNK_BITS + voxel_bits
    n_digits = 1 << RADIX_BITS
    passes = 0
    while shift < end:
        for d in range(n_digits):
            counts[d] = 0
        for i in range(m):
            counts[(src[i] >> shift) & _DIGIT_MASK] += 1
        total = 0
        for d in range(n_digits):
            c = counts[d]
            counts[d] = total
            total += c
        for i in range(m):
            k = src[i]
            d = (k >> shift) & _DIGIT_MASK
            dst[counts[d]] = k
            counts[d] += 1
        src, dst = dst, src
        shift += RADIX_BITS
        passes += 1
    if passes % 2 == 1:
        for i in range(m):
            keys[i] = scratch[i]
