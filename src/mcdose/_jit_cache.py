"""A numba cache directory keyed by the physics sources, so compiled kernels never go stale.

``numba.njit(cache=True)`` invalidates a cached kernel only when the file that *defines* the
jitted function changes, not when a function it calls (the shared physics in
:mod:`mcdose.physics` and :mod:`mcdose.transport.history`) does.  Decorating inside
:func:`physics_keyed_cache` puts those caches in a folder named after a hash of every source
file the kernels compile, so an edit or an upgrade compiles afresh.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numba

_PACKAGE = Path(__file__).resolve().parent
_SOURCES = ("physics", "transport")


@functools.cache
def physics_source_hash() -> str:
    """SHA-256 (first 16 hex digits) of the kernel sources and the numba version."""
    digest = hashlib.sha256(numba.__version__.encode())
    for folder in _SOURCES:
        for path in sorted((_PACKAGE / folder).glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """Root of mcdose's numba caches: ``$NUMBA_CACHE_DIR`` or the user cache folder."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("mcdose")) / "numba"


@contextlib.contextmanager
def physics_keyed_cache() -> Iterator[Path]:
    """Within the block, ``cache=True`` decorators cache under ``<root>/<source hash>``."""
    folder = cache_root() / physics_source_hash()
    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(folder)
    try:
        yield folder
    finally:
        numba.config.CACHE_DIR = previous
