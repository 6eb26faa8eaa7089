"""Progress on long work: a tqdm bar or nothing.

In Jupyter the bar is a widget when ipywidgets is installed (stackcube's ``notebook`` extra), else text, and
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
    # counts as words ("reading TIFF headers: 40%|████  | 2/5 headers [00:01<00:02]", "searching X: 6 items
    # [00:01]"): tqdm's own would read "6item" and "2.00s/header"
    if total is not None:
        form = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]"
    else:
        form = "{desc}: {n_fmt} {unit} [{elapsed}]"
    bar = _tqdm()(total=total, desc=desc, unit=f"{unit}s", leave=False, bar_format=form)

    def advance(n: int) -> None:
        if total is None:
            bar.unit = unit if bar.n + n == 1 else f"{unit}s"
        bar.update(n)

    try:
        yield advance
    finally:
        # drawn once more, so the last count is what stays where the bar cannot be erased (text bars in Jupyter):
        # tqdm redraws at most every 0.1 s, and a search of a few items ends before that
        bar.refresh()
        bar.close()


def _tqdm() -> Any:
    """``tqdm.auto`` when it can draw a widget; plain text bars otherwise (``tqdm.auto`` would warn and fall back to
    text itself)."""
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm

        return tqdm
    from tqdm.auto import tqdm as auto

    return auto
