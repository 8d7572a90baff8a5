"""The wiring check: write a probe to every configured store and read it back.

One `ProbeResult` per store: server adapters that are not configured are
listed as such, the embedded defaults appear when they serve a role. Every
probe runs concurrently under `probe_timeout_s`. Error texts are scrubbed of
the configured secrets before they are returned, whatever a driver put in them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from dtp_console.stores.config import StoresConfig
from dtp_console.stores.plan import SERVERS, StorePlan, plan_stores
from dtp_console.stores.protocols import Store, StoreError
from dtp_console.stores.records import ProbeResult
from dtp_console.urls import mask_url

__all__ = ["format_results", "format_spools", "run_check", "scrub", "secrets_of"]

_MASK = "***"


def secrets_of(config: StoresConfig) -> list[str]:
    """Every secret in the stores' settings (and the password inside the DSN)."""
    found: list[str] = []
    for secret in (
        config.postgres.dsn,
        config.influx.token,
        config.neo4j.password,
        config.s3.secret_key,
    ):
        if secret is not None and secret.get_secret_value():
            found.append(secret.get_secret_value())
    if config.postgres.dsn is not None:
        try:
            password = urlsplit(config.postgres.dsn.get_secret_value()).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret and every URL's user info replaced by `***`."""
    text = mask_url(text)
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return text


async def _probe(store: Store, role: str, timeout_s: float) -> ProbeResult:
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            await store.open()
            await store.probe()
    except TimeoutError:
        error = f"no answer within {timeout_s:g}s"
    except StoreError as exc:
        error = str(exc)
    except Exception as exc:  # an adapter bug is a failed check, not a crash
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    latency = (time.perf_counter() - started) * 1000
    try:
        async with asyncio.timeout(timeout_s):
            await store.close()
    except Exception:  # noqa: S110 - the probe's verdict stands; closing is best effort
        pass
    return ProbeResult(store.name, role, error is None, round(latency, 2), error)


async def run_check(config: StoresConfig, plan: StorePlan | None = None) -> list[ProbeResult]:
    """Probe every store the config names; one result per store, in display order."""
    plan = plan if plan is not None else plan_stores(config)
    secrets = secrets_of(config)
    probed = await asyncio.gather(
        *(
            _probe(store, plan.role_of(name), config.probe_timeout_s)
            for name, store in plan.stores.items()
        )
    )
    by_name = {result.name: result for result in probed}
    results: list[ProbeResult] = []
    unavailable = {bad.name: bad for bad in plan.unavailable}
    for name, roles in SERVERS.items():
        if name in plan.not_configured:
            results.append(ProbeResult(name, ",".join(roles), True, configured=False))
        elif name in unavailable:
            results.append(ProbeResult(name, ",".join(roles), False, error=unavailable[name].error))
        elif name in by_name:
            results.append(by_name.pop(name))
    results += by_name.values()  # the embedded defaults in use
    return [
        r
        if r.error is None
        else ProbeResult(r.name, r.role, r.ok, r.latency_ms, scrub(r.error, secrets))
        for r in results
    ]


def format_results(results: list[ProbeResult]) -> str:
    """A table: store, roles, result, latency."""
    rows = [("STORE", "ROLE", "RESULT", "LATENCY")]
    for r in results:
        if not r.configured:
            status = "not configured"
        elif r.ok:
            status = "ok"
        else:
            status = f"FAILED: {r.error}"
        latency = "-" if r.latency_ms is None or not r.configured else f"{r.latency_ms:.1f} ms"
        rows.append((r.name, r.role, status, latency))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[3]:>9}  {row[2]}" for row in rows
    )


def format_spools(spools: dict[str, dict[str, Any]]) -> str:
    """A table of the disk spools: role:store, depth, oldest record age, bytes on disk."""
    rows = [("SPOOL", "DEPTH", "OLDEST", "BYTES")]
    for key, s in sorted(spools.items()):
        age = s.get("oldest_age_s")
        depth = str(s["depth"]) if "depth" in s else f"unreadable: {s.get('error')}"
        rows.append((key, depth, "-" if age is None else f"{age:.1f}s", str(s["bytes_on_disk"])))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}" for r in rows
    )
