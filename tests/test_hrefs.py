"""Signed hrefs (_hrefs): read with as given, never stored, never logged.

Unit checks of which parameters are credentials and what is stored in their place, then a cube built from S3
presigned URLs (moto): its header reads carry the signature, and nothing in the repository does (every virtual
chunk location, the configuration, every attribute and string array, the commit metadata), while it reads back
the files' values.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import numpy as np
import pytest
import rasterio
import zarr

import stackcube
from stackcube._hrefs import redact, secret_params, stored_href
from stackcube.errors import SignedHrefError, SourceChangedError


def test_credential_parameters_are_found_and_redacted() -> None:
    sas = "https://acct.blob.core.windows.net/c/b.tif?st=2024&se=2025&sp=rl&sv=2022&sr=c&sig=abc%2Bdef"
    assert secret_params(sas) == ["sig"]
    assert redact(f"could not read {sas}: 403") == (
        "could not read https://acct.blob.core.windows.net/c/b.tif?st=2024&se=2025&sp=rl&sv=2022&sr=c&sig=REDACTED: 403"
    )
    assert secret_params("https://h/x.tif?version=3") == []
    assert (
        redact("https://h/x.tif?X-Amz-Signature=s3cr3t&X-Amz-Date=1")
        == "https://h/x.tif?X-Amz-Signature=REDACTED&X-Amz-Date=1"
    )


@pytest.mark.parametrize("name", ["subscription-key", "Subscription-Key", "code", "api-key", "x-api-key", "apikey"])
def test_api_keys_in_a_query_string_are_credentials(name) -> None:
    """The Planetary Computer's own parameter (subscription-key), Azure Functions' code and the usual API keys."""
    url = f"https://planetarycomputer.microsoft.com/api/stac/v1?{name}=0123abcd&limit=10"
    assert secret_params(url) == [name]
    assert redact(f"search of {url} failed") == (
        f"search of https://planetarycomputer.microsoft.com/api/stac/v1?{name}=REDACTED&limit=10 failed"
    )


def test_a_querys_headers_are_not_in_its_repr() -> None:
    from stackcube.search import make_query

    query = make_query("https://example.com/stac", headers={"Ocp-Apim-Subscription-Key": "0123abcd"})
    assert query.headers == {"Ocp-Apim-Subscription-Key": "0123abcd"}
    assert "0123abcd" not in repr(query)
    assert "headers" not in query.to_dict()


@pytest.mark.parametrize(
    ("href", "stored"),
    [
        ("https://h.example/a/b.tif", "https://h.example/a/b.tif"),
        ("https://h.example/a/b.tif?version=2", "https://h.example/a/b.tif?version=2"),
        (
            "https://bucket.s3.us-west-2.amazonaws.com/a/b.tif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=x",
            "s3://bucket/a/b.tif",
        ),
        ("https://bucket.s3.amazonaws.com/a/b.tif?AWSAccessKeyId=A&Signature=x&Expires=1", "s3://bucket/a/b.tif"),
        ("https://s3.eu-central-1.amazonaws.com/bucket/a/b.tif?X-Amz-Signature=x", "s3://bucket/a/b.tif"),
        ("http://127.0.0.1:9000/bucket/a/b.tif?X-Amz-Signature=x", "s3://bucket/a/b.tif"),
        ("https://acct.blob.core.windows.net/sentinel2-l2/a/b.tif?sv=2021&sig=x", "az://sentinel2-l2/a/b.tif"),
        ("http://127.0.0.1:10000/acct/sentinel2-l2/a/b.tif?sv=2021&sig=x", "az://sentinel2-l2/a/b.tif"),
    ],
)
def test_what_a_cube_stores_for_an_href(href: str, stored: str) -> None:
    found, account = stored_href(href, "http://127.0.0.1:9000", "http://127.0.0.1:10000")
    assert found == stored
    assert account == ("acct" if stored.startswith("az://") else None)


def test_a_credential_stackcube_cannot_place_is_refused_naming_the_parameter() -> None:
    with pytest.raises(SignedHrefError, match=r"carries a credential in its query string \(token\)") as info:
        stored_href("https://data.example/x.tif?token=t0ps3cret")
    assert "t0ps3cret" not in str(info.value)
    with pytest.raises(SignedHrefError, match="Google Cloud Storage signed URL"):
        stored_href("https://storage.googleapis.com/b/x.tif?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=ab")
    with pytest.raises(SignedHrefError, match="set AWS_ENDPOINT_URL"):
        stored_href("http://10.0.0.1:9000/bucket/x.tif?X-Amz-Signature=x", "http://127.0.0.1:9000")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET https://reader:pa55w0rd@h.example/x.tif failed", "GET https://REDACTED@h.example/x.tif failed"),
        ("https://T0k3nAsUserName@h.example:8443/api?sig=abc", "https://REDACTED@h.example:8443/api?sig=REDACTED"),
        ("s3://key:secret@bucket/x.tif and http://u%40x:p%3Aw@h/", "s3://REDACTED@bucket/x.tif and http://REDACTED@h/"),
        (
            "write to ops@h.example about https://h.example/x@y.tif",
            "write to ops@h.example about https://h.example/x@y.tif",
        ),
        ("https://reader:s3cr@tPa55@h.example/x.tif", "https://REDACTED@h.example/x.tif"),  # split at the last @
        (  # abfs:// names a container there, no credential
            "abfs://container@account.dfs.core.windows.net/a.parquet",
            "abfs://container@account.dfs.core.windows.net/a.parquet",
        ),
    ],
)
def test_user_information_in_an_url_is_redacted_whole(text: str, shown: str) -> None:
    """``user:password@`` and ``token@`` alike (a token is often given as the user name); an ``@`` after the host,
    or in prose, is no user information."""
    from stackcube.errors import StackcubeError

    assert redact(text) == shown
    assert str(StackcubeError(text)) == shown


def test_an_href_with_user_information_is_refused_naming_it() -> None:
    """Whatever else the href is (an S3 presigned URL, an Azure SAS URL would be stored without their query), the
    address without its user information does not say how to read the object."""
    assert secret_params("https://reader:pa55w0rd@h.example/x.tif?sig=abc") == ["user:password@", "sig"]
    assert secret_params("https://h.example/x.tif?user=me") == []
    for href in (
        "https://reader:pa55w0rd@h.example:8443/x.tif",
        "https://pa55w0rd@h.example:8443/x.tif",
        "https://reader:pa55w0rd@bucket.s3.us-west-2.amazonaws.com/a/b.tif?X-Amz-Signature=x",
        "https://reader:pa55w0rd@acct.blob.core.windows.net/c/a/b.tif?sv=2021&sig=x",
    ):
        with pytest.raises(SignedHrefError, match=r"credential in its user information \(user:password@") as info:
            stored_href(href, "http://127.0.0.1:9000", "http://127.0.0.1:10000")
        assert "pa55w0rd" not in str(info.value)
        assert "https://REDACTED@" in str(info.value)
    with pytest.raises(SignedHrefError) as info:
        stored_href("https://reader:pa55w0rd@h.example:8443/x.tif")
    assert "credentials={'https://h.example:8443/': {'Authorization': ...}}" in str(info.value)  # what to do


@pytest.mark.network
def test_a_signed_href_is_refused_before_any_request(tmp_path) -> None:
    from tests.services.host import run_host
    from tests.twins import series

    with run_host(tmp_path / "served") as host:
        items = series(host.root, host.url, 2)
        items[1]["assets"]["B04"]["href"] += "?token=t0ps3cret"
        host.seen.clear()
        with pytest.raises(SignedHrefError, match=r"asset B04 of item scene-1: .*\(token\)") as info:
            stackcube.build_cube(items, repo=tmp_path / "cube.icechunk", progress=False)
        assert "t0ps3cret" not in str(info.value)
        assert not any("token" in s.path for s in host.seen)


@pytest.mark.network
def test_an_href_with_a_password_is_refused_before_any_request(tmp_path) -> None:
    from tests.services.host import run_host
    from tests.twins import series

    with run_host(tmp_path / "served") as host:
        items = series(host.root, host.url, 2)
        href = items[1]["assets"]["B04"]["href"]
        items[1]["assets"]["B04"]["href"] = href.replace("://", "://me:pa55w0rd@")
        host.seen.clear()
        with pytest.raises(SignedHrefError, match=r"asset B04 of item scene-1: .*user information") as info:
            stackcube.build_cube(items, repo=tmp_path / "cube.icechunk", progress=False)
        assert "pa55w0rd" not in str(info.value)
        assert not [s for s in host.seen if s.path == urlparse(href).path or "authorization" in s.headers]


def _strings(node: Any) -> list[str]:
    """Every string a Zarr hierarchy holds: attributes (as JSON) and the values of string arrays."""
    out = [json.dumps(dict(node.attrs))]
    if isinstance(node, zarr.Array):
        if node.dtype.kind in "OUT" or str(node.dtype).startswith("<U") or "String" in type(node.dtype).__name__:
            out.extend(str(v) for v in np.asarray(node[...]).ravel())
        return out
    for _, child in node.members():
        out.extend(_strings(child))
    return out


def _everything_stored(repo: Any) -> list[str]:
    """Every string of a repository a token could hide in: each virtual chunk location, the configuration's
    containers, every attribute and string array of the cube, and each commit's message and metadata."""
    repository = stackcube.store.open_repository(repo)
    session = repository.readonly_session(branch="main")
    return [
        *session.all_virtual_chunk_locations(),
        *(repository.config.virtual_chunk_containers or {}),
        *_strings(zarr.open_group(session.store, mode="r")),
        *(f"{snap.message} {json.dumps(snap.metadata, default=str)}" for snap in repository.ancestry(branch="main")),
    ]


