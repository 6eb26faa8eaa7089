"""Reading cubes of Planetary Computer data (credentials.planetary_computer), end to end on Azurite: a catalog of
unsigned hrefs, signed at search time by a modifier with tokens from a PC-style token endpoint; the cube reads
later with ``credentials=planetary_computer()`` and nothing else, a refresh signs its new search the same way, and
no token is stored."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlparse

import numpy as np
import pytest
import rasterio

import stackcube
from stackcube.credentials import planetary_computer as pc_credentials

pytestmark = pytest.mark.network


def _sign(item: object) -> None:
    """What ``planetary_computer.sign_inplace`` does, for the emulator's path-style URLs (PC's own signer knows
    only ``*.blob.core.windows.net``): each asset href gets its container's token from the token endpoint."""
    from planetary_computer import sas

    for asset in item.assets.values():  # type: ignore[attr-defined]
        parsed = urlparse(asset.href)
        account, container, _ = parsed.path.strip("/").split("/", 2)
        asset.href = f"{asset.href}?{sas.get_token(account, container).token}"


def test_a_planetary_computer_style_cube_builds_reads_and_refreshes_with_no_token_stored(
    azurite, tmp_path, monkeypatch
) -> None:
    import planetary_computer.settings

    from tests.services.tokens import run_token_endpoint
    from tests.test_hrefs import _everything_stored
    from tests.twins import series

    container = "sentinel2-l2"
    items = series(tmp_path / "blobs", "https://unused.example", 3)
    azurite.upload_dir(tmp_path / "blobs", container)
    for n, item in enumerate(items):
        item["assets"]["B04"]["href"] = azurite.href(container, f"s{n}.tif")  # as the STAC API publishes them
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items[:2]}))

    with run_token_endpoint(azurite) as tokens:
        monkeypatch.setenv("PC_SDK_SAS_URL", tokens.url)
        planetary_computer.settings.Settings.get.cache_clear()
        planetary_computer.sas.TOKEN_CACHE.clear()
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(str(catalog), repo=repo, modifier=_sign, progress=False)
        assert tokens.issued  # the build's header reads used signed hrefs

        planetary_computer.sas.TOKEN_CACHE.clear()  # a reader in another process, later
        issued = len(tokens.issued)
        data = stackcube.open_dataarray(repo, mask_and_scale=False, credentials=pc_credentials())
        for n in range(2):
            with rasterio.open(tmp_path / "blobs" / f"s{n}.tif") as ds:
                np.testing.assert_array_equal(data.isel(time=n, band=0).values, ds.read(1))
        assert len(tokens.issued) == issued + 1  # one token for the cube's one container, asked at the first read

        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        from stackcube.cli import main  # the scheduled job's way: the modifier named on the command line

        assert main(["refresh", str(repo), "--quiet", "--modifier", "tests.test_credentials._sign"]) == 0
        data = stackcube.open_dataarray(repo, mask_and_scale=False, credentials=pc_credentials())
        with rasterio.open(tmp_path / "blobs" / "s2.tif") as ds:
            np.testing.assert_array_equal(data.isel(time=2, band=0).values, ds.read(1))

        # verify asks the blobs with a token from the same endpoint, from Python and from the command line
        assert stackcube.verify_cube(repo, progress=False, credentials=pc_credentials())[0].ok
        assert main(["verify", str(repo), "--quiet", "--credentials", "planetary-computer"]) == 0

        stored = _everything_stored(repo)
        assert any(text.startswith(f"az://{container}/") for text in stored)
        for token in tokens.issued:
            signature = dict(parse_qsl(token))["sig"]
            assert not [text for text in stored if signature in text]


def _signer(token: str):
    """A modifier that signs every asset href with ``token``, replacing the one it carries: what
    ``planetary_computer.sign_inplace`` does on each run, with the token of that run."""

    def sign(item: object) -> None:
        for asset in item.assets.values():  # type: ignore[attr-defined]
            asset.href = f"{asset.href.partition('?')[0]}?{token}"

    return sign


def test_a_refresh_signed_with_a_new_token_reads_only_new_items_and_commits_nothing_else(
    azurite, tmp_path, use_settings
) -> None:
    """Each run signs with a new SAS token, so the hrefs the search gives never equal the stored ones: the refresh
    compares what a build stores of them (``az://`` without the token). With nothing new, no header is read and
    nothing committed; with one new item, only its header is read and it is appended."""
    from stackcube.settings import AzureSettings
    from stackcube.store import open_repository
    from tests.services.proxy import run_proxy
    from tests.twins import series

    container = "sas-refresh"
    items = series(tmp_path / "blobs", "https://unused.example", 4)
    azurite.upload_dir(tmp_path / "blobs", container)
    catalog = tmp_path / "items.json"
    repo = tmp_path / "cube.icechunk"
    with run_proxy(azurite.url, record=True) as blobs:  # the blob host, as every request to it counts
        use_settings(azure=AzureSettings(emulator=blobs.url))
        built_with = azurite.sas(container)
        for n, item in enumerate(items):
            item["assets"]["B04"]["href"] = f"{blobs.url}/{azurite.account}/{container}/s{n}.tif?{built_with}"
        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items[:3]}))
        cube = stackcube.build_cube(str(catalog), repo=repo, progress=False)
        assert [s.manifest.href for s in cube.plan.sources] == [f"az://{container}/s{n}.tif" for n in range(3)]

        this_run = azurite.sas(container, expires_in=7200.0)
        assert this_run != built_with
        blobs.reset()
        blobs.heads.clear()
        report = stackcube.refresh_cube(repo, modifier=_signer(this_run), progress=False)
        assert report.snapshot_id is None
        assert (report.added, report.changed, report.headers_read, report.found) == ((), (), 0, 3)
        assert blobs.stats["requests"] == 0
        assert blobs.heads == []
        assert open_repository(repo).lookup_branch("main") == cube.snapshot_id

        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        report = stackcube.refresh_cube(repo, modifier=_signer(this_run), progress=False)
        assert report.committed
        assert report.appended
        assert (report.added, report.changed, report.headers_read) == (("scene-3",), (), 1)
        asked = {head.split(b" ")[1].split(b"?")[0].decode() for head in blobs.heads}
        assert asked == {f"/{azurite.account}/{container}/s3.tif"}  # the new item's blob, and no other
        data = stackcube.open_dataarray(
            repo, mask_and_scale=False, credentials={"az://": {"sas_token": azurite.sas(container)}}
        )
        with rasterio.open(tmp_path / "blobs" / "s3.tif") as ds:
            np.testing.assert_array_equal(data.isel(time=3, band=0).values, ds.read(1))
