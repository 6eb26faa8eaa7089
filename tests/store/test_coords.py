"""Coordinates read at open (store.coords): kept in the array node, they open exactly as xarray reads the arrays."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

import stackcube
from stackcube._sync import run
from stackcube.store import ArrayLayout, open_repository
from stackcube.store.coords import (
    ARRAYS,
    INLINE_MAX,
    KEPT_BYTES,
    Encodings,
    grow_kept,
    grown_from,
    inline_coordinates,
    kept_arrays,
    kept_size,
)
from stackcube.store.layout import DATA, INLINE, child_names, level_dataset, level_path


def build_stored(catalog, repo):
    """``build_cube`` as for a cube whose coordinates are too large to keep in its array nodes (or one written
    before they were kept there): every level stores them all."""
    from stackcube.store import write

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(write, "kept_arrays", lambda levels, **_: None)
        return stackcube.build_cube(catalog, repo=repo, progress=False)


def keep_in_nodes(cube) -> None:
    """Commit ``cube`` as a build writes an array whose coordinates are small (:func:`kept_arrays`): its levels
    store their data array only, its node keeps the rest (a no-op on a cube built so)."""
    session = cube.repository.writable_session("main")
    root = zarr.open_group(session.store, mode="r+")
    for array in cube.plan.arrays:
        kept = kept_arrays([level_dataset(level) for level in array.levels], member=False)
        assert kept is not None
        node = root[array.name]
        node.attrs.put({**node.attrs, INLINE: {**node.attrs[INLINE], ARRAYS: kept}})
        for n in range(len(array.levels)):
            for name in child_names(root[level_path(array.name, n)]) - {DATA}:
                del root[f"{level_path(array.name, n)}/{name}"]
    session.commit("keep the coordinates in the array nodes", allow_empty=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo catalog: two grids, bands with common names and wavelengths."""
    from stackcube.demo import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("coords") / "demo", dates=3)


@pytest.fixture(scope="module")
def cube(tmp_path_factory, demo):
    """The demo cube, its levels storing their coordinates: two arrays with overview levels."""
    return build_stored(demo, tmp_path_factory.mktemp("stored") / "cube.icechunk")


@pytest.fixture(scope="module")
def small(tmp_path_factory, demo):
    """The same cube as a build writes it: small coordinates, kept in the array nodes."""
    built = stackcube.build_cube(demo, repo=tmp_path_factory.mktemp("small") / "cube.icechunk", progress=False)
    keep_in_nodes(built)
    return built


def as_xarray_reads_them(repo, path: str, mask_and_scale: bool = True) -> xr.Dataset:
    """The level as ``xr.open_dataset`` gives it, reading every coordinate array."""
    session = open_repository(repo, reading=True).readonly_session(branch="main")
    return xr.open_dataset(
        session.store,
        group=path,
        engine="zarr",
        consolidated=False,
        zarr_format=3,
        decode_coords="all",
        mask_and_scale={DATA: False} if mask_and_scale else False,
    ).load()


def assert_same_coords(ours: xr.DataArray | xr.Dataset, theirs: xr.Dataset) -> None:
    assert set(ours.coords) == set(theirs.coords)
    for name in theirs.coords:
        xr.testing.assert_identical(ours[name].variable.load(), theirs[name].variable)
        assert ours[name].dtype == theirs[name].dtype, name
    for name in ("time", "band", "y", "x"):
        assert ours.indexes[name].equals(theirs.indexes[name]), name


def test_the_writer_keeps_what_a_reader_decodes_at_open(cube) -> None:
    session = cube.repository.readonly_session(branch="main")
    for array in cube.plan.arrays:
        attrs = zarr.open_group(session.store, path=array.name, mode="r").attrs
        kept = attrs[INLINE]["values"]
        assert {"time", "band", "scale", "offset", "common_name"} <= set(kept)
        assert not {"x", "y", "id", "source_href", "source_etag"} & set(kept)  # x/y: from the transforms
        assert attrs[INLINE]["x_y"] == "spatial:transform"
        assert kept["time"]["units"] == zarr.open_array(session.store, path=f"{array.name}/0/time").attrs["units"]


