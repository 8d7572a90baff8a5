"""The systemd notification protocol (`sd_notify(3)`), spoken directly, no library.

A service started with `Type=notify` finds `$NOTIFY_SOCKET`: a Unix datagram
socket, a filesystem path or, when it starts with `@`, a name in Linux's abstract
namespace. Each datagram is newline-separated `KEY=VALUE` assignments:
`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`. `$WATCHDOG_USEC` (and
`$WATCHDOG_PID`, when set, naming this process) asks for a `WATCHDOG=1` ping at
least that often; the recommendation is every half of it.

With no `$NOTIFY_SOCKET` every call is a no-op, so a console started by hand,
in a container or by a test behaves exactly as before. A failed send never
raises: it is counted (`errors`, `last_error`) for the caller to report.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["MAX_STATUS_CHARS", "SdNotifier", "socket_address", "watchdog_usec"]

#: STATUS= text is cut to this many characters (one readable `systemctl status` line).
MAX_STATUS_CHARS = 200


def socket_address(value: str | None) -> bytes | None:
    """The `connect()` address of a `$NOTIFY_SOCKET` value, or None when unusable.

    `/run/systemd/notify` is a path; `@name` is `\\0name` in the abstract namespace.
    Other forms (`vsock:` of systemd 253+, relative paths) are not supported here.
    """
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


def watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog timeout in microseconds systemd asked of process `pid`, or None.

    Follows `sd_watchdog_enabled(3)`: `$WATCHDOG_USEC` must be a positive integer,
    and `$WATCHDOG_PID`, when set, must be `pid` (the timeout is for another
    process otherwise, e.g. a wrapper's child).
    """
    raw = environ.get("WATCHDOG_USEC", "").strip()
    if not _is_number(raw) or int(raw) <= 0:
        return None
    owner = environ.get("WATCHDOG_PID", "").strip()
    if owner and (not _is_number(owner) or int(owner) != pid):
        return None
    return int(raw)


def _is_number(text: str) -> bool:
    # ASCII digits only: str.isdigit() and int() also accept "٣٠" (Arabic-Indic digits).
    return text.isascii() and text.isdigit() and len(text) <= 20


def _clean(text: str) -> str:
    # One assignment per line: a newline in a status would start a new (forged) key.
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return flat[:MAX_STATUS_CHARS]


class SdNotifier:
    """Sends notifications to the service manager, if one listens."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = socket_address(env.get("NOTIFY_SOCKET"))
        """Where datagrams go; None: not started by a notify-aware manager (no-op)."""
        usec = watchdog_usec(env, os.getpid()) if self.address is not None else None
        self.watchdog_s: float | None = usec / 1_000_000 if usec else None
        """The watchdog timeout in seconds, when systemd runs one for this process."""
        self.unsupported = bool(env.get("NOTIFY_SOCKET")) and self.address is None
        """`$NOTIFY_SOCKET` is set but in a form this module cannot use."""
        self.sent = 0
        self.errors = 0
        self.last_error = ""
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    @property
    def ping_interval_s(self) -> float | None:
        """How often to send `WATCHDOG=1`: half the timeout (`sd_watchdog_enabled(3)`)."""
        return self.watchdog_s / 2 if self.watchdog_s else None

    def notify(self, **fields: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; True when it was sent."""
        if self.address is None or not fields:
            return False
        lines = [f"{key}={_clean(value)}" for key, value in fields.items()]
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            # A full socket buffer (EAGAIN) or a manager gone away: counted, never raised.
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc.strerror or exc}"
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """`READY=1` with a status line: start-up is complete."""
        return self.notify(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        """A `STATUS=` line (`systemctl status` shows it)."""
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        """One keep-alive ping."""
        return self.notify(WATCHDOG="1")

    def stopping(self, status: str) -> bool:
        """`STOPPING=1` with a status line: shutdown has begun."""
        return self.notify(STOPPING="1", STATUS=status)

    def close(self) -> None:
        """Close the socket (sending again reopens it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
