"""The configuration model: one pydantic tree, every field documented.

Field docstrings are the reference documentation (the README's configuration
table is generated from them by ``scripts/gen_config_doc.py``). Every model
forbids unknown keys so a misspelt key is an error, not silence.
"""

from __future__ import annotations

import math
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from dtp_console.api.config import ApiConfig
from dtp_console.bridge.clock import TimestampUnit
from dtp_console.bridge.device_map import mapping_problems
from dtp_console.config.ha import HaConfig
from dtp_console.config_base import ConfigModel
from dtp_console.registry.config import RegistryConfig
from dtp_console.simulator.config import PlantSimulatorConfig, SimulatorConfig
from dtp_console.stores.config import StoresConfig, validate_ca_file

__all__ = [
    "Affine",
    "Bounds",
    "BrokerConfig",
    "ConsoleConfig",
    "GenericFields",
    "LoggingConfig",
    "PayloadFormat",
    "PlantConfig",
    "PlantTwinzo",
    "PlatformBrokerSettings",
    "PlatformConfig",
    "PlatformStream",
    "SandboxConfig",
    "SandboxFaults",
    "TopicFilter",
    "TwinzoConfig",
    "Vda5050Config",
    "header_problem",
]

PayloadFormat = Literal["ati_sherpa", "hitech", "generic", "vda5050"]

#: The vendor label used in log lines when a plant does not set one.
DEFAULT_VENDOR_LABEL: dict[str, str] = {
    "ati_sherpa": "ATI",
    "hitech": "HiTech",
    "generic": "MQTT",
    "vda5050": "VDA 5050",
}
#: The topic subscribed to when a plant does not list any (`vda5050`: see `Vda5050Config`).
DEFAULT_TOPICS: dict[str, list[str]] = {
    "ati_sherpa": ["ati_fm/sherpa/status"],
    "hitech": ["hitech/amr/+/position"],
    "generic": ["#"],
}
#: The VDA 5050 topics a bridge reads (`order`, `instantActions`, `factsheet` are not positions).
VDA5050_TOPICS = ("visualization", "state", "connection")


def header_problem(value: str) -> str | None:
    """Why `value` cannot be an HTTP header value, without quoting it; None when it can.

    httpx encodes header values as ASCII, and a control character would split or
    corrupt the request: allowed are printable ASCII (0x20-0x7E) with no space
    at either end (a pasted key often carries one).
    """
    for index, char in enumerate(value):
        if not 0x20 <= ord(char) <= 0x7E:
            return f"character {index + 1} is U+{ord(char):04X}"
    if value != value.strip():
        return "it starts or ends with a space"
    return None


def _refuse_header_values(title: str, fields: dict[str, str | SecretStr | None]) -> None:
    """Raise a ValidationError per bad header field, located at the field, value left out.

    The loader echoes a rejected input unless it is empty; these may be secrets (or
    carry terminal escapes), so each error is raised with no input at all.
    """
    errors: list[InitErrorDetails] = []
    for name, raw in fields.items():
        value = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
        problem = header_problem(value) if value is not None else None
        if problem is not None:
            error = PydanticCustomError(
                "header_value",
                "must be printable ASCII (0x20-0x7E) with no space at either end, as it is "
                "sent as an HTTP header: {problem}",
                {"problem": problem},
            )
            errors.append(InitErrorDetails(type=error, loc=(name,), input=None))
    if errors:
        raise ValidationError.from_exception_data(title, errors)


class _FiniteModel(ConfigModel):
    # `.inf`/`.nan` in a transform or on the floor would turn every position into garbage.
    model_config = ConfigDict(allow_inf_nan=False)


#: MQTT strings (topic filters, client ids) are length-prefixed with two bytes.
_MQTT_MAX_BYTES = 65_535
#: A CA bundle larger than this is not a CA bundle (the system store is ~200 kB).
_CA_FILE_MAX_BYTES = 10_000_000


