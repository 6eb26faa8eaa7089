"""A refresh whose new items come after the cube's last time step appends them: the same cube as a rebuild from
scratch (every array's metadata, every coordinate, every reference, the source table), written in proportion to
the new items; anything else is rewritten as before."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import zarr

import stackcube
from stackcube import refresh
from stackcube.demo import write_demo_catalog
from stackcube.store import OpenOptions, open_repository
from stackcube.store.read import _session


def _items(catalog: str) -> list[pystac.Item]:
    return sorted(pystac.Catalog.from_file(catalog).get_items(recursive=True), key=lambda i: i.datetime)


def _remove(catalog: str, items: list[pystac.Item]) -> None:
    root = pystac.Catalog.from_file(catalog)
    for item in items:
        root.remove_item(item.id)
    root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)


def _add(catalog: str, items: list[pystac.Item]) -> None:
    root = pystac.Catalog.from_file(catalog)
    for item in items:
        root.add_item(item.clone())
    root.normalize_hrefs(str(Path(catalog).parent))
    root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)


def _copy_of(item: pystac.Item, item_id: str, when, catalog: str, **properties: Any) -> pystac.Item:
    """Another acquisition of ``item``'s scene: its own copies of the files (beside the catalog's), at ``when``."""
    out = Path(catalog).parent.parent / "data"
    new = item.clone()
    new.id = item_id
    new.datetime = when
    new.properties.update(properties)
    for asset in new.assets.values():
        source = Path(asset.get_absolute_href())
        copy = out / item_id / source.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        asset.href = str(copy)
    return new


def _tree(repo: Path) -> dict[str, Any]:
    """Everything a cube holds, as comparable values: every group's attributes, every array's metadata and values
    (decoded through the virtual references for the data arrays), and where its virtual chunks point."""
    session, _ = _session(repo, OpenOptions(), None)  # the containers the cube lists, authorized
    out: dict[str, Any] = {"locations": sorted(session.all_virtual_chunk_locations())}
    for path, node in zarr.open_group(session.store, mode="r").members(max_depth=None):
        if isinstance(node, zarr.Group):
            out[path] = dict(node.attrs)
            continue
        out[path] = node.metadata.to_dict()
        values = np.asarray(node[...])
        if values.dtype.kind == "M":
            values = values.astype("int64")
        out[f"{path}[...]"] = values.astype(object).tolist() if values.dtype.kind in "OTUS" else values.tolist()
    return out


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, list) and value and isinstance(value[0], float | list):
            np.testing.assert_array_equal(np.asarray(got[key], dtype=object), np.asarray(value, dtype=object), key)
        else:
            assert got[key] == value, key


@pytest.fixture
def scenes(tmp_path):
    return _scenes(tmp_path)


def _scenes(tmp_path: Path) -> tuple[str, Path, list[pystac.Item]]:
    """A demo catalog of five dates; the cube is built from the first three."""
    catalog = write_demo_catalog(tmp_path / "demo", dates=5, size=512)
    items = _items(catalog)
    _remove(catalog, items[3:])
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    return catalog, repo, items


def _rebuild(catalog: str, tmp_path: Path) -> dict[str, Any]:
    repo = tmp_path / "rebuilt.icechunk"
    stackcube.build_cube(catalog, repo=repo, progress=False)
    return _tree(repo)


def test_a_cube_that_stores_its_coordinates_appends_them_as_a_rebuild_stores_them(tmp_path, monkeypatch) -> None:
    """A cube whose coordinates are too large to keep in its array nodes (its levels store them all: a long one,
    or one written before small ones were kept) grows them along time; a small one grows them in its nodes (the
    other tests)."""
    from stackcube.store import coords, write

    monkeypatch.setattr(
        write, "kept_arrays", lambda levels, member=True, **kw: coords.kept_arrays(levels, **kw) if member else None
    )
    catalog, repo, items = _scenes(tmp_path)
    _add(catalog, items[3:])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.appended
    tree = _tree(repo)
    assert "EPSG32735_10m/0/eo:cloud_cover" in tree
    _assert_same(tree, _rebuild(catalog, tmp_path))


def test_new_items_after_the_last_date_are_appended_and_make_the_cube_of_a_rebuild(
    scenes, tmp_path, monkeypatch
) -> None:
    """The new items are planned alone, in the stored arrays' grids (the cube is not planned again, the stored
    sources' manifests are not read)."""
    from stackcube.store import stored

    def refused(*args, **kwargs):
        raise AssertionError("the whole cube was planned, or its manifests read")

    catalog, repo, items = scenes
    _add(catalog, items[3:])
    monkeypatch.setattr(refresh, "plan_sources", refused)
    monkeypatch.setattr(stored, "read_sources_table", refused)
    report = stackcube.refresh_cube(repo, progress=False)
    monkeypatch.undo()
    assert report.committed
    assert report.appended
    assert report.added == tuple(sorted(i.id for i in items[3:]))
    assert "written: the new time steps, appended" in str(report)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))
    again = stackcube.refresh_cube(repo, progress=False)
    assert not again.committed


