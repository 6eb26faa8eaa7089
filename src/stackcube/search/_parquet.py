"""stac-geoparquet inputs: a file or a directory of files, local or on object storage, searched with pushdown.

The search's bbox (or the bounds of ``intersects``), datetime, collections, ids and the comparisons of its CQL2
filter become a SQL ``WHERE`` clause on the columns stac-geoparquet writes (``bbox`` a struct of ``xmin``, ``ymin``,
``xmax``, ``ymax``; ``datetime`` a timestamp; properties top-level columns), run by DuckDB's Parquet reader: row
groups whose statistics cannot match are skipped, the other columns are decoded only for rows that pass. The
clause only ever keeps more than the search asks for: what passes is then matched exactly as any static input is
(geometry, the whole CQL2 filter with ``cql2``, the ``query`` extension), so a stac-geoparquet file answers as the
same items in an ItemCollection, or in a STAC API, do. Rows become items with rustac.

DuckDB itself, not through rustac's search: rustac's search needs DuckDB's spatial extension, and DuckDB
downloads extensions at run time; its built-in Parquet reader needs none. (pyarrow's dataset scanner decodes every
column of a row group before filtering: 12x slower on a one-row-group file of Sentinel-2 items.) Files on object
storage or HTTP are read with ranged requests through obstore's fsspec adapter. DuckDB's errors quote the href as
given, a signature included: they become a :class:`~stackcube.errors.SearchError` raised outside the ``except``
block that caught them, with a redacted stand-in as cause (:func:`stackcube.errors.caused_by`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pystac

from stackcube import _sync
from stackcube._remedies import install_extra
from stackcube.errors import MissingExtraError, SearchError, caused_by
from stackcube.search._fetch import basic_auth
from stackcube.search._query import Query, split_userinfo
from stackcube.search._static import interval_of
from stackcube.settings import Settings

__all__ = ["SUFFIXES", "is_parquet", "parquet_items", "pushdown"]

SUFFIXES = (".parquet", ".geoparquet", ".pq")
"""File names read as stac-geoparquet."""

BATCH = 512
"""Rows turned into items at a time (bounds memory whatever a search returns): a batch is made into Python dicts
whole, about 50 kB a Sentinel-2 item. A search of 20,000 such items that keeps only their chosen assets peaked at
544 MB in batches of 512 and at 1,144 MB in batches of 4,096 (24-28 s either way)."""

_REMOTE = {"s3", "gs", "gcs", "az", "abfs", "abfss", "http", "https"}


def is_parquet(href: str) -> bool:
    """Whether ``href`` names stac-geoparquet: a file with a Parquet suffix, or a local directory of them."""
    path = urlparse(href).path if "://" in href else href
    if path.rstrip("/").lower().endswith(SUFFIXES):
        return True
    return "://" not in href and Path(href).is_dir() and any(Path(href).glob("**/*.parquet"))


def parquet_items(href: str, q: Query, settings: Settings) -> Iterator[pystac.Item]:
    """The items of the stac-geoparquet at ``href`` that may match ``q``, in file order; an URL's user information
    (``https://user:password@host/...``) is sent as HTTP basic authentication, and quoted by no message.

    A superset: the caller matches them exactly (:func:`stackcube.search._static.matches`).
    """
    href, userinfo = split_userinfo(href)
    try:
        import duckdb
        import pyarrow as pa
        import rustac
    except ImportError:
        msg = f"{href}: reading stac-geoparquet needs duckdb, pyarrow and rustac: {install_extra('geoparquet')}"
        raise MissingExtraError(msg) from None
    if urlparse(href).scheme in {"http", "https"} and urlparse(href).query:
        # DuckDB takes the "?" for a wildcard (it lists the folder, which an HTTP host cannot), and obstore's
        # adapter would drop the query anyway: refused before any request, rather than failing as a listing
        msg = (
            f"{href}: stac-geoparquet cannot be read from an URL with a query string (a signed URL, say): give the "
            "file's s3:// or az:// URL (credentials from the environment), an URL without a query, or a local copy"
        )
        raise SearchError(msg)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # timestamps out as tz=UTC, as stac-geoparquet writes them
    try:
        source = _source(con, href, settings, basic_auth(userinfo))
        scan = f"read_parquet({source}, union_by_name = true, hive_partitioning = false)"
        failure: SearchError | None = None
        try:
            columns = dict(
                con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {scan})").fetchall()
            )
        except duckdb.Error as exc:
            failure = _unreadable(href, exc)
        if failure is not None:
            raise failure  # outside the except block: DuckDB's error, quoting the href, is no __context__ of ours
        if "id" not in columns:
            msg = f"{href} is Parquet but not stac-geoparquet (no 'id' column); write it with stac-geoparquet or rustac"
            raise SearchError(msg)
        where, params = pushdown(q, columns)
        try:
            result = con.sql(f"SELECT * FROM {scan} WHERE {where}", params=params)
            batches = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch  # DuckDB 2 renamed it
            for batch in batches(BATCH):
                # without the columns' metadata: rustac fails on the geoarrow.wkb metadata DuckDB writes (with
                # "crs_type") and reads a "geometry" column as WKB by its name anyway
                plain = pa.schema([f.remove_metadata() for f in batch.schema])
                table = pa.Table.from_arrays(batch.columns, schema=plain)
                for data in rustac.from_arrow(table)["features"]:
                    yield pystac.Item.from_dict(_present(data), preserve_dict=False)
        except (duckdb.Error, rustac.RustacError, OSError) as exc:  # OSError: pyarrow's, reading DuckDB's answer
            failure = _unreadable(href, exc)
        if failure is not None:
            raise failure  # as above
    finally:
        con.close()


def _source(con: Any, href: str, settings: Settings, headers: dict[str, str]) -> str:
    """The ``read_parquet`` argument naming ``href`` (a quoted path or glob), its filesystem registered (sending
    ``headers`` with every HTTP request)."""
    scheme = urlparse(href).scheme if "://" in href else ""
    if scheme in _REMOTE:
        con.register_filesystem(_filesystem(scheme, settings, headers))
        target = href
    else:
        path = Path(href)
        if not path.exists():
            msg = f"{href}: no such stac-geoparquet file or directory; check the path"
            raise SearchError(msg)
        target = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
    return "'" + target.replace("'", "''") + "'"


def _filesystem(scheme: str, settings: Settings, headers: dict[str, str]) -> Any:
    """obstore's fsspec adapter for ``scheme``, configured as stackcube's own stores are (credentials come from
    the environment, as for every source; ``headers`` go with every HTTP request: the one file's host)."""
    from obstore.fsspec import FsspecStore

    _sync.obstore_used()
    adapter: Any = FsspecStore  # typed per literal protocol; the protocol here is a variable
    client: dict[str, Any] = {"timeout": f"{settings.request_timeout}s"}
    if scheme == "s3":
        config, more = settings.s3.obstore_options()
        return adapter("s3", client_options={**client, **more}, **config)
    if scheme == "http":
        client["allow_http"] = True
    if headers and scheme in {"http", "https"}:
        client["default_headers"] = headers
    return adapter(scheme, client_options=client)


def _unreadable(href: str, exc: BaseException) -> SearchError:
    """The error a failed read becomes, with a redacted stand-in of ``exc`` as its cause; transient for a remote
    file (the search is tried again, from the start)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    first = lines[0]
    if first.startswith("Traceback"):  # a Python filesystem's error, as DuckDB quotes it: the line naming it
        first = next((line for line in lines[1:] if line.strip() and not line[0].isspace()), first)
    msg = f"{href}: could not read stac-geoparquet ({first}); check the path or URL and its credentials"
    error = caused_by(SearchError(msg), exc)
    refused = any(word in str(exc).lower() for word in ("not found", "no files found", "404", "403", "denied"))
    error.transient = "://" in href and urlparse(href).scheme in _REMOTE and not refused
    return error


def _present(item: dict[str, Any]) -> dict[str, Any]:
    """The item without the nulls a table pads absent fields with (a column exists for every row or none);
    ``datetime`` stays, null when the item has a start and end instead."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    properties = item.get("properties") or {}
    item["properties"] = {**strip(properties), "datetime": properties.get("datetime")}
    item["assets"] = strip(item.get("assets") or {})
    return item


# --- the pushdown: a WHERE clause every row matching the search passes --------------------------------------


class _Where:
    """SQL conditions on the file's columns (name -> DuckDB type), with their parameters."""

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns = columns
        self.params: list[Any] = []

    def column(self, name: str, *sub: str) -> str:
        return ".".join(['"' + n.replace('"', '""') + '"' for n in (name, *sub)])

    def value(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def kind(self, name: str) -> str | None:
        return self.columns.get(name)

    def is_time(self, name: str) -> bool:
        return (self.kind(name) or "").startswith("TIMESTAMP")

    def time(self, name: str, value: datetime) -> str:
        """A timestamp parameter as the column keeps them: with time zone, or naive UTC."""
        aware = "WITH TIME ZONE" in (self.kind(name) or "")
        return self.value(value if aware else value.astimezone(UTC).replace(tzinfo=None))


def pushdown(q: Query, columns: dict[str, str]) -> tuple[str, list[Any]]:
    """A SQL condition every row matching ``q`` meets (``TRUE`` when nothing can be pushed down), and its
    parameters; ``columns`` maps the file's column names to their DuckDB types."""
    w = _Where(columns)
    parts: list[str | None] = []
    if q.collections is not None and "collection" in columns:
        parts.append(f"CAST({w.column('collection')} AS VARCHAR) IN ({', '.join(w.value(c) for c in q.collections)})")
    if q.ids is not None:
        parts.append(f"CAST({w.column('id')} AS VARCHAR) IN ({', '.join(w.value(i) for i in q.ids)})")
    box = q.bbox
    if box is None and q.intersects is not None:
        import shapely.geometry

        box = tuple(shapely.geometry.shape(q.intersects).bounds)
    if box is not None:
        parts.append(_in_box(w, box))
    if q.datetime is not None:
        parts.append(_in_interval(w, *interval_of(q.datetime)))
    if q.filter is not None:
        import cql2

        parts.append(_cql2(w, cql2.Expr(q.filter).to_json()))
    kept = [p for p in parts if p is not None]
    return (" AND ".join(f"({p})" for p in kept) if kept else "TRUE"), w.params


def _in_box(w: _Where, box: tuple[float, ...]) -> str | None:
    kind = w.kind("bbox") or ""
    if not (kind.startswith("STRUCT(") and all(f"{k} " in kind for k in ("xmin", "ymin", "xmax", "ymax"))):
        return None  # stac-geoparquet before 1.0 kept bbox as a list: matched exactly after
    west, south, east, north = box
    xmin, ymin, xmax, ymax = (w.column("bbox", k) for k in ("xmin", "ymin", "xmax", "ymax"))
    return (
        f"{ymax} >= {w.value(float(south))} AND {ymin} <= {w.value(float(north))} AND "
        # an item across the antimeridian (a STAC bbox with west > east) is kept, and matched exactly
        f"(({xmax} >= {w.value(float(west))} AND {xmin} <= {w.value(float(east))}) OR {xmin} > {xmax})"
    )


def _in_interval(w: _Where, lo: datetime | None, hi: datetime | None) -> str | None:
    """Rows whose datetime, or start/end range, may meet [lo, hi]."""
    if not w.is_time("datetime") or (lo is None and hi is None):
        return None

    def between(start: str, end: str) -> str:
        parts = ([f"{w.column(end)} >= {w.time(end, _utc(lo))}"] if lo is not None else []) + (
            [f"{w.column(start)} <= {w.time(start, _utc(hi))}"] if hi is not None else []
        )
        return " AND ".join(parts)

    instant = between("datetime", "datetime")
    if w.is_time("start_datetime") and w.is_time("end_datetime"):
        return f"({instant}) OR ({between('start_datetime', 'end_datetime')})"
    return instant


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_COMPARE = {"=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NUMBERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


def _cql2(w: _Where, node: Any) -> str | None:
    """The part of a CQL2 JSON expression that can pre-filter rows, or None.

    Only what keeps a superset of the matches: an ``and`` keeps the conjuncts it can translate, an ``or`` needs all
    of its arguments; comparisons of a property with a literal of the column's kind, ``in``, ``between``,
    ``s_intersects`` (by the geometry's bounds) and ``t_intersects`` on ``datetime``. ``not``, ``<>``, ``like``,
    null tests and functions stay with the exact match.
    """
    if not isinstance(node, dict):
        return None
    op, args = node.get("op"), node.get("args") or []
    if op == "and":
        kept = [p for p in (_cql2(w, a) for a in args) if p is not None]
        return " AND ".join(f"({p})" for p in kept) if kept else None
    if op == "or":
        parts = [_cql2(w, a) for a in args]
        return None if not parts or any(p is None for p in parts) else " OR ".join(f"({p})" for p in parts)
    if op in _COMPARE and len(args) == 2:
        name, value, flipped = _property_and_literal(args)
        column = _operand(w, name, value) if name is not None else None
        if column is None:
            return None
        return f"{column} {_FLIP[op] if flipped else op} {_literal(w, name, value)}"  # type: ignore[arg-type]
    if op == "in" and len(args) == 2 and _property(args[0]) and isinstance(args[1], list) and args[1]:
        name = args[0]["property"]
        columns = [_operand(w, name, v) for v in args[1]]
        if any(c is None for c in columns):
            return None
        return f"{columns[0]} IN ({', '.join(_literal(w, name, v) for v in args[1])})"
    if op == "between" and len(args) == 3 and _property(args[0]):
        name = args[0]["property"]
        column = _operand(w, name, args[1])
        if column is None or _operand(w, name, args[2]) is None:
            return None
        return f"{column} >= {_literal(w, name, args[1])} AND {column} <= {_literal(w, name, args[2])}"
    if op == "s_intersects" and len(args) == 2:
        shape = next((a for a in args if isinstance(a, dict) and ("type" in a or "bbox" in a)), None)
        if shape is None:
            return None
        if "bbox" in shape and "type" not in shape:
            b = shape["bbox"]
            return _in_box(w, (b[0], b[1], b[-2], b[-1]))
        import shapely.geometry

        return _in_box(w, tuple(shapely.geometry.shape(shape).bounds))
    if op == "t_intersects" and len(args) == 2 and _property(args[0]) and args[0]["property"] == "datetime":
        span = args[1].get("interval") if isinstance(args[1], dict) else None
        if not span or len(span) != 2:
            return None
        lo, hi = (None if v in {"..", None} else _time(v) for v in span)
        if hi is not None and "T" not in span[1]:
            hi += timedelta(days=1)  # a date ends with its day
        return _in_interval(w, lo, hi)
    return None


def _property(arg: Any) -> bool:
    return isinstance(arg, dict) and set(arg) == {"property"} and isinstance(arg["property"], str)


def _property_and_literal(args: list[Any]) -> tuple[str | None, Any, bool]:
    if _property(args[0]) and not _property(args[1]):
        return args[0]["property"], args[1], False
    if _property(args[1]) and not _property(args[0]):
        return args[1]["property"], args[0], True
    return None, None, False


def _operand(w: _Where, name: str, value: Any) -> str | None:
    """The column ``name`` when the literal ``value`` is of its kind (numbers with numbers, text with text,
    timestamps with timestamps), else None: such a comparison is left to the exact match."""
    kind = w.kind(name)
    if kind is None or name in {"bbox", "geometry"}:
        return None
    if isinstance(value, bool):
        return w.column(name) if kind == "BOOLEAN" else None
    if isinstance(value, int | float):
        numeric = kind in _NUMBERS or kind in {"FLOAT", "DOUBLE"} or kind.startswith("DECIMAL")
        return w.column(name) if numeric else None
    if isinstance(value, str):
        return f"CAST({w.column(name)} AS VARCHAR)" if kind == "VARCHAR" or kind.startswith("ENUM") else None
    if isinstance(value, dict) and set(value) == {"timestamp"} and w.is_time(name):
        if name == "datetime" and w.is_time("start_datetime"):  # as matched: the start when datetime is null
            return f"COALESCE({w.column('datetime')}, {w.column('start_datetime')})"
        return w.column(name)
    return None


def _literal(w: _Where, name: str, value: Any) -> str:
    if isinstance(value, dict) and "timestamp" in value:
        return w.time(name, _time(value["timestamp"]))
    return w.value(value)


def _time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
