"""write_groups writes what ``Dataset.to_zarr`` writes, byte for byte, for every kind of group a cube holds."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

import stackcube
from stackcube.demo import write_demo_catalog
from stackcube.store.coords import inline_coordinates
from stackcube.store.layout import (
    TABLE_ENCODING,
    ArrayLayout,
    coordinate_encoding,
    level_dataset,
    sources_table,
    union_tiles,
)
from stackcube.store.nodes import write_groups


def _groups(plan) -> list[tuple[str, xr.Dataset, dict]]:
    groups = [("sources", sources_table(plan.sources), TABLE_ENCODING)]
    for array in plan.arrays:
        datasets = [level_dataset(level) for level in array.levels]
        groups.append(
            (array.name, xr.Dataset(attrs=ArrayLayout.of(array, inline_coordinates(datasets)).to_attrs()), {})
        )
        groups += [(f"{array.name}/{n}", ds, coordinate_encoding(ds)) for n, ds in enumerate(datasets)]
    arrays = {a.name: a for a in plan.arrays}
    for union in plan.unions:
        for n in range(union.n_levels):
            groups.append((f"{union.name}/{n}", union_tiles([arrays[m].levels[n] for m in union.members]), {}))
    return groups


def _written_by_xarray(groups) -> dict[str, bytes]:
    store = zarr.storage.MemoryStore()
    for path, ds, encoding in groups:
        ds.to_zarr(store, group=path, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
    return {k: v.to_bytes() for k, v in store._store_dict.items()}


def _written_at_once(groups, **kw) -> dict[str, bytes]:
    store = zarr.storage.MemoryStore()
    write_groups(store, groups, **kw)  # in the cube's order, nested groups after their parents or not
    return {k: v.to_bytes() for k, v in store._store_dict.items()}


@pytest.fixture(scope="module")
def demo_plan(tmp_path_factory):
    # six bands in two grids, overviews, per-time properties, scale and offset in STAC
    return stackcube.plan_cube(write_demo_catalog(tmp_path_factory.mktemp("demo")), progress=False)


def test_every_node_of_the_demo_cube_is_what_to_zarr_writes(demo_plan) -> None:
    groups = _groups(demo_plan)
    expected = _written_by_xarray(groups)
    assert len(expected) > 100
    assert _written_at_once(groups) == expected


def test_text_columns_set_a_slice_at_a_time_are_what_to_zarr_writes(demo_plan, monkeypatch) -> None:
    """The source table's columns (and text coordinates) are set a few chunks at a time, so that zarr's copy of a
    column is a slice's; with slices of one chunk, of two, and of more rows than a chunk holds but not whole
    chunks, the stored bytes are to_zarr's."""
    from stackcube.store import nodes

    table = sources_table(demo_plan.sources * 23)  # several chunks of 16 rows, the last one partial
    encoding = {name: {"chunks": (16,)} for name in table.data_vars if table[name].dtype == object}
    groups = [("sources", table, encoding)]
    expected = _written_by_xarray(groups)
    rows = table.sizes["source"]
    assert rows % 16
    assert sum(1 for k in expected if k.startswith("sources/manifest/c/")) == -(-rows // 16) > 3
    setitem = zarr.AsyncArray.setitem
    calls: list[str] = []

    async def counted(self, *args, **kwargs):
        calls.append(self.path)
        return await setitem(self, *args, **kwargs)

    monkeypatch.setattr(zarr.AsyncArray, "setitem", counted)
    for most, slices in ((1, -(-rows // 16)), (16, -(-rows // 16)), (40, -(-rows // 32)), (10**6, 1)):
        monkeypatch.setattr(nodes, "TEXT_ROWS", most)
        calls.clear()
        assert _written_at_once(groups) == expected
        assert calls.count("sources/manifest") == slices


def test_a_union_of_scenes_is_what_to_zarr_writes(tmp_path) -> None:
    from benchmarks.union_bench import items_for, write_scenes

    scenes = write_scenes(tmp_path, 6)
    plan = stackcube.plan_cube(items_for(scenes, str(tmp_path)), progress=False)
    assert plan.unions
    groups = _groups(plan)
    assert _written_at_once(groups) == _written_by_xarray(groups)


def test_a_group_is_replaced_and_what_is_beside_it_kept() -> None:
    store = zarr.storage.MemoryStore()
    xr.Dataset({"old": ("x", np.arange(3))}).to_zarr(store, group="A/0", mode="w", zarr_format=3, consolidated=False)
    xr.Dataset({"kept": ("x", np.arange(2))}).to_zarr(store, group="B", mode="w", zarr_format=3, consolidated=False)
    root_before = store._store_dict["zarr.json"].to_bytes()
    new = xr.Dataset({"new": ("t", np.array(["a", "bc"], dtype=object))}, attrs={"k": 1})
    write_groups(store, [("A", xr.Dataset(attrs={"layout": [1, 2]}), {}), ("A/0", new, {})])
    opened = xr.open_zarr(store, group="A/0", consolidated=False, zarr_format=3)
    assert list(opened.variables) == ["new"]
    assert opened.attrs == {"k": 1}
    assert zarr.open_group(store, path="A", mode="r").attrs["layout"] == [1, 2]
    assert "kept" in xr.open_zarr(store, group="B", consolidated=False, zarr_format=3)
    assert store._store_dict["zarr.json"].to_bytes() == root_before  # a parent there already is left alone


def test_arrays_are_created_in_the_groups_without_values() -> None:
    store = zarr.storage.MemoryStore()
    write_groups(
        store,
        [("A/0", xr.Dataset(coords={"x": np.arange(4.0)}), {})],
        arrays=[("A/0", "data", {"shape": (4,), "chunks": (2,), "dtype": "uint16", "fill_value": 7})],
    )
    data = zarr.open_array(store, path="A/0/data", mode="r")
    assert (data.shape, data.chunks, data.fill_value) == ((4,), (2,), 7)
    assert not [k for k in store._store_dict if k.startswith("A/0/data/c")]


def test_arrays_made_alike_are_made_once(tmp_path, monkeypatch) -> None:
    # a union's members have a dozen coordinates each, alike but for their values: zarr makes each kind once and
    # the others get its metadata document (their values are still their own: the test above compares them)
    from benchmarks.union_bench import items_for, write_scenes

    plan = stackcube.plan_cube(items_for(write_scenes(tmp_path, 6), str(tmp_path)), progress=False)
    made = []
    create_array = zarr.api.asynchronous.create_array

    async def counted(at, **kw):
        made.append(at.path)
        return await create_array(at, **kw)

    monkeypatch.setattr(zarr.api.asynchronous, "create_array", counted)
    groups = _groups(plan)
    written = _written_at_once(groups)
    arrays = [k for k in written if k.endswith("/zarr.json") and b'"node_type": "array"' in written[k]]
    members = [p for p, _, _ in groups if p.endswith("/0") and "union" not in p]
    assert len(members) == 6
    per_member = len([a for a in arrays if a.startswith(members[0] + "/")])
    assert per_member > 10
    # every member's own: spatial_ref (its GeoTransform) and time (its units start at its date)
    assert len(made) < len(arrays) - 5 * (per_member - 2)


def test_an_array_that_cannot_be_made_fails_every_array_made_like_it() -> None:
    kw = {"shape": (4,), "chunks": (2, 2), "dtype": "uint16"}  # chunks of the wrong rank
    with pytest.raises(ValueError, match="chunk"):
        write_groups(
            zarr.storage.MemoryStore(),
            [("A/0", xr.Dataset(), {}), ("B/0", xr.Dataset(), {})],
            arrays=[("A/0", "data", kw), ("B/0", "data", kw)],
        )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"fill_value": 0}, {"fill_value": 0.0}),
        ({"fill_value": 0}, {"fill_value": False}),
        ({"fill_value": 0.0}, {"fill_value": -0.0}),
        ({"fill_value": np.float32(1)}, {"fill_value": 1.0}),
        ({"dtype": np.dtype("<u2")}, {"dtype": np.dtype(">u2")}),
        ({"attributes": {"a": 1, "b": 2}}, {"attributes": {"b": 2, "a": 1}}),  # another document
        ({"compressors": [zarr.codecs.ZstdCodec(level=1)]}, {"compressors": [zarr.codecs.ZstdCodec(level=2)]}),
        ({"chunks": (1, 2)}, {"chunks": [1, 2]}),
    ],
)
def test_signatures_differ_where_the_keywords_do(a, b) -> None:
    from stackcube.store.nodes import plain_signature

    assert plain_signature(a) is not None
    assert plain_signature(a) != plain_signature(b)
    assert plain_signature(a) == plain_signature(dict(a))


def test_nan_signatures_are_equal_and_unknown_objects_have_none() -> None:
    from stackcube.store.nodes import plain_signature

    assert plain_signature({"fill_value": float("nan")}) == plain_signature({"fill_value": float("nan")})
    assert plain_signature({"serializer": object()}) is None