def test_appends_one_after_another_make_the_cube_of_a_rebuild(scenes, tmp_path) -> None:
    catalog, repo, items = scenes
    for item in items[3:]:
        _add(catalog, [item])
        assert stackcube.refresh_cube(repo, progress=False).appended
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


@pytest.mark.parametrize("index", ["absent", "stale"])
def test_an_append_to_a_cube_without_a_good_id_index_makes_the_cube_of_a_rebuild(scenes, tmp_path, index) -> None:
    """A cube written before the source table's id index, or with one an earlier stackcube's append left shorter
    than the table: its refresh reads every row, and its append leaves the table a rebuild writes (the index a
    build writes, whole)."""
    from stackcube.store.layout import ID_INDEX

    catalog, repo, items = scenes
    repository = open_repository(repo)
    session = repository.writable_session("main")
    table = zarr.open_group(session.store, mode="r+")["sources"]
    assert ID_INDEX in table  # the build wrote one
    if index == "absent":
        del table[ID_INDEX]
    else:
        table[ID_INDEX].resize((table[ID_INDEX].shape[0] - 1,))
    session.commit(f"an id index {index}")
    rows = int(table["item_id"].shape[0])
    _add(catalog, items[3:4])
    report = stackcube.refresh_cube(repo, progress=False)
    assert (report.appended, report.rows_read) == (True, rows)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_new_item_with_a_new_property_rewrites_the_cube(scenes, tmp_path) -> None:
    """A property no stored item has becomes a coordinate: the cube is rewritten, and equals a rebuild."""
    catalog, repo, items = scenes
    _add(catalog, [_copy_of(items[4], "NEWPROP", items[4].datetime, catalog, **{"s2:tile": "35MNM"})])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert not report.appended
    assert str(report.rewritten).startswith("EPSG32735_10m/0: ")  # its coordinates (attributes list them)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_late_item_rewrites_the_cube(scenes, tmp_path) -> None:
    catalog, repo, items = scenes
    _add(catalog, [_copy_of(items[1], "LATE", items[1].datetime + timedelta(days=1), catalog)])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert not report.appended
    assert "a time step between the stored ones" in str(report.rewritten)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_kept_assets_band_metadata_changed_without_a_new_updated_rewrites_the_cube(scenes, tmp_path) -> None:
    """A provider corrects a stored asset's scale in STAC without touching ``updated``: the source is no longer
    what the cube holds (its digest differs), so the refresh rewrites with it, as a rebuild would."""
    catalog, repo, items = scenes
    root = pystac.Catalog.from_file(catalog)
    first = next(i for i in root.get_items(recursive=True) if i.id == items[0].id)
    first.assets["B04"].extra_fields["raster:bands"] = [{"data_type": "uint16", "nodata": 0, "scale": 0.0001}]
    first.save_object()
    _add(catalog, items[3:4])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert not report.appended
    assert "band metadata changed" in str(report.rewritten)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_new_time_finer_than_the_stored_time_units_rewrites_the_cube(scenes, tmp_path) -> None:
    """xarray keeps the demo's times in whole seconds; a new item at half a second past cannot be appended in them
    (it would be rounded, or written in other units than the array says): the cube is rewritten."""
    catalog, repo, items = scenes
    when = items[2].datetime + timedelta(days=30, milliseconds=500)
    _add(catalog, [_copy_of(items[2], "FINER", when, catalog)])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert not report.appended
    assert "finer than the stored time units" in str(report.rewritten)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_kept_item_whose_properties_changed_rewrites_the_cube(scenes, tmp_path) -> None:
    """A stored item's cloud cover corrected without a new ``updated``, and a new item: rewritten with both."""
    catalog, repo, items = scenes
    root = pystac.Catalog.from_file(catalog)
    first = next(i for i in root.get_items(recursive=True) if i.id == items[0].id)
    first.properties["eo:cloud_cover"] = 99.0
    first.save_object()
    _add(catalog, items[3:4])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert not report.appended
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


@pytest.mark.parametrize("split", [True, False])
def test_an_append_writes_one_manifest_per_array_it_touches_and_split_ones_only_their_last_piece(
    tmp_path, monkeypatch, split
) -> None:
    """Icechunk's manifests, counted: an append writes one per array it adds chunks to (the new steps' data and
    coordinates, the source table's columns); with the data split along time (one date a piece here) the new
    level-0 manifest holds only the new date's references, without it the whole array's."""
    from stackcube.store import layout

    if split:
        monkeypatch.setattr(layout, "MANIFEST_REFS", 16)  # level 0 of the 10 m array: 16 references a date
    catalog, repo, items = _scenes(tmp_path)
    _add(catalog, items[3:4])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.appended
    repository = open_repository(repo)
    before = {m.id for m in repository.list_manifest_files(report.previous)}
    written = [m for m in repository.list_manifest_files(report.snapshot_id) if m.id not in before]
    touched = repository.diff(from_snapshot_id=report.previous, to_snapshot_id=report.snapshot_id).updated_chunks
    # at most one new manifest per array touched (none for a chunk Icechunk does not store: the empty `updated`
    # column of items without one is all fill value), and not fewer than the arrays whose chunks hold values
    assert len(touched) - 1 <= len(written) <= len(touched)
    assert "/EPSG32735_10m/0/data" in touched
    assert "/sources/manifest" in touched
    assert len(touched["/EPSG32735_10m/0/data"]) == 16  # the new date: 4 bands x 2 x 2 tiles
    assert max(m.num_chunk_refs for m in written) == (16 if split else 4 * 16)


