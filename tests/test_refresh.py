"""refresh_cube: only new and changed sources are read, time stays sorted, nothing is lost. (verify_cube on its
own, and its ``fix``: tests/test_verify.py.)"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pystac
import pytest

import stackcube
from stackcube.cli import EXIT_UNCHANGED, main
from stackcube.demo import write_demo_catalog
from stackcube.errors import SourceChangedError


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
    assert report.message == "stackcube refresh: +1 item, 0 changed, 0 removed"

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
    assert kept.message == "stackcube refresh: +0 items, 0 changed, 1 no longer in the catalog (kept)"
    assert f"  no longer in the catalog (kept; remove=True, or --remove, drops them): {gone.id}" in str(kept)
    assert "removed" not in str(kept)

    dropped = stackcube.refresh_cube(repo, remove=True, progress=False)
    assert dropped.committed
    assert dropped.message == "stackcube refresh: +0 items, 0 changed, 1 removed"
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


def test_check_etags_reindexes_a_file_replaced_without_a_new_updated(demo_cube) -> None:
    import os

    catalog, repo, _ = demo_cube
    replaced = next((Path(catalog).parent.parent / "data").glob("*/B03.tif"))
    replaced.write_bytes(replaced.read_bytes())
    stat = replaced.stat()
    os.utime(replaced, (stat.st_atime + 5, stat.st_mtime + 5))
    assert not stackcube.refresh_cube(repo, progress=False).committed  # STAC says nothing changed
    report = stackcube.refresh_cube(repo, check_etags=True, progress=False)
    assert report.committed
    assert report.changed == (f"{replaced.parent.name}/B03",)
    assert report.headers_read == 1
    assert stackcube.verify_cube(repo, progress=False)[0].ok


def test_headers_read_counts_every_attempt_of_a_refresh_that_starts_over(demo_cube) -> None:
    """Another writer commits while the refresh searches (its ``modifier`` runs then, after the refresh read the
    branch): the refresh's commit is refused, it starts over on the new tip with the headers it read, and its report
    counts those, not the none its second attempt read."""
    catalog, repo, cube = demo_cube
    late = add_late_item(catalog)
    others: list[str] = []

    def another_writer(item: pystac.Item) -> pystac.Item:
        if not others:  # the first attempt's search: once
            others.append(cube.repository.writable_session("main").commit("another writer", allow_empty=True))
        return item

    report = stackcube.refresh_cube(repo, modifier=another_writer, progress=False)
    assert report.attempts == 2
    assert report.previous == others[0]
    assert report.added == ("LATE",)
    assert report.headers_read == len(late.assets)  # read by the first attempt, reused by the second
    assert f"headers read: {len(late.assets)}" in str(report)
    assert _history(str(repo))[:2] == [report.message, "another writer"]


def test_cli_refresh_exit_codes_and_log(demo_cube, capsys) -> None:
    catalog, repo, _ = demo_cube
    assert main(["refresh", str(repo), "--quiet"]) == EXIT_UNCHANGED
    out = capsys.readouterr().out
    assert "nothing changed" in out
    assert "searched: the whole search (a static catalog is read whole): 4 items found" in out
    assert main(["refresh", str(repo), "--full-search", "--quiet"]) == EXIT_UNCHANGED
    assert "searched: the whole search: 4 items found" in capsys.readouterr().out
    add_late_item(catalog)
    assert main(["refresh", str(repo), "--dry-run", "--quiet"]) == 0
    assert "would commit 'stackcube refresh: +1 item, 0 changed, 0 removed'" in capsys.readouterr().out
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


# --- on the test bed: the pgstac API, sources on nginx behind the counting (and faulting) proxy -----------------

ASSETS = ["B04", "B08"]


def _collection(collection_id: str) -> dict:
    import json

    from tests.conftest import CORPUS

    collection = json.loads((CORPUS / "stac" / "odc-stac" / "sentinel-2-l2a.collection.json").read_text())
    collection.update(id=collection_id, links=[])
    return collection


def _ingested(items: list[dict], ago: timedelta = timedelta(0)) -> list[dict]:
    """``items`` as a catalog like Earth Search v1 publishes them: STAC ``updated`` is when they were ingested."""
    from datetime import UTC, datetime

    stamp = (datetime.now(UTC) - ago).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [{**item, "properties": {**item["properties"], "updated": stamp}} for item in items]


def _twins(nginx, proxy_url: str, name: str) -> list[dict]:
    from tests.twins import corpus_items, twin_items

    twins = twin_items(
        corpus_items("site2-2020_jun_jul-35MNM.geojson"),
        nginx.root / name,
        f"{proxy_url}/{name}",
        downscale=30,
        assets=ASSETS,
    )
    for item in twins:
        item["collection"] = name
    return twins


@pytest.mark.corpus
@pytest.mark.network
def test_refresh_reads_only_new_headers_and_verify_fixes_a_changed_source(stac_api, nginx, tmp_path) -> None:
    from tests.services.proxy import run_proxy
    from tests.twins import change_in_place

    name = "refresh-s2"
    with run_proxy(nginx.url) as proxy:
        twins = _twins(nginx, proxy.url, name)
        stac_api.load([_collection(name)], _ingested(twins[:8]))
        repo = tmp_path / "cube.icechunk"
        cube = stackcube.build_cube(stac_api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)
        assert len(cube.plan.sources) == 8 * len(ASSETS)

        stac_api.load(items=_ingested(twins[8:]))
        proxy.reset()
        report = stackcube.refresh_cube(repo, progress=False)
        new_ids = tuple(sorted(t["id"] for t in twins[8:]))
        assert report.added == new_ids
        assert report.headers_read == len(new_ids) * len(ASSETS)
        assert proxy.stats["GET"] == proxy.stats["requests"] == report.headers_read  # one GET per new COG header
        data = stackcube.open_dataarray(repo, mask_and_scale=False)
        assert sorted(data.id.values.tolist()) == sorted(t["id"] for t in twins)  # every item once

        # a provider reprocesses one file in place: verify names it, the read fails loudly, --fix re-indexes it
        changed = twins[3]["assets"]["B04"]["href"]
        before = stackcube.open_cube(repo).attrs["snapshot_id"]
        change_in_place(nginx.root / changed.removeprefix(f"{proxy.url}/"))
        verified, fixed = stackcube.verify_cube(repo, progress=False)
        assert [href for href, _, _ in verified.changed] == [changed]
        assert not verified.vanished
        assert fixed is None
        t = list(data.id.values).index(twins[3]["id"])
        with pytest.raises(SourceChangedError, match=changed):
            _ = stackcube.open_dataarray(repo, mask_and_scale=False).sel(band="B04").isel(time=t).values

        verified, fixed = stackcube.verify_cube(repo, fix=True, progress=False)
        assert fixed is not None
        assert fixed.changed == (f"{twins[3]['id']}/B04",)
        assert fixed.headers_read == 1
        import rasterio

        with rasterio.open(nginx.root / changed.removeprefix(f"{proxy.url}/")) as ds:
            expected = ds.read(1)
        now = stackcube.open_dataarray(repo, mask_and_scale=False).sel(band="B04").isel(time=t).values
        np.testing.assert_array_equal(now, expected)
        # the old snapshot still refuses to give the new pixels for that source, and reads its others
        old = stackcube.open_dataarray(repo, snapshot=before, mask_and_scale=False)
        with pytest.raises(SourceChangedError):
            _ = old.sel(band="B04").isel(time=t).values
        assert old.sel(band="B08").isel(time=t).values.shape == now.shape
        assert stackcube.verify_cube(repo, progress=False)[0].ok


@pytest.mark.corpus
@pytest.mark.network
def test_with_ten_percent_faults_build_and_refresh_equal_a_fault_free_run(
    stac_api, nginx, tmp_path, use_settings
) -> None:
    from tests.services.proxy import run_proxy

    use_settings(request_timeout=1.0, retries=8)  # a stalled request fails after 1 s and is retried
    results = {}
    with run_proxy(nginx.url) as sources, run_proxy(stac_api.url) as api:
        for name, rate in (("clean-s2", 0.0), ("faulty-s2", 0.1)):
            twins = _twins(nginx, sources.url, name)  # same items, same pixels, own copies
            stac_api.load([_collection(name)], _ingested(twins[:9]))
            for proxy, seed in ((sources, 7), (api, 2)):  # seeds whose first draws hold faults early
                proxy.seed, proxy.fault_rate, proxy.stall_seconds = seed, rate, 2.0
                proxy.reset()
            repo = tmp_path / f"{name}.icechunk"
            stackcube.build_cube(api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)
            stac_api.load(items=_ingested(twins[9:]))
            report = stackcube.refresh_cube(repo, progress=False)
            faults = {k: n for k, n in (sources.stats + api.stats).items() if k.startswith("fault:")}
            for proxy in (sources, api):
                proxy.fault_rate = 0.0
            results[name] = (report, faults, stackcube.open_dataarray(repo, mask_and_scale=False).load())
    (clean, no_faults, a), (faulty, faults, b) = results["clean-s2"], results["faulty-s2"]
    assert no_faults == {}
    assert sum(faults.values()) >= 5, "the proxy should have injected faults"
    assert len(faults) >= 3, f"several kinds of fault: {faults}"
    assert faulty.added == clean.added
    assert len(faulty.added) == 4
    np.testing.assert_array_equal(a.id.values, b.id.values)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    np.testing.assert_array_equal(a.values, b.values)


def _same_cube(repo, rebuilt) -> None:
    """The refreshed cube reads as a cube built from scratch by the whole search: items, dates, properties, pixels."""
    a = stackcube.open_dataarray(repo, mask_and_scale=False).load()
    b = stackcube.open_dataarray(rebuilt, mask_and_scale=False).load()
    for name in ("id", "time", "band", "eo:cloud_cover"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(a.values, b.values)


def _delete(stac_api, item_id: str, collection: str) -> None:
    import psycopg

    with psycopg.connect(stac_api.dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SELECT delete_item(%s, %s)", (item_id, collection))


@pytest.mark.corpus
@pytest.mark.network
def test_a_refresh_asks_the_stac_api_only_for_items_updated_since_its_last_search(stac_api, nginx, tmp_path) -> None:
    from tests.services.proxy import run_proxy

    name = "since-s2"
    with run_proxy(nginx.url) as sources, run_proxy(stac_api.url) as api:
        twins = sorted(_twins(nginx, sources.url, name), key=lambda t: t["properties"]["datetime"])
        stac_api.load([_collection(name)], _ingested(twins[:9], ago=timedelta(days=3)))  # ingested days ago
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)

        stac_api.load(items=_ingested(twins[9:]))  # four new scenes, ingested now
        api.reset()
        whole = stackcube.refresh_cube(repo, dry_run=True, full_search=True, progress=False)
        whole_bytes = api.stats["bytes"]
        api.reset()
        report = stackcube.refresh_cube(repo, progress=False)
        assert (whole.search, whole.found) == ("the whole search", 13)
        assert report.search.startswith("items updated since ")
        assert report.found == 4  # the stored nine were not sent again
        assert api.stats["bytes"] < whole_bytes  # the landing page is most of what is left
        assert report.added == tuple(sorted(t["id"] for t in twins[9:]))
        assert report.appended
        assert f"searched: {report.search}: 4 items found" in str(report)

        # a stored item's metadata changes (a new cloud cover, a new ``updated``): found, and the cube rewritten
        changed = {**twins[2], "properties": {**twins[2]["properties"], "eo:cloud_cover": 1.25}}
        stac_api.load(items=_ingested([changed]))
        report = stackcube.refresh_cube(repo, progress=False)
        assert report.found == 5  # the four new ones are still inside the window: unchanged, not read again
        assert report.changed == tuple(f"{twins[2]['id']}/{band}" for band in ASSETS)
        assert report.headers_read == len(ASSETS)
        assert report.rewritten == "changed items"
        rebuilt = stackcube.build_cube(
            stac_api.url, collections=[name], assets=ASSETS, repo=tmp_path / "rebuilt.icechunk", progress=False
        )
        data = stackcube.open_dataarray(repo)
        assert data["eo:cloud_cover"].values[list(data.id.values).index(twins[2]["id"])] == 1.25
        _same_cube(repo, rebuilt.repository)

        # an item withdrawn from the catalog: only a whole search can tell, and remove=True runs one
        _delete(stac_api, twins[0]["id"], name)
        report = stackcube.refresh_cube(repo, progress=False)
        assert (report.removed, report.committed) == ((), False)
        report = stackcube.refresh_cube(repo, remove=True, progress=False)
        assert (report.search, report.removed, report.kept_removed) == ("the whole search", (twins[0]["id"],), False)
        assert twins[0]["id"] not in stackcube.open_dataarray(repo).id.values


@pytest.mark.corpus
@pytest.mark.network
def test_items_without_updated_are_asked_for_by_date_within_a_window(stac_api, nginx, tmp_path) -> None:
    from datetime import UTC, datetime

    name = "dated-s2"  # as Planetary Computer publishes items: no STAC ``updated``
    twins = sorted(_twins(nginx, nginx.url, name), key=lambda t: t["properties"]["datetime"])
    assert not any("updated" in t["properties"] for t in twins)
    stac_api.load([_collection(name)], twins[:9])
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(stac_api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)
    stac_api.load(items=twins[9:])

    # scenes of 2020 published today are older than the default window: a refresh does not see them (documented),
    # a whole search does
    report = stackcube.refresh_cube(repo, dry_run=True, progress=False)
    assert report.search.startswith("items dated since ")
    assert (report.found, report.added) == (0, ())

    last = datetime.fromisoformat(twins[8]["properties"]["datetime"])
    report = stackcube.refresh_cube(repo, window=datetime.now(UTC) - last + timedelta(hours=1), progress=False)
    assert report.search.startswith("items dated since ")
    assert report.found == 5  # the cube's last scene and the four after it
    assert report.added == tuple(sorted(t["id"] for t in twins[9:]))
    assert report.appended
    rebuilt = stackcube.build_cube(
        stac_api.url, collections=[name], assets=ASSETS, repo=tmp_path / "rebuilt.icechunk", progress=False
    )
    _same_cube(repo, rebuilt.repository)
    assert not stackcube.refresh_cube(repo, full_search=True, progress=False).committed


@pytest.mark.corpus
@pytest.mark.network
def test_two_refreshes_at_once_both_finish_and_every_item_lands_once(nginx, s3, tmp_path, use_settings) -> None:
    import json
    import threading

    from tests.services.proxy import run_proxy

    name = "concurrent-s2"
    repo = f"s3://{s3.repos_bucket}/cubes/concurrent"
    with run_proxy(nginx.url, record=True) as sources:
        # the new items come after the cube's last date: the refresh that wins appends them
        twins = sorted(_twins(nginx, sources.url, name), key=lambda t: t["properties"]["datetime"])
        catalog = tmp_path / "items.json"  # a static ItemCollection file the refreshes search again
        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": twins[:9]}))
        stackcube.build_cube(str(catalog), assets=ASSETS, repo=repo, progress=False)
        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": twins}))

        # header reads wait at the proxy until both refreshes are reading the same header: both have read the
        # branch as it was, so one of them must find the other's commit and start over, however fast the machine
        use_settings(request_timeout=600.0)  # a held request is never retried: each line seen twice is both's
        sources.heads.clear()
        sources.held = True
        reports: dict[str, stackcube.RefreshReport] = {}

        def refresh(who: str) -> None:
            reports[who] = stackcube.refresh_cube(repo, progress=False)

        threads = [threading.Thread(target=refresh, args=(who,)) for who in ("a", "b")]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120  # only bounds a hang
        while not _asked_twice(sources.heads):
            assert time.monotonic() < deadline, "the two refreshes never both read a header"
            time.sleep(0.01)
        sources.held = False
        for thread in threads:
            thread.join(120)
    assert sorted(reports) == ["a", "b"]
    committed = [r for r in reports.values() if r.committed]
    assert len(committed) == 1  # the other one started over on the winner's snapshot and found nothing new
    loser = next(r for r in reports.values() if not r.committed)
    assert loser.attempts == 2
    assert committed[0].added == tuple(sorted(t["id"] for t in twins[9:]))
    assert committed[0].appended
    data = stackcube.open_dataarray(repo, mask_and_scale=False)
    ids = data.id.values.tolist()
    assert sorted(ids) == sorted(t["id"] for t in twins)  # every item, once
    assert (np.diff(data.time.values) > np.timedelta64(0, "s")).all()
    history = _history(repo)
    assert sum(m.startswith("stackcube refresh") for m in history) == 1


def _read_error(repo: Path, band: str, day: int) -> SourceChangedError:
    """The error reading one band of one date of the demo cube's 10 m array raises."""
    with pytest.raises(SourceChangedError) as raised:
        _ = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False).sel(band=band).isel(time=day).values
    return raised.value


