"""The header strip of health badges: stores, each plant's MQTT source, twinzo, TLS warnings.

`badge_infos()` turns state into badge facts (pure, tested without Textual);
`HealthBadges` shows them. A badge is focusable: `enter` shows its last error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from textual.binding import Binding, BindingType
from textual.containers import HorizontalScroll
from textual.widget import Widget

from dtp_console.config.model import ConsoleConfig
from dtp_console.events import StoreHealth
from dtp_console.state import HA_ROLE_LABELS, EngineState, PlantState
from dtp_console.textsafe import safe_text
from dtp_console.ui.display import fmt_ms
from dtp_console.view import LinkStatus

__all__ = ["Badge", "BadgeInfo", "HealthBadges", "badge_infos", "fit_badges"]

BadgeLevel = Literal["ok", "warn", "fail", "off"]
#: A store failing for less than this since its last success is amber, not red.
_STORE_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class BadgeInfo:
    """What one badge says."""

    key: str
    label: str
    level: BadgeLevel
    detail: str = ""
    error: str | None = None
    short: str = ""
    """Label when space is tight (the label when empty)."""

    def text(self, *, compact: bool) -> str:
        """The badge's text: glyph, label and (unless compact) detail."""
        glyph = {"ok": "●", "warn": "▲", "fail": "✖", "off": "○"}[self.level]
        if compact:
            return f"{glyph} {self.short or self.label}"
        return f"{glyph} {self.label}" + (f" {self.detail}" if self.detail else "")


_BADGE_CHROME = 3  # padding and margin around each badge's text
_RANK: dict[BadgeLevel, int] = {"off": 0, "ok": 1, "warn": 2, "fail": 3}


def _stores_summary(stores: list[BadgeInfo]) -> BadgeInfo:
    level = max((i.level for i in stores), key=_RANK.__getitem__)
    ok = sum(i.level == "ok" for i in stores)
    errors = [f"{i.label}: {i.error}" for i in stores if i.error]
    return BadgeInfo("stores", f"stores {ok}/{len(stores)}", level, error="; ".join(errors) or None)


def fit_badges(infos: list[BadgeInfo], width: int) -> tuple[list[BadgeInfo], bool]:
    """The badges to show in `width` cells and whether to show them compact.

    Full text when it fits; else labels only; else the stores folded into one badge.
    """

    def used(items: list[BadgeInfo], compact: bool) -> int:
        return sum(len(i.text(compact=compact)) + _BADGE_CHROME for i in items)

    if used(infos, False) <= width:
        return infos, False
    if used(infos, True) <= width:
        return infos, True
    stores = [i for i in infos if i.key.startswith("store:")]
    if len(stores) < 2:
        return infos, True
    rest = [i for i in infos if not i.key.startswith("store:")]
    return [_stores_summary(stores), *rest], True


