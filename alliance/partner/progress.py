"""Progress bars for long agent work (rich), shown only on a terminal: quiet in logs, CI and pipes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["Bar", "progress_bars"]

Bar = Callable[[str, int], Callable[[int], None]]


@contextmanager
def progress_bars(enabled: bool | None = None) -> Iterator[Bar]:
    """Yields ``bar(description, total) -> advance(n)``; everything is a no-op when not enabled
    (by default: when stderr is not a terminal)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield lambda _description, _total: lambda _n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:

        def bar(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield bar
