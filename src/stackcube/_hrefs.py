"""Signed hrefs: which query parameters are credentials, how to keep them out of messages, and what a cube stores
in their place.

Catalogs hand out hrefs that carry credentials in their query string (S3 presigned URLs, Planetary Computer's
Azure SAS tokens, tokens of other hosts). stackcube reads with them as given, but never stores one: a cube must
outlive the token it was built with and must not hand a credential to everyone who opens it. An href with a
credential becomes the object's own address where its storage is known (an S3 presigned URL becomes
``s3://bucket/key``, read later with credentials given at open), and is refused otherwise, naming the parameter.
A credential in an URL's user information (``https://user:password@host/``, ``https://TOKEN@host/``) is one too:
redacted whole, and refused in an href (it says nothing of where the object lives).

No library does this: obstore and Icechunk take credentials, but neither says which parameters of an URL are one.
This module imports nothing of stackcube at its top: the error tree redacts every message with :func:`redact`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlparse

__all__ = ["SECRET_PARAMS", "USERINFO", "credential_for", "headers_for", "redact", "secret_params", "stored_href"]

SECRET_PARAMS = frozenset(
    {
        "sig",  # Azure SAS
        "signature",  # CloudFront, generic
        "token",
        "access_token",
        "auth",
        "apikey",
        "api_key",
        "api-key",
        "x-api-key",
        "key",
        "subscription-key",  # Azure API Management (the Planetary Computer's STAC API and SAS endpoints)
        "subscription_key",
        "code",  # Azure Functions
        "client_secret",
        "secret",
        "password",
        "access_key",
        "secret_key",
        "session_token",
        "policy",  # CloudFront
        "key-pair-id",
        "x-amz-signature",  # S3 presigned (SigV4)
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",  # S3 presigned (SigV2)
        "x-goog-signature",  # GCS signed URLs
        "x-goog-credential",
        "googleaccessid",
    }
)
"""Query parameters (compared case-insensitively) whose value is a credential or part of one."""

_SECRET_VALUE = re.compile(
    r"([?&](?:" + "|".join(re.escape(p) for p in SECRET_PARAMS) + r")=)[A-Za-z0-9%+/=._~-]+", re.I
)

# the user information of an URL in a text: what lies between "scheme://" and the last "@" before the host, where
# no "/", "?", "#" or whitespace can be (RFC 3986: they end the authority; a password may hold an unencoded "@", and
# clients split at the last); the user name goes too, as a token is often given as one (https://TOKEN@host/). For
# the schemes that put credentials there (s3://KEY:SECRET@bucket/ in older fsspec); abfs:// and wasb:// name a
# container there (abfs://CONTAINER@ACCOUNT...)
_USERINFO_SCHEMES = ("http", "https", "ftp", "ftps", "s3", "s3a", "gs", "gcs")
_USERINFO = re.compile(r"(\b(?:" + "|".join(_USERINFO_SCHEMES) + r")://)[^\s/?#]+@", re.I)

USERINFO = "user:password@"
"""How :func:`secret_params` names the user information of an href (``user:password@`` or ``token@`` before its
host): never a query parameter's name, as it holds characters a parameter name would carry encoded."""


def secret_params(href: str) -> list[str]:
    """The parts of ``href`` that carry a credential: :data:`USERINFO` when the URL has user information, then the
    parameters of its query string that do, as the href spells them."""
    parsed = urlparse(href)
    userinfo = [USERINFO] if "@" in parsed.netloc and parsed.scheme.lower() in _USERINFO_SCHEMES else []
    return userinfo + [k for k, _ in parse_qsl(parsed.query, keep_blank_values=True) if k.lower() in SECRET_PARAMS]


def redact(text: str) -> str:
    """``text`` (a message, an href) with the value of every credential parameter replaced by ``REDACTED``, and the
    user information of every URL in it (``user:password@``, ``token@``) by ``REDACTED@``.

    Examples
    --------
    >>> redact("GET https://me:pa55@h/a.tif?sig=abc&se=2030 failed")
    'GET https://REDACTED@h/a.tif?sig=REDACTED&se=2030 failed'
    """
    return _USERINFO.sub(r"\1REDACTED@", _SECRET_VALUE.sub(r"\1REDACTED", text))