def _asked_twice(heads: list[bytes]) -> bool:
    """Whether some request (its request line) reached the proxy twice."""
    lines = [head.split(b"\r\n", 1)[0] for head in list(heads)]
    return len(lines) != len(set(lines))


def _history(repo: str) -> list[str]:
    from stackcube.store import open_repository

    return [snap.message for snap in open_repository(repo).ancestry(branch="main")]


def _touch(path: Path) -> None:
    """A provider re-uploading a file: the same bytes, a new identity."""
    import os

    path.write_bytes(path.read_bytes())
    stat = path.stat()
    os.utime(path, (stat.st_atime + 5, stat.st_mtime + 5))


def _by_id(data) -> dict:
    return {str(i): data.sel(time=t).values for i, t in zip(data.id.values, data.time.values, strict=True)}


@pytest.mark.parametrize("path", ["late item", "updated", "check etags", "verify fix", "remove"])
def test_every_refresh_path_keeps_band_order_and_values(demo_cube, path) -> None:
    catalog, repo, _ = demo_cube
    before = stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False).load()
    order = before.band.values.tolist()
    assert order == ["B02", "B03", "B04", "B08"]
    root = pystac.Catalog.from_file(catalog)
    first = sorted(root.get_items(recursive=True), key=lambda i: i.datetime)[0]
    first_b03 = Path(first.assets["B03"].get_absolute_href())  # the first date's second band: re-read last
    if path == "late item":
        add_late_item(catalog)
        stackcube.refresh_cube(repo, progress=False)
    elif path == "updated":
        first.properties["updated"] = "2030-01-01T00:00:00Z"
        first.save_object()
        stackcube.refresh_cube(repo, progress=False)
    elif path == "check etags":
        _touch(first_b03)
        stackcube.refresh_cube(repo, check_etags=True, progress=False)
    elif path == "verify fix":
        _touch(first_b03)
        assert main(["verify", str(repo), "--fix", "--quiet"]) == 0
    else:
        root.remove_item(first.id)
        root.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        stackcube.refresh_cube(repo, remove=True, progress=False)
    after = stackcube.open_dataarray(repo, "EPSG32735_10m", mask_and_scale=False)
    assert after.band.values.tolist() == order
    old, new = _by_id(before), _by_id(after)
    for item_id in set(old) & set(new):
        np.testing.assert_array_equal(new[item_id], old[item_id], err_msg=f"{path}: {item_id}")
    assert (set(old) - set(new)) == ({first.id} if path == "remove" else set())


