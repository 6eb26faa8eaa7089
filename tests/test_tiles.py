"""Map tiles: titiler-xarray's tile server over stackcube's opener serves the pixels ``open_dataarray`` reads,
reprojected to the tile and scaled as the quicklook scales them; nodata is transparent; a wrong ``variable`` or
``sel`` is a 4xx that says what there is; credentials stay in the server."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

import stackcube
from stackcube.demo import write_demo_catalog

pytestmark = [
    pytest.mark.corpus,  # the demo catalog is written from ../shared/corpus
    # rioxarray 0.23's rio.transform() (which rio-tiler and these tests call) multiplies affine transforms with
    # `*`, which affine 3 deprecates in favour of `@`: theirs to change, and it changes no value
    pytest.mark.filterwarnings("ignore:Use `@` matmul instead of `\\*` mul operator:PendingDeprecationWarning"),
    # titiler's map page (map.html) writes the tile matrix set's CRS as a PROJ string for its Leaflet viewer
    pytest.mark.filterwarnings("ignore:You will likely lose important projection information:UserWarning"),
]

TEN = "EPSG32735_10m"
DATE = "2020-06-06T08:06:11"
"""The demo cube's second date: quicklook(time=1)."""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The demo cube: two arrays, each with an overview level; 4 dates; a 51 x 51 block of nodata (NaN) at the
    north-west corner of the 10 m array; B02, B03 and B04 with a scale and offset stated in STAC, so that the
    stored values are not what a tile shows (a positive offset: the quicklook stretches positive values only, and
    the demo's values are below the 1000 that Earth Search's -0.1 takes off)."""
    import pystac

    from tests.conftest import CORPUS, require

    require(CORPUS.is_dir(), "corpus missing")
    root = tmp_path_factory.mktemp("tiles")
    items = list(pystac.Catalog.from_file(write_demo_catalog(root / "demo")).get_items(recursive=True))
    for item in items:
        for band in ("B02", "B03", "B04"):
            item.assets[band].extra_fields["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": 0.01}]
    stackcube.build_cube(items, repo=root / "cube.icechunk", progress=False)
    return root / "cube.icechunk"


@pytest.fixture(scope="module")
def client(repo):
    from fastapi.testclient import TestClient

    from stackcube.tiles import create_app

    # raise_server_exceptions=False: a 5xx is answered as a server answers it, not raised into the test
    with TestClient(create_app(repo), raise_server_exceptions=False) as test_client:
        yield test_client


def _tile_at(lon: float, lat: float, z: int):
    import morecantile

    return morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)


def _expected(repo, tile, level: int, bands: list[str], stretch: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(grey or RGB uint8, valid) of ``tile``, computed without titiler: ``level`` of the 10 m array read through
    open_dataarray at the second date, warped (GDAL nearest) onto the tile's Web Mercator grid, and scaled as
    stackcube.quicklook scales: (value - lo) / (hi - lo) * 255, clipped, truncated to uint8."""
    import morecantile
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    da = stackcube.open_dataarray(repo, TEN, level=level, chunks=False).sel(time=DATE, band=bands)
    tms = morecantile.tms.get("WebMercatorQuad")
    warped = np.full((len(bands), 256, 256), np.nan, dtype=np.float32)
    reproject(
        da.values,
        warped,
        src_transform=da.rio.transform(),
        src_crs=da.rio.crs,
        src_nodata=np.nan,
        dst_transform=from_bounds(*tms.xy_bounds(tile), 256, 256),
        dst_crs="EPSG:3857",
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    lo, hi = stretch
    scaled = np.clip((np.nan_to_num(warped) - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    return scaled, np.isfinite(warped).all(axis=0)


@pytest.mark.parametrize(
    ("z", "level", "bands"),
    [
        (14, 0, ["B04"]),  # 9.5 m tile pixels: full resolution (10 m)
        (12, 1, ["B04"]),  # 38 m tile pixels: the 20 m overview is the coarsest level still that fine
        (12, 1, ["B04", "B03", "B02"]),  # RGB: three sel=band=, in order
    ],
)
def test_a_tile_holds_the_pixels_open_dataarray_reads(repo, client, z, level, bands) -> None:
    """A PNG tile at one date, rescaled by the quicklook's stretch, is the array read through open_dataarray,
    warped to the tile (nearest) and scaled as the quicklook scales it. Tolerance: none. Both sides warp with
    GDAL's nearest onto the same tile grid (rioxarray calls rasterio.warp.reproject), so the only room for a
    difference is at the tile's and the data's edges, where rio-tiler first clips the array to the tile (one
    source pixel more or less there); on the demo cube those agree exactly, so any difference fails. Nodata (the
    NaN corner) and the ground outside the cube are transparent (alpha 0), valid pixels opaque."""
    import imagecodecs
    from rasterio.warp import transform

    from stackcube.quicklook import quicklook

    look = quicklook(repo, bands=["B04"], time=1, array=TEN)
    assert np.datetime_as_string(np.datetime64(look.time, "s")) == DATE
    lo, hi = look.stretch
    # the tile over the nodata corner of the array (north-west, 51 x 51 pixels at 10 m)
    (lon,), (lat,) = transform("EPSG:32735", "EPSG:4326", [600000 + 255], [9500020 - 255])
    tile = _tile_at(lon, lat, z)
    params = {"variable": TEN, "sel": [f"time={DATE}", *(f"band={b}" for b in bands)], "rescale": f"{lo!r},{hi!r}"}
    got = client.get(f"/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png", params=params)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "image/png"
    image = imagecodecs.png_decode(got.content)
    assert image.shape == (256, 256, len(bands) + 1)  # grey or RGB, and alpha
    pixels, alpha = np.moveaxis(image[..., :-1], -1, 0), image[..., -1]
    expected, valid = _expected(repo, tile, level, bands, (lo, hi))
    assert set(np.unique(alpha)) <= {0, 255}
    np.testing.assert_array_equal(alpha == 255, valid)
    np.testing.assert_array_equal(pixels[:, valid], expected[:, valid])
    # what the test relies on is there: valid pixels, nodata inside the cube's footprint, ground outside it
    assert valid.sum() > 1000
    footprint = valid | _nan_inside(repo, tile, level)
    assert (footprint & ~valid).any(), "the tile shows no nodata inside the cube"
    assert (~footprint).any(), "the tile shows no ground outside the cube"
    assert len(np.unique(pixels[:, valid])) > 20  # an image, not a flat grey
    if level:  # the level matters: full resolution warped to the same tile is another image
        finest, _ = _expected(repo, tile, 0, bands, (lo, hi))
        assert (finest[:, valid] != pixels[:, valid]).mean() > 0.1


def _nan_inside(repo, tile, level: int) -> np.ndarray:
    """Where the tile falls inside the array's extent but the array is nodata (its NaN warped as a value)."""
    import morecantile
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    da = stackcube.open_dataarray(repo, TEN, level=level, chunks=False).sel(time=DATE, band="B04")
    flags = np.isnan(da.values).astype(np.uint8) + 1  # 2 where NaN, 1 where valid, 0 outside
    out = np.zeros((256, 256), dtype=np.uint8)
    reproject(
        flags,
        out,
        src_transform=da.rio.transform(),
        src_crs=da.rio.crs,
        src_nodata=0,
        dst_transform=from_bounds(*morecantile.tms.get("WebMercatorQuad").xy_bounds(tile), 256, 256),
        dst_crs="EPSG:3857",
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return out == 2


def test_the_level_is_the_coarsest_still_as_fine_as_the_tile(repo) -> None:
    from stackcube.store import OpenOptions
    from stackcube.tiles import CubeReader, CubeSource

    source = CubeSource(repo, OpenOptions(chunks=False))
    with CubeReader(source, variable=TEN, sel=[f"time={DATE}", "band=B04"]) as reader:
        assert [lv.shape for lv in reader.levels] == [(512, 512), (256, 256)]
        lon, lat = 27.92, -4.55
        assert [reader.level_for(_tile_at(lon, lat, z)) for z in (10, 12, 13, 14, 16)] == [1, 1, 0, 0, 0]
        assert reader.level_for(_tile_at(lon, lat, 13), tilesize=128) == 1  # 128 px: 38 m pixels


def test_an_unknown_variable_or_selection_is_a_4xx_saying_what_there_is(client) -> None:
    tile = "/tiles/WebMercatorQuad/14/9462/8399.png"
    nope = client.get(tile, params={"variable": "EPSG4326_1m", "sel": [f"time={DATE}"]})
    assert nope.status_code == 404
    assert nope.json()["detail"] == (
        "the cube has no array 'EPSG4326_1m' (variable=); it has EPSG32735_10m, EPSG32735_20m"
    )
    missing = client.get(tile, params={"sel": [f"time={DATE}"]})
    assert missing.status_code == 422  # titiler's: variable is required
    undated = client.get(tile, params={"variable": TEN})
    assert undated.status_code == 400
    assert "needs one date for a map, and sel=[] leaves more: give sel=time=DATE" in undated.json()["detail"]
    assert DATE in undated.json()["detail"]
    wrong_day = client.get(tile, params={"variable": TEN, "sel": ["time=2020-06-07"]})
    assert wrong_day.status_code == 400
    assert "has no time=2020-06-07" in wrong_day.json()["detail"]
    assert "sel=time=nearest::2020-06-01 picks the nearest to a day" in wrong_day.json()["detail"]
    nearest = client.get(
        tile, params={"variable": TEN, "sel": ["time=nearest::2020-06-07", "band=B04"], "rescale": "0.05,0.08"}
    )
    assert nearest.status_code == 200, nearest.text
    no_band = client.get(tile, params={"variable": TEN, "sel": [f"time={DATE}", "band=B99"]})
    assert no_band.status_code == 400
    assert "bands B02, B03, B04, B08" in no_band.json()["detail"]
    outside = client.get("/tiles/WebMercatorQuad/14/0/0.png", params={"variable": TEN, "sel": [f"time={DATE}"]})
    assert outside.status_code == 404  # titiler's: the tile is outside the cube
    no_date = client.get(tile, params={"variable": TEN, "sel": ["time=notadate", "band=B04"]})
    assert no_date.status_code == 400
    assert "sel=['time=notadate', 'band=B04'] cannot be read" in no_date.json()["detail"]


def test_what_could_take_the_server_s_memory_is_not_served(client) -> None:
    """titiler's POST /statistics reads full resolution under any polygon (a large one took 24 GB); a tile larger
    than MAX_TILESIZE is refused."""
    from stackcube.tiles import MAX_TILESIZE

    polygon = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[27, -5], [29, -5], [29, -4], [27, -4], [27, -5]]]},
    }
    stats = client.post("/statistics", params={"variable": TEN, "sel": [f"time={DATE}"]}, json=polygon)
    assert stats.status_code in {404, 405}
    assert "/statistics" not in client.get("/api").json()["paths"]
    params = {"variable": TEN, "sel": [f"time={DATE}", "band=B04"], "rescale": "0.05,0.08"}
    big = client.get("/tiles/WebMercatorQuad/14/9462/8399.png", params={**params, "tilesize": 4 * MAX_TILESIZE})
    assert big.status_code == 400
    assert f"give at most {MAX_TILESIZE} pixels" in big.json()["detail"]
    ok = client.get("/tiles/WebMercatorQuad/14/9462/8399.png", params={**params, "tilesize": 512})
    assert ok.status_code == 200, ok.text
    x, y = 9462, 8399  # zoomed far out: a small cube is read whole, a tile away from it is outside
    small = client.get(f"/tiles/WebMercatorQuad/6/{x >> 8}/{y >> 8}.png", params=params)
    assert small.status_code == 200, small.text
    away = client.get(f"/tiles/WebMercatorQuad/6/{(x >> 8) + 5}/{y >> 8}.png", params=params)
    assert away.status_code == 404  # titiler's answer for a tile outside the cube, not a refusal


