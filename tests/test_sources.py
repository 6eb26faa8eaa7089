"""The sources stage: chosen assets with their manifests; unreadable ones fail or are listed; HEAD checks."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from stackcube.assets import choose_assets
from stackcube.demo import write_demo_catalog
from stackcube.errors import NothingFoundError, SourceError, SourceNotFoundError
from stackcube.options import CubeOptions
from stackcube.search import search_items
from stackcube.sources import Source, check_sources, read_sources


@pytest.fixture
def chosen(tmp_path):
    query, items = search_items(write_demo_catalog(tmp_path / "demo", dates=2, size=256))
    selected, _ = choose_assets(items, query, ["red", "nir"])
    return selected


def test_every_chosen_asset_becomes_a_source(chosen) -> None:
    sources, failed = asyncio.run(read_sources(chosen, progress=False))
    assert not failed
    assert [(s.item_id, s.asset, s.band) for s in sources] == [(a.item.id, a.key, a.band) for a in chosen]
    assert [s.manifest.href for s in sources] == [Path(a.href).resolve().as_uri() for a in chosen]
    assert sources[0] == Source.of(chosen[0], sources[0].manifest)
    assert sources[0].transform.a == 10.0


def test_the_sources_of_one_item_share_one_copy_of_its_properties(chosen) -> None:
    """An item's bands are sources that hold its properties: one copy for all of them (a 4-band build of 100,000
    items would otherwise hold 400,000), never the item's own dict, which its caller may change."""
    sources, _ = asyncio.run(read_sources(chosen, progress=False))
    by_item: dict[str, list[Source]] = {}
    for source in sources:
        by_item.setdefault(source.item_id, []).append(source)
    items = {a.item.id: a.item for a in chosen}
    assert len(by_item) == 2
    for item_id, (red, nir) in by_item.items():
        assert red.properties is nir.properties
        assert red.properties == items[item_id].properties
        assert red.properties is not items[item_id].properties
    first, second = by_item.values()
    assert first[0].properties is not second[0].properties


def test_an_unreadable_source_fails_or_is_listed(chosen) -> None:
    Path(chosen[1].href).unlink()
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        asyncio.run(read_sources(chosen, progress=False))
    sources, failed = asyncio.run(read_sources(chosen, CubeOptions(on_error="skip"), progress=False))
    assert len(sources) == len(chosen) - 1
    (failure,) = failed
    assert failure.startswith(f"{chosen[1].item.id}/{chosen[1].key}: ")


def test_many_failures_are_reported_together_with_a_count_per_reason(chosen, use_settings) -> None:
    for a in chosen[:3]:
        Path(a.href).unlink()
    with pytest.raises(SourceNotFoundError, match=r"^3 of 4 sources could not be read: 3 x does not exist") as raised:
        asyncio.run(read_sources(chosen, progress=False))
    message = str(raised.value)
    assert all(a.href in message for a in chosen[:3])
    assert message.endswith("or pass on_error='skip' (CLI: --skip-failed) to build from the others")
    Path(chosen[3].href).unlink()
    with pytest.raises(SourceNotFoundError, match=r"^all 4 sources failed: 4 x does not exist.* and 1 more\)"):
        asyncio.run(read_sources(chosen, CubeOptions(on_error="skip"), progress=False))


def test_unreachable_sources_are_tried_at_once_and_reported_together(chosen, nginx, use_settings) -> None:
    from tests.services.proxy import run_proxy

    use_settings(retries=1)
    with run_proxy(nginx.url, latency=0.2, fault_rate=1.0, faults=("reset",)) as host:  # a host that drops all
        unreachable = [dataclasses.replace(a, href=f"{host.url}/{a.item.id}/{a.key}.tif") for a in chosen]
        with pytest.raises(SourceError, match=r"^all 4 sources failed: 4 x reading bytes .* failed") as raised:
            asyncio.run(read_sources(unreachable, progress=False))
        assert host.stats["max_inflight"] == 4  # all four asked at once, not one after another
        assert host.stats["GET"] == 8  # each tried twice (retries=1)
        assert host.stats["HEAD"] == 0  # and not asked again with a HEAD after that
    assert all(a.href in str(raised.value) for a in unreachable[:3])


def test_checks_tell_changed_from_vanished_from_unchanged(chosen) -> None:
    sources, _ = asyncio.run(read_sources(chosen, progress=False))
    path = Path(chosen[0].href)
    stat = path.stat()
    with path.open("ab") as f:  # a provider appending to a file in place
        f.write(b"\0")
    os.utime(path, (stat.st_atime + 5, stat.st_mtime + 5))
    Path(chosen[1].href).unlink()
    checks = asyncio.run(check_sources(sources, progress=False))
    assert checks[0].changed
    assert "does not exist" in str(checks[1].error)
    assert not checks[1].changed
    assert all(c.found is None and c.error is None for c in checks[2:])


