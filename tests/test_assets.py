"""Asset selection: by key, by common name, or every GeoTIFF data asset; skipped ones come with reasons."""

from __future__ import annotations

import pystac
import pytest

from stackcube.assets import choose_assets, select_assets, summarize_skipped
from stackcube.errors import NothingFoundError
from stackcube.search import Query
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
    assert reasons["B99"] == "no asset with that key or common name"
    assert reasons["granule-metadata"] == "not a TIFF (type 'application/xml')"
    assert reasons["preview"].startswith("a thumbnail")
    # four assets share the common name rededge: ambiguous, so not chosen
    assert reasons["rededge"] == "no asset with that key or common name"
    available = next(s.available for s in skipped if s.key == "B99")
    assert "B04 (red)" in available
    assert "B05 (rededge)" in available


def test_a_name_no_item_has_is_reported_once_with_the_names_they_have(item) -> None:
    other = item.clone()
    other.id = "other"
    _, skipped = select_assets([item, other], ["B4", "B04"])
    (line,) = summarize_skipped(skipped, 2)
    assert line.startswith("'B4' in all 2 items: no asset with that key or common name; the items have ")
    assert "B04 (red)" in line
    assert line.count("B04 (red)") == 1


def test_a_search_whose_items_lack_every_asset_asked_lists_what_they_have(item) -> None:
    with pytest.raises(NothingFoundError, match=r"'B4' in 1 item \(.*\): no asset .* the items have .*B04 \(red\)"):
        choose_assets([item], Query(catalog=None), ["B4"])
