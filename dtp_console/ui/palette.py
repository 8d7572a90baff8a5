"""The console's colours, in one place: hex constants for Rich, theme variables for CSS.

Rich renderables (table cells, canvases, log strips) take the constants below;
they are hex because Rich does not know every Textual colour name. Stylesheets
(`global.tcss`, the screens' `.tcss`, widgets' `DEFAULT_CSS`) never spell a
colour: they use the `$dtp-*` variables of `THEME_VARIABLES`, which the App
offers as theme-variable defaults and as the `dtp-dark` theme. Another
`Theme` that sets some of those variables recolours the stylesheets; any host
App of these widgets must supply the variables: subclass `PaletteApp`.

The look is GitHub's dark palette on Textual's own dark theme (buttons,
inputs, tabs and the footer keep Textual's colours).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from textual.app import App
from textual.theme import BUILTIN_THEMES

__all__ = [
    "AMBER",
    "BACKGROUND",
    "BLUE",
    "BORDER",
    "BRIGHT",
    "CURSOR",
    "DIM",
    "FAIL_BG",
    "FAIL_FG",
    "GREEN",
    "LEVEL_COLOURS",
    "MUTED",
    "OK_BG",
    "OK_FG",
    "OUTLINE",
    "OVERLAY",
    "PURPLE",
    "RAISED",
    "RED",
    "ROBOT_COLOURS",
    "SURFACE",
    "TEXT",
    "THEME",
    "THEME_VARIABLES",
    "WARN_BG",
    "WARN_FG",
    "YELLOW",
    "ZEBRA",
    "PaletteApp",
]

# Status colours.
GREEN = "#3fb950"
AMBER = "#d29922"
RED = "#f85149"
BLUE = "#58a6ff"
PURPLE = "#bc8cff"
"""Quiet ghost robots (their messages stopped while their plant reports)."""
YELLOW = "#e3b341"
"""Keys in the help."""

# Text.
TEXT = "#c9d1d9"
MUTED = "#8b949e"
DIM = "#484f58"
BRIGHT = "#f0f6fc"
"""The selected robot's label background on the floor map."""

# Surfaces and lines.
BACKGROUND = "#0d1117"
SURFACE = "#161b22"
"""Table headers, the footer; what old floor-map trails fade to."""
ZEBRA = "#11161d"
"""Every other table row."""
RAISED = "#21262d"
"""Health badges."""
BORDER = "#30363d"
CURSOR = "#1f3a5f"
OUTLINE = "#6e7681"
"""The floor outline on the maps."""
OVERLAY = "#010409"
"""Behind a modal (the help), at 70%."""

# Health badges: background and text per state.
OK_BG, OK_FG = "#12361f", "#7ee2a8"
WARN_BG, WARN_FG = "#3d2e00", "#f2cc60"
FAIL_BG, FAIL_FG = "#4c1214", "#ffa198"

LEVEL_COLOURS = {"OK": GREEN, "WARN": AMBER, "FAIL": RED, "INFO": BLUE}
"""Operator log levels."""

ROBOT_COLOURS = (
    BLUE,
    GREEN,
    "#d2a8ff",
    "#ffa657",
    "#56d4dd",
    "#f778ba",
    YELLOW,
    "#a5d6ff",
)
"""Floor-map robot colours, handed out in turn."""

THEME_VARIABLES: dict[str, str] = {
    "dtp-background": BACKGROUND,
    "dtp-surface": SURFACE,
    "dtp-raised": RAISED,
    "dtp-border": BORDER,
    "dtp-cursor": CURSOR,
    "dtp-overlay": OVERLAY,
    "dtp-text": TEXT,
    "dtp-muted": MUTED,
    "dtp-accent": BLUE,
    "dtp-ok-background": OK_BG,
    "dtp-ok": OK_FG,
    "dtp-warn-background": WARN_BG,
    "dtp-warn": WARN_FG,
    "dtp-fail-background": FAIL_BG,
    "dtp-fail": FAIL_FG,
}
"""The stylesheets' colours (`$dtp-background` …): a `Theme` may set any of them."""

THEME = dataclasses.replace(
    BUILTIN_THEMES["textual-dark"], name="dtp-dark", variables=dict(THEME_VARIABLES)
)
"""The console's theme: Textual's dark theme with the palette's variables."""

ReturnT = TypeVar("ReturnT")


class PaletteApp(App[ReturnT]):
    """An App whose stylesheets may use the palette's `$dtp-*` variables (any theme)."""

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """The palette's variables, for a theme that does not set them."""
        return {**super().get_theme_variable_defaults(), **THEME_VARIABLES}
