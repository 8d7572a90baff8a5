"""Outside text (vendor ids, topics, logins, error messages) made safe to print or log.

Text a vendor controls reaches the operator's terminal, the log file and the
UI. A newline in a device id forges a log line; ESC and C1 sequences clear the
screen or set the window title; bidi overrides make text read differently
than it is. `safe_text` escapes all of these *visibly* (`\\n`, `\\x1b`,
`\\u202e`) so the operator sees what was sent, and cuts overlong text.
Rich/Textual markup is a separate concern: the UI renders this text with
`rich.text.Text` or `markup=False`, never by interpolating it into markup.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["DEFAULT_LIMIT", "has_unsafe", "safe_text"]

DEFAULT_LIMIT = 2_000
"""Longest text kept (in characters, before escaping); a line is not a payload dump."""

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _unsafe(char: str) -> bool:
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:  # C0, DEL, C1 (0x9b is a one-byte CSI)
        return True
    if code < 0xA0:
        return False
    # Cc/Cf cover bidi overrides and isolates (U+202A–E, U+2066–9), zero-width
    # characters and the BOM; Zl/Zp are line and paragraph separators (a newline
    # to some terminals and editors); Co/Cs/Cn have no business in an id.
    return unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def has_unsafe(text: str) -> bool:
    """Whether `text` holds a character `safe_text` would escape (a backslash does not count)."""
    if text.isascii():  # the common case, without a Python-level loop per character
        return _ASCII_CONTROL.search(text) is not None
    return any(_unsafe(char) for char in text)


def safe_text(text: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """`text` with control and format characters escaped visibly, cut to `limit` characters.

    Backslashes are escaped only when something else was, so ordinary text
    (Windows paths included) reads as before, while an escaped line cannot be
    confused with one that spelt `\\n` itself.
    """
    value = text if isinstance(text, str) else str(text)
    cut = limit is not None and len(value) > limit
    if cut:
        value = value[:limit]
    if has_unsafe(value):
        value = "".join(_escape(c) if c == "\\" or _unsafe(c) else c for c in value)
    return value + "…" if cut else value
