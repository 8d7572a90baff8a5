"""InfluxDB 2 observation store (influxdb-client's async API).

Mapping: one point per observation — measurement `observation`, tag
`signal_id`, field `value` (float) and, for text observations, a string field
`text`; time = `ts` (ns precision), so rewriting the same (signal_id, ts)
overwrites the point (idempotent). An observation with neither a number nor a
text has nothing to write and is skipped. `quality` and `source` are not
written (they live in PostgreSQL/SQLite). Signal definitions are not kept in
InfluxDB either: `write_signals` is a no-op.

Stand-in: VictoriaMetrics accepts the same writes and `/ping`, but has no Flux
and stores string fields as 0 — so the probe reads back through Flux only from
a real InfluxDB 2 and through VictoriaMetrics' `/api/v1/export` otherwise.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp
import httpx
import orjson
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from dtp_console.stores.config import InfluxConfig
from dtp_console.stores.protocols import StoreError
from dtp_console.stores.records import Observation, Signal
from dtp_console.urls import mask_url

__all__ = ["PROBE_SIGNAL_ID", "InfluxObservationStore"]

#: The series the probe writes to (one fixed series, so probes do not grow cardinality).
PROBE_SIGNAL_ID = uuid.uuid5(uuid.NAMESPACE_URL, "dtp-console/probe")
_MEASUREMENT = "observation"
_EXPORT_POLL_S = 4.0
"""VictoriaMetrics makes a write visible after ~1–2 s; give the read-back this long."""
_EXPORT_INTERVAL_S = 0.2


def _one_line(text: object, limit: int = 200) -> str:
    flat = mask_url(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class InfluxObservationStore:
    """Observations into an InfluxDB 2 bucket (or VictoriaMetrics standing in for one)."""

    name: str

    def __init__(self, config: InfluxConfig, *, name: str = "influx") -> None:
        if not config.url:
            raise ValueError("influx: no url configured")
        self.name = name
        self._config = config
        self._url = config.url.rstrip("/")
        self._client: InfluxDBClientAsync | None = None
        self._http: httpx.AsyncClient | None = None
        self._flux: bool | None = None
        self.probe_read_path: Literal["flux", "export"] | None = None
        """Which read-back the last successful `probe()` used: `flux` (real InfluxDB 2)
        or `export` (VictoriaMetrics' `/api/v1/export`, no Flux there)."""

    # -- lifetime ---------------------------------------------------------------

    async def open(self) -> None:
        """Create the HTTP clients (no request is made: the server may still be down)."""
        if self._client is not None:
            return
        # An empty token sends no Authorization header.
        token = self._config.token.get_secret_value() if self._config.token else ""
        self._client = InfluxDBClientAsync(
            url=self._url,
            token=token,
            org=self._config.org,
            timeout=int(self._config.timeout_s * 1000),
        )
        self._http = httpx.AsyncClient(timeout=self._config.timeout_s)

    async def close(self) -> None:
        """Close both clients; idempotent."""
        client, http = self._client, self._http
        self._client = self._http = None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()

    def _require(self) -> InfluxDBClientAsync:
        if self._client is None:
            raise StoreError(f"{self.name}: not open")
        return self._client

    def _error(self, op: str, exc: BaseException) -> StoreError:
        if isinstance(exc, InfluxDBError):
            status = getattr(exc, "status", None) or getattr(exc.response, "status", None)
            what = f"HTTP {status}: {exc.message}" if status else exc.message
            return StoreError(_one_line(f"{self.name} {op}: {what}"))
        reason = str(exc) or type(exc).__name__
        return StoreError(_one_line(f"{self.name} {op}: cannot reach {self._url}: {reason}"))

    # -- health -----------------------------------------------------------------

    async def ping(self) -> None:
        """`GET /ping`; also notes whether the server announces itself as InfluxDB 2."""
        client = self._require()
        try:
            version = await client.version()
        except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._error("ping", exc) from exc
        # InfluxDB 2 answers `X-Influxdb-Version: v2.x`; VictoriaMetrics sends none ("unknown").
        self._flux = version.lstrip("v").startswith("2")

    async def probe(self) -> None:
        """Write a probe point and read it back.

        The read-back uses Flux when the server is a real InfluxDB 2 and
        VictoriaMetrics' `/api/v1/export` (polled up to 3 s) otherwise; which
        one ran is left in `probe_read_path`.
        """
        await self.ping()
        ts_ns = time.time_ns()
        # A value no earlier probe wrote, so reading it back proves this write landed.
        value = float(random.randrange(1, 2**40))  # noqa: S311 - not security relevant
        point = Point(_MEASUREMENT)
        point.tag("signal_id", str(PROBE_SIGNAL_ID))
        point.field("value", value)
        point.time(ts_ns, WritePrecision.NS)
        await self._write([point], "probe write")
        if self._flux:
            found = await self._read_flux(value)
            path: Literal["flux", "export"] = "flux"
        else:
            found = await self._read_export(value, ts_ns // 1_000_000)
            path = "export"
        if not found:
            raise StoreError(f"{self.name} probe: point written but not read back ({path})")
        self.probe_read_path = path

    async def _read_flux(self, value: float) -> bool:
        client = self._require()
        query = (
            f'from(bucket: "{self._config.bucket}") |> range(start: -5m)'
            f' |> filter(fn: (r) => r._measurement == "{_MEASUREMENT}"'
            f' and r.signal_id == "{PROBE_SIGNAL_ID}" and r._field == "value")'
            f" |> filter(fn: (r) => r._value == {value!r})"
        )
        try:
            tables = await client.query_api().query(query, org=self._config.org)
        except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._error("probe read (flux)", exc) from exc
        return any(record.get_value() == value for table in tables for record in table.records)

    async def _read_export(self, value: float, ts_ms: int) -> bool:
        assert self._http is not None
        deadline = time.monotonic() + _EXPORT_POLL_S
        for attempt in range(int(_EXPORT_POLL_S / _EXPORT_INTERVAL_S) + 1):
            # VictoriaMetrics caches a tag filter's (empty) answer for ~10 s when asked
            # before a new series is indexed; a never-matching extra matcher that
            # changes per attempt gives every poll its own cache key.
            selector = (
                f'{_MEASUREMENT}_value{{signal_id="{PROBE_SIGNAL_ID}",dtp_poll!="{attempt}"}}'
            )
            params = {"match[]": selector, "start": str(ts_ms // 1000 - 60)}
            try:
                response = await self._http.get(f"{self._url}/api/v1/export", params=params)
            except httpx.HTTPError as exc:
                raise self._error("probe read (export)", exc) from exc
            if response.status_code != 200:
                raise StoreError(
                    _one_line(
                        f"{self.name} probe read (export): HTTP {response.status_code}: "
                        f"{response.text}"
                    )
                )
            if _export_has(response.content, value, ts_ms):
                return True
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_EXPORT_INTERVAL_S)
        return False

    # -- writes -----------------------------------------------------------------

    async def write_signals(self, signals: Sequence[Signal]) -> None:
        """No-op: signal definitions live in PostgreSQL/SQLite, not in InfluxDB."""

    async def write_observations(self, batch: Sequence[Observation]) -> None:
        """Write the batch as points, `batch_size` per request."""
        points = [p for p in map(_point, batch) if p is not None]
        size = self._config.batch_size
        for start in range(0, len(points), size):
            await self._write(points[start : start + size], "write")

    async def _write(self, points: list[Point], op: str) -> None:
        client = self._require()
        try:
            await client.write_api().write(
                bucket=self._config.bucket, org=self._config.org, record=points
            )
        except (InfluxDBError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._error(op, exc) from exc


def _point(obs: Observation) -> Point | None:
    """The point for one observation; None when it carries no value to write."""
    number = obs.value_double
    if number is not None and not math.isfinite(number):
        number = None  # line protocol has no NaN/inf
    if number is None and obs.value_text is None:
        return None
    point = Point(_MEASUREMENT)  # tag()/field()/time() add in place (and return Any)
    point.tag("signal_id", str(obs.signal_id))
    point.time(obs.ts, WritePrecision.NS)
    if number is not None:
        point.field("value", float(number))
    if obs.value_text is not None:
        point.field("text", obs.value_text)
    return point


def _export_has(body: bytes, value: float, ts_ms: int) -> bool:
    """Whether VictoriaMetrics' JSON-lines export holds `value` at `ts_ms`."""
    for line in body.splitlines():
        if not line.strip():
            continue
        series: dict[str, Any] = orjson.loads(line)
        for v, t in zip(series.get("values", ()), series.get("timestamps", ()), strict=False):
            if t == ts_ms and v == value:
                return True
    return False
