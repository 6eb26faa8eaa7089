"""Laying member pieces over one another, and the size of a union's blocks.

A union's pixel takes the first valid value of the pieces of its time step in priority order; values are copied,
never resampled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["block_size", "lay"]


def lay(out: np.ndarray, covered: np.ndarray, values: np.ndarray, fill: Any, nodata: bool) -> None:
    """Lay ``values`` over ``out`` where no piece laid a valid value yet: the first valid value wins.

    With ``nodata``, values equal to ``fill`` (NaN for a NaN fill) are not valid and never hide what lies under.
    """
    valid = ~covered
    if nodata:
        valid &= ~np.isnan(values) if isinstance(fill, float) and math.isnan(fill) else values != fill
    out[valid] = values[valid]
    covered |= valid


def block_size(tile: int, target: int = 1024) -> int:
    """A union block size: a whole number of member tiles near ``target`` pixels."""
    return max(tile, tile * math.floor(target / tile))