@pytest.mark.network
def test_a_cube_built_from_presigned_urls_reads_and_stores_no_signature(s3, tmp_path) -> None:
    from tests.twins import series, upload_dir

    items = series(tmp_path / "signed", "https://unused.example/signed", 3)
    upload_dir(s3.client(), tmp_path / "signed", s3.sources_bucket, "signed")
    client = s3.client()
    signatures = []
    for n, item in enumerate(items):
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": s3.sources_bucket, "Key": f"signed/s{n}.tif"}, ExpiresIn=3600
        )
        item["assets"]["B04"]["href"] = url
        query = dict(parse_qsl(urlparse(url).query))
        signatures.append(query.get("X-Amz-Signature") or query["Signature"])
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(items, repo=repo, progress=False)
    assert [s.manifest.href for s in cube.plan.sources] == [
        f"s3://{s3.sources_bucket}/signed/s{n}.tif" for n in range(3)
    ]

    data = stackcube.open_dataarray(repo, mask_and_scale=False)
    for n in range(3):
        with rasterio.open(tmp_path / "signed" / f"s{n}.tif") as ds:
            np.testing.assert_array_equal(data.isel(time=n, band=0).values, ds.read(1))

    stored = _everything_stored(repo)
    assert any(text.startswith("s3://") for text in stored)  # the scan sees the references
    for signature in signatures:
        assert not [text for text in stored if signature in text]


