"""Progress bars for long work (rich), silent when nobody is watching.

Library functions take ``progress: bool``; the command line turns it on.  Bars go to stderr
so that ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw a bar: requested, not disabled by ``MCDOSE_NO_PROGRESS``."""
    return bool(requested) and not os.environ.get("MCDOSE_NO_PROGRESS")


@contextlib.contextmanager
def progress_bar(
    total: float, description: str, *, unit: str = "", enabled: bool = True
) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(n)``; draws a rich bar with rate and ETA when enabled.

    Parameters
    ----------
    total
        Amount of work (histories, cases, slices...).
    description
        Text shown left of the bar.
    unit
        Name of one unit of work, shown with the rate (e.g. ``"decays"``).
    enabled
        ``False`` yields a no-op ``advance``.
    """
    if not progress_enabled(enabled):
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):  # type: ignore[override]
            from rich.text import Text

            speed = task.finished_speed or task.speed
            if not speed:
                return Text("")
            return Text(f"{speed:,.3g} {unit}/s", style="progress.data.speed")

    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    console = Console(file=sys.stderr)
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
