"""Words in messages and reports: a count with its noun."""

from __future__ import annotations

__all__ = ["counted"]


def counted(n: int, noun: str) -> str:
    """``1 item``, ``6 items``: ``n`` and ``noun``, plural unless ``n`` is 1 (every noun stackcube counts takes -s).

    Examples
    --------
    >>> counted(1, "band"), counted(0, "grid")
    ('1 band', '0 grids')
    """
    return f"{n} {noun}{'s' * (n != 1)}"
