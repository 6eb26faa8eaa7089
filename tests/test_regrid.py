"""to_grid: arrays of several UTM zones warped onto one grid, against stackstac on the same items."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import numpy as np
import pytest

import stackcube
from tests.twins import corpus_items, in_zone, twin_items

pytestmark = pytest.mark.corpus


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # affine * in odc-geo / rasterio paths
@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # odc-geo 0.5 on shapely 2.2
# GDAL's warper, inside odc-geo, can warn about its own in-memory datasets; the values are checked below
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_two_zones_on_one_grid_match_stackstac_within_resampling_tolerance(tmp_path) -> None:
    import stackstac
    from rasterio.enums import Resampling

    item = corpus_items("site2-2020_jun_jul-35MNM.geojson")[0]
    other = in_zone(item, 32736)
    when = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    other["properties"]["datetime"] = (when + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    twins = twin_items([item, other], tmp_path / "twins", (tmp_path / "twins").as_uri(), downscale=30, assets=["B04"])
    cube = stackcube.build_cube(twins, assets=["B04"], repo=tmp_path / "cube.icechunk", progress=False)
    assert len(cube.plan.arrays) == 2  # one per zone

    t = twins[0]["assets"]["B04"]["proj:transform"]
    shape = twins[0]["assets"]["B04"]["proj:shape"]
    bounds = (t[2], t[5] - shape[0] * 300.0, t[2] + shape[1] * 300.0, t[5])
    ours = stackcube.to_grid(cube, crs="EPSG:32735", resolution=300.0, bounds=bounds)
    assert ours.dims == ("time", "band", "y", "x")
    assert ours.sizes["time"] == 2
    assert ours.odc.geobox.crs.epsg == 32735

    dicts = [
        dict(d, properties={**d["properties"], "proj:epsg": 32735 if i == 0 else 32736}) for i, d in enumerate(twins)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = stackstac.stack(
            dicts, assets=["B04"], epsg=32735, resolution=300.0, bounds=bounds,
            snap_bounds=False, resampling=Resampling.nearest, dtype="float64", fill_value=np.nan, rescale=False,
        ).values  # fmt: skip
    mine = ours.values
    assert mine.shape == theirs.shape
    same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
    assert same[0].mean() > 0.999  # the array already on the target grid: nearest is exact
    assert same[1].mean() > 0.99  # the other zone, warped by odc-geo and by stackstac (both GDAL nearest; 1.0 here)
    assert np.isfinite(mine[1]).mean() > 0.5
