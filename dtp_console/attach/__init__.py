"""Attach: the full console over the API to a running headless service (issue #21).

`wire` holds the protocol both ends share (pure functions); the service side streams
state from `feed`, the client side is `client`.
"""

from __future__ import annotations

from dtp_console.attach.wire import PROTOCOL

__all__ = ["PROTOCOL"]