@pytest.mark.network
def test_header_reads_send_the_query_and_follow_redirects_to_another_host(tmp_path) -> None:
    from tests.services.host import run_host
    from tests.twins import series

    with run_host(tmp_path / "served") as files, run_host(tmp_path / "front", redirect=files.url) as front:
        items = series(files.root, front.url, 2)
        for item in items:
            item["assets"]["B04"]["href"] += "?version=2"
        cube = stackcube.build_cube(items, repo=tmp_path / "cube.icechunk", progress=False)
        assert {s.path for s in front.seen if s.status == 302} >= {"/s0.tif?version=2", "/s1.tif?version=2"}
        assert {s.path for s in files.seen if s.status == 206} >= {"/s0.tif?version=2", "/s1.tif?version=2"}
        assert [s.manifest.href for s in cube.plan.sources] == [f"{front.url}/s{n}.tif?version=2" for n in range(2)]
        data = stackcube.open_dataarray(tmp_path / "cube.icechunk", mask_and_scale=False)
        with rasterio.open(files.root / "s1.tif") as ds:  # tile reads follow the redirect too
            np.testing.assert_array_equal(data.isel(time=1, band=0).values, ds.read(1))


@pytest.mark.network
def test_a_bearer_token_host_that_redirects_works_with_credentials_and_stores_no_token(tmp_path) -> None:
    """Earthdata's shape: a front door that wants a bearer token and redirects to the file's real (presigned)
    location on another host. The token is given per call, used for that host only, and stored nowhere."""
    from stackcube.errors import SourceError
    from tests.services.host import run_host
    from tests.twins import series

    token = "T0KEN-not-for-storing"
    with (
        run_host(tmp_path / "served") as files,
        run_host(tmp_path / "front", redirect=files.url, token=token) as front,
    ):
        items = series(files.root, front.url, 2)
        repo = tmp_path / "cube.icechunk"
        with pytest.raises(
            SourceError, match=r"refused access: if it wants a token, pass credentials=.*lacked valid authentication"
        ):
            stackcube.build_cube(items, repo=repo, progress=False)
        credentials = {f"{front.url}/": {"Authorization": f"Bearer {token}"}}
        stackcube.build_cube(items, repo=repo, progress=False, credentials=credentials)
        assert files.seen  # the files were read from the host redirected to
        assert all(s.headers.get("authorization") is None for s in files.seen)  # never sent on to the other host

        with pytest.raises(SourceError, match=rf"access denied .*credentials=\{{'{front.url}/': \.\.\.}}"):
            _ = stackcube.open_dataarray(repo, mask_and_scale=False).values
        data = stackcube.open_dataarray(repo, mask_and_scale=False, credentials=credentials)
        for n in range(2):
            with rasterio.open(files.root / f"s{n}.tif") as ds:
                np.testing.assert_array_equal(data.isel(time=n, band=0).values, ds.read(1))
        assert stackcube.verify_cube(repo, progress=False, credentials=credentials)[0].ok
        assert not [text for text in _everything_stored(repo) if token in text]


