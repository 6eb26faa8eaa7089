"""The one error tree of stackcube.

Every error stackcube raises on purpose derives from :class:`StackcubeError`, grouped by what the caller
does about it::

    StackcubeError
    ├── MissingExtraError            (also ImportError) an optional part is not installed: the message names the
    │                                extra to install (distributed, geoparquet, planetary-computer)
    ├── BboxError                    (also ValueError) a bbox that cannot be right: the message says which bound
    │                                and, where it can tell, what was meant
    ├── SearchError                  the catalog could not be searched: check the URL and the search arguments
    │   └── NothingFoundError        (also LookupError) the search matched no usable items or assets
    ├── SelectionError               (also IndexError) a date (by index) the cube does not have: the message says
    │                                which it has
    ├── MetadataError                (also ValueError) an item's band metadata cannot be right (a scale of 0, nodata
    │                                outside the dtype): fix the catalog, or pass stac_metadata=False
    ├── SourceError                  a source could not be read: check the href, the network, the credentials
    │   ├── SourceNotFoundError      (also FileNotFoundError) the object does not exist
    │   ├── SourceChangedError       the object changed while or since it was indexed: re-index it
    │   ├── SignedHrefError          an href carries a credential stackcube cannot store without: give another
    │   └── HostError                the host cannot serve what reading needs (byte ranges): use another host
    ├── TiffError                    the bytes of a TIFF are not something stackcube can index
    │   ├── CorruptTiffError         (also ValueError) broken, truncated or hostile structure
    │   ├── UnsupportedTiffError     (also NotImplementedError) a valid feature stackcube cannot decode
    │   └── NotGriddableError        (also ValueError) no north-up affine grid: cannot be stacked without resampling
    │       └── UnknownCrsError      GeoKeys that describe no CRS GDAL can read, and no CRS in STAC: state it there
    ├── RepositoryError              the cube's repository cannot be used as asked
    │   ├── ArrayNotFoundError       (also ValueError) no array or level of that name: the message lists them
    │   ├── VersionNotFoundError     (also LookupError) no branch, tag or snapshot of that name: the message lists
    │   │                            the branches and tags there are
    │   ├── ConcurrentUpdateError    another writer moved the branch first (refresh retries on it)
    │   └── UntrustedSourceError     the cube points at sources outside the prefixes the caller allows
    ├── OutputError                  (also OSError) a file stackcube was asked to write cannot be written (a folder,
    │                                no permission): the message names it
    └── RedactedError                never raised: what a library raised, chained as the ``__cause__`` of one of
                                     the above with its credentials redacted (:func:`caused_by`)

Messages name the href, what was expected, what was found and what to do next; the value of every credential in
an href they quote is replaced by ``REDACTED`` (:func:`stackcube._hrefs.redact`), so logs never hold a token. The
same holds for what a traceback prints below the error (Jupyter, ``--debug``, logging's ``exc_info``): a library's
exception, whose text quotes the URL as requested (a signed URL's signature included), is never chained as it is,
neither as ``__cause__`` nor as ``__context__``; :func:`caused_by` chains a :class:`RedactedError` in its place.
Where what to do is a call of stackcube's, the error holds a :class:`Remedy` that says it both ways: ``str(error)``
names the Python call, the command line prints :meth:`StackcubeError.for_cli`, naming the command.
Warnings derive from :class:`StackcubeWarning`: :class:`ResamplingWarning` when values were resampled because
another grid was asked for, :class:`MissingAssetWarning` when an asset asked for is missing from some items.
"""

from __future__ import annotations

from dataclasses import dataclass

from stackcube._hrefs import redact

__all__ = [
    "ArrayNotFoundError",
    "BboxError",
    "ConcurrentUpdateError",
    "CorruptTiffError",
    "HostError",
    "MetadataError",
    "MissingExtraError",
    "MissingAssetWarning",
    "NotGriddableError",
    "NothingFoundError",
    "OutputError",
    "RedactedError",
    "RepositoryError",
    "Remedy",
    "ResamplingWarning",
    "SelectionError",
    "SearchError",
    "SignedHrefError",
    "SourceChangedError",
    "SourceError",
    "SourceNotFoundError",
    "StackcubeError",
    "StackcubeWarning",
    "TiffError",
    "UnknownCrsError",
    "UnsupportedTiffError",
    "UntrustedSourceError",
    "VersionNotFoundError",
]


@dataclass(frozen=True, slots=True)
class Remedy:
    """What to do about an error, when it is a call of stackcube's: said for Python and for the command line."""

    python: str
    """The advice in Python, e.g. ``re-index it with stackcube.refresh_cube('cube.icechunk', check_etags=True)``."""
    cli: str
    """The same advice on the command line, e.g. ``re-index it with stackcube refresh --check-etags cube.icechunk``."""


class StackcubeError(Exception):
    """Root of every error stackcube raises on purpose."""

    def __init__(self, *args: object, remedy: Remedy | None = None) -> None:
        if remedy is not None:  # kept as redacted as the message: it travels with the error (pickled, logged)
            remedy = Remedy(redact(remedy.python), redact(remedy.cli))
        if remedy is not None and args and isinstance(args[0], str):
            args = (f"{args[0]}; {remedy.python}", *args[1:])
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))
        self.remedy = remedy
        """What to do, when it is a call of stackcube's; ``str(self)`` ends with its Python form."""

    def for_cli(self) -> str:
        """The message as the command line says it: what to do names the command, not the Python call."""
        text = str(self)
        if self.remedy is None or not text.endswith(self.remedy.python):
            return text
        return text.removesuffix(self.remedy.python) + self.remedy.cli

    transient: bool = False
    """True when the same request may well succeed if tried again (a 5xx, 429, timeout or dropped connection);
    stackcube retries those itself (``stackcube.settings.retries``) before raising."""
    throttled: bool = False
    """True when the host said to slow down (429): the next try waits at least 1 s, doubling each time, within
    ``stackcube.settings.retry_deadline``. (The host's Retry-After cannot be honoured exactly: object_store, under
    obstore and Icechunk, does not expose response headers with its errors.)"""