def test_a_cube_built_from_stac_geoparquet_refreshes_from_the_file(tmp_path) -> None:
    """The stored search names the file: when its producer publishes a new snapshot with more items, a refresh
    reads only those."""
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    from stackcube.demo import write_demo_catalog
    from stackcube.search import search_items

    _, items = search_items(write_demo_catalog(tmp_path / "demo", dates=4, size=256))
    snapshot = tmp_path / "items.parquet"
    to_parquet(parse_stac_items_to_arrow(items[:2]), snapshot)
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(str(snapshot), assets=["red"], repo=repo, progress=False)
    to_parquet(parse_stac_items_to_arrow(items), snapshot)  # the next snapshot of the collection
    report = stackcube.refresh_cube(repo, progress=False)
    assert sorted(report.added) == sorted(i.id for i in items[2:])
    assert stackcube.open_dataarray(repo).sizes["time"] == 4


def test_a_replaced_source_fails_its_read_naming_the_refresh_that_reindexes_it(demo_cube, capsys) -> None:
    """The read's advice is a call that works: a plain refresh asks the catalog, which did not change."""

    catalog, repo, _ = demo_cube
    replaced = next((Path(catalog).parent.parent / "data").glob("*/B03.tif"))
    day = sorted(p.name for p in replaced.parent.parent.iterdir()).index(replaced.parent.name)
    before = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False).sel(band="B03").isel(time=day).values
    _touch(replaced)
    error = _read_error(repo, "B03", day)
    name = str(repo)
    assert str(error) == (
        f"{replaced.resolve().as_uri()} changed since the cube was built (it is no longer the version indexed); "
        f"re-index it with stackcube.refresh_cube({name!r}, check_etags=True) "
        f"(or stackcube.verify_cube({name!r}, fix=True))"
    )
    assert error.for_cli().endswith(
        f"; re-index it with: stackcube refresh --check-etags {name} (or stackcube verify --fix {name})"
    )
    assert not stackcube.refresh_cube(repo, progress=False).committed  # the catalog says nothing changed
    assert main(["refresh", "--check-etags", name, "--quiet"]) == 0  # what the message says to run
    assert f"changed: {replaced.parent.name}/B03" in capsys.readouterr().out
    after = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False).sel(band="B03").isel(time=day).values
    np.testing.assert_array_equal(after, before)