@pytest.mark.parametrize("mask_and_scale", [True, False])
def test_every_level_opens_with_the_coordinates_xarray_reads(cube, mask_and_scale) -> None:
    tree = stackcube.open_cube(cube.repository, mask_and_scale=mask_and_scale)
    for array in cube.plan.arrays:
        assert INLINE not in tree[array.name].attrs
        assert tree[array.name].attrs["multiscales"]
        assert_levels_open_as_read(tree, cube.repository, cube.repository, array, mask_and_scale)


def assert_levels_open_as_read(tree, ours, theirs_repo, array, mask_and_scale: bool) -> None:
    """Every level of ``array`` opened from ``ours`` (and in ``tree``, its DataTree) has the coordinates and (raw)
    values xarray reads from ``theirs_repo``."""
    for n in range(len(array.levels)):
        theirs = as_xarray_reads_them(theirs_repo, level_path(array.name, n), mask_and_scale)
        assert_same_coords(tree[level_path(array.name, n)].to_dataset(), theirs)
        single = stackcube.open_dataarray(ours, array.name, level=n, mask_and_scale=mask_and_scale)
        assert_same_coords(single, theirs)
        if not mask_and_scale:
            np.testing.assert_array_equal(single.isel(time=0, band=0).values, theirs[DATA].isel(time=0, band=0))


def _rewrite_array_node(repo, array: str, change) -> None:
    """Commit a change to an array node's attributes (``change`` edits the dict in place)."""
    session = repo.writable_session("main")
    group = zarr.open_group(session.store, path=array, mode="r+")
    attrs = dict(group.attrs)
    change(attrs)
    group.attrs.clear()
    group.attrs.update(attrs)
    session.commit("edit the array node")


def test_a_cube_written_before_reads_its_coordinates_concurrently(tmp_path) -> None:
    from stackcube.demo import write_demo_catalog

    built = build_stored(write_demo_catalog(tmp_path / "demo", dates=2), tmp_path / "c")
    for array in built.plan.arrays:
        _rewrite_array_node(built.repository, array.name, lambda attrs: attrs.pop(INLINE))
    tree = stackcube.open_cube(tmp_path / "c")
    for array in built.plan.arrays:
        for n in range(len(array.levels)):
            assert_same_coords(
                tree[level_path(array.name, n)].to_dataset(),
                as_xarray_reads_them(tmp_path / "c", level_path(array.name, n)),
            )


def test_a_kept_value_in_other_units_than_the_array_is_not_used(tmp_path) -> None:
    """The kept values name their units; if they are not the stored array's (an edit by another tool), the array is
    read instead: never a wrong date."""
    from stackcube.demo import write_demo_catalog

    built = build_stored(write_demo_catalog(tmp_path / "demo", dates=2), tmp_path / "c")
    name = built.plan.arrays[0].name

    def shift(attrs: dict) -> None:
        attrs[INLINE]["values"]["time"]["units"] = "days since 1999-01-01"
        attrs[INLINE]["values"]["time"]["values"] = [v + 1 for v in attrs[INLINE]["values"]["time"]["values"]]

    _rewrite_array_node(built.repository, name, shift)
    opened = stackcube.open_dataarray(tmp_path / "c", name)
    assert_same_coords(opened, as_xarray_reads_them(tmp_path / "c", level_path(name, 0)))


def test_long_or_per_level_coordinates_are_not_kept() -> None:
    times = np.arange(INLINE_MAX + 1).astype("datetime64[s]").astype("datetime64[ns]")
    long = xr.Dataset(coords={"time": times, "band": ["a"]})
    kept = inline_coordinates([long])["values"]
    assert set(kept) == {"band"}
    one = xr.Dataset(coords={"time": times[:3], "band": ["a"], "common_name": ("band", ["red"])})
    other = one.assign_coords(common_name=("band", ["blue"]))
    assert set(inline_coordinates([one, other])["values"]) == {"time", "band"}
    nan = one.assign_coords(center_wavelength=("band", [np.nan]))
    assert inline_coordinates([nan])["values"]["center_wavelength"]["values"] == [None]  # strict JSON