@pytest.mark.network
def test_requester_pays_is_said_on_header_reads(s3, tmp_path, use_settings) -> None:
    """A requester-pays bucket (USGS Landsat) wants ``x-amz-request-payer: requester`` on every request: from
    ``AWS_REQUEST_PAYER=requester``, header reads send it (seen at a proxy in front of the S3 server; moto itself
    does not enforce requester pays)."""
    from stackcube.settings import S3Settings
    from tests.services.proxy import run_proxy
    from tests.twins import series, upload_dir

    items = series(tmp_path / "paid", f"s3://{s3.sources_bucket}/paid", 2)
    upload_dir(s3.client(), tmp_path / "paid", s3.sources_bucket, "paid")
    with run_proxy(s3.endpoint, record=True) as proxy:
        s3_settings = S3Settings.from_env({"AWS_ENDPOINT_URL": proxy.url, "AWS_REQUEST_PAYER": "requester"})
        assert s3_settings.requester_pays
        use_settings(s3=S3Settings(proxy.url, "us-east-1", signed=True, requester_pays=True))
        repo = tmp_path / "cube.icechunk"
        stackcube.build_cube(items, repo=repo, progress=False)
        header_reads = [h for h in proxy.heads if h.startswith(b"GET /sources/")]
        assert len(header_reads) >= 2
        assert all(b"x-amz-request-payer: requester" in h.lower() for h in header_reads)
        # tile reads: Icechunk 2.3's S3 virtual chunk fetcher does not send it (its S3Options.requester_pays is
        # applied to repository storage only); stackcube passes the option on, and the README says so
        data = stackcube.open_dataarray(repo, mask_and_scale=False).values
        assert data.shape == (2, 1, 256, 256)


@dataclass
class TokenSource:
    """A refreshable SAS credential as a token endpoint gives one, ``lifetime`` seconds long (picklable: Icechunk
    ships it to its runtime, so calls are counted in a file)."""

    azurite: Any
    container: str
    log: Path
    lifetime: float

    def __call__(self) -> Any:
        import icechunk

        with self.log.open("a") as f:
            f.write("token\n")
        expires = datetime.now(UTC) + timedelta(seconds=self.lifetime)
        token = self.azurite.sas(self.container, expires_in=self.lifetime + 60)
        return icechunk.AzureRefreshableCredential.SasToken(token, expires_after=expires)


