"""How stackcube talks to the network: one frozen :class:`Settings` object, read from the environment in this module
only, with a scoped override.

``max_concurrency`` caps requests in flight (header reads, HEADs); ``header_bytes`` is the size of the first ranged
GET of a TIFF; ``retries``, ``retry_deadline`` and ``request_timeout`` bound how long a failing request is tried
(searches, header reads, HEADs and reads of a cube's tiles: 5xx, 429, timeouts, dropped connections and cut-off
bodies are retried with exponential backoff and full jitter, a 429 waiting at least 1 s); ``s3`` is where
``s3://`` URLs are served from. Every function that uses them takes the object (``settings=``); the public sync
entry points pass :func:`current` along.

Examples
--------
>>> import stackcube
>>> stackcube.settings.current().max_concurrency
64
>>> with stackcube.settings.set(max_concurrency=16):   # scoped: back to 64 after the block
...     stackcube.settings.current().max_concurrency
16
>>> _ = stackcube.settings.set(retries=2)               # or for the rest of the process
>>> stackcube.settings.reset()                          # back to the environment's values
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["AzureSettings", "Credentials", "S3Settings", "Settings", "current", "reset", "set", "with_credentials"]

type Credentials = Mapping[str, Any] | Callable[[str], Any]
"""What the sources' hosts want, per URL prefix (a virtual chunk container prefix, which ``stackcube info``
lists, or any prefix of hrefs): for an http(s) prefix, request headers (``{"Authorization": "Bearer ..."}``); for
an ``s3://`` prefix, an Icechunk credential (``icechunk.s3_credentials(...)``, refreshable ones included); or a
callable from prefix to one (None: the default for that prefix)."""


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where ``s3://`` URLs (sources and repositories) are served from; credentials stay with obstore and Icechunk.

    stackcube never reads a secret: it only notes whether the environment holds credentials, and asks anonymously
    when it does not (public buckets).
    """

    endpoint: str | None = None
    """A custom endpoint (MinIO, moto, Ceph): ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; None for AWS."""
    region: str = "us-east-1"
    """``AWS_REGION`` or ``AWS_DEFAULT_REGION``."""
    signed: bool = False
    """Whether requests are signed: credentials are in the environment (``AWS_ACCESS_KEY_ID`` or ``AWS_PROFILE``)."""
    requester_pays: bool = False
    """Requests say the requester pays (``x-amz-request-payer: requester``), as requester-pays buckets (USGS
    Landsat) demand: ``AWS_REQUEST_PAYER`` set to ``requester`` or ``true`` (obstore's convention)."""

    @property
    def allow_http(self) -> bool:
        """A custom endpoint on plain HTTP (a local test server)."""
        return bool(self.endpoint and self.endpoint.startswith("http://"))

    def obstore_options(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The configuration of an obstore ``S3Store`` these settings describe, and what its client options need
        besides (obstore reads the credentials from the environment itself)."""
        config: dict[str, Any] = {"region": self.region}
        client: dict[str, Any] = {}
        if self.endpoint:
            config["endpoint"] = self.endpoint
            client["allow_http"] = self.allow_http
        if not self.signed:
            config["skip_signature"] = True
        if self.requester_pays:
            config["request_payer"] = True
        return config, client

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """The S3 settings the usual ``AWS_*`` variables describe."""
        return cls(
            endpoint=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None,
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            signed=bool(environ.get("AWS_ACCESS_KEY_ID") or environ.get("AWS_PROFILE")),
            requester_pays=environ.get("AWS_REQUEST_PAYER", "").strip().lower() in {"requester", "true"},
        )


@dataclass(frozen=True, slots=True)
class AzureSettings:
    """Where Azure Blob Storage is: Azure itself, or the Azurite emulator (object_store's convention)."""

    signed: bool = False
    """Whether the environment holds Azure credentials (``AZURE_STORAGE_ACCOUNT_KEY``, ``AZURE_STORAGE_SAS_TOKEN``,
    ``AZURE_CLIENT_ID``), which reads then use by default; else reads are anonymous (or take ``credentials=``)."""
    emulator: str | None = None
    """The emulator's blob endpoint (``AZURITE_BLOB_STORAGE_URL``, default ``http://127.0.0.1:10000``) when
    ``AZURE_STORAGE_USE_EMULATOR=true``; None for Azure itself. Its path-style URLs
    (``http://host:port/ACCOUNT/CONTAINER/BLOB``) are then recognised as Azure Blob URLs."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """The Azure settings the usual ``AZURE_*`` and ``AZURITE_*`` variables describe."""
        keys = ("AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_SAS_KEY", "AZURE_CLIENT_ID")
        signed = any(environ.get(k) for k in keys)
        if environ.get("AZURE_STORAGE_USE_EMULATOR", "").strip().lower() not in {"true", "1"}:
            return cls(signed=signed)
        return cls(signed=signed, emulator=environ.get("AZURITE_BLOB_STORAGE_URL") or "http://127.0.0.1:10000")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every process-wide knob of stackcube; frozen, so a function holding one sees the same values throughout."""

    max_concurrency: int = 64
    """Most requests kept in flight at once (env ``STACKCUBE_MAX_CONCURRENCY``)."""
    header_bytes: int = 32 * 1024
    """Bytes asked for by the first ranged GET of a TIFF (env ``STACKCUBE_HEADER_BYTES``).

    A Sentinel-2 10 m COG header (10980 x 10980, 512-pixel tiles, 5 overviews) takes about 7 KiB; GDAL asks
    16 KiB first, async-tiff 32 KiB. A second GET costs a round trip, a few more KiB cost almost nothing.
    """
    retries: int = 5
    """Retries of one request after a transient failure (env ``STACKCUBE_RETRIES``); 0 disables them."""
    retry_deadline: float = 120.0
    """Seconds after which a request is not retried again, however many retries are left
    (env ``STACKCUBE_RETRY_DEADLINE``)."""
    request_timeout: float = 30.0
    """Seconds one request may take (connection, headers and body) before it counts as failed
    (env ``STACKCUBE_REQUEST_TIMEOUT``)."""
    s3: S3Settings = field(default_factory=S3Settings)
    """Where ``s3://`` URLs are served from (the ``AWS_*`` variables)."""
    azure: AzureSettings = field(default_factory=AzureSettings)
    """Where Azure Blob Storage is (the emulator, with ``AZURE_STORAGE_USE_EMULATOR``)."""
    credentials: Credentials | None = field(default=None, repr=False, compare=False)
    """What the sources' hosts want, per URL prefix (never read from the environment, never stored, never
    printed): for an http(s) prefix, request headers (``{"Authorization": "Bearer ..."}``), sent with header reads,
    HEADs and tile reads of hrefs under it and to no other host; for an ``s3://`` (or other object store) prefix,
    an Icechunk credential, used by tile reads. A callable takes ``scheme://host/`` (for requests) or a container
    prefix (for tile reads). The ``credentials=`` keyword of ``build_cube``, ``open_cube``... sets it for one call."""

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "header_bytes"):
            if int(getattr(self, name)) < 1:
                msg = f"stackcube setting {name} must be at least 1, not {getattr(self, name)!r}"
                raise ValueError(msg)
        for name in ("retries", "retry_deadline", "request_timeout"):
            if getattr(self, name) < 0:
                msg = f"stackcube setting {name} must not be negative, not {getattr(self, name)!r}"
                raise ValueError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings the environment asks for (``STACKCUBE_*`` and ``AWS_*``), defaults elsewhere."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def number[N: (int, float)](name: str, default: N) -> N:
            text = env.get(name)
            if text is None or not text.strip():
                return default
            try:
                return type(default)(text)
            except ValueError:
                kind = "a whole number" if isinstance(default, int) else "a number"
                msg = f"environment variable {name}={text!r} is not {kind}; unset or fix it"
                raise ValueError(msg) from None

        return cls(
            max_concurrency=number("STACKCUBE_MAX_CONCURRENCY", defaults.max_concurrency),
            header_bytes=number("STACKCUBE_HEADER_BYTES", defaults.header_bytes),
            retries=number("STACKCUBE_RETRIES", defaults.retries),
            retry_deadline=number("STACKCUBE_RETRY_DEADLINE", defaults.retry_deadline),
            request_timeout=number("STACKCUBE_REQUEST_TIMEOUT", defaults.request_timeout),
            s3=S3Settings.from_env(env),
            azure=AzureSettings.from_env(env),
        )


_lock = threading.Lock()
_current: Settings | None = None


def current() -> Settings:
    """The settings in force: the environment's (read on first use), with any :func:`set` applied."""
    global _current
    with _lock:
        if _current is None:
            _current = Settings.from_env()
        return _current


class _Override:
    """What :func:`set` returns: already applied; as a context manager, undone when the block ends."""

    def __init__(self, previous: Settings) -> None:
        self._previous = previous

    def __enter__(self) -> Settings:
        return current()

    def __exit__(self, *exc: object) -> None:
        global _current
        with _lock:
            _current = self._previous


def set(**changes: Any) -> _Override:
    """Change settings now; in a ``with`` block, only until it ends.

    Raises ``TypeError`` for a name that is not a setting and ``ValueError`` for an impossible value.
    """
    global _current
    known = [f.name for f in dataclasses.fields(Settings)]
    unknown = [name for name in changes if name not in known]
    if unknown:
        msg = f"stackcube has no setting {', '.join(map(repr, unknown))}; the settings are {', '.join(known)}"
        raise TypeError(msg)
    with _lock:
        previous = _current if _current is not None else Settings.from_env()
        _current = dataclasses.replace(previous, **changes)
    return _Override(previous)


def with_credentials(settings: Settings, credentials: Credentials | None) -> Settings:
    """``settings`` with ``credentials`` for one call (unchanged when they are None)."""
    return settings if credentials is None else dataclasses.replace(settings, credentials=credentials)


def reset() -> None:
    """Forget every :func:`set` and read the environment again (after changing ``os.environ``, in tests)."""
    global _current
    with _lock:
        _current = Settings.from_env()


_DEPRECATED = ("max_concurrency", "header_bytes", "retries", "retry_deadline", "request_timeout")


class _SettingsModule(types.ModuleType):
    """Keeps ``stackcube.settings.retries = 8`` (the 0.1 spelling) working, with a DeprecationWarning."""

    def __getattr__(self, name: str) -> Any:
        if name in _DEPRECATED:
            warnings.warn(
                f"stackcube.settings.{name} is deprecated; use stackcube.settings.current().{name}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(current(), name)
        msg = f"module 'stackcube.settings' has no attribute {name!r}"
        raise AttributeError(msg)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _DEPRECATED:
            warnings.warn(
                f"assigning stackcube.settings.{name} is deprecated; use stackcube.settings.set({name}=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            set(**{name: value})
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _SettingsModule
