"""`?`: every key binding of the console, its screens and its widgets, read from the classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from dtp_console.ui.palette import BLUE, TEXT, YELLOW

__all__ = ["HelpScreen", "bindings_of"]


def bindings_of(cls: type) -> list[Binding]:
    """The bindings `cls` declares or inherits (a subclass's key wins), in declaration order."""
    found: dict[str, Binding] = {}
    for klass in reversed(cls.__mro__):
        declared = klass.__dict__.get("BINDINGS")
        if not declared:
            continue
        for binding in Binding.make_bindings(declared):
            found[binding.key] = binding
    return list(found.values())


class HelpScreen(ModalScreen[None]):
    """A scrollable list of bindings, one section per class; `escape`, `?` or `q` closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close_help", "Close help"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $dtp-overlay 70%;
    }
    HelpScreen > VerticalScroll {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 90%;
        border: round $dtp-accent;
        border-title-color: $dtp-accent;
        background: $dtp-background;
        padding: 0 1;
    }
    """

    def __init__(self, sections: Sequence[tuple[str, type]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def rows(self) -> list[tuple[str, str, str]]:
        """(section, key, description) for every binding shown."""
        out = []
        for title, cls in self.sections:
            for binding in bindings_of(cls):
                description = binding.description or binding.action.replace("_", " ")
                out.append((title, self.app.get_key_display(binding), description))
        return out

    def compose(self) -> ComposeResult:
        """One table with a header row per section."""
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column("key", style=f"bold {YELLOW}", min_width=12, no_wrap=True)
        table.add_column("does", style=TEXT)
        section = None
        for title, key, description in self.rows():
            if title != section:
                if section is not None:
                    table.add_row("", "")
                table.add_row(f"[bold {BLUE}]{title}[/]", "")
                section = title
            table.add_row(key, description)
        with VerticalScroll() as scroll:
            scroll.border_title = "keys  (escape closes)"
            yield Static(table)

    def action_close_help(self) -> None:
        """Close the help."""
        self.dismiss(None)
