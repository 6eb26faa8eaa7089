"""The error tree: messages say what to do, naming the Python call or, on the command line, the command."""

from __future__ import annotations

import pickle
import re
import traceback

import pytest

from stackcube import _remedies
from stackcube.errors import Remedy, RepositoryError, SourceChangedError, StackcubeError


def test_a_remedy_is_said_for_python_and_for_the_command_line() -> None:
    error = SourceChangedError("s3://b/k.tif changed", remedy=_remedies.reindex("s3://b/cube"))
    assert str(error) == (
        "s3://b/k.tif changed; re-index it with stackcube.refresh_cube('s3://b/cube', check_etags=True) "
        "(or stackcube.verify_cube('s3://b/cube', fix=True))"
    )
    assert error.for_cli() == (
        "s3://b/k.tif changed; re-index it with: stackcube refresh --check-etags s3://b/cube "
        "(or stackcube verify --fix s3://b/cube)"
    )
    copied = pickle.loads(pickle.dumps(error))  # as a dask worker's error reaches the client
    assert (str(copied), copied.for_cli(), type(copied)) == (str(error), error.for_cli(), SourceChangedError)


def test_a_path_with_spaces_is_quoted_for_the_shell() -> None:
    error = RepositoryError("there is no Icechunk repository at my cubes/a", remedy=_remedies.build("my cubes/a"))
    assert error.for_cli().endswith("; build one with: stackcube build CATALOG --repo 'my cubes/a'")
    assert str(error).endswith("; build one with stackcube.build_cube(catalog, repo='my cubes/a')")


def test_credentials_are_redacted_in_both_forms() -> None:
    href = "https://h/a.tif?sig=SECRET&se=2030"
    error = StackcubeError(f"{href} changed", remedy=Remedy(python=f"see {href}", cli=f"run {href}"))
    assert "SECRET" not in str(error)
    assert "SECRET" not in error.for_cli()
    assert error.for_cli().startswith("https://h/a.tif?sig=REDACTED")


def test_an_error_without_a_remedy_says_the_same_everywhere() -> None:
    error = StackcubeError("plain")
    assert error.for_cli() == str(error) == "plain"


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception reachable from it as a cause or a context (suppressed ones too: a debugger,
    an error tracker or ``exc.__context__`` in a notebook finds them)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop()
        if exc is not None and not any(exc is s for s in seen):
            seen.append(exc)
            todo += [exc.__cause__, exc.__context__]
    return seen


def _secrets(url: str) -> list[str]:
    """The credential values of ``url``'s query string, as sent and decoded."""
    from urllib.parse import parse_qsl, unquote, urlparse

    from stackcube._hrefs import SECRET_PARAMS

    values = [v for k, v in parse_qsl(urlparse(url).query) if k.lower() in SECRET_PARAMS]
    raw = [v for k, _, v in (p.partition("=") for p in urlparse(url).query.split("&")) if k.lower() in SECRET_PARAMS]
    found = {s for s in values + raw + [unquote(v) for v in raw] if len(s) >= 8}
    assert found, url
    return sorted(found)


@pytest.mark.network
def test_a_failed_read_of_a_signed_href_leaves_its_signature_nowhere_in_the_exception_chain(s3, use_settings) -> None:
    """obstore's error quotes the URL as requested; it reaches no ``__cause__``, no ``__context__`` and no printed
    traceback: a redacted stand-in keeps its type name and text."""
    import asyncio

    import boto3
    import botocore.config

    from stackcube.errors import RedactedError, SourceError, SourceNotFoundError
    from stackcube.tiff import head_async, read_tiff
    from tests.services.proxy import run_proxy

    use_settings(retries=1)
    client = s3.client()
    client.put_object(Bucket=s3.sources_bucket, Key="chain/there.tif", Body=b"II*\x00" + bytes(100))
    v4 = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        config=botocore.config.Config(signature_version="s3v4"),
    )

    def signed(key: str, endpoint: str, *, sigv4: bool = False) -> str:
        url = (v4 if sigv4 else client).generate_presigned_url(
            "get_object", Params={"Bucket": s3.sources_bucket, "Key": key}, ExpiresIn=3600
        )
        return url.replace(s3.endpoint, endpoint)

    with run_proxy(s3.endpoint, dialect="s3", fault_rate=1.0, faults=("503",)) as failing:
        cases = [
            (signed("chain/missing.tif", s3.endpoint), SourceNotFoundError, None),
            (signed("chain/missing.tif", s3.endpoint, sigv4=True), SourceNotFoundError, None),
            (signed("chain/there.tif", failing.url), SourceError, "obstore.exceptions.GenericError"),
            (signed("chain/there.tif", failing.url, sigv4=True), SourceError, "obstore.exceptions.GenericError"),
        ]
        for url, kind, cause in cases:
            secrets = _secrets(url)
            for read in (lambda u=url: read_tiff(u), lambda u=url: asyncio.run(head_async(u))):
                with pytest.raises(kind) as info:
                    read()
                chain = _chain(info.value)
                printed = "".join(traceback.format_exception(info.value))
                texts = [printed] + [f"{e!s} {e!r} {e.args!r}" for e in chain]
                assert not [s for s in secrets for t in texts if s in t], url
                assert "REDACTED" in str(info.value)
                if cause is not None:  # what failed underneath is still told, redacted
                    assert [type(e) for e in chain] == [kind, RedactedError], url
                    assert isinstance(chain[1], RedactedError)
                    assert chain[1].kind == cause
                    assert "503" in str(chain[1])
                    assert f"{cause}: " in printed
                else:  # "does not exist" says it all: nothing chained
                    assert chain == [info.value]