def test_a_deleted_source_fails_its_read_naming_the_refresh_that_leaves_it_out(demo_cube, capsys) -> None:
    """The catalog still lists the item (the common case): the advice read it again and leaves it out."""
    catalog, repo, _ = demo_cube
    gone = next((Path(catalog).parent.parent / "data").glob("*/B04.tif"))
    day = sorted(p.name for p in gone.parent.parent.iterdir()).index(gone.parent.name)
    gone.unlink()
    error = _read_error(repo, "B04", day)
    name = str(repo)
    assert str(error) == (
        f"{gone.resolve().as_uri()} no longer exists (deleted or moved since the cube was built); "
        f"stackcube.refresh_cube({name!r}, check_etags=True, on_error='skip') indexes it where the catalog now "
        "points, or leaves it out (remove=True also drops the items the catalog no longer lists)"
    )
    assert error.for_cli().endswith(
        f"; stackcube refresh --check-etags --skip-failed {name} indexes it where the catalog now points, or leaves "
        "it out (--remove also drops the items the catalog no longer lists)"
    )
    assert not stackcube.refresh_cube(repo, full_search=True, progress=False).committed  # the catalog has it still
    assert main(["refresh", "--check-etags", "--skip-failed", name, "--quiet"]) == 0  # what the message says
    assert f"failed: {gone.parent.name}/B04: " in capsys.readouterr().out
    data = stackcube.open_dataarray(repo, "EPSG32735_10m", chunks=False)
    assert np.isnan(data.sel(band="B04").isel(time=day).values).all()  # left out: no pixels, no error
    assert np.isfinite(data.sel(band="B03").isel(time=day).values).any()  # the item's other bands stay


