"""The Textual console (`dtp-console run` on a terminal).

Only this package imports Textual. The engine runs beside the App; the App
reads the engine's bus and state on its own clock (see `dtp_console.ui.app`).
Nothing is imported here so that finding this package never loads Textual.
"""

from __future__ import annotations

__all__: list[str] = []