def test_a_big_level_is_not_read_whole_by_a_zoomed_out_tile(tmp_path) -> None:
    """A 4096 px source without overviews: tilejson starts where a tile reads at most MAX_COARSER x MAX_COARSER
    times its size, a tile zoomed out further is refused before anything is read, and one at that zoom reads."""
    import rasterio
    from fastapi.testclient import TestClient
    from rasterio.transform import from_origin

    from stackcube.tiles import MAX_COARSER, create_app

    path = tmp_path / "big.tif"
    profile = {"driver": "GTiff", "height": 4096, "width": 4096, "count": 1, "dtype": "uint8", "tiled": True}
    profile |= {"crs": "EPSG:32633", "transform": from_origin(500_000, 4_000_000, 10, 10), "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 4096, 4096), 7, np.uint8))
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "big",
        "geometry": None,
        "properties": {"datetime": "2024-06-01T10:00:00Z"},
        "links": [],
        "assets": {"data": {"href": path.as_posix(), "type": "image/tiff; application=geotiff"}},
    }
    repo = tmp_path / "cube.icechunk"
    (array,) = stackcube.build_cube([item], repo=repo, progress=False).plan.arrays
    assert len(array.levels) == 1
    params = {"variable": array.name, "sel": ["time=2024-06-01T10:00:00"], "rescale": "0,10"}
    with TestClient(create_app(repo), raise_server_exceptions=False) as client:
        tilejson = client.get("/WebMercatorQuad/tilejson.json", params=params).json()
        first = tilejson["minzoom"]
        assert first > 8  # rio-tiler's own would be about 8: the whole 4096 px in one tile
        centre = (
            (tilejson["bounds"][0] + tilejson["bounds"][2]) / 2,
            (tilejson["bounds"][1] + tilejson["bounds"][3]) / 2,
        )
        for z, status in ((first - 1, 400), (first, 200)):
            tile = _tile_at(*centre, z)
            answer = client.get(f"/tiles/WebMercatorQuad/{z}/{tile.x}/{tile.y}.png", params=params)
            assert answer.status_code == status, answer.text
            if status == 400:
                assert f"more than {MAX_COARSER} x {MAX_COARSER} times its own: zoom in" in answer.json()["detail"]


