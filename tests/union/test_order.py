"""Which member wins a pixel (union._order) and how pieces are laid (union._graph.lay)."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine

from stackcube.union import UnionPlan, order_steps
from stackcube.union._graph import lay


def union(**changes) -> UnionPlan:
    base = {
        "name": "U",
        "members": ("A", "B", "C"),
        "offsets": ((0, 0), (0, 5), (5, 0)),
        "transform": Affine(30.0, 0.0, 0.0, 0.0, -30.0, 0.0),
        "shape": (1, 1, 10, 10),
        "time": (np.datetime64("2021-05-01T10:00", "ns"),),
        "steps": (((0, 0), (1, 0), (2, 0)),),
        "bands": ("red",),
        "crs": "EPSG:32633",
        "fill_value": 0,
        "member_bands": (("red",),) * 3,
        "member_ids": (("a",), ("b",), ("c",)),
        "member_keys": ((30.0,), (math.nan,), (10.0,)),
    }
    return UnionPlan(**{**base, **changes})


def test_search_order_sort_by_and_last() -> None:
    assert order_steps(union()) == ([[(0, 0), (1, 0), (2, 0)]], ["a,b,c"])
    assert order_steps(union(sort_by="eo:cloud_cover")) == ([[(2, 0), (0, 0), (1, 0)]], ["c,a,b"])  # NaN last
    assert order_steps(union(sort_by="eo:cloud_cover", overlap="last"))[1] == ["b,a,c"]


def test_nodata_never_hides_a_valid_value() -> None:
    out, covered = np.zeros((2, 3), np.uint16), np.zeros((2, 3), bool)
    lay(out, covered, np.array([[5, 0, 5], [0, 0, 0]], np.uint16), 0, nodata=True)
    lay(out, covered, np.array([[7, 7, 7], [7, 0, 7]], np.uint16), 0, nodata=True)
    np.testing.assert_array_equal(out, [[5, 7, 5], [7, 0, 7]])
    floats, covered = np.full((1, 3), np.nan, np.float32), np.zeros((1, 3), bool)
    lay(floats, covered, np.array([[np.nan, 1.0, np.nan]], np.float32), math.nan, nodata=True)
    lay(floats, covered, np.array([[2.0, 3.0, np.nan]], np.float32), math.nan, nodata=True)
    np.testing.assert_array_equal(floats[0, :2], [2.0, 1.0])  # a NaN nodata hides nothing either
    everything, covered = np.zeros((1, 2), np.uint8), np.zeros((1, 2), bool)
    lay(everything, covered, np.array([[0, 4]], np.uint8), 0, nodata=False)
    lay(everything, covered, np.array([[9, 9]], np.uint8), 0, nodata=False)
    np.testing.assert_array_equal(everything, [[0, 4]])  # without nodata every covered pixel is valid