def _since(seconds: float | None) -> str:
    """Coarse time since, for badges: `2s`, `5m`, `3h`."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    return f"{seconds // 60:.0f}m" if seconds < 3600 else f"{seconds // 3600:.0f}h"


def _store_badges(
    health: Mapping[str, StoreHealth], cfg: ConsoleConfig, now: float
) -> list[BadgeInfo]:
    if not health:
        label = "stores embedded" if cfg.stores.enabled else "stores off"
        return [BadgeInfo("stores", label, "off")]
    out = []
    for name, h in sorted(health.items()):
        since = None if h.last_success is None else now - h.last_success
        if h.spool_error:
            level: BadgeLevel = "fail"  # records cannot be kept on disk: say so loudly
        elif h.ok:
            level = "warn" if h.spool_pending else "ok"  # amber while the spool drains
        elif h.spool_pending:
            level = "fail"  # failing with records waiting
        else:
            level = "warn" if since is not None and since < _STORE_GRACE_S else "fail"
        spool = ""
        if h.spool_pending:
            spool = f"spool {h.spool_pending}" + (
                f"/{_since(h.spool_oldest_s)}" if h.spool_oldest_s is not None else ""
            )
        parts = (fmt_ms(h.latency_ms) if h.ok else "", spool, _since(since))
        detail = " ".join(x for x in parts if x)
        error = "; ".join(e for e in (h.error, h.spool_error) if e) or None
        out.append(BadgeInfo(f"store:{name}", name, level, detail, error))
    return out


def _plant_badges(state: EngineState, cfg: ConsoleConfig, mono_now: float) -> list[BadgeInfo]:
    out = []
    for plant in cfg.plants:
        ps = state.plants.get(plant.name)
        if ps is None:
            continue
        level: BadgeLevel = {"connected": "ok", "connecting": "warn", "disconnected": "fail"}.get(
            ps.mqtt, "off"
        )  # type: ignore[assignment]
        seen = [d.last_message_at for d in ps.devices.values() if d.last_message_at is not None]
        detail = _since(mono_now - max(seen)) if seen else ""
        error = ps.mqtt_detail or None
        out.append(BadgeInfo(f"mqtt:{plant.name}", plant.name, level, detail, error))
        if ps.ha_role != "off":
            out.append(_ha_badge(plant.name, ps))
        if plant.broker.tls and not plant.broker.verify:
            out.append(
                BadgeInfo(
                    f"tls:{plant.name}",
                    f"⚠ {plant.name} TLS verify OFF",
                    "fail",
                    error=f"{plant.name}: broker {plant.broker.host} certificate is not verified"
                    " (broker.verify: false)",
                    short="⚠ TLS verify OFF",
                )
            )
    return out


def _platform_badges(state: EngineState, cfg: ConsoleConfig) -> list[BadgeInfo]:
    """The platform worker's broker (`dtp/#`): connection and messages received."""
    ps = state.platform
    if ps is None:
        return []
    level: BadgeLevel = {"connected": "ok", "connecting": "warn", "disconnected": "fail"}.get(
        ps.mqtt, "off"
    )  # type: ignore[assignment]
    counters = ps.counters
    rejected = counters.group("rejected:") + counters.group("dropped:")
    detail = f"{counters.received}" + (f" ({rejected} rej)" if rejected else "")
    out = [BadgeInfo("platform", "dtp/#", level, detail, ps.mqtt_detail or None, short="dtp")]
    broker = cfg.platform.broker
    if broker.tls and not broker.verify:
        out.append(
            BadgeInfo(
                "tls:platform",
                "⚠ platform TLS verify OFF",
                "fail",
                error=f"platform broker {broker.host}: certificate is not verified"
                " (platform.broker.verify: false)",
                short="⚠ TLS verify OFF",
            )
        )
    return out


def _ha_badge(name: str, ps: PlantState) -> BadgeInfo:
    """`ACTIVE` / `STANDBY` / `NO LOCK`: which console of the pair posts for the plant."""
    role = ps.ha_role
    level: BadgeLevel = {"active": "ok", "standby": "off"}.get(role, "fail")  # type: ignore[assignment]
    label = HA_ROLE_LABELS[role]
    holder = f"; active: {ps.ha_holder}" if ps.ha_holder and role != "active" else ""
    return BadgeInfo(
        f"ha:{name}", f"{name} {label}", level, error=f"{name}: {ps.ha_detail}{holder}", short=label
    )


