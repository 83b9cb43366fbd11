"""Checks of output paths before anything is computed.

A command asks :func:`check_output` about every file it will write, before the work starts,
so that a long run does not end in "cannot write" and no output ever replaces an input:

* the folder must exist, be a folder and be writable (a read-only folder is refused at
  once, not after an hour of Monte Carlo);
* an existing file is replaced only with ``--overwrite``;
* an output that *is* an input (same path, a hard or symbolic link to it) is refused even
  with ``--overwrite``: the patient's SPECT is never overwritten by its dose.

:func:`check_output_folder` does the same for a folder a command fills (datasets, reports,
the kernel cache).  Every refusal is an :class:`~mcdose.errors.OutputError`, one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mcdose.errors import OutputError

__all__ = ["check_output", "check_output_folder", "same_file"]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when two paths name the same file (links and ``..`` resolved)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_output_folder(folder: str | os.PathLike[str], *, flag: str = "--out",
                        create: bool = False) -> Path:
    """Refuse a folder that is not a folder or cannot be written; optionally create it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder}: exists and is not a folder")
    if not folder.exists():
        if not create:
            raise OutputError(f"{flag} {folder}: folder does not exist")
        parent = next((p for p in folder.parents if p.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {folder}: cannot create it, {parent} is not writable")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{flag} {folder}: cannot create it ({exc.strerror})") from None
    _probe(folder, flag)
    return folder


def _probe(folder: Path, flag: str) -> None:
    """Create and delete a file in ``folder`` (os.access is wrong for root and for read-only
    mounts; trying is not)."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {folder}: folder is not writable (read-only?)")
    try:
        fd, name = tempfile.mkstemp(prefix=".mcdose-probe.", dir=folder)
    except OSError as exc:
        raise OutputError(f"{flag} {folder}: folder is not writable ({exc.strerror})"
                          ) from None
    os.close(fd)
    os.unlink(name)


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    flag: str = "--out",
) -> Path:
    """Refuse an output path that cannot or must not be written.

    Parameters
    ----------
    path : path-like
        A file the command will write.
    inputs : iterable of path-like
        Every input of the command (files or DICOM folders); ``None`` entries are skipped.
    overwrite : bool
        ``--overwrite`` given: an existing output may be replaced (never an input).
    flag : str
        Option named in messages.

    Raises
    ------
    OutputError
        Output is an input (or lies inside an input DICOM folder), exists without
        ``overwrite``, is a folder, or its folder is missing / not writable.
    """
    path = Path(path)
    for item in inputs:
        if item is None:
            continue
        item = Path(item)
        if same_file(path, item) or (item.is_dir() and _inside(path, item)):
            raise OutputError(
                f"{flag} {path} is the input {item}; refusing to overwrite an input (even "
                f"with --overwrite); choose another output name"
            )
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{flag} {path}: exists; pass --overwrite to replace it")
    check_output_folder(path.parent, flag=flag)
    return path
