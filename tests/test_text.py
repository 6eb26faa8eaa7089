"""Counts with their nouns, as every report and message says them."""

from __future__ import annotations

import pytest

from stackcube._text import counted


@pytest.mark.parametrize(("n", "expected"), [(0, "0 items"), (1, "1 item"), (2, "2 items"), (-1, "-1 items")])
def test_counted(n: int, expected: str) -> None:
    assert counted(n, "item") == expected
