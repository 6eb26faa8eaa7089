"""Asset selection: by key, by common name, or every GeoTIFF data asset; skipped ones come with reasons."""

from __future__ import annotations

import pystac
import pytest

from stackcube.assets import select_assets
from tests.twins import corpus_items

pytestmark = pytest.mark.corpus


@pytest.fixture
def item(corpus) -> pystac.Item:
    return pystac.Item.from_dict(corpus_items("site2-2020_jun_jul-35MNM.geojson")[0])


def test_all_geotiff_data_assets_by_default(item) -> None:
    chosen, skipped = select_assets([item])
    assert {c.key for c in chosen} == {
        "AOT",
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B09",
        "B11",
        "B12",
        "B8A",
        "SCL",
        "WVP",
        "visual",
    }
    reasons = {s.key: s.reason for s in skipped}
    assert reasons["preview"].startswith("a thumbnail")
    assert "safe-manifest" not in reasons  # metadata is not data: not worth a line


def test_keys_and_common_names_in_band_order(item) -> None:
    chosen, skipped = select_assets([item], ["nir", "B03", "red"])
    assert [(c.band, c.key) for c in chosen] == [("nir", "B08"), ("B03", "B03"), ("red", "B04")]
    assert not skipped


def test_skipped_reasons(item) -> None:
    _, skipped = select_assets([item], ["B99", "granule-metadata", "preview", "rededge"])
    reasons = {s.key: s.reason for s in skipped}
    assert reasons["B99"] == "the item has no asset with key or common name 'B99'"
    assert reasons["granule-metadata"] == "not a TIFF (type 'application/xml')"
    assert reasons["preview"].startswith("a thumbnail")
    # four assets share the common name rededge: ambiguous, so not chosen
    assert reasons["rededge"] == "the item has no asset with key or common name 'rededge'"
