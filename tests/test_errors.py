"""The error tree: messages say what to do, naming the Python call or, on the command line, the command."""

from __future__ import annotations

import pickle
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
