"""Which member wins a pixel (union._order): search order, sort_by (missing values last), overlap."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine

from stackcube.union import UnionPlan, order_steps


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