def test_a_branch_is_opened_again_only_when_it_moved(tmp_path, monkeypatch) -> None:
    """Tiles of a branch come from its tip: the cube is opened once while the branch stays, and again (showing the
    new date) once it moved."""
    from fastapi.testclient import TestClient

    import stackcube.tiles
    from stackcube.tiles import create_app

    catalog = write_demo_catalog(tmp_path / "demo", dates=3, size=256)
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    opened = []
    real = stackcube.tiles.open_datatree
    monkeypatch.setattr(stackcube.tiles, "open_datatree", lambda *a, **k: opened.append(1) or real(*a, **k))
    tile = "/tiles/WebMercatorQuad/14/9462/8399.png"
    fourth = {"variable": TEN, "sel": ["time=2020-06-16T08:06:11", "band=B04"], "rescale": "0,2000"}  # the new date
    with TestClient(create_app(repo), raise_server_exceptions=False) as client:
        third = {**fourth, "sel": ["time=2020-06-11T08:06:11", "band=B04"]}
        assert [client.get(tile, params=third).status_code for _ in range(3)] == [200, 200, 200]
        assert client.get(tile, params=fourth).status_code == 400  # not there yet
        assert len(opened) == 1
        write_demo_catalog(tmp_path / "demo", dates=4, size=256)
        assert stackcube.refresh_cube(repo, progress=False).committed
        assert client.get(tile, params=fourth).status_code == 200
        assert len(opened) == 2


