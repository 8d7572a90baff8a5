"""Device-map rules shared by the config model, the editor and the engine."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["LOGIN_PATTERN", "login_problem", "mapping_problems", "vendor_id_problem"]

#: twinzo device logins: letters, digits and `._@-`, starting with a letter or digit.
LOGIN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def login_problem(login: str) -> str | None:
    """Why `login` is not a usable twinzo device login, or None."""
    if not login.strip():
        return "login is empty"
    if login != login.strip():
        return "login has leading or trailing spaces"
    if not LOGIN_PATTERN.match(login):
        return "login may use letters, digits and . _ @ - (starting with a letter or digit)"
    return None


def vendor_id_problem(vendor_id: str, taken: set[str] | frozenset[str] = frozenset()) -> str | None:
    """Why `vendor_id` cannot be mapped (empty, padded, already mapped), or None."""
    if not vendor_id.strip():
        return "vendor id is empty"
    if vendor_id != vendor_id.strip():
        return "vendor id has leading or trailing spaces"
    if vendor_id in taken:
        return f"vendor id {vendor_id!r} is already mapped in this plant"
    return None


def mapping_problems(mapping: Mapping[str, str]) -> list[str]:
    """Every problem of a whole device map (empty list when it is usable)."""
    problems = []
    for vendor_id, login in mapping.items():
        problem = vendor_id_problem(vendor_id) or login_problem(login)
        if problem:
            problems.append(f"{vendor_id!r}: {problem}")
    return problems
