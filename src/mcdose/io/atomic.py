"""Atomic file writes: write to a temporary name in the same folder, then rename.

A process killed half-way leaves the destination untouched (either the old file or none) and
at worst a ``.tmp`` file that the next run overwrites.

Before the rename the temporary file is checked: it must exist and hold at least
``min_bytes`` bytes (a writer that fails silently on a full disk leaves an empty or missing
file; that is never renamed onto the destination).  A folder that cannot be written (read
only, not a folder) and a full disk are reported as :class:`~mcdose.errors.OutputError`
with one line naming the destination.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mcdose.errors import OutputError

__all__ = ["atomic_path", "check_written", "temporary_path_for"]

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}


def temporary_path_for(path: str | os.PathLike[str]) -> Path:
    """Return a fresh temporary path next to ``path`` that keeps its suffixes.

    Keeping the suffixes (``.nii.gz``, ``.h5``) lets writers that choose a format by
    extension (SimpleITK) write the temporary file in the right format.

    Raises
    ------
    OutputError
        The folder of ``path`` cannot be written (read-only, permissions, not a folder).
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise _output_error(path, exc) from None
    os.close(fd)
    # mkstemp creates 0600; give the file the permissions an ordinary open() would
    os.chmod(tmp, 0o666 & ~_current_umask())
    return Path(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno in _DISK_ERRNOS:
        return OutputError(f"{path}: cannot write ({reason}); the disk is full or over quota, "
                           f"nothing was replaced")
    if exc.errno in _ACCESS_ERRNOS:
        return OutputError(f"{path}: cannot write into folder {path.parent} ({reason})")
    return OutputError(f"{path}: cannot write ({reason})")


def check_written(tmp: str | os.PathLike[str], path: str | os.PathLike[str],
                  min_bytes: int = 1) -> int:
    """Size in bytes of a freshly written file; refuse a missing or too short one.

    Parameters
    ----------
    tmp : path-like
        The file just written (a file, or a folder whose files are summed).
    path : path-like
        Its destination (named in the message).
    min_bytes : int
        Smallest acceptable size (bytes).

    Raises
    ------
    OutputError
        ``"<path>: the file written is empty (0 bytes; disk full?) ..."``.
    """
    tmp = Path(tmp)
    if tmp.is_dir():
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    elif tmp.exists():
        size = tmp.stat().st_size
    else:
        raise OutputError(f"{path}: the writer left no file (disk full?); nothing was replaced")
    if size < min_bytes:
        raise OutputError(f"{path}: the file written holds {size} bytes, fewer than the "
                          f"{min_bytes} expected (disk full?); nothing was replaced")
    return size


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, copy_existing: bool = False, min_bytes: int = 1
) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto ``path``, on failure delete it.

    Parameters
    ----------
    path
        Final destination.  Its folder must exist.
    copy_existing
        Start the temporary file as a copy of the existing ``path`` (for stages that add a
        dataset to an existing HDF5 case file without risking it).
    min_bytes
        The temporary file must hold at least this many bytes before it is renamed
        (default 1: an empty file is never reported as written; 0 turns the check off).

    Raises
    ------
    FileNotFoundError
        The output folder does not exist.
    OutputError
        The folder cannot be written, the disk is full, or the file written is too short.

    Examples
    --------
    >>> with atomic_path("dose.nii.gz") as tmp:          # doctest: +SKIP
    ...     sitk.WriteImage(image, str(tmp))
    """
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder does not exist: {path.parent}")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: {path.parent} is not a folder")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    tmp = temporary_path_for(path)
    try:
        if copy_existing and path.exists():
            try:
                shutil.copy2(path, tmp)
            except OSError as exc:
                raise _output_error(path, exc) from None
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS:  # a writer ran out of space
                raise _output_error(path, exc) from None
            raise
        if min_bytes > 0:
            check_written(tmp, path, min_bytes)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _output_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