def stored_href(href: str, s3_endpoint: str | None = None, azure_emulator: str | None = None) -> tuple[str, str | None]:
    """What a cube stores for ``href``, and the Azure storage account when that is an ``az://`` URL (which names
    only the container).

    The href itself when it carries no credential; a :class:`SignedHrefError` when its user information holds one
    (``https://user:password@host/...``); for an S3 presigned URL (virtual-hosted,
    path-style, or path-style on ``s3_endpoint``, the configured S3 endpoint), the object's ``s3://bucket/key``;
    for an Azure Blob URL with a SAS token (``https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?...``, or
    path-style on ``azure_emulator``), ``az://CONTAINER/BLOB``; a :class:`SignedHrefError` for any other href with a
    credential.
    """
    from stackcube.errors import SignedHrefError  # here: the error tree imports this module

    secrets = secret_params(href)
    if not secrets:
        return href, None
    parsed = urlparse(href)
    if secrets[0] == USERINFO:  # whatever the query says, the object's own address would still hold it
        host = f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}/"
        msg = (
            f"{redact(href)} carries a credential in its user information ({USERINFO} before the host); stackcube "
            "never stores one, and the address without it does not say how to read the object. Give the href "
            f"without it, and the credential as a header for its host: credentials={{{host!r}: {{'Authorization': "
            "...}}"
        )
        raise SignedHrefError(msg)
    if any(p.lower().startswith("x-amz-") or p.lower() == "awsaccesskeyid" for p in secrets):
        located = _s3_object(parsed.netloc, parsed.path, s3_endpoint)
        if located is not None:
            return f"s3://{located[0]}/{located[1]}", None
        msg = (
            f"{redact(href)} is an S3 presigned URL on a host that is neither AWS nor the configured S3 endpoint "
            f"({s3_endpoint or 'none'}); set AWS_ENDPOINT_URL to that host so the cube can store s3:// references"
        )
        raise SignedHrefError(msg)
    if any(p.lower().startswith("x-goog-") or p.lower() == "googleaccessid" for p in secrets):
        msg = (
            f"{redact(href)} is a Google Cloud Storage signed URL; stackcube cannot yet keep gs:// references in "
            "place of one: give gs:// hrefs (read with the environment's Google credentials), or unsigned https ones"
        )
        raise SignedHrefError(msg)
    blob = _azure_blob(parsed.netloc, parsed.path, azure_emulator)
    if blob is not None:
        account, container, name = blob
        return f"az://{container}/{name}", account
    msg = (
        f"{redact(href)} carries a credential in its query string ({', '.join(secrets)}); stackcube never stores "
        "one, and cannot tell where this object lives without it. Give the catalog's unsigned hrefs (sign at read "
        "time instead), or an s3:// href"
    )
    raise SignedHrefError(msg)


_AZURE_HOST = re.compile(r"^(?P<account>[a-z0-9]+)\.blob\.core\.windows\.net(?::\d+)?$")


def _azure_blob(netloc: str, path: str, emulator: str | None) -> tuple[str, str, str] | None:
    """(account, container, blob) of an Azure Blob URL, or None when the host is not Azure's (or the emulator's)."""
    parts = path.lstrip("/").split("/")
    host = _AZURE_HOST.match(netloc)
    if host and len(parts) >= 2 and all(parts[:2]):
        return host["account"], parts[0], "/".join(parts[1:])
    if emulator and netloc == urlparse(emulator).netloc and len(parts) >= 3 and all(parts[:3]):
        return parts[0], parts[1], "/".join(parts[2:])
    return None


_AWS_VIRTUAL = re.compile(r"^(?P<bucket>.+)\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?::\d+)?$")
_AWS_PATH = re.compile(r"^s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?::\d+)?$")


def _s3_object(netloc: str, path: str, s3_endpoint: str | None) -> tuple[str, str] | None:
    """(bucket, key) of an S3 URL, or None when the host is not S3's."""
    virtual = _AWS_VIRTUAL.match(netloc)
    if virtual:
        return virtual["bucket"], path.lstrip("/")
    endpoint = urlparse(s3_endpoint).netloc if s3_endpoint else None
    if _AWS_PATH.match(netloc) or (endpoint and netloc == endpoint):
        bucket, _, key = path.lstrip("/").partition("/")
        return (bucket, key) if bucket and key else None
    return None


def headers_for(url: str, credentials: Mapping[str, Any] | Callable[[str], Any] | None) -> dict[str, str]:
    """The request headers ``credentials`` give for an http(s) ``url``: those of the longest prefix of it (a
    callable is asked with ``scheme://host/``); none for other schemes or when no prefix matches. Headers go to
    the host they were given for only."""
    parsed = urlparse(url)
    if credentials is None or parsed.scheme not in {"http", "https"}:
        return {}
    # a mapping answers for the URL itself (its longest matching prefix); a callable is asked for the host
    asked = url if isinstance(credentials, Mapping) else f"{parsed.scheme}://{parsed.netloc}/"
    given = credential_for(asked, credentials)
    if not isinstance(given, Mapping):
        return {}
    return {str(k): str(v) for k, v in given.items()}


def _host_boundary(url: str, prefix: str) -> bool:
    """``prefix`` covers a whole host (``https://a.example`` must not match ``https://a.example.evil/``)."""
    rest = url[len(prefix) :]
    return prefix.endswith("/") or not rest or rest[0] in "/?#"


def credential_for(
    prefix: str, credentials: Mapping[str, Any] | Callable[[str], Any] | None, account: str | None = None
) -> Any:
    """The caller's credential for a container ``prefix`` (None when there is none). An object with a
    ``for_container(prefix, account)`` method (:class:`stackcube.credentials.PlanetaryComputer`) is also told the
    Azure account of an ``az://`` prefix, which the prefix does not name; a mapping answers for its longest key
    that ``prefix`` starts with."""
    if credentials is None:
        return None
    for_container = getattr(credentials, "for_container", None)
    if for_container is not None:
        return for_container(prefix, account)
    if callable(credentials):
        return credentials(prefix)
    matching = [k for k in credentials if prefix.startswith(k) and _host_boundary(prefix, k)]
    return credentials[max(matching, key=len)] if matching else None