def test_new_items_none_of_which_can_be_read_fail_the_refresh_even_when_skipping(demo_cube, capsys) -> None:
    """As a build: skipping leaves out what cannot be read, but a refresh that could read nothing new fails (a
    scheduled job says so every day, instead of committing nothing in silence)."""
    from stackcube.errors import CorruptTiffError

    catalog, repo, _ = demo_cube
    late = add_late_item(catalog)
    broken = Path(late.assets["B04"].get_absolute_href())
    broken.write_bytes(b"not a TIFF at all" * 10)
    assert main(["refresh", str(repo), "--quiet"]) == 2  # by default, a failure fails the refresh
    assert "LATE/B04" in capsys.readouterr().err
    report = stackcube.refresh_cube(repo, on_error="skip", progress=False)
    assert report.committed  # the late item's other five bands
    assert [f.split(":")[0] for f in report.failed] == ["LATE/B04"]
    other = add_late_item(catalog, "LATER")
    for asset in other.assets.values():
        Path(asset.get_absolute_href()).write_bytes(b"not a TIFF either" * 10)
    with pytest.raises(CorruptTiffError, match=r"^all 7 sources failed: "):  # LATE/B04, asked again, and LATER's
        stackcube.refresh_cube(repo, on_error="skip", progress=False)
    assert main(["refresh", str(repo), "--skip-failed", "--quiet"]) == 2
    assert stackcube.open_cube(repo).attrs["snapshot_id"] == report.snapshot_id  # nothing committed since


@pytest.mark.network
def test_a_source_table_altered_to_name_another_host_asks_it_nothing(demo_cube, nginx) -> None:
    """Verify and refresh touch only hrefs under the source prefixes the cube declares: a cube whose source table
    was edited to name another (real, answering) host is refused, and that host hears nothing."""
    import numpy as np
    import zarr

    from stackcube.errors import UntrustedSourceError
    from tests.services.proxy import run_proxy

    _, repo, cube = demo_cube
    with run_proxy(nginx.url) as other:
        session = cube.repository.writable_session("main")
        hrefs = zarr.open_group(session.store, mode="r+")["sources"]["href"]
        values = np.asarray(hrefs[...], dtype=object)
        values[0] = f"{other.url}/corpus/tiff/rio-tiler/cog.tif"
        hrefs[...] = values
        session.commit("a source table naming another host")
        other.reset()
        with pytest.raises(UntrustedSourceError, match="under none of the source prefixes the cube declares"):
            stackcube.verify_cube(repo, progress=False)
        with pytest.raises(UntrustedSourceError, match="under none of the source prefixes the cube declares"):
            stackcube.refresh_cube(repo, progress=False, check_etags=True)
        assert other.stats["GET"] + other.stats["HEAD"] == 0


