"""The twinzo v3 adapter: authentication, token refresh, localization (single and batch).

It implements `LocalizationClient`; the bodies it sends are `wire.LocationBody`.

One `httpx.AsyncClient` serves the whole process. A call returns a `PostResult`
that says what happened and whether trying again makes sense; it never raises
for an HTTP or network failure, so a poster can account for every location.
"""

from __future__ import annotations

import email.utils
import math
import re
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx
import orjson

from dtp_console.config.model import TwinzoConfig, header_problem
from dtp_console.state import EngineState
from dtp_console.twinzo.protocol import PostResult
from dtp_console.twinzo.tokens import AuthError, Token, TokenCache
from dtp_console.twinzo.wire import LocationBody, encode_batch, encode_locations

__all__ = ["TwinzoClient", "parse_retry_after"]

_AUTH_PATH = "/v3/authorization/authenticate"
_REFRESH_PATH = "/v3/authorization/token"
_LOCALIZATION_PATH = "/v3/localization"
_BATCH_PATH = "/v3/localization/batch"


#: delta-seconds (RFC 9110 says digits; the sandbox and some proxies send a fraction).
#: ASCII only: `float()` would also read `inf`, `1e309` and Arabic-Indic digits.
_DELTA_SECONDS = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,6})?", re.ASCII)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent/invalid.

    Always a finite, non-negative number or None, whatever the header says; the
    caller caps it (`TwinzoConfig.retry_after_cap_s`).
    """
    if not value:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
        delay = when.timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def _failure_kind(exc: BaseException) -> str:
    """A short, secret-free reason for a failed request: the type name, never `str(exc)`.

    httpx's messages can echo a header value (an API key with a bad character);
    only a certificate problem, found anywhere in the cause chain, adds OpenSSL's
    verification message (`self-signed certificate`, `Hostname mismatch, …`), which
    names at most the host we connected to.
    """
    kind = type(exc).__name__
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ssl.SSLCertVerificationError):
            # aiohttp's ClientConnectorCertificateError is one too, without these attributes.
            detail = str(
                getattr(link, "verify_message", None) or getattr(link, "reason", None) or ""
            )
            if not detail and link.__cause__ is not None:
                link = link.__cause__
                continue
            detail = "".join(c if c.isprintable() and c.isascii() else "?" for c in detail)[:120]
            return f"{kind} (certificate verify failed{': ' + detail if detail else ''})"
        link = link.__cause__ or link.__context__
    return kind


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _error_message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:120] or response.reason_phrase
    if isinstance(body, dict) and body.get("ErrorMessage"):
        return str(body["ErrorMessage"])[:200]
    return response.reason_phrase


class TwinzoClient:
    """twinzo API calls for device logins; tokens cached per login."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: TwinzoConfig,
        *,
        base_url: str | None = None,
        state: EngineState | None = None,
    ) -> None:
        self._http = http
        self._config = config
        self._base = (base_url or config.base_url).rstrip("/")
        self._api_key = config.api_key.get_secret_value()
        self.state = state or EngineState()
        self.tokens = TokenCache(
            self._authenticate,
            self._refresh,
            refresh_ahead_s=config.refresh_ahead_s,
            state=self.state,
        )

    @property
    def base_url(self) -> str:
        """Where requests go."""
        return self._base

    async def _authenticate(self, login: str, password: str) -> Token:
        body = {"client": self._config.client, "login": login, "password": password}
        return await self._token_call("POST", _AUTH_PATH, content=orjson.dumps(body), headers={})

    async def _refresh(self, token: Token) -> Token:
        headers = {"Token": token.value, "Client": token.client, "Branch": token.branch}
        return await self._token_call("GET", _REFRESH_PATH, content=None, headers=headers)

    async def _token_call(
        self, method: str, path: str, *, content: bytes | None, headers: dict[str, str]
    ) -> Token:
        headers = {"Content-Type": "application/json", "Api-Key": self._api_key, **headers}
        try:
            response = await self._http.request(
                method, self._base + path, content=content, headers=headers
            )
        except httpx.TimeoutException:
            raise AuthError(None, "timeout", retryable=True) from None
        except httpx.TransportError as exc:
            raise AuthError(
                None, f"connection error: {_failure_kind(exc)}", retryable=True
            ) from None
        except Exception as exc:
            # Anything else (a header httpx cannot encode, a bug) is a counted failure too;
            # retrying cannot help, and the message may quote a header: type name only.
            raise AuthError(
                None, f"internal error: {type(exc).__name__}", retryable=False
            ) from None
        if response.status_code != 200:
            raise AuthError(
                response.status_code,
                _error_message(response),
                retryable=_retryable(response.status_code),
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        try:
            data = orjson.loads(response.content)
            now = time.time()
            token = Token(
                value=str(data["Token"]),
                client=str(data["Client"]),
                branch=str(data["Branch"]),
                expires_at=float(data["Expiration"]) / 1000.0,
                obtained_at=now,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
            raise AuthError(200, "unreadable authentication response", retryable=True) from None
        # These three become headers of every post of the device: refuse what httpx
        # could not send (or that would split a header) here, once, not per request.
        for name, value in (
            ("Token", token.value),
            ("Client", token.client),
            ("Branch", token.branch),
        ):
            if header_problem(value) is not None:
                raise AuthError(
                    200, f"authentication response: {name} is not a valid header", retryable=False
                )
        if not math.isfinite(token.expires_at):
            raise AuthError(200, "unreadable authentication response", retryable=True)
        return token

    def _headers(self, client: str, branch: str, token: str | None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Client": client,
            "Branch": branch,
            "Api-Key": self._api_key,
        }
        if token is not None:
            headers["Token"] = token
        return headers

    async def ensure_token(self, login: str, password: str) -> None:
        """Hold a valid token for `login`: a cached one costs nothing, else it is fetched
        or refreshed (a standby's warm cache). Raises `AuthError` when that fails."""
        await self.tokens.get(login, password)

    def forget_tokens(self, logins: Iterable[str]) -> None:
        """Drop the cached tokens of `logins`: the next post authenticates anew."""
        for login in logins:
            token = self.tokens.peek(login)
            if token is not None:
                self.tokens.invalidate(login, token)

    async def post_device(
        self,
        login: str,
        password: str,
        locations: Sequence[LocationBody],
        *,
        branch: str | None = None,
    ) -> PostResult:
        """POST `/v3/localization` for one device; re-authenticates once on 401."""
        started = time.perf_counter()
        content = encode_locations(locations)
        for attempt in (1, 2):
            try:
                token = await self.tokens.get(login, password)
            except AuthError as exc:
                return PostResult(
                    ok=False,
                    status=exc.status,
                    latency_ms=_ms(started),
                    error=exc.message,
                    retryable=exc.retryable,
                    retry_after_s=exc.retry_after_s,
                    auth_failed=True,
                )
            headers = self._headers(token.client, branch or token.branch, token.value)
            result = await self._send(_LOCALIZATION_PATH, content, headers, started)
            if isinstance(result, PostResult):
                return result
            if result.status_code == 401 and attempt == 1:
                self.tokens.invalidate(login, token)
                continue
            return _device_result(result, started, len(locations))
        raise AssertionError("unreachable")  # pragma: no cover

    async def post_batch(
        self, branch: str, devices: Mapping[str, Sequence[LocationBody]]
    ) -> dict[str, PostResult]:
        """POST `/v3/localization/batch` for many devices; one result per login."""
        started = time.perf_counter()
        headers = self._headers(self._config.client, branch, None)
        response = await self._send(_BATCH_PATH, encode_batch(devices), headers, started)
        if isinstance(response, PostResult):
            return dict.fromkeys(devices, response)
        if response.status_code != 200:
            failed = _device_result(response, started, 0)
            return dict.fromkeys(devices, failed)
        latency = _ms(started)
        try:
            items = orjson.loads(response.content)
            by_login = {str(item.get("Login")): item for item in items if isinstance(item, dict)}
        except (orjson.JSONDecodeError, TypeError, AttributeError):
            broken = PostResult(ok=False, status=200, latency_ms=latency, error="unreadable body")
            return dict.fromkeys(devices, broken)
        results = {}
        for login, locs in devices.items():
            item = by_login.get(login)
            if item is None:
                results[login] = PostResult(
                    ok=False, status=200, latency_ms=latency, error="no result for device"
                )
            else:
                results[login] = _body_result(item, 200, latency, len(locs))
        return results

    async def _send(
        self, path: str, content: bytes, headers: dict[str, str], started: float
    ) -> httpx.Response | PostResult:
        # Every attempt's duration, a failed one too (plain Python: no metrics library here).
        histogram, sent = self.state.post_histogram(path), time.perf_counter()
        try:
            return await self._http.post(self._base + path, content=content, headers=headers)
        except httpx.TimeoutException:
            return PostResult(
                ok=False, status=None, latency_ms=_ms(started), error="timeout", retryable=True
            )
        except httpx.TransportError as exc:
            return PostResult(
                ok=False,
                status=None,
                latency_ms=_ms(started),
                error=f"connection error: {_failure_kind(exc)}",
                retryable=True,
            )
        except Exception as exc:
            # See `_token_call`: counted, not retried, and never the exception's text.
            return PostResult(
                ok=False,
                status=None,
                latency_ms=_ms(started),
                error=f"internal error: {type(exc).__name__}",
            )
        finally:
            histogram.observe(time.perf_counter() - sent)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _device_result(response: httpx.Response, started: float, count: int) -> PostResult:
    latency = _ms(started)
    status = response.status_code
    if status != 200:
        return PostResult(
            ok=False,
            status=status,
            latency_ms=latency,
            error=_error_message(response),
            retryable=_retryable(status),
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        )
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return PostResult(ok=False, status=status, latency_ms=latency, error="unreadable body")
    if not isinstance(body, dict):
        return PostResult(ok=False, status=status, latency_ms=latency, error="unexpected body")
    return _body_result(body, status, latency, count)


def _body_result(body: Mapping[str, Any], status: int, latency: float, count: int) -> PostResult:
    """Read twinzo's per-location verdicts: `Success: false` is a failure even under 200."""
    locations = body.get("Locations")
    if not isinstance(locations, list):
        error = str(body.get("ErrorMessage") or "no per-location result")
        return PostResult(
            ok=False, status=status, latency_ms=latency, error=error, failed_locations=count
        )
    failed = [loc for loc in locations if not (isinstance(loc, dict) and loc.get("Success"))]
    if failed or len(locations) < count or body.get("ErrorMessage"):
        first: Any = failed[0] if failed else {}
        reason: Any = (first.get("ErrorMessage") if isinstance(first, dict) else None) or body.get(
            "ErrorMessage"
        )
        return PostResult(
            ok=False,
            status=status,
            latency_ms=latency,
            error=str(reason or "location not accepted")[:200],
            failed_locations=max(len(failed), count - len(locations)),
        )
    return PostResult(ok=True, status=status, latency_ms=latency)