class MissingExtraError(StackcubeError, ImportError):
    """An optional part of stackcube is asked for but not installed; the message names the extra that installs it."""


class BboxError(StackcubeError, ValueError):
    """A bbox that is not ``(west, south, east, north)`` in the expected CRS (swapped, reversed, in metres)."""


class SearchError(StackcubeError):
    """The catalog could not be searched: not reachable, not STAC, or the arguments are invalid."""


class NothingFoundError(SearchError, LookupError):
    """The search matched no items, or none of them had a usable asset; nothing is planned."""


class SelectionError(StackcubeError, IndexError):
    """A date (by index) the cube does not have; the message says which dates it has."""


class MetadataError(StackcubeError, ValueError):
    """What a catalog says about an asset's bands cannot be right; the message names the item, asset and value."""


class SourceError(StackcubeError, OSError):
    """A source object could not be read (network, permissions, server errors)."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The source object does not exist."""


class SourceChangedError(SourceError):
    """The source changed (its ETag or size differs) while or since it was indexed."""


class SignedHrefError(SourceError):
    """An href carries a credential in its query string, and stackcube cannot tell how to store it without one."""


class HostError(SourceError):
    """The host of a source cannot serve what stackcube needs (byte ranges): every source there fails alike."""


class TiffError(StackcubeError):
    """The bytes of a TIFF cannot be indexed."""


class CorruptTiffError(TiffError, ValueError):
    """The TIFF structure is broken, truncated or hostile."""


class UnsupportedTiffError(TiffError, NotImplementedError):
    """The TIFF uses a valid feature that stackcube cannot decode; the message names the tag and value."""


class NotGriddableError(TiffError, ValueError):
    """A TIFF has no north-up affine grid (not georeferenced, rotated, sheared, or only ground control points), or
    not the overview level asked for: its pixels cannot stand beside others without resampling."""


class UnknownCrsError(NotGriddableError):
    """A TIFF's GeoKeys describe no CRS that GDAL (and so stackcube) can read, and its STAC item states none; the
    message names the file and its keys."""


class RepositoryError(StackcubeError):
    """The cube's Icechunk repository cannot be used as asked (missing, not a stackcube cube, a URL stackcube cannot
    open, ...)."""


class ArrayNotFoundError(RepositoryError, ValueError):
    """The cube has no array, or the array no level, of the name asked for; the message lists what there is."""


class VersionNotFoundError(RepositoryError, LookupError):
    """The repository has no branch, tag or snapshot of that name; the message lists its branches and tags."""


class ConcurrentUpdateError(RepositoryError):
    """Another writer committed to the branch after this one read it; nothing of this write was committed."""


class UntrustedSourceError(RepositoryError, PermissionError):
    """The cube declares virtual chunk containers outside the prefixes the caller allows; nothing was read."""


class OutputError(StackcubeError, OSError):
    """A file stackcube was asked to write cannot be written (a folder, no permission): the message names it."""


class RedactedError(StackcubeError):
    """Never raised: a library's exception as the ``__cause__`` of a stackcube error, with every credential in its
    text redacted. Its message starts with the original type (``obstore.exceptions.GenericError: ...``), so a
    traceback still says what failed underneath; its own causes are redacted the same way."""

    def __init__(self, text: str, kind: str = "") -> None:
        super().__init__(text, kind)
        self.kind = kind
        """The original exception's type, ``module.QualifiedName``."""

    def __str__(self) -> str:
        text = str(self.args[0])
        return f"{self.kind}: {text}" if self.kind else text

    @classmethod
    def of(cls, exc: BaseException, depth: int = 8) -> RedactedError:
        """The stand-in of ``exc``, and of what ``exc`` was caused by (or raised while handling), ``depth`` deep."""
        kind = type(exc)
        stand_in = cls(str(exc), f"{kind.__module__}.{kind.__qualname__}")
        below = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        stand_in.__cause__ = None if below is None or depth <= 1 else cls.of(below, depth - 1)
        stand_in.__suppress_context__ = True
        return stand_in


def caused_by[E: BaseException](error: E, cause: BaseException | None) -> E:
    """``error`` with :class:`RedactedError` of ``cause`` as its ``__cause__`` (None: no cause shown), to raise
    *outside* the ``except`` block that caught ``cause``: raised inside it, Python would keep ``cause`` itself as
    ``__context__``, where debuggers and error trackers find it, even under ``raise ... from``.

    Examples
    --------
    >>> try:
    ...     raise OSError("GET https://h/a.tif?sig=SECRET failed")
    ... except OSError as exc:
    ...     error = caused_by(SourceError("https://h/a.tif could not be read"), exc)
    >>> str(error.__cause__)
    'builtins.OSError: GET https://h/a.tif?sig=REDACTED failed'
    """
    error.__cause__ = None if cause is None else RedactedError.of(cause)
    error.__suppress_context__ = True
    return error


class StackcubeWarning(UserWarning):
    """Root of every warning stackcube gives."""


class ResamplingWarning(StackcubeWarning):
    """Values were resampled onto a grid that was asked for, so they are not the sources' pixels."""


class MissingAssetWarning(StackcubeWarning):
    """An asset asked for is missing from some of the items found: their pixels of that band are left empty."""