@pytest.mark.parametrize("declared", ["none", "the other host too"])
def test_a_cube_whose_declared_containers_were_altered_is_refused_under_allow(demo_cube, nginx, declared) -> None:
    """Edited to name another host in its source table AND to declare no container (or that host's too), a cube
    is still refused by verify and refresh under ``allow=``: its declared containers are checked against
    ``allow`` as an open checks them, and a source table with no declared container is refused."""
    import json

    import numpy as np
    import zarr

    from stackcube.errors import UntrustedSourceError
    from stackcube.store import read_metadata
    from tests.services.proxy import run_proxy

    _, repo, cube = demo_cube
    with run_proxy(nginx.url) as other:
        session = cube.repository.writable_session("main")
        root = zarr.open_group(session.store, mode="r+")
        hrefs = root["sources"]["href"]
        values = np.asarray(hrefs[...], dtype=object)
        real = list(read_metadata(repo).containers)  # what the cube declared before: allowed
        values[0] = f"{other.url}/corpus/tiff/rio-tiler/cog.tif"
        hrefs[...] = values
        attrs = json.loads(json.dumps(dict(root.attrs)))
        stored = attrs["stackcube"]
        stored["containers"] = [] if declared == "none" else [*stored["containers"], f"{other.url}/"]
        root.attrs.update(attrs)
        session.commit("a source table naming another host, and containers to match")
        other.reset()
        with pytest.raises(UntrustedSourceError):
            stackcube.verify_cube(repo, progress=False, allow=real)
        with pytest.raises(UntrustedSourceError):
            stackcube.refresh_cube(repo, progress=False, check_etags=True, allow=real)
        assert other.stats["GET"] + other.stats["HEAD"] == 0


@pytest.mark.network
def test_a_refresh_under_allow_reads_no_new_source_outside_it(demo_cube, tmp_path) -> None:
    """A new item whose files lie on another host, outside ``allow``, is refused before its headers are read (that
    host sees no request) and nothing is committed; without ``allow=`` the same refresh reads and adds it."""
    import shutil

    import pystac

    from stackcube.errors import UntrustedSourceError
    from stackcube.store import read_metadata
    from tests.services.host import run_host

    catalog_path, repo, cube = demo_cube
    real = list(read_metadata(repo).containers)  # what the cube declares: allowed
    catalog = pystac.Catalog.from_file(str(catalog_path))
    item = next(iter(catalog.get_items(recursive=True))).clone()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with run_host(elsewhere) as host:
        item.id = "from-elsewhere"
        item.properties["datetime"] = "2031-01-01T00:00:00Z"
        for asset in item.assets.values():
            source = asset.get_absolute_href()
            if source and source.endswith(".tif"):
                name = f"{item.id}-{source.rsplit('/', 1)[1]}"
                shutil.copy(source.removeprefix("file://"), elsewhere / name)
                asset.href = f"{host.url}/{name}"
        catalog.add_item(item)
        catalog.normalize_and_save(str(catalog_path).rsplit("/", 1)[0], pystac.CatalogType.SELF_CONTAINED)
        before = cube.repository.lookup_branch("main")
        with pytest.raises(UntrustedSourceError, match="outside the allowed prefixes") as refused:
            stackcube.refresh_cube(repo, progress=False, allow=real)
        assert host.url in str(refused.value)
        assert host.seen == []  # refused before any header read
        assert cube.repository.lookup_branch("main") == before
        assert stackcube.refresh_cube(repo, progress=False).added == ("from-elsewhere",)  # without allow=: added
        assert host.seen  # read this time


