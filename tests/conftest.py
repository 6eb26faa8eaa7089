"""Shared test helpers: where the corpus is, and the rule that CI fails instead of skipping."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` is false, except under CI=true, where the test fails: CI must run everything."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def corpus_files(subdir: str) -> list[Path]:
    """Every file under ``corpus/<subdir>`` (empty when the corpus is missing)."""
    base = CORPUS / subdir
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file())


@pytest.fixture
def corpus() -> Path:
    require(CORPUS.is_dir(), f"the corpus is missing at {CORPUS}")
    return CORPUS


@pytest.fixture
def use_settings():
    """``use_settings(retries=8, ...)`` changes stackcube's settings until the test ends."""
    import stackcube

    overrides = []

    def use(**changes: object):
        overrides.append(stackcube.settings.set(**changes))
        return stackcube.settings.current()

    yield use
    for override in reversed(overrides):
        override.__exit__(None, None, None)


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory):
    """A real HTTP object host (nginx) on loopback; ``/corpus/`` serves ../shared/corpus."""
    from tests.services.nginx import find_nginx, run_nginx

    require(find_nginx() is not None, "nginx is not installed (Debian package nginx-light)")
    with run_nginx(tmp_path_factory.mktemp("nginx"), CORPUS if CORPUS.is_dir() else None) as server:
        yield server


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` for a session fixture's life; stackcube reads the environment again (and drops its stores)
    when it is set and when it is undone."""
    import stackcube.tiff

    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    stackcube.settings.reset()
    stackcube.tiff.clear_stores()
    try:
        yield
    finally:
        mp.undo()
        stackcube.settings.reset()
        stackcube.tiff.clear_stores()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 endpoint (moto server) on loopback, with buckets ``sources`` (COGs) and ``repos`` (Icechunk).

    The environment (AWS_ENDPOINT_URL, credentials) points obstore and boto3 at it for the session.
    """
    from tests.services.s3 import run_moto

    with run_moto(tmp_path_factory.mktemp("moto")) as server:
        for bucket in (server.sources_bucket, server.repos_bucket):
            server.client().create_bucket(Bucket=bucket)
        with _environment(server.env()):  # the S3 endpoint, and that there are credentials
            yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory):
    """Azure Blob Storage (the Azurite emulator) on loopback, with a made-up account and key; the environment says
    to treat its path-style URLs as Azure Blob URLs (object_store's emulator convention) for the session."""
    from tests.services.azurite import find_azurite, run_azurite

    require(find_azurite() is not None, "azurite is not installed (make test installs it with npm into .azurite/)")
    with run_azurite(tmp_path_factory.mktemp("azurite")) as server, _environment(server.env()):
        yield server


@pytest.fixture(scope="session")
def twins_35mnm(nginx):
    """Twins of the 13 real Sentinel-2 L2A items of tile 35MNM (downscaled 10x), served by nginx."""
    from tests.twins import corpus_items, twin_items

    require(CORPUS.is_dir(), f"the corpus is missing at {CORPUS}")
    items = corpus_items("site2-2020_jun_jul-35MNM.geojson")
    return twin_items(items, nginx.root / "twins", f"{nginx.url}/twins", downscale=10)


@pytest.fixture(scope="session")
def stac_api(tmp_path_factory: pytest.TempPathFactory, twins_35mnm):
    """stac-fastapi-pgstac on PostgreSQL/PostGIS/pgstac, loaded with the sentinel-2-l2a collection and twins."""
    import json

    from tests.services.pgstac import missing, run_stac_api

    reason = missing()
    require(reason is None, str(reason))
    collection = json.loads((CORPUS / "stac" / "odc-stac" / "sentinel-2-l2a.collection.json").read_text())
    collection["links"] = []
    with run_stac_api(tmp_path_factory.mktemp("stac-api")) as api:
        api.load([collection], twins_35mnm)
        yield api


@pytest.fixture(scope="session")
def cluster():
    """A real Dask cluster on this machine: two worker processes. Not the default scheduler: the rest of the
    session's dask work (reading cubes) stays in the test's own process."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as local,
        Client(local, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture
def demo_cube(tmp_path):
    """(catalog, repo, cube): the demo catalog built into a cube on local disk (refresh and verify start here)."""
    import stackcube
    from stackcube.demo import write_demo_catalog

    catalog = write_demo_catalog(tmp_path / "demo")
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(catalog, repo=repo, progress=False)
    return catalog, repo, cube
