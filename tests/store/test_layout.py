"""What a cube stores (store.layout): every typed description round-trips, through JSON and a real Zarr group."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import xarray as xr
import zarr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

import stackcube
from stackcube.errors import RepositoryError
from stackcube.options import CubeOptions
from stackcube.search import Query
from stackcube.store import ArrayLayout, CubeMetadata, Level
from stackcube.store.layout import level_dataset
from stackcube.union import UnionLevel, UnionPlan


def through_zarr(attrs: dict) -> dict:
    """The attributes as a Zarr group gives them back (JSON on the way)."""
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    group.attrs.update(json.loads(json.dumps(attrs)))
    return dict(group.attrs)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Plans of the demo catalogs: two arrays with overview levels, and six scenes in one union."""
    from stackcube.demo import write_demo_catalog, write_demo_offset_catalog

    root = tmp_path_factory.mktemp("layout")
    arrays = stackcube.plan_cube(write_demo_catalog(root / "demo"), datetime="2020-06", progress=False)
    unions = stackcube.plan_cube(write_demo_offset_catalog(root / "offsets"), sort_by="eo:cloud_cover", progress=False)
    return arrays, unions


def test_every_level_of_an_array_has_its_manifest_in_pieces_of_the_same_dates(plans, monkeypatch) -> None:
    """Pieces of MANIFEST_REFS references of level 0, the same dates at every level: an append rewrites the last
    piece of each level, and an overview's pieces hold a fraction of level 0's references, not as many."""
    from stackcube.store import layout

    monkeypatch.setattr(layout, "MANIFEST_REFS", 64)
    arrays, _ = plans
    splits = layout.manifest_splits(arrays.arrays)
    assert any(len(array.levels) > 1 for array in arrays.arrays)
    for array in arrays.arrays:
        per_date = [math.prod(level.source_index.shape[1:]) for level in array.levels]
        assert per_date == sorted(per_date, reverse=True)
        steps = {splits[f"/{array.name}/{n}/data"] for n in range(len(array.levels))}
        assert steps == {max(1, 64 // per_date[0])}


def test_manifest_pieces_are_written_without_a_dictionary_of_their_urls() -> None:
    """Icechunk trains a dictionary for a manifest's URLs from a number of chunks a write sets (a quarter of an
    append's commit): a piece (at most MANIFEST_REFS references) holds fewer than that."""
    import icechunk

    from stackcube.store import layout
    from stackcube.store.repo import for_writing

    repository = for_writing(icechunk.Repository.create(icechunk.in_memory_storage()), {})
    from_chunks = repository.config.manifest.virtual_chunk_location_compression.min_num_chunks
    assert from_chunks > layout.MANIFEST_REFS


def test_cube_metadata_round_trips(plans) -> None:
    for plan in plans:
        metadata = CubeMetadata.of(plan)
        assert CubeMetadata.from_attrs(metadata.to_attrs()) == metadata
        assert CubeMetadata.from_attrs(through_zarr(metadata.to_attrs())) == metadata
        assert metadata.arrays == tuple(a.name for a in plan.arrays)
        assert metadata.array_names == plan.array_names
    _, unions = plans
    stored = CubeMetadata.from_attrs(through_zarr(CubeMetadata.of(unions).to_attrs()))
    assert stored.options == CubeOptions(sort_by="eo:cloud_cover")
    assert stored.query.datetime is None
    assert stored.members == frozenset(unions.unions[0].members)


def test_array_layouts_round_trip_with_every_level(plans) -> None:
    arrays, _ = plans
    assert any(a.overviews for a in arrays.arrays)
    for array in arrays.arrays:
        layout = ArrayLayout.of(array)
        assert len(layout.levels) == 1 + len(array.overviews)
        assert ArrayLayout.from_attrs(through_zarr(layout.to_attrs())) == layout
        assert [level.transform for level in layout.levels] == [p.transform for p in array.levels]


def test_union_descriptions_round_trip(plans) -> None:
    _, unions = plans
    (union,) = unions.unions
    assert union.member_keys  # sort_by keeps each member time step's cloud cover
    assert UnionPlan.from_dict(union.name, json.loads(json.dumps(union.to_dict()))) == union
    with_levels = UnionPlan.from_dict(
        union.name,
        {
            **union.to_dict(),
            "overviews": [{"offsets": [[0, 0]] * 6, "transform": [60, 0, 1, 0, -60, 2], "shape": [5, 1, 9, 9]}],
        },
    )
    assert with_levels.overviews == (UnionLevel(((0, 0),) * 6, Affine(60, 0, 1, 0, -60, 2), (5, 1, 9, 9)),)
    assert UnionPlan.from_dict(union.name, with_levels.to_dict()) == with_levels
    assert with_levels.at_level(1).transform == Affine(60, 0, 1, 0, -60, 2)


def test_a_cube_written_before_the_rename_still_opens() -> None:
    # stackcube 0.1.0.dev0 called the stored arrays "groups"
    old = {"stackcube": {"version": "0.1.0.dev0", "query": {"catalog": "x"}, "options": {}, "groups": ["A", "B"]}}
    metadata = CubeMetadata.from_attrs(old)
    assert metadata.arrays == ("A", "B")
    assert metadata.options == CubeOptions()
    assert metadata.query == Query(catalog="x")


def test_a_group_without_cube_metadata_is_not_a_cube() -> None:
    with pytest.raises(RepositoryError, match="holds no stackcube cube"):
        CubeMetadata.from_attrs({"other": 1})


finite = st.floats(-1e7, 1e7, allow_nan=False, allow_subnormal=False)
pixel = st.floats(1e-4, 1e4, allow_nan=False, allow_subnormal=False)


@st.composite
def layouts(draw) -> ArrayLayout:
    crs = draw(st.sampled_from(["EPSG:32735", "EPSG:4326", 'PROJCRS["custom",BASEGEOGCRS["WGS 84"]]']))
    a, e, c, f = draw(pixel), -draw(pixel), draw(finite), draw(finite)
    levels = [Level(Affine(a, 0.0, c, 0.0, e, f), (draw(st.integers(1, 10**6)), draw(st.integers(1, 10**6))))]
    for _ in range(draw(st.integers(0, 4))):
        k = draw(st.sampled_from([2.0, 3.0, 4.0]))
        t = levels[-1].transform
        levels.append(Level(Affine(t.a * k, 0.0, c, 0.0, t.e * k, f), (draw(st.integers(1, 10**5)),) * 2))
    return ArrayLayout(crs=crs, levels=tuple(levels))


@settings(max_examples=100, deadline=None)
@given(layout=layouts())
def test_any_array_layout_round_trips(layout) -> None:
    attrs = through_zarr(layout.to_attrs())
    assert ArrayLayout.from_attrs(attrs) == layout
    # what the multiscales convention says of each level follows from the transforms
    for entry, level in zip(attrs["multiscales"]["layout"], layout.levels, strict=True):
        base = layout.levels[0].transform
        assert math.isclose(entry["transform"]["scale"][1], level.transform.a / base.a)


@settings(max_examples=100, deadline=None)
@given(
    overlap=st.sampled_from(["first", "last"]),
    sort_by=st.one_of(st.none(), st.text(min_size=1, max_size=12)),
    groupby=st.sampled_from(["datetime", "solar_day", None]),
    assets=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5)),
    arrays=st.lists(st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True), max_size=4, unique=True),
)
def test_any_cube_metadata_round_trips(overlap, sort_by, groupby, assets, arrays) -> None:
    options = CubeOptions(assets=assets, overlap=overlap, sort_by=sort_by, groupby=groupby)
    query = Query(catalog="https://example.com/stac", bbox=(1.0, 2.0, 3.0, 4.0), collections=("c",), max_items=9)
    metadata = CubeMetadata(query=query, options=options, arrays=tuple(arrays))
    assert CubeMetadata.from_attrs(through_zarr(metadata.to_attrs())) == metadata