@pytest.mark.corpus
@pytest.mark.network
def test_a_forced_reindex_survives_another_writers_commit(nginx, tmp_path, use_settings) -> None:
    """``verify --fix`` forces a changed source to be indexed again; when another writer commits to the branch
    while its header is read, the refresh starts over on the new tip and still stores the new manifest (read once,
    kept for the retry), instead of finding the forced source unchanged and committing nothing."""
    import json
    import threading

    from tests.services.proxy import run_proxy
    from tests.twins import change_in_place

    name = "forced-retry-s2"
    repo = tmp_path / "cube.icechunk"
    with run_proxy(nginx.url, record=True) as sources:
        twins = _twins(nginx, sources.url, name)[:3]
        catalog = tmp_path / "items.json"
        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": twins}))
        cube = stackcube.build_cube(str(catalog), assets=ASSETS, repo=repo, progress=False)
        changed = twins[1]["assets"]["B04"]["href"]
        path = changed.removeprefix(sources.url)
        change_in_place(nginx.root / path.lstrip("/"))
        verified, _ = stackcube.verify_cube(repo, progress=False)
        assert [href for href, _, _ in verified.changed] == [changed]

        # the forced header read waits at the proxy until the other writer has committed: the refresh's commit is
        # then on a moved branch, however fast the machine
        use_settings(request_timeout=600.0)  # a held request is never retried
        sources.heads.clear()
        sources.held = True
        reports: dict[str, stackcube.RefreshReport] = {}

        def refresh() -> None:
            reports["forced"] = stackcube.refresh_cube(repo, force=[changed], progress=False)

        thread = threading.Thread(target=refresh)
        thread.start()
        deadline = time.monotonic() + 120  # only bounds a hang
        while not any(f" {path} ".encode() in head.split(b"\r\n", 1)[0] for head in list(sources.heads)):
            assert time.monotonic() < deadline, "the refresh never read the forced source's header"
            time.sleep(0.01)
        other = cube.repository.writable_session("main").commit("another writer", allow_empty=True)
        sources.held = False
        thread.join(120)
        reads = [head for head in sources.heads if f" {path} ".encode() in head.split(b"\r\n", 1)[0]]
        report = reports["forced"]
        assert report.attempts == 2
        assert report.changed == (f"{twins[1]['id']}/B04",)
        assert report.committed
        assert len(reads) == 1  # read once: the retry used what the first attempt read
        assert report.headers_read == 1  # and counted, though the committing attempt read nothing
        assert _history(str(repo))[:2] == [report.message, "another writer"]
        assert report.previous == other
        assert stackcube.verify_cube(repo, progress=False)[0].ok  # the new manifest, with the new ETag, is stored
        import rasterio

        data = stackcube.open_dataarray(repo, mask_and_scale=False).sel(band="B04")
        t = data.id.values.tolist().index(twins[1]["id"])
        with rasterio.open(nginx.root / path.lstrip("/")) as ds:
            np.testing.assert_array_equal(data.isel(time=t).values, ds.read(1))


# --- the source table's id index: a narrowed search reads only the stored rows of the items it found ---------------


def _drop_index(repository, branch: str) -> None:
    """Make ``branch`` a cube written before the id index: its source table without it."""
    import zarr

    from stackcube.store.layout import ID_INDEX

    session = repository.writable_session(branch)
    node = zarr.open_group(session.store, mode="r+")["sources"]
    if ID_INDEX in node:
        del node[ID_INDEX]
        session.commit("a source table without its id index, as an earlier stackcube wrote it")


def _index_maps_every_id_to_its_row(repository, branch: str) -> None:
    """The id index has a hash per row, that of the row's item id, and counts the rows without ``updated``; the
    rows it finds for each id are exactly that id's."""
    import zarr

    from stackcube.store.layout import ID_INDEX, WITHOUT_UPDATED, id_hashes
    from stackcube.store.stored import RowIndex

    node = zarr.open_group(repository.readonly_session(branch=branch).store, mode="r")["sources"]
    ids = [str(i) for i in node["item_id"][...]]
    hashes = np.asarray(node[ID_INDEX][...])
    np.testing.assert_array_equal(hashes, id_hashes(ids))
    without = sum(1 for u in node["updated"][...] if not u)
    assert node[ID_INDEX].attrs[WITHOUT_UPDATED] == without
    index = RowIndex(hashes, without)
    for item_id in set(ids):
        assert index.positions([item_id]).tolist() == [i for i, other in enumerate(ids) if other == item_id]


def _table(repository, branch: str) -> dict[str, list]:
    import zarr

    from stackcube.store.layout import SOURCE_COLUMNS

    node = zarr.open_group(repository.readonly_session(branch=branch).store, mode="r")["sources"]
    return {name: [str(v) for v in node[name][...]] for name in SOURCE_COLUMNS}


def _with_index(repository, branch: str) -> None:
    """``branch``'s source table has the id index a build writes (:func:`stackcube.store.layout.id_index`): a
    hash of each row's item id, and the count of rows without STAC ``updated``."""
    import zarr

    from stackcube.store.layout import ID_INDEX, WITHOUT_UPDATED, id_hashes

    node = zarr.open_group(repository.readonly_session(branch=branch).store, mode="r")["sources"]
    assert ID_INDEX in node, "the build wrote no id index"
    assert node[ID_INDEX][...].tolist() == id_hashes(str(i) for i in node["item_id"][...]).tolist()
    assert node[ID_INDEX].attrs[WITHOUT_UPDATED] == sum(1 for u in node["updated"][...] if not u)


