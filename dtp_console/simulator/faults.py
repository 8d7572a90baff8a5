"""The fault mix of real vendor feeds, injected into simulated traffic on purpose.

Kinds: `unknown_robot` (an extra message from a robot nobody mapped),
`malformed_json` (a truncated payload instead of the real one), `nan` (x is
NaN, as a bare literal or the string "NaN"), `duplicate` (the message twice),
`out_of_order` (the message arrives after the robot's next one). Off unless
the rate is above 0; the injector has its own random stream, so turning
faults on never changes how the robots move.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Sequence

from dtp_console.simulator.config import FaultKind
from dtp_console.simulator.payloads import Codec, Payload, encode
from dtp_console.simulator.vda5050 import MANUFACTURER

__all__ = ["FaultInjector", "Message"]

Message = tuple[str, bytes]
_GHOSTS = 3


class FaultInjector:
    """Turns one robot report into the messages actually sent, faults included."""

    def __init__(
        self,
        codec: Codec,
        rate: float,
        kinds: Sequence[FaultKind],
        rng: random.Random,
        known_ids: Collection[str],
    ) -> None:
        self._codec = codec
        self._rate = rate if kinds else 0.0
        self._kinds = list(kinds)
        self._rng = rng
        self._held: dict[str, Message] = {}
        self.counts: Counter[str] = Counter()
        """Faults injected so far, by kind."""
        self.ghost_ids = self._ghosts(codec.format, set(known_ids))
        """The unknown robots' ids (never in the device map or the fleet)."""

    @staticmethod
    def _ghosts(fmt: str, known: set[str]) -> list[str]:
        prefix = {"ati_sherpa": "ati_amr_", "hitech": "hitech-amr-"}.get(fmt, "amr-")
        if fmt == "vda5050":
            prefix = f"{MANUFACTURER}/agv-"
        ghosts: list[str] = []
        number = 999
        while len(ghosts) < _GHOSTS and number > 0:
            candidate = f"{prefix}{number}"
            if candidate not in known:
                ghosts.append(candidate)
            number -= 1
        return ghosts

    def apply(self, vendor_id: str, topic: str, payload: Payload) -> list[Message]:
        """The messages to send for one report of `vendor_id`, in order."""
        normal = (topic, encode(payload))
        held = self._held.pop(vendor_id, None)
        out: list[Message] = []
        if self._rate <= 0 or self._rng.random() >= self._rate:
            out.append(normal)
        else:
            kind = self._rng.choice(self._kinds)
            self.counts[kind] += 1
            out.extend(self._inject(kind, vendor_id, normal, payload))
        if held is not None:
            out.append(held)  # the older report arrives after the newer one
        return out

    def _inject(
        self, kind: FaultKind, vendor_id: str, normal: Message, payload: Payload
    ) -> list[Message]:
        topic, data = normal
        if kind == "unknown_robot":
            ghost_topic, ghost = self._codec.with_id(payload, self._rng.choice(self.ghost_ids))
            return [normal, (ghost_topic, encode(ghost))]
        if kind == "malformed_json":
            # Any proper prefix of a JSON object is invalid JSON.
            return [(topic, data[: self._rng.randrange(1, max(2, len(data) - 1))])]
        if kind == "nan":
            as_text = self._rng.random() < 0.5
            nan = self._codec.with_nan(payload, as_text=as_text)
            return [(topic, encode(nan, allow_nan=True))]
        if kind == "duplicate":
            return [normal, normal]
        self._held[vendor_id] = normal  # out_of_order: sent after this robot's next report
        return []

    def flush(self) -> list[Message]:
        """Messages still held back for reordering (to send before stopping)."""
        held = list(self._held.values())
        self._held.clear()
        return held