def test_no_usable_asset_is_explained(tmp_path) -> None:
    query, items = search_items(write_demo_catalog(tmp_path / "demo", dates=1, size=256))
    with pytest.raises(NothingFoundError, match=r"^asset 'swir22' not found in the one item the search found"):
        choose_assets(items, query, ["swir22"])
    for asset in items[0].assets.values():
        asset.media_type = "image/jp2"  # there, but not a TIFF
    with pytest.raises(NothingFoundError, match=r"^the one item found has no usable asset: 'B04' in 1 item \("):
        choose_assets(items, query, ["B04"])


@pytest.mark.network
def test_headers_read_on_a_cluster_make_the_same_cube(cluster, nginx, tmp_path) -> None:
    """build_cube(client=...) reads the headers on the workers (the tasks ran there, the host saw the same GETs)
    and commits the same cube: every source's manifest, every value."""
    import numpy as np
    from distributed import get_task_stream

    import stackcube
    from stackcube.store import read_stored
    from stackcube.tiff import clear_stores
    from tests.services.proxy import run_proxy
    from tests.twins import series

    with run_proxy(nginx.url) as proxy:
        items = series(nginx.root / "clustered", f"{proxy.url}/clustered", 6, size=256, blocksize=64)
        proxy.reset()
        here = stackcube.build_cube(items, repo=tmp_path / "here.icechunk", progress=False)
        gets_here = proxy.stats["GET"]
        clear_stores()  # this process probes the host again, as the first build did
        proxy.reset()
        with get_task_stream(cluster) as tasks:
            there = stackcube.build_cube(items, repo=tmp_path / "there.icechunk", progress=False, client=cluster)
        assert proxy.stats["GET"] == gets_here
        assert any(str(t["key"]).startswith(("_read_batch", "('_read_batch")) for t in tasks.data)
        assert [s.manifest.to_dict() for s in there.plan.sources] == [s.manifest.to_dict() for s in here.plan.sources]
        stored = [read_stored(c.repository.readonly_session(branch="main")).sources for c in (here, there)]
        assert [s.manifest.to_dict() for s in stored[0]] == [s.manifest.to_dict() for s in stored[1]]
        np.testing.assert_array_equal(
            stackcube.open_dataarray(tmp_path / "there.icechunk").values,
            stackcube.open_dataarray(tmp_path / "here.icechunk").values,
        )


@pytest.mark.network
def test_a_failure_on_a_worker_follows_on_error_as_locally(cluster, nginx, tmp_path) -> None:
    import stackcube
    from stackcube._retry import without_timings
    from stackcube.errors import SourceNotFoundError
    from tests.twins import series

    items = series(nginx.root / "clustered-missing", f"{nginx.url}/clustered-missing", 3, size=256, blocksize=128)
    (nginx.root / "clustered-missing" / "s1.tif").unlink()
    with pytest.raises(SourceNotFoundError, match=r"s1\.tif"):
        stackcube.plan_cube(items, progress=False, client=cluster)
    here = stackcube.plan_cube(items, progress=False, on_error="skip")
    there = stackcube.plan_cube(items, progress=False, on_error="skip", client=cluster)
    assert [without_timings(f) for f in there.failed] == [without_timings(f) for f in here.failed]
    assert there.failed[0].startswith("scene-1/B04: ")
    assert "does not exist" in there.failed[0]
    assert [s.item_id for s in there.sources] == [s.item_id for s in here.sources] == ["scene-0", "scene-2"]


@pytest.mark.network
def test_a_refresh_reads_new_headers_on_a_cluster(cluster, nginx, tmp_path) -> None:
    import json

    import stackcube
    from tests.twins import series

    items = series(nginx.root / "clustered-refresh", f"{nginx.url}/clustered-refresh", 4, size=256, blocksize=128)
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items[:2]}))
    repo = tmp_path / "cube.icechunk"
    stackcube.build_cube(str(catalog), repo=repo, progress=False, client=cluster)
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    report = stackcube.refresh_cube(repo, progress=False, client=cluster)
    assert report.added == ("scene-2", "scene-3")
    fresh = stackcube.build_cube(str(catalog), repo=tmp_path / "fresh.icechunk", progress=False)
    refreshed = stackcube.open_dataarray(repo)
    assert refreshed.id.values.tolist() == [f"scene-{n}" for n in range(4)]
    assert (refreshed.values == stackcube.open_dataarray(tmp_path / "fresh.icechunk").values).all()
    assert fresh.plan.arrays[0].shape == refreshed.shape


async def _die() -> None:
    """Run on a worker: end its process at once (distributed runs only coroutines without waiting)."""
    os._exit(1)


