"""The MQTT adapter, the one place that talks to a broker.

`client` owns how any client of ours connects: TLS (verification on unless a
broker turns it off), user name and password, client id and persistent
sessions, the reconnect backoff, the incoming queue and payloads as bytes.
`source` is the subscriber the bridges and the platform worker read through
(and its measured fast receive path). The simulator's publishers and
`dtp-console sniff` connect through `client` too.
"""

from __future__ import annotations

__all__: list[str] = []