_KILLED_REFRESH = """
import os, signal, sys
import stackcube.store.append as append
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(append, {"level": "_append_level", "table": "sources_table", "commit": "commit"}[sys.argv[1]], die)
import stackcube
stackcube.refresh_cube(sys.argv[2], progress=False)
"""


@pytest.mark.parametrize("stage", ["level", "table", "commit"])
def test_an_append_killed_leaves_the_branch_where_it_was(scenes, tmp_path, stage) -> None:
    """SIGKILL while appending (growing a level, appending source rows, at the commit): the branch stays at the
    snapshot it was, the cube reads as before, and the next refresh appends."""
    import subprocess
    import sys

    catalog, repo, items = scenes
    tip = open_repository(repo).lookup_branch("main")
    before = stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False).load()
    _add(catalog, items[3:])
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_REFRESH, stage, str(repo)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert open_repository(repo).lookup_branch("main") == tip
    after = stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False).load()
    assert after.identical(before)
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.appended
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_scene_beyond_the_arrays_grid_rewrites_the_cube(scenes, tmp_path) -> None:
    """A new item over the next tiles east: the arrays grow, so the refresh cannot append; the rewrite equals a
    rebuild (the new dates hold the scene at its place in the wider arrays)."""
    from stackcube.demo import ORIGIN, _pixels, _write

    catalog, repo, items = scenes
    moved = _copy_of(items[2], "EAST", items[2].datetime + timedelta(days=30), catalog)
    for key, asset in moved.assets.items():
        resolution = 10.0 if key in {"B02", "B03", "B04", "B08"} else 20.0
        size = int(5120 / resolution)
        _write(Path(asset.href), _pixels(7, size), resolution, (ORIGIN[0] + 5120.0, ORIGIN[1]), tile=min(256, size))
        asset.extra_fields["proj:transform"] = [resolution, 0.0, ORIGIN[0] + 5120.0, 0.0, -resolution, ORIGIN[1]]
    _add(catalog, [moved])
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert not report.appended
    assert "beyond the array's grid" in str(report.rewritten) or "another grid" in str(report.rewritten)
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_cube_written_before_arrays_kept_their_grids_is_appended_and_then_keeps_them(scenes, tmp_path) -> None:
    """A cube whose arrays do not keep their grids (written by an earlier stackcube) is appended from the whole
    plan, which writes them; the next refresh plans only its new items."""
    from stackcube.store.layout import GRIDS

    catalog, repo, items = scenes
    repository = open_repository(repo)
    session = repository.writable_session("main")
    root = zarr.open_group(session.store, mode="r+")
    for name in ("EPSG32735_10m", "EPSG32735_20m"):
        attrs = dict(root[name].attrs)
        del attrs[GRIDS]
        root[name].attrs.put(attrs)
    session.commit("as an earlier stackcube wrote it")
    _add(catalog, items[3:4])
    first = stackcube.refresh_cube(repo, progress=False)
    assert first.appended
    upgraded = zarr.open_group(_session(repo, OpenOptions(), None)[0].store, mode="r")
    assert all(GRIDS in upgraded[name].attrs for name in ("EPSG32735_10m", "EPSG32735_20m"))
    _add(catalog, items[4:])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(refresh, "plan_sources", lambda *a, **k: pytest.fail("the whole cube was planned"))
        assert stackcube.refresh_cube(repo, progress=False).appended
    _assert_same(_tree(repo), _rebuild(catalog, tmp_path))


def test_a_cube_whose_source_table_has_other_chunks_is_appended_in_them(tmp_path) -> None:
    """A source table written before its manifest column had chunks of its own (every column in chunks of
    SOURCE_CHUNK rows) grows in the chunks it has: the append is the rebuild's cube but for those chunks."""
    from stackcube.store import layout, write

    def chunks(metadata: dict) -> list[int]:
        return list(metadata["chunk_grid"]["configuration"]["chunk_shape"])

    earlier = {name: {"chunks": (layout.SOURCE_CHUNK,)} for name in layout.SOURCE_COLUMNS}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(write, "TABLE_ENCODING", earlier)
        catalog, repo, items = _scenes(tmp_path)
    _add(catalog, items[3:])
    assert stackcube.refresh_cube(repo, progress=False).appended
    got, want = _tree(repo), _rebuild(catalog, tmp_path)
    assert chunks(got["sources/manifest"]) == [layout.SOURCE_CHUNK]
    assert chunks(want["sources/manifest"]) == [layout.MANIFEST_CHUNK]
    got["sources/manifest"] = want["sources/manifest"]
    _assert_same(got, want)
