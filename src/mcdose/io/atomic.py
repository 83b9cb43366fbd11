"""Atomic file writes: write to a temporary name in the same folder, then rename.

A process killed half-way leaves the destination untouched (either the old file or none) and
at worst a ``.tmp`` file that the next run overwrites.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temporary_path_for(path: str | os.PathLike[str]) -> Path:
    """Return a fresh temporary path next to ``path`` that keeps its suffixes.

    Keeping the suffixes (``.nii.gz``, ``.h5``) lets writers that choose a format by
    extension (SimpleITK) write the temporary file in the right format.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the file the permissions an ordinary open() would
    os.chmod(tmp, 0o666 & ~_current_umask())
    return Path(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, copy_existing: bool = False
) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto ``path``, on failure delete it.

    Parameters
    ----------
    path
        Final destination.  Its folder must exist.
    copy_existing
        Start the temporary file as a copy of the existing ``path`` (for stages that add a
        dataset to an existing HDF5 case file without risking it).

    Examples
    --------
    >>> with atomic_path("dose.nii.gz") as tmp:          # doctest: +SKIP
    ...     sitk.WriteImage(image, str(tmp))
    """
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    tmp = temporary_path_for(path)
    try:
        if copy_existing and path.exists():
            shutil.copy2(path, tmp)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
