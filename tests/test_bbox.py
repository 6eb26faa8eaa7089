"""Bounding boxes (_bbox): each way a bbox is commonly wrong gets a message saying which bound and what was meant,
in the API and the CLI (one line, exit 2)."""

from __future__ import annotations

import pytest

import stackcube
from stackcube._bbox import check_bbox, latitude_first
from stackcube.cli import main
from stackcube.errors import BboxError, NothingFoundError


@pytest.mark.parametrize(
    ("bbox", "says"),
    [
        ((500000, 9490000, 510000, 9500000), r"not in degrees .*projected coordinates"),
        (
            (-4.55, 97.9, -4.53, 98.0),
            r"latitude first; the order is \(west, south, east, north\): \(97.9, -4.55, 98, -4.53\)",
        ),
        ((10, -95, 11, -94), r"latitude outside -90..90"),
        ((190, -4, 191, -3), r"longitude outside -180..180"),
        ((27.9, -4.53, 27.95, -4.55), r"south -4.53 is north of north -4.55.*\(27.9, -4.55, 27.95, -4.53\)"),
        ((27.95, -4.55, 27.9, -4.53), r"west 27.95 is east of east 27.9.*\(27.9, -4.55, 27.95, -4.53\)"),
        ((170, -4, -170, 4), r"crosses the antimeridian.*\(170, -4, 180, 4\) and \(-180, -4, -170, 4\)"),
        ((1, 2, 3), r"four finite numbers"),
        ("27,-4,28,-3", r"four numbers"),
        ((1, 2, float("nan"), 4), r"four finite numbers"),
    ],
)
def test_a_wrong_bbox_says_what_is_wrong(bbox, says) -> None:
    with pytest.raises(BboxError, match=says):
        check_bbox(bbox)


def test_right_bboxes_pass_in_degrees_and_in_a_crs() -> None:
    assert check_bbox([27.9, -4.55, 27.95, -4.53]) == (27.9, -4.55, 27.95, -4.53)
    assert check_bbox((27.9, -4.55, 27.9, -4.55)) == (27.9, -4.55, 27.9, -4.55)  # a point selects what touches it
    assert check_bbox((500000, 9490000, 510000, 9500000), crs="EPSG:32735") == (500000, 9490000, 510000, 9500000)
    with pytest.raises(BboxError, match=r"south 9\.5e"):
        check_bbox((500000, 9500000, 510000, 9490000), crs="EPSG:32735")


def test_latitude_first_is_only_offered_when_it_is_a_bbox_too() -> None:
    assert latitude_first((-4.55, 27.9, -4.53, 27.95)) == (27.9, -4.55, 27.95, -4.53)
    assert latitude_first((100.0, 10.0, 101.0, 11.0)) is None  # read the other way its latitude would be 100


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from stackcube.demo import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("demo"), dates=1, size=256)


def test_a_search_that_finds_nothing_offers_the_latitude_first_reading(catalog) -> None:
    with pytest.raises(NothingFoundError, match=r"if it was latitude first, it is \(27.9, -4.56, 27.95, -4.52\)"):
        stackcube.plan_cube(catalog, bbox=(-4.56, 27.9, -4.52, 27.95), progress=False)


@pytest.mark.parametrize(
    ("bbox", "says"),
    [
        (["27.947", "-4.55", "27.92", "-4.53"], "west 27.947 is east of east 27.92"),  # was a raw pyproj ProjError
        (["500000", "9490000", "510000", "9500000"], "not in degrees"),
        (["-4.55", "97.9", "-4.53", "98"], "latitude first"),
    ],
)
def test_the_cli_says_it_in_one_line_with_exit_code_2(catalog, capsys, bbox, says) -> None:
    assert main(["plan", catalog, "--bbox", *bbox, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stackcube: error: bbox (")
    assert says in err
    assert "\n" not in err
