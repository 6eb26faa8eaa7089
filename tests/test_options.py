"""CubeOptions: checked once, stored and read back; one rule for ordering by an item property."""

from __future__ import annotations

import math

import pytest

from stackcube.options import CubeOptions, sort_rank


def test_values_out_of_range_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="overlap must be 'first' or 'last', not 'middle'"):
        CubeOptions(overlap="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groupby must be 'datetime', 'solar_day' or None, not 'week'"):
        CubeOptions(groupby="week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip', not 'ignore'"):
        CubeOptions(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a list of asset keys"):
        CubeOptions(assets="B04")  # type: ignore[arg-type]


def test_stored_options_round_trip_without_on_error() -> None:
    options = CubeOptions(
        assets=["red", "nir"], overlap="last", sort_by="eo:cloud_cover", groupby=None, on_error="skip"
    )
    assert options.assets == ("red", "nir")
    stored = options.to_dict()
    assert "on_error" not in stored  # how one run treats unreadable sources, not how the cube is made
    assert CubeOptions.from_dict(stored) == CubeOptions(("red", "nir"), "last", "eo:cloud_cover", None)
    assert CubeOptions.from_dict({}) == CubeOptions()


def test_missing_values_sort_last() -> None:
    values = [3.0, None, 1.0, math.nan, 2.0]
    assert sorted(values, key=sort_rank)[:3] == [1.0, 2.0, 3.0]
    assert all(v is None or math.isnan(v) for v in sorted(values, key=sort_rank)[3:])
