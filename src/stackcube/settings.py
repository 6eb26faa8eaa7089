"""How stackcube talks to the network: one frozen :class:`Settings` object, read from the environment in this module
only, changed for the process or, in a ``with`` block, for the thread or asyncio task running it (a context
variable, as ``decimal.localcontext`` is: two threads' overlapping blocks each keep their own values).

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
>>> with stackcube.settings.set(max_concurrency=16):   # this thread (or task) only, back to 64 after the block
...     stackcube.settings.current().max_concurrency
16
>>> _ = stackcube.settings.set(retries=2)               # or for every thread, for the rest of the process
>>> stackcube.settings.reset()                          # back to the environment's values
"""

from __future__ import annotations

import contextvars
import dataclasses
import dis
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
_default: Settings | None = None
"""The process's settings: the environment's (read on first use), with every :func:`set` made outside a ``with``
statement applied; what every thread sees outside a ``with stackcube.settings.set(...)`` block of its own."""
_scoped: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("stackcube_settings", default=None)
"""The changes of the ``with stackcube.settings.set(...)`` blocks the current context is in (a thread, an asyncio
task: each has its own, as xarray and dask users expect of a scoped override)."""


class _Scope:
    """The changes of the ``with`` blocks a context is in, over whatever the process's settings are: one per block,
    made by ``owner`` (the override entered), over ``outer`` (the scope of the block around it, or None)."""

    __slots__ = ("_made", "changes", "outer", "owner")

    def __init__(self, changes: dict[str, Any], owner: _Override, outer: _Scope | None) -> None:
        self.changes = changes
        self.owner = owner
        self.outer = outer
        self._made: tuple[Settings, Settings] | None = None  # (the process's settings, with these changes)

    def over(self, default: Settings) -> Settings:
        """``default`` with these changes (made once per process settings: a thread may race to make it twice)."""
        made = self._made
        if made is None or made[0] is not default:
            made = (default, dataclasses.replace(default, **self.changes))
            self._made = made
        return made[1]


def _process_default() -> Settings:
    global _default
    with _lock:
        if _default is None:
            _default = Settings.from_env()
        return _default


def current() -> Settings:
    """The settings in force here: those of the ``with stackcube.settings.set(...)`` blocks this thread (or asyncio
    task) is in, over the process's (the environment's, read on first use, with every other :func:`set` applied).

    Work stackcube hands to its I/O loop runs in the caller's context (:func:`asyncio.run_coroutine_threadsafe`
    and :func:`asyncio.to_thread` copy it), so it sees the same; the public functions also take it here, in the
    caller's thread, and pass it along (``settings=``).
    """
    scope = _scoped.get()
    default = _process_default()
    return default if scope is None else scope.over(default)


class _Override:
    """What :func:`set` returns: already applied to the process unless it is the expression of a ``with`` statement;
    as a context manager, the changes are the block's context's (moved there from the process's, if applied to it),
    undone when the block ends. It may be entered again, and nested."""

    def __init__(self, changes: dict[str, Any]) -> None:
        self._changes = changes
        self._undo: tuple[Settings, Settings] | None = None
        """The process's settings before and after these changes, while they are applied there."""

    def __enter__(self) -> Settings:
        self._undo_default()  # made before the ``with`` statement (``cm = set(...)``, then ``with cm:``)
        outer = _scoped.get()
        _scoped.set(_Scope({**(outer.changes if outer else {}), **self._changes}, self, outer))
        return current()

    def __exit__(self, *exc: object) -> None:
        # the context's own chain of blocks says which is this one's: no token, which a block left in another
        # context (a generator resumed elsewhere), or an override entered by two threads, would get wrong
        scope = _scoped.get()
        if scope is not None and scope.owner is self:
            _scoped.set(scope.outer)
            return
        while scope is not None and scope.owner is not self:
            scope = scope.outer
        if scope is None:  # never entered here: undo the process's change (``override.__exit__(...)``, by hand)
            self._undo_default()
        # else left out of order (an inner block is still open here): that block's values stay until it ends

    def _undo_default(self) -> None:
        """Put back the process's settings as they were, or, if another :func:`set` changed them since, the values
        of this override's names that still hold its values."""
        global _default
        with _lock:
            if self._undo is None or _default is None:
                return
            before, after = self._undo
            if _default is after:
                _default = before
            else:
                back = {n: getattr(before, n) for n in self._changes if getattr(_default, n) == getattr(after, n)}
                _default = dataclasses.replace(_default, **back)
            self._undo = None


def set(**changes: Any) -> _Override:
    """Change settings now: in a ``with`` statement, for the thread (or asyncio task) running the block, until it
    ends; otherwise for the whole process, every thread included.

    A block's changes are its own: two threads in overlapping ``with stackcube.settings.set(...)`` blocks each see
    their own values, and a thread started inside a block sees the process's (contexts are not inherited by
    threads). Raises ``TypeError`` for a name that is not a setting and ``ValueError`` for an impossible value.
    """
    global _default
    known = [f.name for f in dataclasses.fields(Settings)]
    unknown = [name for name in changes if name not in known]
    if unknown:
        msg = f"stackcube has no setting {', '.join(map(repr, unknown))}; the settings are {', '.join(known)}"
        raise TypeError(msg)
    dataclasses.replace(current(), **changes)  # an impossible value is refused here, before anything changes
    override = _Override(changes)
    if _opens_with(sys._getframe(1)):
        return override  # the block's own, from its __enter__ (the next instruction of the caller)
    with _lock:
        before = _default if _default is not None else Settings.from_env()
        _default = dataclasses.replace(before, **changes)
        override._undo = (before, _default)
    return override


_WITH = {"BEFORE_WITH", "BEFORE_ASYNC_WITH"}
"""The instruction a ``with`` (``async with``) statement runs right after making its context manager."""


def _opens_with(frame: types.FrameType) -> bool:
    """Whether the call running in ``frame`` (a call of :func:`set`) makes the context manager of a ``with``
    statement: the next instruction of its code starts the block.

    :func:`set` is both a function that changes the process's settings and a context manager scoped to the block,
    and must know which before it returns: a block's changes applied to the process first, even for the instant
    before ``__enter__``, would reach another thread's reads (the loss this scoping ends).
    """
    after = (i for i in dis.get_instructions(frame.f_code) if i.offset > frame.f_lasti)
    first = next(after, None)
    if first is None:
        return False
    if first.opname == "COPY":  # Python 3.14 looks ``__exit__`` and ``__enter__`` up with LOAD_SPECIAL instead
        second = next(after, None)
        return second is not None and second.opname == "LOAD_SPECIAL"
    return first.opname in _WITH


def with_credentials(settings: Settings, credentials: Credentials | None) -> Settings:
    """``settings`` with ``credentials`` for one call (unchanged when they are None)."""
    return settings if credentials is None else dataclasses.replace(settings, credentials=credentials)


def reset() -> None:
    """Forget every :func:`set` (the process's and the ``with`` blocks' of the current context) and read the
    environment again (after changing ``os.environ``, in tests)."""
    global _default
    _scoped.set(None)
    with _lock:
        _default = Settings.from_env()


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