def _twinzo_badge(state: EngineState, cfg: ConsoleConfig, mono_now: float) -> list[BadgeInfo]:
    devices = [d for p in state.plants.values() for d in p.devices.values() if d.last_post_status]
    ok = [d for d in devices if d.last_post_ok]
    failing = len(devices) - len(ok)
    tokens = [a.status for a in state.auth.values()]
    errors = [d.last_error for d in devices if d.last_error and d not in ok]
    errors += [a.last_error for a in state.auth.values() if a.last_error and a.status == "failed"]
    if not devices and not tokens:
        level: BadgeLevel = "off"
    elif not ok and (failing or "failed" in tokens):
        level = "fail"
    elif failing or "failed" in tokens or "refreshing" in tokens:
        level = "warn"
    else:
        level = "ok"
    latencies = sorted(d.last_post_latency_ms for d in ok if d.last_post_latency_ms is not None)
    posted = [d.last_post_at for d in ok if d.last_post_at is not None]
    parts = []
    if latencies:
        parts.append(fmt_ms(latencies[len(latencies) // 2]))
    if posted:
        parts.append(_since(mono_now - max(posted)))
    out = [BadgeInfo("twinzo", "twinzo", level, " ".join(parts), errors[0] if errors else None)]
    if not cfg.twinzo.verify_tls:
        out.append(
            BadgeInfo(
                "tls:twinzo", "⚠ twinzo TLS verify OFF", "fail", error="twinzo.verify_tls: false"
            )
        )
    return out


def _link_badges(link: LinkStatus | None) -> list[BadgeInfo]:
    """An attached console's link to its service: up, connecting or down, and where."""
    if link is None:
        return []
    level: BadgeLevel = {"up": "ok", "connecting": "warn"}.get(link.state, "fail")  # type: ignore[assignment]
    error = f"{link.url}: {link.detail}" if link.detail else link.url
    return [
        BadgeInfo(
            "link",
            f"attach {link.state}",
            level,
            safe_text(link.url, 80),
            safe_text(error),
            short=f"attach {link.state}",
        )
    ]


def badge_infos(
    state: EngineState,
    health: Mapping[str, StoreHealth],
    cfg: ConsoleConfig,
    *,
    wall_now: float,
    mono_now: float,
    link: LinkStatus | None = None,
) -> list[BadgeInfo]:
    """Every badge, in display order: the link of an attached console, stores, plants' MQTT
    (and TLS warnings), the platform broker, twinzo."""
    return [
        *_link_badges(link),
        *_store_badges(health, cfg, wall_now),
        *_plant_badges(state, cfg, mono_now),
        *_platform_badges(state, cfg),
        *_twinzo_badge(state, cfg, mono_now),
    ]


class Badge(Widget, can_focus=True):
    """One coloured badge; `enter` shows its last error.

    Not a `Static`: `Static.update()` always asks for a new layout of the
    screen, which at 10 Hz costs more than everything else; a badge whose
    text keeps its length only repaints itself.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "show_error", "Last error")]

    DEFAULT_CSS = """
    Badge {
        width: auto;
        height: 1;
        padding: 0 1;
        margin-right: 1;
        background: $dtp-raised;
        color: $dtp-text;
    }
    Badge.-ok { background: $dtp-ok-background; color: $dtp-ok; }
    Badge.-warn { background: $dtp-warn-background; color: $dtp-warn; }
    Badge.-fail { background: $dtp-fail-background; color: $dtp-fail; text-style: bold; }
    Badge.-off { background: $dtp-raised; color: $dtp-muted; }
    Badge:focus { text-style: bold reverse; }
    """

    def __init__(self, info: BadgeInfo, *, compact: bool = False) -> None:
        # Labels and details name plants, stores and brokers: shown as text, not markup.
        super().__init__(markup=False)
        self.info = info
        self._compact = compact
        self._text = info.text(compact=compact)
        self.set_classes(f"-{info.level}")

    def render(self) -> str:
        """The badge's text."""
        return self._text

    @property
    def width_shown(self) -> int:
        """Cells of text shown now (padding included)."""
        return len(self._text)

    def show(self, info: BadgeInfo, *, compact: bool, pad: bool = True) -> None:
        """Display `info` (only touches the widget when something changed).

        A badge does not narrow while shown: `194ms` → `20ms` pads to the old
        width instead of asking for a new layout of the whole screen — unless
        `pad` is False (the strip is short of room) or it goes compact.
        """
        self.info = info
        text = info.text(compact=compact)
        if compact != self._compact or (not pad and text != self._text):
            resized = len(text) != len(self._text)
            self._compact, self._text = compact, text
            self.refresh(layout=resized)
        elif text.rstrip() != self._text.rstrip():
            grown = len(text) > len(self._text)
            self._text = text.ljust(len(self._text))
            self.refresh(layout=grown)
        self.set_classes(f"-{info.level}")

    def action_show_error(self) -> None:
        """Tell the operator what last went wrong here."""
        severity = {"fail": "error", "warn": "warning"}.get(self.info.level, "information")
        self.notify(
            safe_text(self.info.error or "no error recorded"),
            title=safe_text(self.info.label, 80),
            severity=severity,  # type: ignore[arg-type]
            timeout=8,
            markup=False,  # errors quote brokers, stores and twinzo: never markup
        )


class HealthBadges(HorizontalScroll):
    """The strip; `show()` adds, removes and updates badges by key."""

    DEFAULT_CSS = """
    HealthBadges {
        height: 1;
        dock: top;
        background: $dtp-background;
        scrollbar-size: 0 0;
    }
    """

    def show(self, infos: list[BadgeInfo], *, width: int) -> None:
        """Make the strip show `infos` in order, as much of them as fits in `width` cells."""
        infos, compact = fit_badges(infos, width)
        current = {b.info.key: b for b in self.query(Badge)}
        wanted = [i.key for i in infos]
        if list(current) != wanted:
            self.remove_children()
            self.mount(*(Badge(i, compact=compact) for i in infos))
            return
        # Padding kept from wider figures must not push badges off the strip.
        shown = sum(
            max(len(i.text(compact=compact)), current[i.key].width_shown) + _BADGE_CHROME
            for i in infos
        )
        for info in infos:
            current[info.key].show(info, compact=compact, pad=shown <= width)
