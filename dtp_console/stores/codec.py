"""Spool records as bytes and back (the disk spool's row format; pure, no I/O).

One tagged JSON array per record (orjson): `["o", signal_id, ts, value, text,
quality, source]` for an observation, `"s"` a signal, `"e"` an event, `"g"` a
graph change, `"b"` a blob put (data in base64). `decode` raises `ValueError`
for anything it did not write.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import orjson

from dtp_console.stores.records import BlobPut, EventRecord, GraphChange, Observation, Signal

__all__ = ["SpoolRecord", "decode", "decode_many", "encode", "encode_many"]

#: Everything a spool can hold.
SpoolRecord = Signal | Observation | EventRecord | GraphChange | BlobPut
_GRAPH_OPS = frozenset(
    (
        "merge_twin",
        "merge_dependency",
        "prune_dependencies",
        "remove_twin",
        "merge_device",
        "remove_device",
    )
)


def _ts(value: dt.datetime) -> str:
    return value.isoformat()


def encode(record: object) -> bytes:
    """The bytes of one spool record."""
    return orjson.dumps(_row(record))


def encode_many(records: list[Any]) -> bytes:
    """The bytes of several records (one JSON array of their rows)."""
    return orjson.dumps([_row(r) for r in records])


def _row(record: object) -> Any:
    row: list[Any]
    if type(record) is Observation:  # the hot path: orjson writes uuid and datetime itself
        return (
            "o",
            record.signal_id,
            record.ts,
            record.value_double,
            record.value_text,
            record.quality,
            record.source,
        )
    if isinstance(record, Observation):
        row = [
            "o",
            str(record.signal_id),
            _ts(record.ts),
            record.value_double,
            record.value_text,
            record.quality,
            record.source,
        ]
    elif isinstance(record, Signal):
        row = ["s", str(record.signal_id), record.name, record.unit]
    elif isinstance(record, EventRecord):
        row = ["e", str(record.id), _ts(record.ts), record.severity, record.source, record.body]
    elif isinstance(record, GraphChange):
        row = ["g", str(record.id), record.op, list(record.args)]
    elif isinstance(record, BlobPut):
        data = base64.b64encode(record.data).decode()
        row = ["b", record.key, record.content_type, record.source, data]
    else:
        msg = f"cannot spool a {type(record).__name__}"
        raise TypeError(msg)
    # NaN/inf are not JSON: orjson writes null, as the stores would refuse them anyway.
    return row


def _args(op: str, raw: list[Any]) -> tuple[Any, ...]:
    if op == "prune_dependencies":
        source, keep = raw
        return (source, [tuple(pair) for pair in keep])
    return tuple(raw)


def decode(data: bytes) -> SpoolRecord:
    """The record `encode` made `data` from; `ValueError` when it is not one."""
    try:
        row = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("not a spool record: not JSON") from None
    return _record(row)


def decode_many(data: bytes) -> list[SpoolRecord]:
    """The records `encode_many` made `data` from; `ValueError` when it is not that."""
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("not a spool record: not JSON") from None
    if not isinstance(rows, list):
        raise ValueError("not a spool record: not a list")
    return [_record(row) for row in rows]


def _record(row: Any) -> SpoolRecord:
    try:
        tag = row[0]
        if tag == "o":
            return Observation(uuid.UUID(row[1]), dt.datetime.fromisoformat(row[2]), *row[3:7])
        if tag == "s":
            return Signal(uuid.UUID(row[1]), row[2], row[3])
        if tag == "e":
            return EventRecord(
                dt.datetime.fromisoformat(row[2]), row[3], row[4], row[5], uuid.UUID(row[1])
            )
        if tag == "g" and row[2] in _GRAPH_OPS:
            return GraphChange(row[2], _args(row[2], row[3]), uuid.UUID(row[1]))
        if tag == "b":
            return BlobPut(row[1], base64.b64decode(row[4], validate=True), row[2], row[3])
    except (IndexError, TypeError, KeyError, AttributeError, ValueError) as exc:
        msg = f"not a spool record: {type(exc).__name__}"
        raise ValueError(msg) from None
    msg = "not a spool record: unknown tag"
    raise ValueError(msg)