def test_layout_keeps_the_coordinates_through_its_attributes(cube) -> None:
    session = cube.repository.readonly_session(branch="main")
    array = cube.plan.arrays[0].name
    layout = ArrayLayout.from_attrs(zarr.open_group(session.store, path=array, mode="r").attrs)
    assert layout.coordinates["values"]["band"]["values"] == list(cube.plan.arrays[0].bands)
    assert ArrayLayout.from_attrs(layout.to_attrs()) == layout


def test_per_time_properties_are_read_when_used_not_at_open(cube) -> None:
    """Item properties, ids and provenance stay in their arrays until asked for: a selection by date or a filter on
    ``eo:cloud_cover`` reads that one property, and gives what the items say."""
    data = stackcube.open_dataarray(cube.repository, "EPSG32735_10m", mask_and_scale=False)
    per_time = [name for name, coord in data.coords.items() if coord.dims[:1] == ("time",) and name != "time"]
    assert {"eo:cloud_cover", "id", "source_href"} <= set(per_time)
    assert not [name for name in per_time if data[name].variable._in_memory]  # nothing read at open

    planned = next(a for a in cube.plan.arrays if a.name == "EPSG32735_10m")
    clouds = {",".join(ids): c for ids, c in zip(planned.items, planned.properties["eo:cloud_cover"], strict=True)}
    second = data.sel(time=data.time[1])
    assert float(second["eo:cloud_cover"]) == clouds[str(second["id"].values)]
    clear = data.where(data["eo:cloud_cover"] < 50, drop=True)
    assert sorted(clear.id.values.tolist()) == sorted(i for i, c in clouds.items() if c < 50)
    assert data["eo:cloud_cover"].variable._in_memory
    assert not data["source_href"].variable._in_memory  # the others still unread


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """The demo union's cube, and the same written as before members kept their coordinates in their node (every
    level storing them all, as for any array)."""
    from stackcube.demo import write_demo_offset_catalog
    from stackcube.store import write

    root = tmp_path_factory.mktemp("members")
    catalog = write_demo_offset_catalog(root / "offsets")
    kept = stackcube.build_cube(catalog, repo=root / "kept.icechunk", progress=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(write, "kept_arrays", lambda levels, **_: None)
        stored = stackcube.build_cube(catalog, repo=root / "stored.icechunk", progress=False)
    return kept, stored


def test_a_union_member_stores_its_data_only(members) -> None:
    kept, stored = members
    (union,) = kept.plan.unions
    arrays = {a.name: a for a in kept.plan.arrays}
    for repo, expected in ((kept, {DATA}), (stored, {DATA, "id", "source_href", "time", "x", "spatial_ref"})):
        root = zarr.open_group(repo.repository.readonly_session(branch="main").store, mode="r")
        for member in union.members:
            for n in range(len(arrays[member].levels)):
                names = child_names(root[level_path(member, n)])
                assert names == expected if repo is kept else expected <= names
        assert (ARRAYS in root[union.members[0]].attrs[INLINE]) is (repo is kept)


@pytest.mark.parametrize("mask_and_scale", [True, False])
def test_a_union_member_opens_as_one_that_stores_its_coordinates(members, mask_and_scale) -> None:
    kept, stored = members
    (union,) = kept.plan.unions
    tree = stackcube.open_cube(kept.repository, mask_and_scale=mask_and_scale, members=True)
    for array in kept.plan.arrays:
        assert array.name in union.members
        assert_levels_open_as_read(tree, kept.repository, stored.repository, array, mask_and_scale)
    xr.testing.assert_identical(
        stackcube.open_dataarray(kept.repository, union.name).load(),
        stackcube.open_dataarray(stored.repository, union.name).load(),
    )


def test_coordinates_that_differ_between_levels_are_stored() -> None:
    one = xr.Dataset(coords={"time": [np.datetime64("2021-05-03", "ns")], "band": ["red"], "x": [1.0]})
    assert set(kept_arrays([one, one.assign_coords(x=[2.0])]) or {}) == {"time", "band"}  # x: from the transform
    assert kept_arrays([one, one.assign_coords(band=["nir"])]) is None
    assert kept_arrays([one, one.drop_vars("band").assign_coords(band2=("band", ["red"]))]) is None


@pytest.mark.parametrize("mask_and_scale", [True, False])
def test_an_array_that_keeps_its_coordinates_opens_as_one_that_stores_them(small, cube, mask_and_scale) -> None:
    """What a small cube's build writes (its levels store their data arrays only: on object storage each stored
    array was one more manifest to write) opens as the same cube with every coordinate stored."""
    session = small.repository.readonly_session(branch="main")
    root = zarr.open_group(session.store, mode="r")
    tree = stackcube.open_cube(small.repository, mask_and_scale=mask_and_scale)
    for array in small.plan.arrays:
        assert ARRAYS in root[array.name].attrs[INLINE]
        assert INLINE not in tree[array.name].attrs
        for n in range(len(array.levels)):
            assert child_names(root[level_path(array.name, n)]) == {DATA}
        assert_levels_open_as_read(tree, small.repository, cube.repository, array, mask_and_scale)
        xr.testing.assert_identical(
            stackcube.open_dataarray(small.repository, array.name, mask_and_scale=mask_and_scale).load(),
            stackcube.open_dataarray(cube.repository, array.name, mask_and_scale=mask_and_scale).load(),
        )


def test_small_coordinates_are_kept_and_large_ones_stored() -> None:
    """An array keeps its coordinates in its node up to :data:`KEPT_BYTES` of them; a union's member (one scene)
    always does."""
    dates = np.arange(400).astype("datetime64[D]").astype("datetime64[ns]")
    one = xr.Dataset(coords={"time": dates, "band": ["red"], "id": ("time", [f"item-{t:04d}" for t in range(400)])})
    assert set(kept_arrays([one, one], member=False) or {}) == {"time", "band", "id"}
    long = one.assign_coords(title=("time", ["x" * (KEPT_BYTES // 400)] * 400))
    assert kept_arrays([long], member=False) is None
    assert kept_arrays([long]) is not None  # a member


def _dates(n: int, start: str = "2021-05-03") -> xr.Dataset:
    """A level's coordinates over ``n`` dates, five days apart, as :func:`level_dataset` makes them."""
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(5, "D")
    return xr.Dataset(
        coords={
            "time": times,
            "band": ["red", "nir"],
            "id": ("time", np.array([f"item-{t}" for t in range(n)], dtype=object)),
            "scale": (("time", "band"), np.full((n, 2), 1e-4), {"description": "physical = stored * scale + offset"}),
            "eo:cloud_cover": ("time", np.where(np.arange(n) % 2, np.nan, np.arange(n) * 1.5)),
            "common_name": ("band", ["red", "nir"]),
        }
    )


def test_kept_coordinates_grow_as_a_build_of_every_date_keeps_them() -> None:
    whole = _dates(5)
    kept = kept_arrays([_dates(3)], member=False)
    assert kept is not None
    assert grow_kept(kept, whole.isel(time=slice(3, None))) == kept_arrays([whole], member=False)


def test_a_build_and_an_append_measure_kept_coordinates_one_way(monkeypatch) -> None:
    """At every limit, the dates a build keeps in the node an append of the same dates keeps too, and what an
    append refuses a build stores: both measure with ``kept_size`` (an append that measured more refused cubes a
    build had kept, and had them read whole)."""
    from stackcube.store import coords

    whole = _dates(6)
    for limit in range(kept_size(kept_arrays([_dates(3)]) or {}) - 40, kept_size(kept_arrays([whole]) or {}) + 40, 7):
        monkeypatch.setattr(coords, "KEPT_BYTES", limit)
        built = kept_arrays([whole], member=False)
        first = kept_arrays([_dates(3)], member=False)
        if first is None:
            continue
        grown = grow_kept(first, whole.isel(time=slice(3, None)))
        assert (grown if isinstance(grown, dict) else None) == built, limit


def test_kept_coordinates_that_cannot_grow_say_why() -> None:
    kept = kept_arrays([_dates(3)], member=False)
    assert kept is not None
    new = _dates(5).isel(time=slice(3, None))
    assert "a coordinate more or less" in str(grow_kept(kept, new.assign_coords(gsd=("time", [1.0, 2.0]))))
    assert "a coordinate more or less" in str(grow_kept(kept, new.drop_vars("eo:cloud_cover")))
    assert grow_kept(kept, new.assign_coords(common_name=("band", ["r", "n"]))) == "coordinate common_name changed"
    assert grow_kept(kept, new.assign_coords(id=("time", [1, 2]))) == "coordinate id changed type"
    late = _dates(2, "2021-05-04")
    assert "between the stored ones" in str(grow_kept(kept, late))
    finer = late.assign_coords(time=late.time + np.timedelta64(30, "m") + np.timedelta64(10, "D"))
    assert "finer than the stored time units" in str(grow_kept(kept, finer))
    many = _dates(3 + 2000).isel(time=slice(3, None))
    assert grow_kept(kept, many.assign_coords(id=("time", np.array(["x" * 200] * 2000, dtype=object)))) == (
        "its coordinates outgrew its array node"
    )


def test_kept_coordinates_say_whether_a_whole_plan_grew_them_along_time() -> None:
    """A refresh that planned the whole cube again appends when the stored kept coordinates are its first steps."""
    stored = kept_arrays([_dates(3)], member=False)
    assert stored is not None

    def why(ds: xr.Dataset) -> str | None:
        return grown_from(stored, kept_arrays([ds], member=False))

    whole = _dates(5)
    assert why(whole) is None
    late = xr.concat([whole.isel(time=[0]), _dates(1, "2021-05-05"), whole.isel(time=slice(1, None))], "time")
    assert "between the stored ones" in str(why(late))
    finer = whole.assign_coords(time=whole.time.values + np.array([0, 0, 0, 0, 30], "timedelta64[m]"))
    assert "finer than the stored time units" in str(why(finer))
    assert "a coordinate more or less" in str(why(whole.assign_coords(gsd=("time", np.ones(5)))))
    assert why(whole.assign_coords(common_name=("band", ["r", "n"]))) == "coordinate common_name changed"
    assert grown_from(stored, None) == "its coordinates outgrew its array node"


def _variants() -> list[xr.Dataset]:
    """Levels whose coordinates are alike but for one thing each (attributes, encoding, dtype, name, dimensions,
    values, indexes), to encode one after the other through one :class:`Encodings`."""
    base = _dates(3)
    scale = base["scale"].variable

    def strings(*values: str) -> np.ndarray:
        return np.array(values, dtype=object)  # as level_dataset makes them (NumPy's own strings are not remembered)

    return [
        base,
        base,
        base.assign_coords(scale=scale.copy(data=scale.values.astype("float32"))),
        base.assign_coords(scale=xr.Variable(scale.dims, scale.values, {"description": "another"})),
        base.assign_coords(scale=xr.Variable(scale.dims, scale.values, scale.attrs, {"dtype": "float32"})),
        base.assign_coords(offset=scale),
        base.assign_coords(common_name=("band", strings("nir", "red"))),
        base.assign_coords(common_name=("band", strings("red", "nir"))),
        base.assign_coords(time=xr.Variable("time", base.time.values, encoding={"units": "hours since 2021-01-01"})),
        base.assign_coords(time=base.time.values + np.timedelta64(1, "h")),
        base.assign_coords(time=base.time.values.astype("datetime64[s]")),
        base.assign_coords(id=("time", np.array(["a", "b", None], dtype=object))),
        base.assign_coords(id=("time", np.arange(3, dtype="int64"))),
        base.assign_coords(id=("time", np.arange(3, dtype="uint64"))),
        xr.Coordinates(dict(base.variables.items()), indexes={}).to_dataset(),
        _dates(1),
        _dates(2, "2021-05-08"),
        _dates(2, "2021-05-08").assign_coords(tile=("time", strings("a", "b"))),
        _dates(2, "2021-05-08").assign_coords(tile=("band", strings("a", "b"))),
    ]


def test_coordinates_encoded_once_are_kept_as_encoded_each_time() -> None:
    """What a build that encodes each distinct coordinate once (:class:`Encodings`) keeps of every level is what
    encoding it anew keeps: coordinates that differ in anything the encoding reads never share an encoding."""
    from stackcube.store import coords, nodes

    def anew(levels) -> tuple:
        """What is kept of ``levels`` when each coordinate is encoded by xarray and zarr directly (no memo, and no
        dates through the CF encoding first)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Encodings, "cf", lambda _, name, var: xr.conventions.encode_cf_variable(var, name=name))
            patch.setattr(Encodings, "kept", lambda _, name, var: coords._entry(*nodes.encoded_array(name, var)))
            return inline_coordinates(levels), kept_arrays(levels), kept_arrays(levels, member=False)

    encodings = Encodings()
    for levels in ([[ds] for ds in _variants()] + [[ds, ds] for ds in _variants()])[::-1]:
        once = (
            inline_coordinates(levels, encodings),
            kept_arrays(levels, encodings=encodings),
            kept_arrays(levels, member=False, encodings=encodings),
        )
        assert once == anew(levels)
    assert len(encodings._kept) > 10  # they were remembered (and the test above compared remembered ones)


def _stored(repo) -> dict[str, bytes]:
    """Every key a cube's repository holds but its levels' data chunks (the references), with its bytes."""
    from zarr.core.buffer import default_buffer_prototype

    store = repo.repository.readonly_session(branch="main").store

    async def read() -> dict[str, bytes]:
        keys = [key async for key in store.list() if "/data/c/" not in key]
        values = [await store.get(key, prototype=default_buffer_prototype()) for key in keys]
        return {key: value.to_bytes() for key, value in zip(keys, values, strict=True)}

    return run(read())


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "stored"])
@pytest.mark.parametrize("catalog", ["union", "arrays"])
def test_a_build_that_encodes_each_coordinate_once_stores_what_encoding_each_anew_does(tmp_path, catalog, kept) -> None:
    """The build's :class:`Encodings` and its members' levels without indexes store every node and coordinate as a
    build that encodes every array's coordinates anew, with indexes."""
    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog
    from stackcube.store import coords, layout, nodes, write

    demo = (
        write_demo_offset_catalog(tmp_path / "offsets")
        if catalog == "union"
        else write_demo_catalog(tmp_path / "demo", dates=3)
    )
    built = {}
    for once in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            if not kept:
                patch.setattr(write, "kept_arrays", lambda levels, **_: None)
            if not once:
                patch.setattr(Encodings, "cf", lambda _, name, var: xr.conventions.encode_cf_variable(var, name=name))
                patch.setattr(Encodings, "kept", lambda _, name, var: coords._entry(*nodes.encoded_array(name, var)))
                patch.setattr(write, "level_dataset", lambda plan, **_: layout.level_dataset(plan))
            repo = tmp_path / f"{once}.icechunk"
            built[once] = _stored(stackcube.build_cube(demo, repo=repo, progress=False))
    assert any(key.endswith("/zarr.json") and b'"arrays"' in value for key, value in built[True].items()) is kept
    assert built[True].keys() == built[False].keys()
    for key, value in built[True].items():
        assert value == built[False][key], key
