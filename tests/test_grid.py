"""Grid keys (grid.py): grouping by key takes the first key seen that matches, as comparing with every key did,
without comparing every pair (a union of thousands of scenes has thousands of grids)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackcube.grid import GridKey, distinct_keys

BASE = GridKey("EPSG:32633", (30.0, -30.0), (0.0, 0.0), (1, 256, 256), "uint16", "0", "{}")
SIZES = [30.0, 30.000000000001, 30.0000000000002, 30.1, 463.312716528, 463.312716529, 463.3127165285]
"""Pixel sizes some of which match (relatively within SAME_SIZE), some not, and chains a ~ b ~ c where a !~ c."""


def _pairwise(keys: list[GridKey]) -> list[GridKey]:
    """distinct_keys as it was: each key compared with every one kept before it."""
    out: list[GridKey] = []
    for key in keys:
        if not any(k.matches(key) for k in out):
            out.append(key)
    return out


keys = st.builds(
    lambda x, y, phase, fill, crs: dataclasses.replace(
        BASE, resolution=(x, -y), phase=(float(phase), 0.0), fill_value=fill, crs=crs
    ),
    st.sampled_from(SIZES),
    st.sampled_from(SIZES),
    st.integers(0, 3),
    st.sampled_from(["0", "none"]),
    st.sampled_from(["EPSG:32633", "EPSG:32634"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(keys, max_size=40))
def test_distinct_keys_keep_the_first_match_as_comparing_every_pair_did(found: list[GridKey]) -> None:
    assert distinct_keys(found) == _pairwise(found)


def test_thousands_of_grids_are_grouped_without_comparing_every_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 keys on 5,000 phases: pairwise, 12.5 million comparisons (38 s of a 5,000-scene union's plan)."""
    found = [dataclasses.replace(BASE, phase=(float(i % 256), float(i // 256))) for i in range(5000)]
    calls = 0
    matches = GridKey.matches

    def counted(self: GridKey, other: GridKey) -> bool:
        nonlocal calls
        calls += 1
        return matches(self, other)

    monkeypatch.setattr(GridKey, "matches", counted)
    assert distinct_keys(found + found[:10]) == found
    assert calls == 10  # the repeats, each compared with its one alike key
