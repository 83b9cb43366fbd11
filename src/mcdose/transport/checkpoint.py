"""Batch checkpoints: an interrupted Monte Carlo run resumes from its last completed batch.

After a batch, the running sums (Σe, Σe² per voxel and the energy counters) are saved to a
``.npz`` next to the output, atomically.  A rerun with the *same* inputs and parameters
(checked by a hash of the maps, tables and settings) loads them and continues with the next
batch; the result is bit-identical to an uninterrupted run because every history's random
numbers depend only on (seed, history index).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from mcdose.io.atomic import atomic_path

log = logging.getLogger(__name__)


def run_key(inputs, *, histories: int, seed: int, batches: int) -> str:
    """SHA-256 of everything that determines the batch sums of a run."""
    from mcdose import __version__

    digest = hashlib.sha256()
    for array in inputs.kernel_arrays():
        digest.update(np.ascontiguousarray(array).view(np.uint8))
    digest.update(repr((histories, seed, batches, inputs.nuclide, __version__)).encode())
    return digest.hexdigest()


def save_checkpoint(path: Path, key: str, batches_done: int, backend) -> None:
    """Write the backend's running sums after ``batches_done`` batches (atomic)."""
    energy_sum, energy_sum_sq = backend.energy_sums()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, key=np.array(key), batches_done=np.array(batches_done),
                 energy_sum=energy_sum, energy_sum_sq=energy_sum_sq,
                 counters=backend.counters())  # fmt: skip


def load_checkpoint(path: Path, key: str, backend) -> int:
    """Restore the sums into ``backend`` if ``path`` holds this run; return batches done."""
    if not path.exists():
        return 0
    try:
        with np.load(path) as data:
            if str(data["key"]) != key:
                log.warning("ignoring checkpoint %s: it belongs to a different run", path)
                return 0
            backend.restore(data["energy_sum"], data["energy_sum_sq"], data["counters"])
            return int(data["batches_done"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return 0
