"""Where bytes come from (tiff._source): stores are shared per host and settings, bounded, and can be dropped."""

from __future__ import annotations

import asyncio
import gc

from stackcube.settings import S3Settings, Settings
from stackcube.tiff import _source, clear_stores


def test_stores_are_shared_per_host_and_settings_and_bounded() -> None:
    clear_stores()
    settings = Settings()
    a = _source.store_for("http://host-a.invalid/x.tif", settings)
    assert _source.store_for("http://host-a.invalid/y/z.tif", settings) is a  # one per scheme and host
    assert _source.store_for("http://host-a.invalid/x.tif", Settings(request_timeout=5)) is not a  # and settings
    s3 = _source.store_for("s3://bucket/k.tif", settings)
    assert _source.store_for("s3://bucket/k.tif", Settings(s3=S3Settings(endpoint="http://127.0.0.1:1"))) is not s3
    for i in range(_source.MAX_STORES + 10):
        _source.store_for(f"http://host-{i}.invalid/x.tif", settings)
    assert len(_source._stores) == _source.MAX_STORES  # the least recently used went first
    clear_stores()
    assert not _source._stores


def test_request_limits_follow_the_loop_and_the_setting() -> None:
    clear_stores()

    async def hold(settings: Settings) -> int:
        async with _source.limit(settings):
            cap, _ = _source._limits[asyncio.get_running_loop()]
            return cap

    assert asyncio.run(hold(Settings(max_concurrency=2))) == 2
    assert asyncio.run(hold(Settings(max_concurrency=5))) == 5
    gc.collect()
    assert len(_source._limits) == 0  # a finished loop takes its semaphore with it