@pytest.mark.network
def test_a_cube_built_from_sas_signed_azure_hrefs_reads_with_credentials_given_at_open(azurite, tmp_path) -> None:
    """Planetary Computer's shape on Azurite: private containers, hrefs signed with a SAS token. The cube stores
    ``az://`` references and no token; it reads with a second, independent token, and refuses without one or with
    an expired one, asks a refreshable credential again once its token expired, and verify finds a blob replaced
    in place, which reads then refuse."""
    import icechunk

    from stackcube.errors import SourceError
    from tests.twins import series

    container = "sentinel-2-l2a"
    items = series(tmp_path / "blobs", "https://unused.example", 3)
    azurite.upload_dir(tmp_path / "blobs", container)
    token = azurite.sas(container)
    for n, item in enumerate(items):
        item["assets"]["B04"]["href"] = azurite.href(container, f"s{n}.tif", token)
    with pytest.raises(SourceError):  # the container is private: an unsigned read is refused for real
        stackcube.build_cube(
            [dict(items[0], assets={"B04": {**items[0]["assets"]["B04"], "href": azurite.href(container, "s0.tif")}})],
            repo=tmp_path / "anonymous.icechunk",
            progress=False,
        )
    repo = tmp_path / "cube.icechunk"
    cube = stackcube.build_cube(items, repo=repo, progress=False)
    assert [s.manifest.href for s in cube.plan.sources] == [f"az://{container}/s{n}.tif" for n in range(3)]
    prefix = f"az://{container}/"

    other = azurite.sas(container)  # issued later, as a reader a day later would get one
    data = stackcube.open_dataarray(
        repo, mask_and_scale=False, credentials={prefix: icechunk.azure_credentials(sas_token=other)}
    )
    for n in range(3):
        with rasterio.open(tmp_path / "blobs" / f"s{n}.tif") as ds:
            np.testing.assert_array_equal(data.isel(time=n, band=0).values, ds.read(1))

    with pytest.raises(SourceError, match=rf"access denied .*credentials=\{{'{prefix}'"):
        _ = stackcube.open_dataarray(repo, mask_and_scale=False).values
    expired = azurite.sas(container, expires_in=-60)
    with pytest.raises(SourceError, match="access denied"):
        _ = stackcube.open_dataarray(
            repo, mask_and_scale=False, credentials={prefix: icechunk.azure_credentials(sas_token=expired)}
        ).values

    log = tmp_path / "tokens.log"
    refreshable = icechunk.azure_credentials(get_credentials=TokenSource(azurite, container, log, lifetime=2.0))
    opened = stackcube.open_dataarray(repo, mask_and_scale=False, credentials={prefix: refreshable})
    np.testing.assert_array_equal(opened.isel(time=0).values, data.isel(time=0).values)
    asked = log.read_text().count("token")
    time.sleep(2.5)  # the token expired: the next read asks for a new one
    np.testing.assert_array_equal(opened.isel(time=1).values, data.isel(time=1).values)
    assert log.read_text().count("token") > asked >= 1

    checked, _ = stackcube.verify_cube(repo, progress=False, credentials={prefix: {"sas_token": other}})
    assert checked.ok
    assert not checked.unprotected  # Azure honours If-Match: reads are checked against the ETag
    replaced = (tmp_path / "blobs" / "s0.tif").read_bytes()[::-1]  # the blob replaced in place
    azurite.service().get_blob_client(container, "s1.tif").upload_blob(replaced, overwrite=True)
    checked, _ = stackcube.verify_cube(repo, progress=False, credentials={prefix: {"sas_token": other}})
    assert [href for href, _, _ in checked.changed] == [f"{prefix}s1.tif"]
    with pytest.raises(SourceChangedError, match=f"{prefix}s1.tif"):
        _ = stackcube.open_dataarray(repo, mask_and_scale=False, credentials={prefix: {"sas_token": other}}).values

    stored = _everything_stored(repo)
    assert any(text.startswith("az://") for text in stored)
    for secret in (token, other):
        signature = dict(parse_qsl(secret))["sig"]
        assert not [text for text in stored if signature in text]
