"""Progress on long work: a tqdm bar or nothing.

In Jupyter the bar is a widget when ipywidgets is installed (``pip install "stackcube[notebook]"``), else text, and
never tqdm's "IProgress not found" warning; in a terminal it is text.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, unit: str, *, enabled: bool) -> Iterator[Callable[[int], object]]:
    """Yield ``advance(n)``; the bar is shown only when ``enabled`` and there is something to count (``total``
    None: a count of unknown end, such as the items of a search), and closed (left off the screen) when the block
    ends."""
    if not enabled or (total is not None and total <= 0):
        yield lambda n: None
        return
    bar = _tqdm()(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def _tqdm() -> Any:
    """``tqdm.auto`` when it can draw a widget; plain text bars otherwise (``tqdm.auto`` would warn and fall back to
    text itself)."""
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm

        return tqdm
    from tqdm.auto import tqdm as auto

    return auto
