"""Quicklooks and the Cube's notebook display."""

from __future__ import annotations

import pytest

import stackcube

pytestmark = pytest.mark.corpus


def test_cube_repr_html_and_quicklook(tmp_path) -> None:
    import imagecodecs

    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog

    cube = stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=tmp_path / "a.icechunk", progress=False)
    html = cube._repr_html_()
    assert cube.snapshot_id in html
    assert "<code>EPSG32735_10m</code>" in html
    assert "16 sources" in html
    look = cube.quicklook()
    assert look.bands == ("B04", "B03", "B02")
    assert look.array == "EPSG32735_10m/0"  # the coarsest level still >= 512 px
    image = imagecodecs.png_decode(look._repr_png_())
    assert image.shape == (512, 512, 3)
    assert image.std() > 0
    assert cube.quicklook(size=256).array == "EPSG32735_10m/1"  # the 256 px overview is enough
    grey = cube.quicklook(bands=["B11"], size=64)
    assert imagecodecs.png_decode(grey.png).shape == (256, 256)
    with pytest.raises(ValueError, match="no array of the cube has the bands"):
        cube.quicklook(bands=["nope"])
    scenes = stackcube.build_cube(
        write_demo_offset_catalog(tmp_path / "offsets"), repo=tmp_path / "b.icechunk", progress=False
    )
    assert "6 grids" in scenes._repr_html_()
    one = scenes.quicklook()  # no RGB: the first band of the union
    assert one.array.startswith("EPSG32735_30m_union/")
    assert one.bands == ("red",)
    assert look.save(tmp_path / "q.png").read_bytes() == look.png


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a PNG: pixels, no map
def test_a_quicklook_says_what_it_shows(tmp_path) -> None:
    import rasterio

    from stackcube.demo import write_demo_catalog

    cube = stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=tmp_path / "a.icechunk", progress=False)
    look = cube.quicklook(time=1)
    caption = look.caption
    assert caption.startswith("2020-06-06 · B04, B03, B02 · EPSG32735_10m/0 (512 x 512 px) · 2-98 % stretch ")
    lo, hi = look.stretch
    assert 0 < lo < hi
    assert repr(look) == f"<Quicklook {caption}; {len(look.png)} bytes of PNG>"
    assert len(repr(look)) < 200  # not the PNG's bytes
    assert f"<figcaption><small>{caption}</small></figcaption>" in look._repr_html_()
    with rasterio.open(look.save(tmp_path / "q.png")) as png:  # GDAL reads the caption from the PNG itself
        assert png.tags()["Description"] == caption
        assert png.read().shape == (3, 512, 512)


def test_a_quicklook_of_a_repository_and_of_the_last_date(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog
    from stackcube.errors import SelectionError
    from stackcube.quicklook import quicklook

    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=repo, progress=False)
    last = quicklook(str(repo), time=-1)  # a path, as users pass it to every other function
    assert last.png == cube.quicklook(time=3).png
    assert str(last.time).startswith("2020-06-16")
    assert quicklook(cube).png == cube.quicklook().png
    assert quicklook(repo).png == quicklook(cube.repository).png == quicklook(cube.open()).png  # Path, Repository
    with pytest.raises(SelectionError) as raised:
        cube.quicklook(time=10)
    assert str(raised.value) == (
        "time=10 is not a date of EPSG32735_10m/0: it has 4 dates (2020-06-01 to 2020-06-16): give 0 to 3, or -4 "
        "to -1 from the end"
    )
    assert isinstance(raised.value, IndexError)


def test_a_union_member_is_looked_at_from_the_cube_and_named_from_a_tree_that_lists_it(tmp_path) -> None:
    """A tree lists a union's members without opening them: given the cube, the quicklook of a member opens it;
    given such a tree, it says how to open one that holds it."""
    import stackcube
    from stackcube.demo import write_demo_offset_catalog
    from stackcube.errors import ArrayNotFoundError
    from stackcube.quicklook import quicklook

    repo = tmp_path / "cube.icechunk"
    built = stackcube.build_cube(write_demo_offset_catalog(tmp_path / "demo"), repo=repo, progress=False)
    (union,) = built.plan.unions
    member = union.members[0]
    look = quicklook(repo, array=member)
    assert look.array.startswith(f"{member}/")
    assert look.png.startswith(b"\x89PNG")
    with pytest.raises(ArrayNotFoundError, match=rf"{member} is a member of union {union.name}.*members=True"):
        quicklook(stackcube.open_cube(repo), array=member)
    assert quicklook(stackcube.open_cube(repo, members=True), array=member).png == look.png
