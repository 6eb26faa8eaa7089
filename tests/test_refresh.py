"""refresh_cube and verify_cube: only new and changed sources are read, time stays sorted, nothing is lost."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pystac
import pytest

import stackcube
from stackcube.cli import EXIT_UNCHANGED, main
from stackcube.demo import write_demo_catalog


def add_late_item(catalog_path: str, item_id: str = "LATE") -> pystac.Item:
    """Add to a demo catalog an item dated between its second and third, with its own copies of the files."""
    catalog = pystac.Catalog.from_file(catalog_path)
    items = sorted(catalog.get_items(recursive=True), key=lambda i: i.datetime)
    late = items[1].clone()
    late.id = item_id
    late.datetime = items[1].datetime + (items[2].datetime - items[1].datetime) / 2
    for key, asset in late.assets.items():
        source = Path(items[1].assets[key].get_absolute_href())
        copy = Path(catalog_path).parent.parent / "data" / item_id / source.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        asset.href = str(copy)
    catalog.add_item(late)
    catalog.normalize_hrefs(str(Path(catalog_path).parent))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return late


@pytest.fixture
def demo_cube(tmp_path):
    catalog = write_demo_catalog(tmp_path / "demo")
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(catalog, repo=repo, progress=False)
    return catalog, repo, cube


def test_nothing_new_commits_nothing(demo_cube) -> None:
    _, repo, cube = demo_cube
    report = stackcube.refresh_cube(repo, progress=False)
    assert not report.committed
    assert report.previous == cube.snapshot_id
    assert (report.added, report.changed, report.removed, report.headers_read) == ((), (), (), 0)
    assert "nothing changed" in str(report)


def test_a_late_item_lands_in_time_order_and_only_its_headers_are_read(demo_cube) -> None:
    catalog, repo, cube = demo_cube
    before = stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False)
    late = add_late_item(catalog)

    dry = stackcube.refresh_cube(repo, dry_run=True, progress=False)
    assert dry.added == ("LATE",)
    assert not dry.committed
    assert stackcube.open_cube(repo).attrs["snapshot_id"] == cube.snapshot_id

    report = stackcube.refresh_cube(repo, progress=False, tag="with-late")
    assert report.committed
    assert report.added == ("LATE",)
    assert report.headers_read == len(late.assets)  # the late item's six assets, nothing else
    assert report.message == "stackcube refresh: +1 items, 0 changed, 0 removed"

    after = stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False)
    assert after.sizes["time"] == before.sizes["time"] + 1
    times = after.time.values
    assert (np.diff(times) > np.timedelta64(0, "s")).all()
    position = list(after.id.values).index("LATE")
    assert position == 2  # between the second and the third date
    np.testing.assert_array_equal(after.isel(time=position).values, after.isel(time=1).values)  # same pixels
    np.testing.assert_array_equal(after.drop_sel(time=times[position]).values, before.values)
    log = [snap.message for snap in cube.repository.ancestry(branch="main")]
    assert log[0] == report.message
    assert sorted(cube.repository.list_tags()) == ["with-late"]
    # metadata of the commit says what changed
    snap = next(iter(cube.repository.ancestry(branch="main")))
    assert snap.metadata["added"] == ["LATE"]

    again = stackcube.refresh_cube(repo, progress=False)
    assert not again.committed


def test_removed_items_are_kept_unless_asked(demo_cube) -> None:
    catalog, repo, _ = demo_cube
    root = pystac.Catalog.from_file(catalog)
    gone = sorted(root.get_items(recursive=True), key=lambda i: i.datetime)[0]
    root.remove_item(gone.id)
    root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)

    kept = stackcube.refresh_cube(repo, progress=False)
    assert kept.removed == (gone.id,)
    assert not kept.committed  # nothing to write: the item stays
    assert gone.id in stackcube.open_dataarray(repo, "EPSG32735_10m").id.values

    dropped = stackcube.refresh_cube(repo, remove=True, progress=False)
    assert dropped.committed
    assert dropped.message == "stackcube refresh: +0 items, 0 changed, 1 removed (dropped)"
    assert gone.id not in stackcube.open_dataarray(repo, "EPSG32735_10m").id.values


def test_an_updated_item_is_indexed_again(demo_cube) -> None:
    catalog, repo, _ = demo_cube
    root = pystac.Catalog.from_file(catalog)
    item = sorted(root.get_items(recursive=True), key=lambda i: i.datetime)[-1]
    item.properties["updated"] = (item.datetime + timedelta(days=30)).isoformat()
    item.save_object()
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.committed
    assert sorted(report.changed) == sorted(f"{item.id}/{key}" for key in item.assets)
    assert report.headers_read == len(item.assets)


def test_cli_refresh_exit_codes_and_log(demo_cube, capsys) -> None:
    catalog, repo, _ = demo_cube
    assert main(["refresh", str(repo), "--quiet"]) == EXIT_UNCHANGED
    assert "nothing changed" in capsys.readouterr().out
    add_late_item(catalog)
    assert main(["refresh", str(repo), "--dry-run", "--quiet"]) == 0
    assert "would commit 'stackcube refresh: +1 items" in capsys.readouterr().out
    assert main(["refresh", str(repo), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "added: LATE" in out
    assert "headers read: 6" in out


def test_cubes_of_items_in_memory_cannot_be_refreshed(tmp_path) -> None:
    catalog = write_demo_catalog(tmp_path / "demo")
    items = list(pystac.Catalog.from_file(catalog).get_items(recursive=True))
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(items, repo=repo, progress=False)
    with pytest.raises(stackcube.errors.RepositoryError, match="built from items in memory"):
        stackcube.refresh_cube(repo, progress=False)
