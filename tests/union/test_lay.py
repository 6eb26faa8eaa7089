"""How union windows are assembled (union._lay): pieces laid in priority order, the first valid value winning."""

from __future__ import annotations

import math

import numpy as np

from stackcube.union._lay import lay


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
