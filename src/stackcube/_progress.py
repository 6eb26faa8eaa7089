"""Progress on long work: a tqdm bar (``tqdm.auto``: a widget in Jupyter, text in a terminal) or nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(total: int, desc: str, unit: str, *, enabled: bool) -> Iterator[Callable[[int], object]]:
    """Yield ``advance(n)``; the bar is shown only when ``enabled`` and there is something to count, and closed
    (left off the screen) when the block ends."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()