@pytest.mark.parametrize("written_before", [False, True])
def test_the_source_rows_a_refresh_compares(plans, written_before) -> None:
    """Read in the table's order; a table written before the ``updated`` and ``digest`` columns gives the
    ``updated`` its properties hold and no digest."""
    import icechunk

    from stackcube.store.layout import SOURCES, TABLE_ENCODING, StoredRow, read_source_rows, sources_table
    from stackcube.store.nodes import write_groups

    arrays, _ = plans
    sources = [  # the demo's items carry no `updated`: some do here
        dataclasses.replace(s, properties={**s.properties, "updated": f"2024-01-0{n % 9 + 1}T00:00:00Z"})
        if n % 2
        else s
        for n, s in enumerate(arrays.sources)
    ]
    table = sources_table(sources)
    if written_before:
        table = table.drop_vars(["updated", "digest"])
    session = icechunk.Repository.create(icechunk.in_memory_storage()).writable_session("main")
    root = zarr.group(session.store)
    write_groups(session.store, [(SOURCES, table, {k: v for k, v in TABLE_ENCODING.items() if k in table})])
    rows = read_source_rows(root)
    digests = [""] * len(sources) if written_before else [s.digest for s in sources]
    expected = [
        StoredRow(s.item_id, s.asset, s.band, s.manifest.href, s.properties.get("updated", ""), digest)
        for s, digest in zip(sources, digests, strict=True)
    ]
    assert list(rows) == expected
    assert any(row.updated for row in rows)
    assert not all(row.updated for row in rows)
    assert all(row.digest for row in rows) is not written_before


def test_a_level_without_indexes_holds_the_same_coordinates(plans) -> None:
    """``level_dataset(..., indexes=False)`` (a union member's, whose node keeps its coordinates) holds the same
    variables, in the same order, as with xarray's default indexes; only the indexes are missing."""
    for plan in plans:
        for array in plan.arrays:
            for level in array.levels:
                indexed, bare = level_dataset(level), level_dataset(level, indexes=False)
                assert list(bare.variables) == list(indexed.variables)
                assert list(bare.coords) == list(indexed.coords)
                assert not bare.xindexes
                assert indexed.xindexes
                for name, var in indexed.variables.items():
                    assert type(bare.variables[name]) is xr.Variable
                    assert bare.variables[name].identical(var.to_base_variable()), name
