"""Virtual chunk containers: one per URL prefix the sources live under, how Icechunk reads each (anonymously, with
the environment's credentials, or with the caller's, given at open and kept in memory only), and the ``allow``
check of the prefixes a cube declares."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlparse

import icechunk

from stackcube._hrefs import credential_for
from stackcube._remedies import allow_prefixes
from stackcube.errors import SourceError, UntrustedSourceError
from stackcube.settings import Credentials, Settings

__all__ = ["check_allowed", "container_prefixes", "declare_containers"]


def container_prefixes(hrefs: Iterable[str]) -> list[str]:
    """The longest common directory prefix of the hrefs of each scheme and host (each ends with ``/``)."""
    by_host: dict[str, list[list[str]]] = {}
    for href in hrefs:
        parsed = urlparse(href)
        root = f"{parsed.scheme}://{parsed.netloc}/"
        by_host.setdefault(root, []).append(parsed.path.lstrip("/").split("/")[:-1])
    prefixes = []
    for root, dirs in sorted(by_host.items()):
        common = os.path.commonprefix(dirs)  # noqa: RUF071 - on lists of path parts it compares whole parts
        prefixes.append(root + "".join(f"{part}/" for part in common))
    return prefixes


def _container(
    prefix: str, settings: Settings, headers: Mapping[str, str] | None = None, account: str | None = None
) -> icechunk.VirtualChunkContainer:
    """The container for ``prefix``; ``headers`` (an http(s) prefix's credentials, given at open) go into the
    in-memory configuration only: only containers made without them are ever saved."""
    scheme = urlparse(prefix).scheme
    store: icechunk.AnyObjectStoreConfig | icechunk.ObjectStoreConfig.Http  # (icechunk's alias leaves Http out)
    if scheme in {"http", "https"}:
        # tiles are byte ranges of the file as it is: ask hosts not to compress them (as header reads do)
        timeouts = {
            "timeout": f"{settings.request_timeout}s",
            "connect_timeout": f"{min(10.0, settings.request_timeout)}s",
        }
        store = icechunk.http_store(timeouts, headers={"accept-encoding": "identity", **(headers or {})})
    elif scheme == "s3":
        s3 = settings.s3
        store = icechunk.s3_store(
            region=s3.region,
            endpoint_url=s3.endpoint,
            allow_http=s3.allow_http,
            force_path_style=bool(s3.endpoint),
            anonymous=not s3.signed,
            requester_pays=s3.requester_pays,
        )
    elif scheme == "file":
        store = icechunk.local_filesystem_store(urlparse(prefix).path)
    elif scheme == "az":
        if not account:
            msg = f"sources under {prefix}: the Azure storage account is not known; build the cube again"
            raise SourceError(msg)
        opts = {"account": account}
        if settings.azure.emulator:
            # the emulator as an endpoint, not object_store's use_emulator switch, which ignores credential
            # providers (refreshable credentials would never be asked)
            opts |= {"endpoint": f"{settings.azure.emulator.rstrip('/')}/{account}", "allow_http": "true"}
        store = icechunk.ObjectStoreConfig.Azure(opts)
    else:
        msg = f"sources under {prefix} cannot be read by Icechunk (scheme {scheme!r}); use file, http(s), s3 or az URLs"
        raise SourceError(msg)
    return icechunk.VirtualChunkContainer(prefix, store)


def _credential(
    prefix: str, settings: Settings, credentials: Credentials | None = None, account: str | None = None
) -> icechunk.AnyCredential | None:
    """What Icechunk reads ``prefix`` with: the caller's credential for it (given at open), else the default: the
    environment's S3 credentials, or anonymous access."""
    given = credential_for(prefix, credentials, account)
    scheme = urlparse(prefix).scheme
    if scheme in {"http", "https"}:
        return icechunk.credentials.HttpAccess  # headers, if given, are in the container (in memory)
    if given is not None:
        return _wrapped(given, prefix)
    if scheme == "file":
        return icechunk.credentials.LocalFileSystemAccess
    if scheme == "s3":
        if settings.s3.signed:
            return icechunk.Credentials.S3(icechunk.s3_credentials(from_env=True))
        return icechunk.Credentials.S3(icechunk.s3_anonymous_credentials())
    if scheme == "az":
        if settings.azure.signed:
            return icechunk.Credentials.Azure(icechunk.azure_credentials(from_env=True))  # type: ignore[arg-type]
        return icechunk.Credentials.Azure(icechunk.azure_anonymous_credentials())  # type: ignore[arg-type]
    return None


@dataclass(frozen=True)
class _RefreshableSas:
    """Icechunk's refreshable Azure credential from a picklable ``get() -> (token, expiry)``."""

    get: Callable[[], tuple[str, datetime]]

    def __call__(self) -> icechunk.AzureRefreshableCredential.SasToken:
        token, expiry = self.get()
        return icechunk.AzureRefreshableCredential.SasToken(token.lstrip("?"), expires_after=expiry)


def _wrapped(given: object, prefix: str) -> icechunk.AnyCredential:
    """An Icechunk credential as ``authorize_virtual_chunk_access`` takes it."""
    if isinstance(given, Mapping) and urlparse(prefix).scheme == "az" and "sas_token" in given:
        return icechunk.Credentials.Azure(icechunk.azure_credentials(sas_token=str(given["sas_token"])))  # type: ignore[arg-type]
    if isinstance(given, Mapping) and urlparse(prefix).scheme == "az" and "get_sas_token" in given:
        # icechunk annotates the callable as giving its outer class, not the SasToken it takes (icechunk#2137)
        get = _RefreshableSas(given["get_sas_token"])
        refreshable = icechunk.azure_credentials(get_credentials=get)  # type: ignore[arg-type]
        return icechunk.Credentials.Azure(refreshable)  # type: ignore[arg-type]
    if isinstance(given, icechunk.S3Credentials):
        return icechunk.Credentials.S3(given)  # type: ignore[arg-type]
    if isinstance(given, icechunk.AzureCredentials):
        return icechunk.Credentials.Azure(given)
    if isinstance(given, icechunk.GcsCredentials):
        return icechunk.Credentials.Gcs(given)
    if isinstance(given, icechunk.Credentials.S3 | icechunk.Credentials.Azure | icechunk.Credentials.Gcs):
        return given
    msg = (
        f"credentials for {prefix}: {type(given).__name__} is not an Icechunk credential; give "
        "icechunk.s3_credentials(...), icechunk.azure_credentials(...), {'sas_token': ...} for an az:// prefix, "
        "or icechunk.gcs_credentials(...)"
    )
    raise TypeError(msg)


def declare_containers(
    config: icechunk.RepositoryConfig,
    prefixes: Iterable[str],
    known: Iterable[str],
    settings: Settings,
    *,
    credentials: Credentials | None = None,
    accounts: Mapping[str, str] | None = None,
) -> dict[str, icechunk.AnyCredential | None]:
    """Set a container for each of ``prefixes`` in ``config`` (http(s) ones with the caller's headers, in memory)
    and return the authorization of every container, ``known`` ones included."""
    accounts = accounts or {}
    prefixes = list(dict.fromkeys(prefixes))
    for prefix in prefixes:
        headers = _headers(credentials, prefix)
        config.set_virtual_chunk_container(_container(prefix, settings, headers, accounts.get(prefix)))
    return {
        prefix: _credential(prefix, settings, credentials, accounts.get(prefix))
        for prefix in sorted({*known, *prefixes})
    }


def _headers(credentials: Credentials | None, prefix: str) -> Mapping[str, str] | None:
    """The request headers the caller gave for an http(s) prefix (a bearer token), else None."""
    given = credential_for(prefix, credentials)
    if given is None or urlparse(prefix).scheme not in {"http", "https"}:
        return None
    if not isinstance(given, Mapping):
        msg = f"credentials for {prefix} (an HTTP host) are request headers, e.g. {{'Authorization': 'Bearer ...'}}"
        raise TypeError(msg)
    return {str(k): str(v) for k, v in given.items()}


def check_allowed(prefixes: Iterable[str], allow: Iterable[str], repo: object = "the repository") -> None:
    """Refuse container ``prefixes`` that do not lie under one of the ``allow`` prefixes."""
    allowed = [a if a.endswith("/") else f"{a}/" for a in allow]
    outside = [p for p in prefixes if not any(p.startswith(a) for a in allowed)]
    if outside:
        msg = (
            f"{repo} reads sources under {', '.join(outside)}, outside the allowed prefixes "
            f"{', '.join(allowed) or '(none)'}"
        )
        raise UntrustedSourceError(msg, remedy=allow_prefixes(outside))