# --- every other library under stackcube's errors: a catalog, a TIFF parse, a repository ------------------------


def _pieces(secret: str, size: int = 12) -> list[str]:
    """Every run of ``size`` characters of ``secret`` (all of it, when shorter): a message that cuts an URL short
    (tifffile's 32 characters around an ellipsis) can keep the end of a value, with no parameter name left to say
    what it is."""
    return [secret[i : i + size] for i in range(max(1, len(secret) - size + 1))]


def _exposed(error: BaseException, secrets: list[str]) -> list[str]:
    """The texts of ``error``'s printed traceback and of every exception in its chain (message, repr, arguments and
    attributes: an HTTPError keeps the URL it asked as ``.url`` and ``.filename``) that hold a piece of a secret."""
    texts = ["".join(traceback.format_exception(error))]
    texts += [f"{e!s} {e!r} {e.args!r} {getattr(e, '__dict__', {})!r}" for e in _chain(error)]
    return [t for t in texts for s in secrets for p in _pieces(s) if p in t]


SECRET = "FakeKeyQz7Wv2Lp4Xr8Tn6Jm3Hs5Gd1Bc0YeUk"
"""Made up: a catalog's key, longer than the Planetary Computer's 32 characters; no run of 12 of its characters is
a word a message or a memory address could hold."""


def _landing(url: str, search: str) -> dict[str, object]:
    """A STAC API landing page at ``url`` whose searches go to ``search``."""
    return {
        "type": "Catalog",
        "id": "gated",
        "description": "a STAC API behind a gate",
        "stac_version": "1.0.0",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [
            {"rel": "self", "href": url, "type": "application/json"},
            {"rel": "root", "href": url, "type": "application/json"},
            {"rel": "search", "href": search, "type": "application/geo+json", "method": "POST"},
        ],
    }


@pytest.mark.network
def test_a_catalog_that_refuses_or_fails_leaves_its_key_nowhere_in_the_exception_chain(tmp_path, use_settings) -> None:
    """urllib's HTTPError keeps the URL as asked (the key in its query) as ``.url``; requests' errors name
    ``/search?subscription-key=...``: neither is chained, a refusal (401) chains nothing, a failure (500 to the
    landing page or to the search, a dropped connection) a redacted stand-in that still says what failed
    underneath."""
    import json

    import stackcube
    from stackcube.errors import RedactedError, SearchError
    from tests.services.host import run_host
    from tests.services.nginx import free_port
    from tests.services.proxy import run_proxy

    use_settings(retries=1)
    (tmp_path / "gated").mkdir()
    (tmp_path / "open").mkdir()
    dead = f"http://127.0.0.1:{free_port()}/search"  # nothing listens there: the connection is refused
    with (
        run_host(tmp_path / "gated", token="fake-token-nobody-sends") as gated,
        run_host(tmp_path / "open") as api,
        run_proxy(api.url, fault_rate=1.0, faults=("500",)) as failing,
    ):
        (api.root / "failing.json").write_text(json.dumps(_landing(f"{api.url}/failing.json", f"{failing.url}/s")))
        (api.root / "dropping.json").write_text(json.dumps(_landing(f"{api.url}/dropping.json", dead)))
        (gated.root / "landing.json").write_text("{}")
        cases = [  # the catalog URL, the message, what is chained
            (f"{gated.url}/landing.json", "the catalog refused the request (HTTP 401)", None),
            (f"{failing.url}/landing.json", "could not read a STAC document (HTTP Error 500", "urllib.error.HTTPError"),
            (
                f"{api.url}/failing.json",
                "the STAC API search failed (injected fault)",
                "pystac_client.exceptions.APIError",
            ),
            (f"{api.url}/dropping.json", "the STAC API search failed", "pystac_client.exceptions.APIError"),
        ]
        for url, message, cause in cases:
            with pytest.raises(SearchError, match=re.escape(message)) as info:
                stackcube.search.search_items(f"{url}?subscription-key={SECRET}", collections=["c"])
            assert not _exposed(info.value, [SECRET]), url
            chain = _chain(info.value)
            if cause is None:  # the status says it all
                assert chain == [info.value], url
            else:
                assert isinstance(chain[1], RedactedError), url
                assert chain[1].kind == cause, url
                assert all(isinstance(e, RedactedError) for e in chain[1:]), url
        assert any("subscription-key=REDACTED" in str(e) for e in chain)  # the dropped search's URL, redacted