@pytest.mark.network
def test_a_worker_killed_mid_build_has_its_headers_read_again(nginx, tmp_path, monkeypatch) -> None:
    """A worker process dies while its batches are in flight: Dask reads them again on another worker, and the
    build commits once, with every source. The proxy holds every header read until the worker is gone, so no
    batch of it can have finished, however fast the machine is."""
    import threading
    import time

    from distributed import Client, LocalCluster

    import stackcube
    from stackcube import sources
    from tests.services.proxy import run_proxy
    from tests.twins import series

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 120  # only bounds a hang
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    with (
        run_proxy(nginx.url, held=True) as proxy,
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local,
        Client(local) as client,
    ):
        items = series(nginx.root / "clustered-killed", f"{proxy.url}/clustered-killed", 8, size=256, blocksize=128)
        done: dict[str, object] = {}
        monkeypatch.setattr(sources, "BATCH", 2)  # four batches, so both workers hold some when one dies

        def build() -> None:
            try:
                done["cube"] = stackcube.build_cube(
                    items, repo=tmp_path / "cube.icechunk", progress=False, client=client
                )
            except Exception as exc:  # reported below
                done["error"] = exc

        thread = threading.Thread(target=build)
        thread.start()
        wait_for(lambda: any(client.processing().values()) and proxy.stats["requests"], "no batch started")
        busy = next(worker for worker, tasks in client.processing().items() if tasks)
        client.run(_die, workers=[busy], wait=False)  # the process dies with its batch in flight
        wait_for(lambda: busy not in client.scheduler_info()["workers"], "the killed worker is still there")
        proxy.held = False
        thread.join(timeout=120)
        assert busy not in client.scheduler_info()["workers"]  # that worker is gone (its nanny started another)
    assert "error" not in done, done.get("error")
    cube = done["cube"]
    assert len(cube.plan.sources) == 8  # type: ignore[attr-defined]
    assert len(list(cube.repository.ancestry(branch="main"))) == 2  # type: ignore[attr-defined]  # created, one commit


@pytest.mark.corpus
@pytest.mark.network
def test_a_cluster_build_from_the_stac_api_or_geoparquet_with_faults_equals_a_clean_local_build(
    cluster, stac_api, nginx, tmp_path, use_settings
) -> None:
    """Sentinel-2 twins in the pgstac API and in a stac-geoparquet file; the workers' header reads go through a
    proxy that fails one request in six (5xx, 429, resets, truncated bodies): both cluster builds equal a
    fault-free single-process build, reference by reference and coordinate by coordinate."""
    import numpy as np
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    import stackcube
    from stackcube.store import read_stored
    from stackcube.tiff import clear_stores
    from tests.services.proxy import run_proxy
    from tests.test_refresh import ASSETS, _collection, _twins

    use_settings(request_timeout=2.0, retries=8)
    name = "cluster-s2"
    with run_proxy(nginx.url, faults=("500", "503", "429", "reset", "truncate")) as proxy:
        twins = _twins(nginx, proxy.url, name)
        stac_api.load([_collection(name)], twins)
        to_parquet(parse_stac_items_to_arrow(twins), tmp_path / "twins.parquet")
        args = {"collections": [name], "assets": ASSETS, "progress": False}
        here = stackcube.build_cube(stac_api.url, repo=tmp_path / "here.icechunk", **args)
        proxy.seed, proxy.fault_rate = 3, 1 / 6
        built = {}
        for kind, catalog in (("api", stac_api.url), ("geoparquet", str(tmp_path / "twins.parquet"))):
            clear_stores()
            proxy.reset()
            built[kind] = stackcube.build_cube(catalog, repo=tmp_path / f"{kind}.icechunk", client=cluster, **args)
            faults = sum(n for k, n in proxy.stats.items() if k.startswith("fault:"))
            assert faults >= 3, f"the proxy should have failed some of the workers' requests: {proxy.stats}"
        proxy.fault_rate = 0.0
        expected = read_stored(here.repository.readonly_session(branch="main"))
        want = stackcube.open_dataarray(tmp_path / "here.icechunk", mask_and_scale=False).load()
        for kind, cube in built.items():
            stored = read_stored(cube.repository.readonly_session(branch="main"))
            assert [s.manifest.to_dict() for s in stored.sources] == [s.manifest.to_dict() for s in expected.sources]
            got = stackcube.open_dataarray(tmp_path / f"{kind}.icechunk", mask_and_scale=False).load()
            for coord in ("time", "band", "y", "x", "id"):
                np.testing.assert_array_equal(got[coord].values, want[coord].values, err_msg=f"{kind}: {coord}")
            np.testing.assert_array_equal(got.values, want.values, err_msg=kind)


def test_a_build_shows_each_stage_locally_and_from_a_cluster(cluster, tmp_path, capsys) -> None:
    """Progress per stage: the search counting items, the header reads (advancing as a cluster's batches
    finish), the references written."""
    import re

    import stackcube

    catalog = write_demo_catalog(tmp_path / "demo", dates=2, size=256)
    for name, client in (("here", None), ("there", cluster)):
        stackcube.build_cube(catalog, repo=tmp_path / f"{name}.icechunk", progress=True, client=client)
        shown = capsys.readouterr().err
        stages = [m.group(0) for m in re.finditer(r"searching|reading TIFF headers|writing virtual references", shown)]
        assert list(dict.fromkeys(stages)) == ["searching", "reading TIFF headers", "writing virtual references"]
        assert "0/12 headers [" in shown  # the header and reference bars know their totals
        assert "12/12 refs [" in shown
