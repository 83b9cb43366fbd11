"""Options and argument checks shared by the commands (parsing only, no physics).

``--force-large`` is the one flag, in every command, that accepts a run estimated to be
very large (:mod:`mcdose.io.limits`); the checks themselves live in the library so that
library users get the same refusals.
"""

from __future__ import annotations

import click

from mcdose.io.limits import FORCE_FLAG

__all__ = ["FORCE_FLAG", "force_large_option", "refuse_foreign_outputs"]


def force_large_option(func):
    """Add ``--force-large`` (stored as ``force_large``)."""
    return click.option(
        FORCE_FLAG, "force_large", is_flag=True,
        help="Run even when the estimated time or memory is very large (refused otherwise, "
        "with the estimate).",
    )(func)


def refuse_foreign_outputs(cases, name: str, force: bool) -> None:
    """Refuse, before any work, a case whose ``name`` dataset mcdose did not write.

    With ``--force`` it will be replaced (the caller wraps the work in
    :func:`mcdose.io.case.replacing_foreign_datasets`).
    """
    from mcdose.errors import CaseFileError
    from mcdose.io.case import foreign_datasets

    if force:
        return
    for path in cases:
        if path.exists() and foreign_datasets(path, [name]):
            raise CaseFileError(
                f"{path}: dataset '{name}' was not written by mcdose (no 'params' or "
                f"'provenance' attribute); refusing to replace it (--force replaces it)"
            )
