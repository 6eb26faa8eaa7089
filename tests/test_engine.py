"""The xarray engine opens what stackcube's own readers open: the same values, coordinates and attributes, for each
of its keywords, through ``xr.open_dataset``/``xr.open_datatree`` by the engine's registered name."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import rasterio
import xarray as xr

import stackcube
from stackcube.demo import write_demo_catalog, write_demo_offset_catalog
from stackcube.errors import ArrayNotFoundError, UntrustedSourceError

TEN = "EPSG32735_10m"


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """The demo cube (two arrays, overviews, scale and offset in STAC): its first two dates tagged ``first``, all
    four on main; and a union of offset scenes on the branch ``scenes``: (repo, the tagged snapshot's id, the
    union's name)."""
    root = tmp_path_factory.mktemp("engine")
    repo = root / "cube.icechunk"
    catalog = write_demo_catalog(root / "demo")
    built = stackcube.build_cube(catalog, datetime="2020-06-01/2020-06-10", repo=repo, progress=False, tag="first")
    stackcube.build_cube(catalog, repo=repo, progress=False)  # main moves on: 4 dates where the tag has 2
    scenes = stackcube.build_cube(
        write_demo_offset_catalog(root / "offsets"), repo=repo, branch="scenes", progress=False
    )
    (union,) = scenes.plan.unions
    return repo, built.snapshot_id, union.name


def _same(ds: xr.Dataset, da: xr.DataArray) -> None:
    """``ds`` (the engine's) holds ``da`` (stackcube's) as its ``data``: values, coordinates, attributes."""
    assert ds.attrs["array"] == da.name
    got = ds["data"]
    np.testing.assert_array_equal(got.values, da.values)  # NaN where both are nodata
    assert got.dtype == da.dtype
    assert got.attrs == da.attrs
    assert set(got.coords) == set(da.coords)
    for name in da.coords:
        xr.testing.assert_identical(got.coords[name].variable.load(), da.coords[name].variable.load())


def test_the_engine_is_registered_under_the_names_the_cube_is_written_with(cube) -> None:
    """The entry points' names are the ones xarray and zarr look up: ``stackcube`` for the engine, and the codec's
    the name a cube's data arrays are written with (a mismatch is a known trap: the metadata names a codec no
    reader finds)."""
    repo, _, _ = cube
    engines = {e.name: e.value for e in importlib.metadata.entry_points(group="xarray.backends")}
    assert engines["stackcube"] == "stackcube.engine:StackcubeBackendEntrypoint"
    assert type(xr.backends.list_engines()["stackcube"]).__name__ == "StackcubeBackendEntrypoint"
    codecs = {e.name for e in importlib.metadata.entry_points(group="zarr.codecs")}
    from zarr.core.buffer import default_buffer_prototype

    from stackcube._sync import run
    from stackcube.store import open_repository

    session = open_repository(repo).readonly_session(branch="main")
    document = run(session.store.get(f"{TEN}/0/data/zarr.json", default_buffer_prototype()))
    written = json.loads(document.to_bytes())
    names = {codec["name"] for codec in written["codecs"]}
    assert "stackcube.tiff" in names
    assert names - {"bytes", "transpose"} <= codecs


@pytest.mark.parametrize(
    ("group", "array", "level"),
    [(f"{TEN}/0", TEN, 0), (TEN, TEN, 0), (f"/{TEN}/1/", TEN, 1), ("EPSG32735_20m/0", "EPSG32735_20m", 0)],
)
def test_a_group_opens_as_open_dataarray_opens_that_level(cube, group, array, level) -> None:
    repo, _, _ = cube
    ds = xr.open_dataset(repo, engine="stackcube", group=group)
    assert ds["data"].chunks is None  # xarray's default: no dask
    _same(ds, stackcube.open_dataarray(repo, array, level))


@pytest.mark.parametrize(
    "version",
    [{"tag": "first"}, {"branch": "main"}, {"snapshot": "first"}],
    ids=["tag", "branch", "snapshot"],
)
def test_each_version_keyword_opens_that_version(cube, version) -> None:
    repo, first, _ = cube
    version = {"snapshot": first} if version == {"snapshot": "first"} else version
    opened = xr.open_dataset(repo, engine="stackcube", group=f"{TEN}/0", **version)
    _same(opened, stackcube.open_dataarray(repo, TEN, **version))
    assert opened.sizes["time"] == (4 if "branch" in version else 2)


def test_two_snapshots_opened_by_id_are_two_dask_graphs(cube) -> None:
    """xarray names what it chunks after the call's arguments: by snapshot id, two versions are two names, and
    computed in one graph each gives its own pixels (the engine's docs tell to pin a moving branch so)."""
    import dask

    repo, first, _ = cube
    last = stackcube.open_cube(repo).attrs["snapshot_id"]
    old, new = (
        xr.open_dataset(repo, engine="stackcube", group=TEN, snapshot=s, chunks={})["data"] for s in (first, last)
    )
    assert old.data.name != new.data.name
    together = dask.compute(old.isel(time=1), new.isel(time=3))
    np.testing.assert_array_equal(together[0], stackcube.open_dataarray(repo, TEN, snapshot=first)[1].values)
    np.testing.assert_array_equal(together[1], stackcube.open_dataarray(repo, TEN)[3].values)


def test_a_union_on_a_branch_opens_as_open_dataarray_opens_it(cube) -> None:
    repo, _, union = cube
    ds = xr.open_dataset(repo, engine="stackcube", group=union, branch="scenes")
    _same(ds, stackcube.open_dataarray(repo, union, branch="scenes"))
    assert ds.attrs["members"]


def test_mask_and_scale_false_gives_the_stored_values(cube) -> None:
    repo, _, _ = cube
    raw = xr.open_dataset(repo, engine="stackcube", group=TEN, mask_and_scale=False)
    _same(raw, stackcube.open_dataarray(repo, TEN, mask_and_scale=False))
    assert raw["data"].dtype == np.uint16
    physical = xr.open_dataset(repo, engine="stackcube", group=TEN)
    assert physical["data"].dtype == np.float32


def test_chunks_are_xarrays_and_the_preferred_ones_are_stackcubes_default(cube) -> None:
    """``chunks={}`` gives the dask chunks ``open_dataarray`` gives by default; a dict, those; none, no dask; the
    values are the same whichever."""
    repo, _, union = cube
    for group, branch in ((f"{TEN}/0", "main"), (f"{TEN}/1", "main"), (union, "scenes")):
        array, _, level = group.partition("/")
        default = stackcube.open_dataarray(repo, array, int(level or 0), branch=branch)
        preferred = xr.open_dataset(repo, engine="stackcube", group=group, branch=branch, chunks={})
        assert preferred["data"].chunks == default.chunks
        np.testing.assert_array_equal(preferred["data"].values, default.values)
    # whole along time and band (a dict that splits a stored coordinate's chunk draws xarray's warning, as any
    # engine's does); the dimensions it leaves out take the preferred chunks, as xarray does (stackcube's own
    # readers take the stored chunks there: one tile)
    given = xr.open_dataset(repo, engine="stackcube", group=TEN, chunks={"time": 4, "band": 4})
    assert given["data"].chunks == ((4,), (4,), (512,), (512,))
    np.testing.assert_array_equal(given["data"].values, stackcube.open_dataarray(repo, TEN).values)


def test_drop_variables_drops_coordinates(cube) -> None:
    repo, _, _ = cube
    ds = xr.open_dataset(repo, engine="stackcube", group=TEN, drop_variables=["eo:cloud_cover", "no such"])
    assert "eo:cloud_cover" not in ds.coords
    assert "platform" in ds.coords


def test_allow_refuses_a_cube_reading_elsewhere_before_reading_it(cube) -> None:
    repo, _, _ = cube
    with pytest.raises(UntrustedSourceError):
        xr.open_dataset(repo, engine="stackcube", group=TEN, allow=["https://elsewhere.example/"])
    from stackcube.store import open_repository

    declared = list(open_repository(repo).config.virtual_chunk_containers or {})  # both builds' sources
    assert xr.open_dataset(repo, engine="stackcube", group=TEN, allow=declared)["data"].size


def test_a_group_the_cube_lacks_names_the_arrays_it_has(cube) -> None:
    repo, _, _ = cube
    with pytest.raises(ArrayNotFoundError, match=rf"holds 2 arrays \({TEN}, EPSG32735_20m\); pass group= one"):
        xr.open_dataset(repo, engine="stackcube")
    with pytest.raises(ArrayNotFoundError, match=f"no array 'nope'; it has: {TEN}"):
        xr.open_dataset(repo, engine="stackcube", group="nope/0")
    with pytest.raises(ArrayNotFoundError, match="levels 0, 1"):
        xr.open_dataset(repo, engine="stackcube", group=f"{TEN}/7")
    with pytest.raises(ArrayNotFoundError, match="an array and a level number"):
        xr.open_dataset(repo, engine="stackcube", group=f"{TEN}/full")


def test_the_tree_is_open_cubes(cube) -> None:
    repo, _, _ = cube
    for version in ({"branch": "main"}, {"branch": "scenes"}):
        tree = xr.open_datatree(repo, engine="stackcube", **version)
        ours = stackcube.open_cube(repo, **version)
        assert [n.path for n in tree.subtree] == [n.path for n in ours.subtree]
        assert tree.attrs == ours.attrs
        for node in ours.subtree:
            assert set(tree[node.path].data_vars) == set(node.data_vars)
            if "data" in node.data_vars:
                np.testing.assert_array_equal(tree[node.path]["data"].values, node["data"].values)
    members = xr.open_datatree(repo, engine="stackcube", branch="scenes", members=True)
    assert [n.path for n in members.subtree] == [
        n.path for n in stackcube.open_cube(repo, branch="scenes", members=True).subtree
    ]
    sub = xr.open_datatree(repo, engine="stackcube", group=TEN, chunks={})
    assert sub.parent is None
    assert [n.name for n in sub.children.values()] == ["0", "1"]
    assert sub["0"]["data"].chunks == stackcube.open_dataarray(repo, TEN).chunks
    groups = xr.open_groups(repo, engine="stackcube")
    assert set(groups) == {n.path for n in stackcube.open_cube(repo).subtree}


def test_credentials_reach_the_sources_host(tmp_path) -> None:
    """A host that wants a bearer token: the engine reads with ``credentials=`` and is refused without, as
    ``open_dataarray`` is."""
    from stackcube.errors import SourceError
    from tests.services.host import run_host
    from tests.twins import series

    token = "T0KEN-for-this-test-only"
    with run_host(tmp_path / "served", token=token) as host:
        items = series(host.root, host.url, 2)
        repo = tmp_path / "cube.icechunk"
        credentials = {f"{host.url}/": {"Authorization": f"Bearer {token}"}}
        stackcube.build_cube(items, repo=repo, progress=False, credentials=credentials)
        with pytest.raises(SourceError, match="credentials="):
            _ = xr.open_dataset(repo, engine="stackcube", mask_and_scale=False)["data"].values
        ds = xr.open_dataset(repo, engine="stackcube", mask_and_scale=False, credentials=credentials)
        for n in range(2):
            with rasterio.open(host.root / f"s{n}.tif") as src:
                np.testing.assert_array_equal(ds["data"].isel(time=n, band=0).values, src.read(1))


def test_a_cube_of_one_array_opens_without_a_group_and_keeps_its_name(tmp_path) -> None:
    """With one array, no group is needed; the array keeps its name either way (``open_dataarray`` without an array
    name named it None for a while)."""
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(write_demo_catalog(tmp_path / "demo"), repo=repo, assets=["B04", "B08"], progress=False)
    ours = stackcube.open_dataarray(repo)
    assert ours.name == TEN
    ds = xr.open_dataset(repo, engine="stackcube")
    _same(ds, ours)


def test_decoding_keywords_are_taken_when_they_ask_what_stackcube_does_and_refused_otherwise(cube) -> None:
    """xarray passes a decoding keyword only when it is given: one that asks for what stackcube does anyway opens;
    one that asks for another decoding is refused with what to use instead; an unknown keyword is named."""
    repo, _, _ = cube
    plain = xr.open_dataset(repo, engine="stackcube", group=TEN)
    same = xr.open_dataset(repo, engine="stackcube", group=TEN, decode_times=True, decode_coords="all")
    xr.testing.assert_identical(same, plain)
    with pytest.raises(ValueError, match=r"decode_times=False is not offered \(mask_and_scale=False gives"):
        xr.open_dataset(repo, engine="stackcube", group=TEN, decode_times=False)
    with pytest.raises(TypeError, match=r"takes no colour= .*mask_and_scale"):
        xr.open_dataset(repo, engine="stackcube", group=TEN, colour="red")
    with pytest.raises(ValueError, match="use_cftime=True"):
        xr.open_datatree(repo, engine="stackcube", use_cftime=True)


def test_allow_given_as_one_string_is_that_prefix(cube) -> None:
    """``allow="https://..."`` is one prefix, not a list of its characters (it was split into them)."""
    repo, _, _ = cube
    with pytest.raises(UntrustedSourceError, match=r"outside the allowed prefixes https://elsewhere\.example/;"):
        xr.open_dataset(repo, engine="stackcube", group=TEN, allow="https://elsewhere.example/")
    with pytest.raises(UntrustedSourceError, match=r"outside the allowed prefixes https://elsewhere\.example/;"):
        stackcube.open_dataarray(repo, TEN, allow="https://elsewhere.example/")