@pytest.mark.network
def test_a_tiff_that_cannot_be_parsed_leaves_its_signature_nowhere(tmp_path, use_settings) -> None:
    """tifffile names the file in its messages, cut to 32 characters around an ellipsis: given the href's last
    segment with its query, the signature's end survived where no redaction finds it. It is given the file's name
    alone, and its errors are not chained (the message quotes them)."""
    import io

    import numpy as np
    import tifffile

    from stackcube.errors import CorruptTiffError
    from stackcube.tiff import read_tiff
    from tests.services.host import run_host

    use_settings(retries=0)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((16, 16), "uint8"))
    tiff = buffer.getvalue()
    files = {
        "raw.tif": (tiff[:2] + b"\x55\x00" + tiff[4:], "<tifffile.TiffFile 'raw.tif'> RAW format 0x0055 not supported"),
        "niff.tif": (b"II\x31\x4e" + tiff[4:], "<tifffile.TiffFile 'niff.tif'> NIFF format not supported"),
        "page.tif": (b"<!doctype html><html>sign in</html>", "is not a valid TIFF: not a TIFF file"),
        "cut.tif": (tiff[:12], "is not a valid TIFF"),
    }
    signature = "Sg7Rw2Kq9Vx4Nb6Mz1Lc8Jd3Hf5Tp0YaEu%2BfakeSignature%3D"
    (tmp_path / "files").mkdir()
    for name, (data, _) in files.items():
        (tmp_path / "files" / name).write_bytes(data)
    with run_host(tmp_path / "files") as host:
        for name, (_, message) in files.items():
            url = f"{host.url}/{name}?sv=2022-11-02&se=2030-01-01&sp=r&sig={signature}"
            with pytest.raises(CorruptTiffError, match=re.escape(message)) as info:
                read_tiff(url)
            assert str(info.value).startswith(f"{host.url}/{name}?sv=2022-11-02&se=2030-01-01&sp=r&sig=REDACTED ")
            assert not _exposed(info.value, _secrets(url)), name
            assert _chain(info.value) == [info.value], name  # tifffile's error is told in the message, not chained


def test_a_repository_error_chains_no_error_of_icechunks(tmp_path) -> None:
    """A repository that is not there, a tag it does not have: the message says it all, Icechunk's own error is
    neither cause nor context."""
    import icechunk

    import stackcube
    from stackcube.errors import RedactedError, VersionNotFoundError
    from stackcube.store import readonly_session
    from stackcube.store.write import write_or_nothing

    with pytest.raises(RepositoryError, match="there is no Icechunk repository at") as missing:
        stackcube.open_cube(tmp_path / "nothing-here.icechunk")
    assert _chain(missing.value) == [missing.value]
    repository = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "empty.icechunk")))
    for version in ({"tag": "v9"}, {"branch": "nope"}, {"snapshot": "0" * 20}):
        with pytest.raises(VersionNotFoundError, match="its branches: main") as unknown:
            readonly_session(repository, **version)
        assert _chain(unknown.value) == [unknown.value], version
    # a failed write says nothing was committed, and chains what Icechunk said as a stand-in only
    with pytest.raises(RepositoryError, match=r"tagging the cube in .* failed, nothing was committed") as failed:
        write_or_nothing(tmp_path, "tagging the cube in", lambda: repository.create_tag("v1", "1" * 20))
    chain = _chain(failed.value)
    assert [type(e) for e in chain] == [RepositoryError, RedactedError]
    assert chain[1].kind.startswith("icechunk")
