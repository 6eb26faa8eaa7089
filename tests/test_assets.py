"""Asset selection: by key, by common name, or every GeoTIFF data asset; skipped ones come with reasons."""

from __future__ import annotations

import pystac
import pytest

from stackcube.assets import choose_assets, item_assets, select_assets, summarize_skipped
from stackcube.errors import MissingAssetWarning, NothingFoundError
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
    with pytest.raises(NothingFoundError) as raised:
        choose_assets([item], Query(catalog=None), ["B4"])
    text = str(raised.value)
    assert text.startswith(
        "asset 'B4' not found in the one item the search found (neither an asset key nor an eo:bands common name); "
        "it has: AOT, B01 (coastal), B02 (blue), B03 (green), B04 (red), "
    )
    assert text.endswith("; did you mean 'B04'?")


def test_a_misspelt_asset_beside_one_that_matches_is_an_error_not_a_smaller_cube(item) -> None:
    other = item.clone()
    other.id = "other"
    with pytest.raises(NothingFoundError) as raised:
        choose_assets([item, other], Query(catalog=None), ["rde", "nir"])
    text = str(raised.value)
    assert text.startswith("asset 'rde' not found in any of the 2 items the search found")
    assert "they have: AOT, B01 (coastal)" in text
    assert text.endswith("; did you mean 'red'?")


def test_a_common_name_of_several_assets_says_to_ask_by_key(item) -> None:
    with pytest.raises(NothingFoundError) as raised:
        choose_assets([item], Query(catalog=None), ["rededge"])
    assert str(raised.value) == (
        "'rededge' is the common name of several assets (B05, B06, B07, B8A); ask for them by key"
    )


def test_an_asset_only_some_items_have_is_a_warning_naming_them(item) -> None:
    other = item.clone()
    other.id = "other"
    del other.assets["B04"]
    with pytest.warns(MissingAssetWarning) as warned:
        chosen, _ = choose_assets([item, other], Query(catalog=None), ["red", "nir"])
    (warning,) = warned
    text = str(warning.message)
    assert text.startswith(
        "asset 'red' is missing from 1 of the 2 items found (other): the cube's red is empty where only it covers; "
        "the items have: AOT, B01 (coastal)"
    )
    assert [(c.item.id, c.band) for c in chosen] == [(item.id, "red"), (item.id, "nir"), ("other", "nir")]


def test_a_refresh_does_not_check_names_again(item) -> None:
    """A refresh's narrowed search may find only items without a band the cube has: they are listed as skipped."""
    chosen, skipped = choose_assets([item], Query(catalog=None), ["B4", "B04"], check_names=False)
    assert [c.key for c in chosen] == ["B04"]
    assert [s.key for s in skipped] == ["B4"]


def test_a_common_name_of_several_assets_in_some_items_is_an_error_too(item) -> None:
    other = item.clone()
    other.id = "other"
    other.assets["B04_copy"] = other.assets["B04"].clone()  # two "red" assets there: which one is not clear
    with pytest.raises(NothingFoundError, match=r"^'red' is the common name of several assets \(B04, B04_copy\)"):
        choose_assets([item, other], Query(catalog=None), ["red"])


def test_two_names_of_one_asset_are_an_error(item) -> None:
    with pytest.raises(NothingFoundError) as raised:
        choose_assets([item], Query(catalog=None), ["red", "B04"])
    assert str(raised.value) == "'red' and 'B04' are the same asset (B04); ask for it once"
    with pytest.raises(NothingFoundError) as raised:
        choose_assets([item], Query(catalog=None), ["red", "nir", "red"])
    assert str(raised.value) == "'red' asked for more than once; ask for each band once"


def test_items_without_assets_say_so(item) -> None:
    bare = item.clone()
    bare.assets.clear()
    with pytest.raises(NothingFoundError) as raised:
        choose_assets([bare], Query(catalog=None), ["red"])
    assert str(raised.value).endswith("; it has: no assets")


def _outcome(items, assets):
    """What choose_assets makes of ``items``: the chosen (item, key, band, href) and the skipped, with the warnings,
    or the error."""
    import warnings

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            chosen, skipped = choose_assets(
                [i if isinstance(i, pystac.Item) else i() for i in items], Query(catalog=None), assets
            )
        except NothingFoundError as exc:
            return str(exc)
    picked = [(c.item.id, c.key, c.band, c.href) for c in chosen]
    return picked, [str(s) for s in skipped], [str(w.message) for w in warned]


@pytest.mark.parametrize(
    "assets",
    [None, ["red", "nir"], ["B04"], ["B4"], ["rde", "nir"], ["rededge"], ["red", "B04"], ["red", "nir", "red"], []],
)
def test_items_cut_to_their_chosen_assets_as_they_arrive_choose_the_same(item, assets) -> None:
    """A build cuts each item to its chosen assets as the search finds it (``item_assets(slim=True)``): the same
    assets chosen and skipped, the same warnings and errors as from the whole items, and each item keeps no other
    asset."""
    other = item.clone()
    other.id = "other"
    del other.assets["B04"]
    bare = item.clone()
    bare.id = "bare"
    bare.assets.clear()
    whole = [item, other, bare]
    expected = _outcome([i.clone() for i in whole], assets)
    cut = [i.clone() for i in whole]
    assert _outcome([lambda i=i: item_assets(i, assets, slim=True) for i in cut], assets) == expected
    if not isinstance(expected, str):
        kept = {i.id: sorted(i.assets) for i in cut}
        assert kept == {i.id: sorted({k for (n, k, _, _) in expected[0] if n == i.id}) for i in cut}
        assert kept["other"] != sorted(other.assets)  # items lost the assets not chosen