@pytest.mark.corpus
@pytest.mark.network
def test_a_narrowed_refresh_reads_only_the_stored_rows_of_the_items_it_found(stac_api, nginx, tmp_path) -> None:
    name = "indexed-s2"
    twins = sorted(_twins(nginx, nginx.url, name), key=lambda t: t["properties"]["datetime"])
    stac_api.load([_collection(name)], _ingested(twins[:9], ago=timedelta(days=3)))
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(stac_api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)
    repository = cube.repository
    _with_index(repository, "main")
    _index_maps_every_id_to_its_row(repository, "main")

    # each refresh with the index and without it (a branch from the same snapshot without it: a cube written
    # before the index): the same report, the same cube; with it, only the stored rows of the items found are read
    # (none of the two new ones at first; then those two, still inside the window), without it every row
    for n, batch in enumerate((twins[9:11], twins[11:13])):
        old = f"old{n}"
        repository.create_branch(old, repository.lookup_branch("main"))
        _drop_index(repository, old)
        stac_api.load(items=_ingested(batch))
        indexed, whole = (stackcube.refresh_cube(repo, branch=b, progress=False) for b in ("main", old))
        for report in (indexed, whole):
            assert report.search.startswith("items updated since ")
            assert (report.added, report.appended) == (tuple(sorted(t["id"] for t in batch)), True)
        for field in ("found", "added", "changed", "removed", "headers_read", "appended", "rewritten", "failed"):
            assert getattr(indexed, field) == getattr(whole, field), field
        assert _table(repository, "main") == _table(repository, old)
        _index_maps_every_id_to_its_row(repository, "main")  # the append kept it
        assert whole.rows_read == (9 + 2 * n) * len(ASSETS)  # every row: no index to look the found items up in
        assert (indexed.found, indexed.rows_read) == (2 + 2 * n, 2 * n * len(ASSETS))
    a = stackcube.open_dataarray(repo, mask_and_scale=False).load()
    b = stackcube.open_dataarray(repo, branch=old, mask_and_scale=False).load()
    for coord in ("id", "time", "band"):
        np.testing.assert_array_equal(a[coord].values, b[coord].values)
    np.testing.assert_array_equal(a.values, b.values)
    assert sorted(a.id.values.tolist()) == sorted(t["id"] for t in twins)

    # a third refresh finds the four new ones again, unchanged: nothing to commit, only their rows read
    third = stackcube.refresh_cube(repo, progress=False)
    assert (third.found, third.added, third.changed, third.committed) == (4, (), (), False)
    assert third.rows_read == 4 * len(ASSETS)
    _index_maps_every_id_to_its_row(repository, "main")


@pytest.mark.corpus
@pytest.mark.network
def test_a_changed_item_found_through_the_index_rewrites_the_cube_with_every_item(stac_api, nginx, tmp_path) -> None:
    """A rewrite after a narrowed search keeps the stored items the search did not ask about, and the rewritten
    cube's index (when the build writes one) or its absence still gives every row."""
    name = "indexed-rewrite-s2"
    twins = sorted(_twins(nginx, nginx.url, name), key=lambda t: t["properties"]["datetime"])
    stac_api.load([_collection(name)], _ingested(twins[:9], ago=timedelta(days=3)))
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(stac_api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)
    stac_api.load(items=_ingested(twins[9:10]))
    assert stackcube.refresh_cube(repo, progress=False).appended

    changed = {**twins[2], "properties": {**twins[2]["properties"], "eo:cloud_cover": 1.25}}
    stac_api.load(items=_ingested([changed]))
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.search.startswith("items updated since ")
    assert report.changed == tuple(f"{twins[2]['id']}/{band}" for band in ASSETS)
    assert report.rewritten == "changed items"
    data = stackcube.open_dataarray(repo)
    assert sorted(data.id.values.tolist()) == sorted(t["id"] for t in twins[:10])
    assert data["eo:cloud_cover"].values[list(data.id.values).index(twins[2]["id"])] == 1.25
    import zarr

    from stackcube.store import open_repository
    from stackcube.store.layout import ID_INDEX

    repository = open_repository(repo)
    assert ID_INDEX in zarr.open_group(repository.readonly_session(branch="main").store, mode="r")["sources"]
    _index_maps_every_id_to_its_row(repository, "main")  # the rewrite wrote it again: no row moved under it
    again = stackcube.refresh_cube(repo, progress=False)
    assert (again.found, again.added, again.committed) == (2, (), False)


@pytest.mark.corpus
@pytest.mark.network
def test_a_pgstac_that_indexes_updated_answers_the_narrowed_search_the_same(stac_api, nginx, tmp_path) -> None:
    """The README's queryable (``updated`` a date-time with a BTREE index): pgstac then reads both sides of the
    refresh's filter as timestamps, through its index, and finds the same items."""
    import json

    import psycopg

    name = "updated-queryable-s2"
    twins = sorted(_twins(nginx, nginx.url, name), key=lambda t: t["properties"]["datetime"])
    stac_api.load([_collection(name)], _ingested(twins[:9], ago=timedelta(days=3)))
    with psycopg.connect(stac_api.dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute(  # for this collection only: the session's other tests see pgstac as it comes
            "INSERT INTO queryables (name, definition, property_index_type, collection_ids) VALUES ('updated', "
            """'{"title": "Last update", "type": "string", "format": "date-time"}', 'BTREE', %s)""",
            ([name],),
        )
        search = {"collections": [name], "filter": {"op": ">=", "args": [{"property": "updated"}, "2026-01-01Z"]}}
        (where,) = conn.execute("SELECT stac_search_to_where(%s::jsonb)", (json.dumps(search),)).fetchone()
        assert "to_tstz(content->'properties'->'updated') >= to_tstz(" in where
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(stac_api.url, collections=[name], assets=ASSETS, repo=repo, progress=False)
    stac_api.load(items=_ingested(twins[9:11]))
    report = stackcube.refresh_cube(repo, progress=False)
    assert report.search.startswith("items updated since ")
    assert (report.found, report.added, report.appended) == (2, tuple(sorted(t["id"] for t in twins[9:11])), True)
