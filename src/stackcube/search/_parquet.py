"""stac-geoparquet inputs: a file or a directory of files, local or on object storage, searched with pushdown.

The search's bbox (or the bounds of ``intersects``), datetime, collections, ids and the comparisons of its CQL2
filter become a pyarrow filter on the columns stac-geoparquet writes (``bbox`` a struct of ``xmin``, ``ymin``,
``xmax``, ``ymax``; ``datetime`` a timestamp; properties top-level columns). Row groups whose statistics cannot
match are skipped unread; of the others only the filter's columns are read first, and whole rows only for the rows
that pass. The filter only ever keeps more than the search asks for: what passes is then matched exactly as any
static input is (geometry, the whole CQL2 filter with ``cql2``, the ``query`` extension), so a stac-geoparquet file
answers as the same items in an ItemCollection, or in a STAC API, do.

pyarrow datasets rather than DuckDB through rustac: rustac's search needs DuckDB's spatial extension, which DuckDB
downloads at run time; pyarrow reads row-group statistics and filters columns with nothing to download.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pystac

from stackcube.errors import SearchError
from stackcube.search._query import Query
from stackcube.search._static import interval_of
from stackcube.settings import Settings

__all__ = ["SUFFIXES", "is_parquet", "parquet_items"]

SUFFIXES = (".parquet", ".geoparquet", ".pq")
"""File names read as stac-geoparquet."""

_OBJECT_STORES = {"s3", "gs", "gcs", "abfs", "abfss", "az"}
_ROW = "__stackcube_row"

Field = Callable[..., Any]


def is_parquet(href: str) -> bool:
    """Whether ``href`` names stac-geoparquet: a file with a Parquet suffix, or a local directory of them."""
    path = urlparse(href).path if "://" in href else href
    if path.rstrip("/").lower().endswith(SUFFIXES):
        return True
    return "://" not in href and Path(href).is_dir() and any(Path(href).glob("**/*.parquet"))


def parquet_items(href: str, q: Query, settings: Settings) -> Iterator[pystac.Item]:
    """The items of the stac-geoparquet at ``href`` that may match ``q``, in file order.

    A superset: the caller matches them exactly (:func:`stackcube.search._static.matches`).
    """
    try:
        import pyarrow as pa
        import rustac
    except ImportError:
        msg = f"{href}: reading stac-geoparquet needs pyarrow and rustac (pip install 'stackcube[geoparquet]')"
        raise SearchError(msg) from None
    for fragment in _dataset(href, settings).get_fragments():
        try:
            schema = fragment.physical_schema  # each file its own: a directory may mix collections' properties
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(href, exc) from None
        if "id" not in schema.names:
            msg = f"{href} is Parquet but not stac-geoparquet (no 'id' column); write it with stac-geoparquet or rustac"
            raise SearchError(msg)
        condition, columns = pushdown(q, schema)
        try:
            for group in fragment.split_by_row_group(condition, schema=schema):  # statistics prune row groups
                if condition is None:
                    table = group.to_table(schema=schema)
                else:
                    keys = group.to_table(columns=sorted(columns), schema=schema)
                    keys = keys.append_column(_ROW, pa.array(range(keys.num_rows), pa.int64()))
                    rows = keys.filter(condition).column(_ROW)
                    if len(rows) == 0:
                        continue
                    table = group.to_table(schema=schema).take(rows)
                # rows to items with rustac: stac-geoparquet's own converter fails on a batch where an asset field
                # (proj:geometry) is absent from some rows
                for data in rustac.from_arrow(table)["features"]:
                    yield pystac.Item.from_dict(_present(data), preserve_dict=False)
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(href, exc) from None


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


def _unreadable(href: str, exc: BaseException) -> SearchError:
    return SearchError(f"{href}: could not read stac-geoparquet ({exc}); check the path or URL and its credentials")


def _dataset(href: str, settings: Settings) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs

    scheme = urlparse(href).scheme if "://" in href else ""
    try:
        if scheme in {"http", "https"}:  # pyarrow has no HTTP filesystem: the file is read whole
            with urllib.request.urlopen(href, timeout=settings.request_timeout) as response:
                return ds.dataset(pa.BufferReader(response.read()), format="parquet")
        if scheme in _OBJECT_STORES:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(href)
            return ds.dataset(path, format="parquet", filesystem=filesystem)
        if not Path(href).exists():
            msg = f"{href}: no such stac-geoparquet file or directory; check the path"
            raise SearchError(msg)
        return ds.dataset(os.fspath(href), format="parquet")
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(href, exc) from None


def pushdown(q: Query, schema: Any) -> tuple[Any, set[str]]:
    """A pyarrow filter that every row matching ``q`` passes (None when nothing can be pushed down), and the
    top-level columns it reads."""
    import pyarrow.compute as pc

    used: set[str] = set()

    def field(name: str, *sub: str) -> Any:
        used.add(name)
        return pc.field(name, *sub)

    parts: list[Any] = []
    if q.collections is not None and _is_text(schema, "collection"):
        parts.append(_text(field, schema, "collection").isin(list(q.collections)))
    if q.ids is not None:
        parts.append(_text(field, schema, "id").isin(list(q.ids)))
    box = q.bbox
    if box is None and q.intersects is not None:
        import shapely.geometry

        box = tuple(shapely.geometry.shape(q.intersects).bounds)
    if box is not None:
        parts.append(_in_box(box, schema, field))
    if q.datetime is not None:
        parts.append(_in_interval(*interval_of(q.datetime), schema, field))
    if q.filter is not None:
        import cql2

        parts.append(_cql2(cql2.Expr(q.filter).to_json(), schema, field))
    kept = [p for p in parts if p is not None]
    if not kept:
        return None, set()
    condition = kept[0]
    for part in kept[1:]:
        condition = condition & part
    return condition, used


def _in_box(box: tuple[float, ...], schema: Any, field: Field) -> Any:
    import pyarrow as pa

    if "bbox" not in schema.names:
        return None
    kind = schema.field("bbox").type
    if not pa.types.is_struct(kind) or {kind.field(i).name for i in range(kind.num_fields)} < {"xmin", "xmax"}:
        return None  # stac-geoparquet before 1.0 kept bbox as a list; matched exactly after
    west, south, east, north = box
    xmin, ymin, xmax, ymax = (field("bbox", k) for k in ("xmin", "ymin", "xmax", "ymax"))
    across = xmin > xmax  # an item across the antimeridian (a STAC bbox with west > east): kept, matched exactly
    return (ymax >= south) & (ymin <= north) & (((xmax >= west) & (xmin <= east)) | across)


def _in_interval(lo: datetime | None, hi: datetime | None, schema: Any, field: Field) -> Any:
    """Rows whose datetime, or start/end range, may meet [lo, hi]."""
    if not _is_time(schema, "datetime"):
        return None
    lo, hi = _utc(lo), _utc(hi)

    def between(start: Any, end: Any) -> Any:
        parts = ([end >= lo] if lo is not None else []) + ([start <= hi] if hi is not None else [])
        return parts[0] & parts[1] if len(parts) == 2 else parts[0]

    if lo is None and hi is None:
        return None
    instant = between(field("datetime"), field("datetime"))
    if _is_time(schema, "start_datetime") and _is_time(schema, "end_datetime"):
        return instant | between(field("start_datetime"), field("end_datetime"))
    return instant


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_COMPARE = {"=": "__eq__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
_FLIP = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _cql2(node: Any, schema: Any, field: Field) -> Any:
    """The part of a CQL2 JSON expression pyarrow can pre-filter with, or None.

    Only what keeps a superset of the matches: an ``and`` keeps the conjuncts it can translate, an ``or`` needs all
    of its arguments; comparisons of a property with a literal of the column's kind, ``in``, ``between``,
    ``s_intersects`` (by the geometry's bounds) and ``t_intersects`` on ``datetime``. ``not``, ``<>``, ``like``,
    null tests and functions stay with the exact match (null handling differs between CQL2 and Arrow).
    """
    if not isinstance(node, dict):
        return None
    op, args = node.get("op"), node.get("args") or []
    if op == "and":
        kept = [p for p in (_cql2(a, schema, field) for a in args) if p is not None]
        return _fold(kept, "__and__")
    if op == "or":
        parts = [_cql2(a, schema, field) for a in args]
        return None if not parts or any(p is None for p in parts) else _fold(parts, "__or__")
    if op in _COMPARE and len(args) == 2:
        name, value, flipped = _property_and_literal(args)
        if name is None:
            return None
        column = _operand(name, value, schema, field)
        literal = _literal(value)
        return None if column is None else getattr(column, _COMPARE[_FLIP[op] if flipped else op])(literal)
    if op == "in" and len(args) == 2 and isinstance(args[1], list) and _property(args[0]):
        values = [_literal(v) for v in args[1]]
        column = _operand(args[0]["property"], args[1][0] if args[1] else None, schema, field)
        if column is None or not values or any(isinstance(v, dict) for v in args[1]):
            return None
        return column.isin(values)
    if op == "between" and len(args) == 3 and _property(args[0]):
        column = _operand(args[0]["property"], args[1], schema, field)
        if column is None or _operand(args[0]["property"], args[2], schema, field) is None:
            return None
        return (column >= _literal(args[1])) & (column <= _literal(args[2]))
    if op == "s_intersects" and len(args) == 2:
        shape = next((a for a in args if isinstance(a, dict) and ("type" in a or "bbox" in a)), None)
        if shape is None:
            return None
        if "bbox" in shape and "type" not in shape:
            return _in_box(tuple(shape["bbox"][:2] + shape["bbox"][-2:]), schema, field)
        import shapely.geometry

        return _in_box(tuple(shapely.geometry.shape(shape).bounds), schema, field)
    if op == "t_intersects" and len(args) == 2 and _property(args[0]) and args[0]["property"] == "datetime":
        span = args[1].get("interval") if isinstance(args[1], dict) else None
        if not span or len(span) != 2:
            return None
        lo, hi = (None if v in {"..", None} else _time(v) for v in span)
        if hi is not None and "T" not in span[1]:
            hi += timedelta(days=1)  # a date ends with its day
        return _in_interval(lo, hi, schema, field)
    return None


def _fold(parts: list[Any], how: str) -> Any:
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = getattr(out, how)(part)
    return out


def _property(arg: Any) -> bool:
    return isinstance(arg, dict) and set(arg) == {"property"} and isinstance(arg["property"], str)


def _property_and_literal(args: list[Any]) -> tuple[str | None, Any, bool]:
    if _property(args[0]) and not _property(args[1]):
        return args[0]["property"], args[1], False
    if _property(args[1]) and not _property(args[0]):
        return args[1]["property"], args[0], True
    return None, None, False


def _operand(name: str, value: Any, schema: Any, field: Field) -> Any:
    """The column ``name`` when the literal ``value`` is of its kind (numbers with numbers, text with text,
    timestamps with timestamps), else None: such a comparison is left to the exact match."""
    import pyarrow as pa

    if name not in schema.names or name in {"bbox", "geometry"}:
        return None
    kind = schema.field(name).type
    if isinstance(value, bool):
        return field(name) if pa.types.is_boolean(kind) else None
    if isinstance(value, int | float):
        return field(name) if pa.types.is_integer(kind) or pa.types.is_floating(kind) else None
    if isinstance(value, str):
        return _text(field, schema, name) if _is_text(schema, name) else None
    if isinstance(value, dict) and set(value) == {"timestamp"}:
        if not pa.types.is_timestamp(kind):
            return None
        if name == "datetime" and _is_time(schema, "start_datetime"):  # as matched: the start when datetime is null
            import pyarrow.compute as pc

            return pc.coalesce(field("datetime"), field("start_datetime"))
        return field(name)
    return None


def _literal(value: Any) -> Any:
    if isinstance(value, dict) and "timestamp" in value:
        return _time(value["timestamp"])
    return value


def _time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))  # type: ignore[return-value]


def _is_text(schema: Any, name: str) -> bool:
    import pyarrow as pa

    if name not in schema.names:
        return False
    kind = schema.field(name).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _text(field: Field, schema: Any, name: str) -> Any:
    import pyarrow as pa

    column = field(name)
    return column.cast(pa.string()) if pa.types.is_dictionary(schema.field(name).type) else column


def _is_time(schema: Any, name: str) -> bool:
    import pyarrow as pa

    return name in schema.names and pa.types.is_timestamp(schema.field(name).type)