def test_a_request_cannot_point_the_server_at_another_dataset(client, tmp_path) -> None:
    """titiler's ``url=`` parameter is gone: the app serves its one cube."""
    other = client.get("/info", params={"variable": TEN, "sel": [f"time={DATE}"], "url": str(tmp_path)})
    assert other.status_code == 200
    assert other.json()["bounds"] == [600000.0, 9494900.0, 605120.0, 9500020.0]
    paths = client.get("/api").json()["paths"]
    assert "/tiles/{tileMatrixSetId}/{z}/{x}/{y}" in paths
    assert not any(p["name"] == "url" for route in paths.values() for op in route.values() for p in op["parameters"])


def test_credentials_reach_the_sources_and_never_a_response_or_a_log(tmp_path, caplog) -> None:
    """Sources behind a bearer token: with ``credentials=`` the tiles are the pixels; without, the tile fails as a
    502 that says what to give. The token is in no response (body or headers) and in no log record."""
    import imagecodecs
    import rasterio
    from fastapi.testclient import TestClient
    from rasterio.warp import transform

    from stackcube.tiles import create_app
    from tests.services.host import run_host
    from tests.twins import series

    token = "T0KEN-tiles-only-in-this-test"
    caplog.set_level(logging.DEBUG)
    with run_host(tmp_path / "served", token=token) as host:
        items = series(host.root, host.url, 2)
        repo = tmp_path / "cube.icechunk"
        credentials = {f"{host.url}/": {"Authorization": f"Bearer {token}"}}
        stackcube.build_cube(items, repo=repo, progress=False, credentials=credentials)
        (array,) = stackcube.store.read_metadata(repo).array_names
        with rasterio.open(host.root / "s1.tif") as src:
            (lon,), (lat,) = transform(src.crs, "EPSG:4326", [src.bounds.left + 640], [src.bounds.top - 640])
        tile = _tile_at(lon, lat, 15)
        url = f"/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
        params = {"variable": array, "sel": ["time=nearest::2024-06-02", "band=B04"], "rescale": "1,4000"}
        responses = []
        with TestClient(create_app(repo, credentials=credentials), raise_server_exceptions=False) as served:
            host.seen.clear()
            responses.append(good := served.get(url, params=params))
            assert good.status_code == 200, good.text
            assert (imagecodecs.png_decode(good.content)[..., -1] == 255).mean() > 0.5
            assert any(s.headers.get("authorization") == f"Bearer {token}" for s in host.seen)
            for path in ("/info", "/WebMercatorQuad/tilejson.json", "/WebMercatorQuad/map.html", "/api"):
                responses.append(served.get(path, params=params))
            responses.append(served.get(url, params={**params, "variable": "nope"}))
            responses.append(served.get(url, params={**params, "sel": ["time=1999-01-01"]}))
        with TestClient(create_app(repo), raise_server_exceptions=False) as anonymous:
            responses.append(refused := anonymous.get(url, params=params))
            assert refused.status_code == 502
            assert "credentials=" in refused.json()["detail"]
    assert all(r.status_code < 500 for r in responses[:-1]), [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        assert token not in response.text
        assert token.encode() not in response.content
        assert all(token not in value for value in response.headers.values())
    assert not [record for record in caplog.records if token in record.getMessage()]


def test_requests_that_come_together_open_a_snapshot_once(repo, monkeypatch) -> None:
    """A map asks for its tiles at once: the first request of a snapshot opens the cube, the others wait for it."""
    import threading

    import stackcube.tiles
    from stackcube.store import OpenOptions
    from stackcube.tiles import CubeSource

    opened = []
    real = stackcube.tiles.open_datatree
    monkeypatch.setattr(stackcube.tiles, "open_datatree", lambda *a, **k: opened.append(1) or real(*a, **k))
    source = CubeSource(repo, OpenOptions(chunks=False))
    start = threading.Barrier(8)
    got: list[int] = []

    def ask() -> None:
        start.wait()
        got.append(len(source.open_levels(TEN)))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [2] * 8
    assert len(opened) == 1
    assert not source.opening  # nothing left behind


def test_messages_lose_every_credential_string(repo) -> None:
    """What the handler answers passes through the source's scrub: each string of a credentials mapping (and the
    token after ``Bearer``) is blanked, as are credentials in hrefs."""
    from stackcube.store import OpenOptions
    from stackcube.tiles import CubeSource, create_app

    credentials = {"https://h.example/": {"Authorization": "Bearer s3cr3t-value", "x-key": "another-secret"}}
    app = create_app(repo, credentials=credentials)
    assert app.title == "stackcube tiles"
    source = CubeSource(repo, OpenOptions(credentials=credentials), ("Bearer s3cr3t-value", "s3cr3t-value"))
    assert source.scrub("sent s3cr3t-value to https://h.example/a.tif?sig=abc") == (
        "sent REDACTED to https://h.example/a.tif?sig=REDACTED"
    )
    assert "s3cr3t" not in repr(source)
    from stackcube.tiles import _handler, _strings_of

    answered = _handler(502, source)(None, RuntimeError("the host refused Bearer s3cr3t-value for x-key another"))
    assert answered.status_code == 502
    assert b"s3cr3t" not in answered.body
    assert b"REDACTED" in answered.body

    assert set(_strings_of(credentials)) == {"Bearer s3cr3t-value", "s3cr3t-value", "another-secret"}


def test_without_titiler_the_error_names_the_extra() -> None:
    """titiler-xarray missing: importing stackcube.tiles raises MissingExtraError naming the ``tiles`` extra; and
    ``import stackcube`` never imports titiler."""
    code = (
        "import sys\nsys.modules['titiler'] = None\nimport stackcube\n"
        "try:\n    stackcube.tiles\nexcept stackcube.errors.MissingExtraError as e:\n    print(type(e).__name__, e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("MissingExtraError stackcube.tiles serves map tiles with titiler-xarray")
    assert "'tiles' extra" in done.stdout
    assert "pip install '.[tiles]'" in done.stdout
    plain = "import sys, stackcube\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'titiler', 'fastapi'}))"
    done = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
