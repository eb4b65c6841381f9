"""Arrow rows as JSON objects that every JSON parser reads back without loss or error.

    Arrow value                         JSON
    timestamp (any unit)                ISO 8601 string: "2024-05-01T12:00:00.000000"; with a time zone, in UTC
                                        with a trailing "Z"
    date, time                          ISO 8601 string ("2024-05-01", "12:00:00.000")
    duration                            number of seconds
    integer beyond ±(2^53 - 1)          decimal string (a JavaScript number would round it)
    NaN, ±infinity                      null
    binary                              base64 string
    decimal                             decimal string
    map                                 list of [key, value] pairs
    struct, list                        object, array (their values converted the same way)
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

MAX_SAFE_INTEGER = 2**53 - 1
_SECONDS_PER_UNIT = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def json_rows(table: pa.Table) -> list[str]:
    """One compact JSON object per row, keyed by column name."""
    if table.num_columns == 0:
        return ["{}"] * table.num_rows
    names = table.column_names
    columns = [column_values(table.column(i)) for i in range(table.num_columns)]
    return [json.dumps(dict(zip(names, values, strict=True)), ensure_ascii=False, allow_nan=False,
                       separators=(",", ":")) for values in zip(*columns, strict=True)]


def column_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """The JSON-safe values of one column."""
    kind = column.type
    try:
        if pa.types.is_timestamp(kind):
            # Vectorised, and exact to the nanosecond (Python's datetime stops at microseconds).
            if kind.tz is not None:
                utc = column.cast(pa.timestamp(kind.unit, "UTC"))
                return list(pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist())
            return list(pc.strftime(column, format="%Y-%m-%dT%H:%M:%S").to_pylist())
        if pa.types.is_time(kind):
            return list(column.cast(pa.string()).to_pylist())
        if pa.types.is_duration(kind):
            per_second = _SECONDS_PER_UNIT[kind.unit]
            return [None if v is None else v / per_second for v in column.cast(pa.int64()).to_pylist()]
        return [_safe(value) for value in column.to_pylist()]
    except (ValueError, pa.ArrowException):
        # A type Python cannot hold exactly (e.g. nanoseconds nested in a struct): its text form.
        return [str(scalar) if scalar.is_valid else None for scalar in column]


def _safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return str(value)