def _mqtt_text_problem(text: str) -> str | None:
    """Why `text` cannot go into an MQTT packet (or into a log line), or None."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it holds a lone surrogate)"
    if size > _MQTT_MAX_BYTES:
        return f"is longer than MQTT allows (65,535 bytes; this is {size:,})"
    # MQTT forbids NUL; the other C0/C1 controls are allowed but would reach logs and terminals.
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        return "contains a control character"
    return None


def _topic_filter(topic: str) -> str:
    """A subscription filter as MQTT defines it; ValueError saying what is wrong."""
    if not topic:
        msg = "a topic filter cannot be empty (use `#` for every topic)"
        raise ValueError(msg)
    problem = _mqtt_text_problem(topic)
    if problem is not None:
        raise ValueError(f"the topic filter {problem}")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            msg = "'#' must be a whole level and the last one (e.g. `hitech/amr/#`)"
            raise ValueError(msg)
        if "+" in level and level != "+":
            msg = "'+' must be a whole level (e.g. `hitech/amr/+/position`)"
            raise ValueError(msg)
    return topic


class TopicFilter(str):
    """An MQTT subscription filter (a `str`), checked when the config is loaded."""

    __slots__ = ()

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # A plain str comes out; only the check is added (and the docs show the name).
        return core_schema.no_info_after_validator_function(_topic_filter, core_schema.str_schema())


class BrokerConfig(ConfigModel):
    """Where a plant's vendor MQTT broker is and how to log in."""

    host: str = "127.0.0.1"
    """Broker host name or IP address, or `embedded` for the in-process demo broker."""
    port: int = Field(default=1883, ge=0, le=65535)
    """Broker TCP port; when unset: 1883, 8883 with TLS, a free port with `embedded`."""
    tls: bool = False
    """Connect with TLS. When unset, on for port 8883 (the MQTT-over-TLS port): a password
    must not go to 8883 in clear. Set `tls: false` explicitly for a plain 8883 (warned)."""
    ca_file: Path | None = None
    """CA bundle (PEM) that signs the broker's certificate; the system store when unset.
    Checked at load: a missing or non-PEM file is refused."""
    verify: bool = True
    """Verify the broker's certificate and host name. Turning this off is warned about at
    start and, for as long as it runs, in the STATS line, `--stats-json` and a UI badge."""
    username: str | None = None
    """MQTT user name."""
    password: SecretStr | None = None
    """MQTT password (masked wherever shown). Sent in plaintext without TLS: that is warned
    about unless the broker is on loopback."""
    client_id: str | None = None
    """MQTT client id; `dtp-console-<plant>-<random>` when unset. Set a stable one to get a
    persistent session (see `persistent_session`); two consoles must never share one."""
    topics: list[TopicFilter] = Field(default_factory=list)
    """Topic filters to subscribe to; the format's usual topic when empty. `+` and `#`
    must be whole levels, `#` the last one."""
    qos: Literal[0, 1, 2] = 1
    """Subscription QoS."""
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    """MQTT protocol version: `3.1.1` or `5`."""
    persistent_session: bool | None = None
    """Keep the MQTT session across reconnects and restarts, so that QoS ≥ 1 messages
    published while the console is away are delivered when it is back: the stable
    `client_id`, `clean_session=false` on 3.1.1, a session expiry of `session_expiry_s` on
    MQTT 5. When unset: on when `qos` ≥ 1 and `client_id` is set. Needs `client_id`.
    The broker must keep sessions too: on Mosquitto, `persistence true` (and a
    `persistence_location`) so sessions survive a broker restart, and
    `max_queued_messages` (default 1000 per client) large enough for an outage's
    traffic: beyond it Mosquitto drops messages, QoS 1 included;
    `persistent_client_expiration` ends 3.1.1 sessions of clients that never return."""
    session_expiry_s: int = Field(default=3600, ge=0, le=4_294_967_295)
    """MQTT 5 only: how long the broker keeps a persistent session while the console is
    disconnected (`4294967295` is never expire). 3.1.1 sessions expire as the broker says."""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    """MQTT keep-alive in seconds."""
    queue_size: int = Field(default=10_000, ge=10)
    """Bound of the incoming message queue; what overflows is counted as dropped."""
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    """First reconnect delay; doubles per failure (with jitter) up to `reconnect_max_s`."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Cap of the reconnect delay."""

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and math.isfinite(value):
            return {3: "3.1.1", 311: "3.1.1", 5: "5"}.get(int(value), str(value))
        return value

    @field_validator("ca_file")
    @classmethod
    def _readable_pem(cls, value: Path | None) -> Path | None:
        # A bad CA file used to fail only inside the source task, which died silently.
        if value is None:
            return value
        if not value.is_file():
            problem = "is not a regular file" if value.exists() else "no such file"
            raise ValueError(f"{problem}: {value}")
        try:
            size = value.stat().st_size
            if size <= _CA_FILE_MAX_BYTES:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(value))
        except ssl.SSLError:
            msg = f"holds no PEM certificate (a DER file? convert it with openssl x509): {value}"
            raise ValueError(msg) from None
        except OSError as exc:
            msg = f"cannot be read ({exc.strerror or type(exc).__name__}): {value}"
            raise ValueError(msg) from None
        if size > _CA_FILE_MAX_BYTES:
            raise ValueError(f"is larger than {_CA_FILE_MAX_BYTES:,} bytes: {value}")
        return value

    @field_validator("client_id")
    @classmethod
    def _usable_client_id(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value:
            msg = "an empty client id is the broker's choice; leave client_id unset instead"
            raise ValueError(msg)
        problem = _mqtt_text_problem(value)
        if problem is not None:
            raise ValueError(f"the client id {problem}")
        return value

    @field_validator("persistent_session")
    @classmethod
    def _session_needs_client_id(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value and not info.data.get("client_id"):
            msg = (
                "a persistent session needs a stable broker.client_id (a random id starts a "
                "new session on every connect); set client_id"
            )
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _default_port(self) -> BrokerConfig:
        if "tls" not in self.model_fields_set and self.port == 8883 and not self.embedded:
            self.tls = True
        if "port" not in self.model_fields_set:
            self.port = 0 if self.embedded else 8883 if self.tls else 1883
        return self

    @property
    def embedded(self) -> bool:
        """Whether this is the in-process demo broker."""
        return self.host == "embedded"

    @property
    def persistent(self) -> bool:
        """Whether the bridge resumes a persistent session (`persistent_session` resolved)."""
        if self.persistent_session is not None:
            return self.persistent_session
        return self.qos >= 1 and bool(self.client_id)


class GenericFields(ConfigModel):
    """Dotted field paths of a `generic` payload (e.g. `data.pos.x`)."""

    id: str = "id"
    """Path of the vendor device id."""
    x: str = "x"
    """Path of X in vendor units."""
    y: str = "y"
    """Path of Y in vendor units."""
    z: str | None = None
    """Path of Z in vendor units (optional)."""
    battery: str | None = None
    """Path of the battery percentage (optional)."""
    timestamp: str | None = None
    """Path of the message timestamp (optional; receive time when unset)."""
    timestamp_unit: TimestampUnit | None = None
    """Unit of the timestamp field (`auto`, `s`, `ms`, `us`, `ns`); the plant's
    `timestamp_unit` when unset."""
    id_topic_level: int | None = Field(default=None, ge=0)
    """Take the device id from this topic level (0-based) instead of the payload."""


def _topic_level(value: str, field: str) -> str:
    """A single MQTT topic level (no `/`, `+` or `#`), or ValueError naming the field."""
    problem = _mqtt_text_problem(value)
    if not value or problem is not None or any(c in value for c in "/+#"):
        msg = f"{field} must be one non-empty MQTT topic level without `/`, `+` or `#`"
        raise ValueError(msg)
    return value


class Vda5050Config(ConfigModel):
    """Settings of the `vda5050` format (VDA 5050 v2.1.0; the 3.0 draft's names too).

    Topics are `interfaceName/majorVersion/manufacturer/serialNumber/topic`; the
    device id the device map maps is `manufacturer/serialNumber`.
    """

    interface_name: str | None = None
    """The `interfaceName` topic level (often `uagv`); any (`+`) when unset."""
    major_version: str = "v2"
    """The `majorVersion` topic level (`v2` for 2.x)."""
    min_localization_score: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    """Positions whose `localizationScore` (0.0-1.0) is below this are counted as
    `rejected:low_localization`; 0 accepts every score. `positionInitialized: false`
    (3.0: `localized: false`) is always `rejected:not_localized`."""
    map_sectors: dict[str, int] = Field(default_factory=dict)
    """`agvPosition.mapId` → twinzo sector id. A map id not listed here is posted to the
    plant's `twinzo.sector_id` and counted per map id (`unknown_maps` in the stats)."""
    drop_unknown_maps: bool = False
    """Reject positions on a map id that `map_sectors` does not list
    (`rejected:unknown_map`) instead of posting them to the plant's sector."""

    @field_validator("interface_name")
    @classmethod
    def _interface_level(cls, value: str | None) -> str | None:
        return None if value is None else _topic_level(value, "interface_name")

    @field_validator("major_version")
    @classmethod
    def _version_level(cls, value: str) -> str:
        return _topic_level(value, "major_version")

    @field_validator("map_sectors")
    @classmethod
    def _sector_ids(cls, value: dict[str, int]) -> dict[str, int]:
        for map_id, sector in value.items():
            if sector < 0:
                msg = f"map {map_id!r}: a sector id is not negative"
                raise ValueError(msg)
        return value

    @property
    def topics(self) -> list[str]:
        """The default subscriptions: visualization, state and connection of every robot."""
        prefix = f"{self.interface_name or '+'}/{self.major_version}/+/+"
        return [f"{prefix}/{topic}" for topic in VDA5050_TOPICS]


class PlantTwinzo(ConfigModel):
    """How a plant's robots appear in twinzo."""

    sector_id: int = Field(ge=0)
    """twinzo sector the plant's locations are posted to."""
    branch: str | None = None
    """Branch GUID sent as the `Branch` header; the one authentication returns when unset
    (required in batch mode). Printable ASCII, no space at either end."""
    batch: bool = False
    """Post many devices per request with `/v3/localization/batch` instead of one device each."""
    password: SecretStr | None = None
    """Device password for this plant's logins; `twinzo.password` when unset."""

    @model_validator(mode="after")
    def _header_values(self) -> PlantTwinzo:
        _refuse_header_values("PlantTwinzo", {"branch": self.branch})
        return self


class Affine(_FiniteModel):
    """Vendor → twinzo transform: `X = A·x + B·y + TX`, `Y = C·x + D·y + TY` (millimetres)."""

    a: float = 1.0
    """A (x → X)."""
    b: float = 0.0
    """B (y → X)."""
    c: float = 0.0
    """C (x → Y)."""
    d: float = 1.0
    """D (y → Y)."""
    tx: float = 0.0
    """TX, X offset in millimetres."""
    ty: float = 0.0
    """TY, Y offset in millimetres."""

    @model_validator(mode="before")
    @classmethod
    def _case_insensitive(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {str(k).lower(): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _invertible(self) -> Affine:
        if abs(self.a * self.d - self.b * self.c) < 1e-12:
            msg = "the affine is singular (A·D - B·C = 0): it would collapse the floor to a line"
            raise ValueError(msg)
        return self


class Bounds(_FiniteModel):
    """The plant's floor in twinzo millimetres."""

    x_min: float
    """Smallest X on the floor."""
    x_max: float
    """Largest X on the floor."""
    y_min: float
    """Smallest Y on the floor."""
    y_max: float
    """Largest Y on the floor."""

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.x_min >= self.x_max or self.y_min >= self.y_max:
            msg = "bounds need x_min < x_max and y_min < y_max"
            raise ValueError(msg)
        return self

    def contains(self, x: float, y: float) -> bool:
        """Whether (x, y) lies on the floor."""
        return self.x_min <= x <= self.x_max and self.y_min <= y <= self.y_max


class PlantConfig(ConfigModel):
    """One plant: a vendor broker bridged to one twinzo sector."""

    name: str = Field(min_length=1)
    """Plant name, shown in logs and the UI (unique)."""
    enabled: bool = True
    """Run this plant's bridge."""
    format: PayloadFormat
    """Payload format: `ati_sherpa`, `hitech`, `generic` or `vda5050`."""
    vendor_label: str | None = None
    """Vendor label in log lines (`ATI`, `HiTech`, …); derived from the format when unset."""
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    """The vendor's MQTT broker."""
    generic: GenericFields = Field(default_factory=GenericFields)
    """Field paths for the `generic` format."""
    vda5050: Vda5050Config = Field(default_factory=Vda5050Config)
    """Interface name, version, localization floor and map table of the `vda5050` format."""
    device_map: dict[str, str] = Field(default_factory=dict)
    """Vendor device id → twinzo device login."""
    twinzo: PlantTwinzo
    """twinzo sector, branch and mode."""
    affine: Affine = Field(default_factory=Affine)
    """Vendor → twinzo coordinate transform."""
    movement_threshold_mm: float = Field(default=10.0, ge=0)
    """A device is moving when it moved more than this since its last position."""
    bounds: Bounds | None = None
    """Floor bounds (twinzo mm); used by the map, the simulator and the bounds check."""
    drop_out_of_bounds: bool = False
    """Reject positions outside `bounds` instead of forwarding them (always counted)."""
    min_post_interval_ms: int = Field(default=500, ge=0)
    """How often one device may be posted; newer positions in between replace older ones."""
    max_payload_bytes: int = Field(default=65_536, ge=64)
    """Larger MQTT payloads are rejected unparsed."""
    stale_after_s: float = Field(default=10.0, gt=0)
    """A device with no message for this long is shown as stale."""
    timestamp_unit: TimestampUnit = "auto"
    """Unit of the vendor's timestamps: `auto` reads it from the magnitude (1e8–1e11
    seconds, up to 1e14 milliseconds, up to 1e17 microseconds, up to 1e20 nanoseconds);
    `s`, `ms`, `us` or `ns` pins it. Every conversion is counted per unit."""
    clock_tolerance_s: float = Field(default=300.0, gt=0)
    """A vendor timestamp further than this from our receive time (ahead or behind) is
    a lying clock: it never becomes the reference for duplicate and out-of-order checks,
    and is handled as `clock_ahead` / `clock_behind` say."""
    clock_ahead: Literal["restamp", "reject"] = "restamp"
    """A report stamped more than `clock_tolerance_s` in the future: `restamp` posts it
    with the receive time (a report cannot come from the future, so the position is
    current and only the stamp lies), `reject` counts it as `rejected:clock_ahead`."""
    clock_behind: Literal["reject", "restamp"] = "reject"
    """A report stamped more than `clock_tolerance_s` in the past: `reject` counts it as
    `rejected:clock_behind` (it cannot be told from a stale, replayed or queued report,
    and posting it as current would put the robot where it was), `restamp` posts it
    with the receive time."""
    silence_reconnect_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """Silent-connection watchdog: when no message at all has arrived for this long while
    robots were reporting before, the MQTT connection is dropped, re-opened and the
    topics subscribed again (a broker can keep a connection up and deliver nothing). Logged
    once per silent episode, counted in `silence_reconnects`; repeated while the silence
    lasts, the wait doubling up to 8× this. `0` turns it off; otherwise at least 1 s."""
    ghost_after_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """A robot with no message for this long while other robots of its plant still report
    (within `stale_after_s`) is a quiet ghost: flagged in the table and on the map, logged
    when the episode starts and ends, counted. `0` turns it off."""
    refused_after_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """A robot whose messages keep arriving but whose positions twinzo has refused (401,
    `Success: false`, a 4xx; not an outage twinzo retries through) for this long is a
    refused ghost, flagged, logged and counted like a quiet one. `0` turns it off."""
    max_speed_mm_s: float = Field(default=3000.0, ge=0, allow_inf_nan=False)
    """Plausibility: a position further from the robot's last accepted one than this speed
    allows (plus 100 mm of localization noise) is an implausible jump, flagged and counted
    per robot. The time between the two is taken from the vendor's timestamps when both
    are sane, else from the receive times plus 1 s of delivery jitter. A first position,
    or one after more than `stale_after_s` without one, is never a jump. `0` turns it off."""
    drop_implausible: bool = False
    """Reject implausible jumps (`rejected:implausible_jump`) instead of forwarding them
    flagged. A robot that really moved (relocalized, carried) is accepted again from its
    second report at the new place, so it is never frozen."""
    simulator: PlantSimulatorConfig | None = None
    """Simulated robots publishing into this plant's broker (demo and tests)."""

    @field_validator("silence_reconnect_s")
    @classmethod
    def _watchdog_bound(cls, value: float) -> float:
        if 0 < value < 1:
            msg = "use 0 to turn the watchdog off, or at least 1 s (it reconnects every bound)"
            raise ValueError(msg)
        return value

    @field_validator("device_map")
    @classmethod
    def _usable_pairs(cls, value: dict[str, str]) -> dict[str, str]:
        problems = mapping_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @property
    def label(self) -> str:
        """The vendor label used in log lines."""
        return self.vendor_label or DEFAULT_VENDOR_LABEL[self.format]

    @property
    def topics(self) -> list[str]:
        """The topics to subscribe to."""
        if self.broker.topics:
            return [*self.broker.topics]
        if self.format == "vda5050":
            return self.vda5050.topics
        return DEFAULT_TOPICS[self.format]

    @model_validator(mode="after")
    def _batch_needs_branch(self) -> PlantConfig:
        if self.twinzo.batch and not self.twinzo.branch:
            msg = "twinzo.batch needs twinzo.branch (the batch endpoint has no device token)"
            raise ValueError(msg)
        return self


class TwinzoConfig(ConfigModel):
    """The twinzo API and how politely the console talks to it."""

    base_url: str = "https://api.platform.twinzo.com"
    """API base URL (ignored while the sandbox is enabled); `http://` to a host that is not
    loopback warns at start (credentials would cross the network in clear)."""
    client: str = ""
    """twinzo client name sent when authenticating devices (`TWINZO_CLIENT`) and as the
    `Client` header of batch requests: printable ASCII, no space at either end."""
    password: SecretStr = SecretStr("")
    """Device password (`TWINZO_PASSWORD`); a plant may override it."""
    api_key: SecretStr = SecretStr("")
    """API key sent as the `Api-Key` header (`TWINZO_API_KEY`); printable ASCII with no
    space at either end (checked at load; the error never shows the key)."""
    verify_tls: bool = True
    """Verify twinzo's TLS certificate."""
    ca_file: Path | None = None
    """CA bundle that signs twinzo's (or a proxy's) certificate; the system store when unset."""
    timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of one HTTP request."""
    refresh_ahead_s: float = Field(default=60.0, ge=0)
    """Refresh a device token this long before its expiration."""
    max_attempts: int = Field(default=3, ge=1)
    """Attempts per location on timeouts, 5xx and 429 before it counts as failed."""
    backoff_initial_s: float = Field(default=0.5, gt=0)
    """After a timeout, 5xx or 429 (without `Retry-After`) the plant pauses posting this
    long, then one request probes twinzo; the pause doubles (jittered) while probes fail."""
    backoff_max_s: float = Field(default=2.0, gt=0)
    """Cap of that pause: while twinzo is down one probe per plant at least this often,
    and once it is back every device resumes within about this long."""
    retry_after_max_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Longest pause a twinzo `Retry-After` (on a post or an authentication) may impose
    on a plant; a longer one is cut to this. Every such hold is logged as a warning
    (repeats folded). Unset: equal to `backoff_max_s`, so one answer can never hold a
    plant longer than an outage would."""
    auth_backoff_s: float = Field(default=10.0, ge=0)
    """After a failed authentication, wait this long before trying that login again."""
    flush_interval_ms: int = Field(default=100, ge=5)
    """How often the outbox is flushed."""
    max_concurrency: int = Field(default=32, ge=1)
    """Most requests in flight at once per plant."""
    batch_max_devices: int = Field(default=50, ge=1)
    """Most devices in one batch request."""
    drain_timeout_s: float = Field(default=10.0, ge=0)
    """On shutdown, how long to keep posting what is still pending."""

    _ca_file = field_validator("ca_file")(validate_ca_file)

    @model_validator(mode="after")
    def _header_values(self) -> TwinzoConfig:
        # `client` is also the `Client` header of batch requests.
        _refuse_header_values("TwinzoConfig", {"api_key": self.api_key, "client": self.client})
        return self

    @property
    def retry_after_cap_s(self) -> float:
        """The effective cap of a `Retry-After` hold (`retry_after_max_s` or `backoff_max_s`)."""
        if self.retry_after_max_s is None:
            return self.backoff_max_s
        return self.retry_after_max_s


class SandboxFaults(ConfigModel):
    """Faults the twinzo sandbox injects (for tests and demos)."""

    latency_ms: float = Field(default=0.0, ge=0)
    """Added latency per request."""
    error_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of requests answered with HTTP 503."""
    rate_429: float = Field(default=0.0, ge=0, le=1)
    """Share of requests answered with HTTP 429."""
    retry_after_s: float = Field(default=1.0, ge=0)
    """`Retry-After` sent with 429."""
    reject_token_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of localization requests answered 401 although the token is valid."""
    location_failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of locations answered `Success: false` inside an HTTP 200."""


class SandboxConfig(ConfigModel):
    """The in-package twinzo sandbox (a loopback HTTP server)."""

    enabled: bool = False
    """Start the sandbox and point the twinzo client at it."""
    host: str = "127.0.0.1"
    """Bind address; anything but loopback needs `allow_remote`."""
    port: int = Field(default=0, ge=0, le=65535)
    """Bind port (0 picks a free one)."""
    allow_remote: bool = False
    """Allow a non-loopback bind address."""
    token_lifetime_s: float = Field(default=3600.0, gt=0)
    """Lifetime of the tokens it issues."""
    sectors: list[int] | None = None
    """Sector ids it accepts; any when unset."""
    faults: SandboxFaults = Field(default_factory=SandboxFaults)
    """Injected faults."""


class LoggingConfig(ConfigModel):
    """Operator log lines."""

    log_every_n: int = Field(default=50, ge=1)
    """Log every Nth successful post as an `OK` line (`LOG_EVERY_N`)."""
    repeat_window_s: float = Field(default=10.0, ge=0)
    """Repeats of the same failure or warning within this window are summarised, not dropped."""
    stats_interval_s: float = Field(default=5.0, gt=0)
    """Interval of the headless stats line."""
    file: Path | None = None
    """Also write operator log lines to this file, one per line: ISO timestamp (UTC),
    level, plant (`-` for none), text (control characters escaped). The same in the UI
    and with `--no-ui`."""
    library_file: Path = Path("var/dtp-console.log")
    """Where library log records (Python `logging`, WARNING and up) go while the UI owns
    the terminal; with `--no-ui` they go to stderr."""


class PlatformBrokerSettings(BrokerConfig):
    """The platform broker (`dtp/#`): a broker like a plant's, embedded by default."""

    host: str = "embedded"
    """Broker host name or IP address, or `embedded` for the in-process broker the
    simulator's twin generators publish to."""
    qos: Literal[0, 1, 2] = 0
    """Subscription QoS (the generators publish at QoS 0)."""

    @field_validator("topics")
    @classmethod
    def _no_broker_topics(cls, value: list[TopicFilter]) -> list[TopicFilter]:
        if value:
            msg = "the platform's topics are `platform.topics`, not `platform.broker.topics`"
            raise ValueError(msg)
        return value


class PlatformStream(_FiniteModel):
    """One generic field-path mapping: messages on `topic` become observations or events."""

    topic: TopicFilter
    """Topic filter of the stream (`+` and `#` allowed)."""
    kind: Literal["observation", "event"] = "observation"
    """What a message becomes: an `observation` (a number) or an `event`."""
    value: str = "value"
    """Dotted path of the number (observations)."""
    ts: str = "ts"
    """Dotted path of the timestamp (ISO 8601 or epoch s/ms); the receive time when missing."""
    name: str | None = None
    """Signal name; the topic when unset."""
    unit: str | None = None
    """Unit of the observations."""
    severity: Literal[0, 1, 2, 3] = 1
    """Severity of the events."""
    twin: str | None = None
    """Twin id the stream belongs to in the twin view; the twin whose data stream matches
    the topic when unset."""
    threshold: float | None = None
    """Alert threshold drawn on the stream's sparkline."""

    @field_validator("value", "ts")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            msg = "a dotted field path like `data.value` (no empty part)"
            raise ValueError(msg)
        return value


class PlatformConfig(ConfigModel):
    """The platform's own data: the `dtp/#` broker, mapped to observations and events."""

    enabled: bool | None = None
    """Run the platform worker. When unset: on while the simulator runs (its twin
    generators publish there); set `true` in production, where the platform's real twin
    generators publish to a real broker and no simulator runs."""
    broker: PlatformBrokerSettings = Field(default_factory=PlatformBrokerSettings)
    """The platform broker: host (or `embedded`), port, TLS (verification on by default),
    user name and password, client id, persistent session, queue bound."""
    topics: list[TopicFilter] = Field(default_factory=lambda: [TopicFilter("dtp/#")])
    """Topic filters to subscribe to."""
    mapping: Literal["platform", "generic"] = "platform"
    """Topic → record mapping: `platform` (lift vibration and alerts, energy/HVAC, room
    sensors, then the `streams`), or `generic` (only the `streams`)."""
    streams: list[PlatformStream] = Field(default_factory=list)
    """Generic field-path mappings for other twins' topics (first match wins)."""
    max_payload_bytes: int = Field(default=65_536, ge=64)
    """Larger payloads are rejected unparsed."""
    ring_window_s: float = Field(default=600.0, gt=0, le=86_400)
    """How far back the twin view's per-stream ring reaches."""
    ring_points: int = Field(default=600, ge=10, le=100_000)
    """Most points kept per stream (the ring's bound, whatever the stream's rate)."""
    stale_after_s: float = Field(default=30.0, gt=0)
    """A stream with no value for this long is shown as stale."""

    @property
    def name(self) -> str:
        """The worker's name in logs and stats."""
        return "platform"


class ConsoleConfig(ConfigModel):
    """The whole console."""

    twinzo: TwinzoConfig = Field(default_factory=TwinzoConfig)
    """The twinzo API."""
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    """The twinzo sandbox."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Log lines and stats."""
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    """Twin generators and simulator-wide settings."""
    plants: list[PlantConfig] = Field(default_factory=list)
    """The plants, each with its own bridge."""
    platform: PlatformConfig = Field(default_factory=PlatformConfig)
    """The platform worker: ingests the twins' `dtp/#` topics into the stores and the
    twin view (`simulator.broker` is its deprecated alias)."""
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """The twin registry: twin files, their watch, and where twins are kept."""
    stores: StoresConfig = Field(default_factory=StoresConfig)
    """The platform's stores: observations, events, relationships and blobs, each in a
    server or its embedded default."""
    api: ApiConfig = Field(default_factory=ApiConfig)
    """The console's HTTP API: registry routes, the change stream, health and metrics."""
    ha: HaConfig = Field(default_factory=HaConfig)
    """Hot standby and automatic failover between two consoles (off by default)."""

    @model_validator(mode="after")
    def _unique_plant_names(self) -> ConsoleConfig:
        # Plants are looked up case-insensitively (`plant()`, the config writer, the CLI):
        # `Hall A` and `hall a` would be one plant to them.
        seen: dict[str, str] = {}
        for plant in self.plants:
            other = seen.get(plant.name.casefold())
            if other == plant.name:
                msg = f"plant name {plant.name!r} is used twice"
                raise ValueError(msg)
            if other is not None:
                msg = f"plant names {other!r} and {plant.name!r} differ only in case"
                raise ValueError(msg)
            seen[plant.name.casefold()] = plant.name
        return self

    @model_validator(mode="after")
    def _logins_unique_across_plants(self) -> ConsoleConfig:
        # One login is one twinzo device within a branch: two plants posting it would
        # make it jump between two robots. Only plants that name two different branches
        # are apart; an unset branch is the one authentication returns, maybe the same.
        used: dict[str, list[tuple[PlantConfig, str]]] = {}
        for index, plant in enumerate(self.plants):
            for vendor_id, login in plant.device_map.items():
                users = used.setdefault(login.casefold(), [])
                clash = next((u for u in users if self._same_branch(u[0], plant)), None)
                users.append((plant, vendor_id))
                if clash is None:
                    continue
                other, other_id = clash
                msg = (
                    f"plants[{index}] ({plant.name}).device_map: login"
                    f" {login!r} (from {vendor_id!r}) is also mapped in plant {other.name!r}"
                    f" (from {other_id!r}); one twinzo device cannot be two robots"
                )
                raise ValueError(msg)
        return self

    @staticmethod
    def _same_branch(one: PlantConfig, other: PlantConfig) -> bool:
        """Whether two different plants may post to one twinzo branch (unset: maybe any)."""
        if one is other:
            return False
        branches = (one.twinzo.branch, other.twinzo.branch)
        return None in branches or branches[0] == branches[1]

    @model_validator(mode="after")
    def _platform_broker_alias(self) -> ConsoleConfig:
        # `simulator.broker` was the platform broker before `platform.broker` existed.
        if "broker" not in self.simulator.model_fields_set:
            return self
        legacy = self.simulator.broker
        old = {k: getattr(legacy, k) for k in legacy.model_fields_set}
        if "broker" in self.platform.model_fields_set:
            new = self.platform.broker
            differ = sorted(k for k, v in old.items() if getattr(new, k) != v)
            if differ:
                fields = ", ".join(f"simulator.broker.{k} / platform.broker.{k}" for k in differ)
                msg = (
                    f"simulator.broker is the deprecated alias of platform.broker and the two "
                    f"differ ({fields}); keep platform.broker only"
                )
                raise ValueError(msg)
            return self
        self.platform.broker = PlatformBrokerSettings.model_validate(old)
        return self

    def plant(self, name: str) -> PlantConfig:
        """The plant called `name` (case-insensitive); KeyError naming the known ones."""
        for plant in self.plants:
            if plant.name.lower() == name.lower():
                return plant
        known = ", ".join(p.name for p in self.plants) or "none"
        msg = f"no plant named {name!r} (configured: {known})"
        raise KeyError(msg)
