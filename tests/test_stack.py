"""stackcube.stack against stackstac.stack on the same twin items: the same dims, coordinates and values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import stackcube
from tests.twins import corpus_items, twin_items

pytestmark = pytest.mark.corpus


def test_stack_has_stackstacs_shape_names_and_values(tmp_path) -> None:
    import stackstac

    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")[:5]
    twins = twin_items(items, tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=10, assets=["B04", "B08"])
    ours = stackcube.stack(twins, assets=["B04", "B08"], mask_and_scale=False)
    dicts = [dict(d) for d in twins]
    for d in dicts:
        d["properties"] = {**d["properties"], "proj:epsg": 32735}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stackstac 0.5's affine and pandas deprecations
        theirs = stackstac.stack(
            dicts, assets=["B04", "B08"], snap_bounds=False, xy_coords="center", dtype="uint16",
            fill_value=np.uint16(0), rescale=False,
        )  # fmt: skip
        expected = theirs.values
    assert ours.dims == theirs.dims == ("time", "band", "y", "x")
    assert ours.shape == theirs.shape
    for name in ("time", "id", "band", "x", "y", "epsg", "common_name", "eo:cloud_cover", "platform"):
        assert name in ours.coords, name
        assert name in theirs.coords, name
        np.testing.assert_array_equal(np.asarray(ours[name].values), np.asarray(theirs[name].values), err_msg=name)
    np.testing.assert_array_equal(ours.values, expected)


def test_stack_refuses_to_resample(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    with pytest.raises(ValueError, match=r"the items lie on 2 grids .*does not resample"):
        stackcube.stack(write_demo_catalog(tmp_path / "demo"))
    red = stackcube.stack(write_demo_catalog(tmp_path / "demo"), array="EPSG32735_20m")
    assert list(red.band.values) == ["B05", "B11"]
