"""Device-map rules shared by the config model, the editor and the engine."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "LOGIN_PATTERN",
    "duplicate_logins",
    "login_problem",
    "mapping_problems",
    "vendor_id_problem",
]

#: twinzo device logins: letters, digits and `._@-`, starting with a letter or digit.
LOGIN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def login_problem(login: str, taken: Mapping[str, str] | None = None) -> str | None:
    """Why `login` is not a usable twinzo device login, or None.

    `taken` maps the logins already used (`str.casefold()`ed) to the vendor id that uses each.
    """
    if taken and (owner := taken.get(login.casefold())) is not None:
        return f"login {login!r} is already mapped from {owner!r}"
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


def duplicate_logins(mapping: Mapping[str, str]) -> dict[str, list[str]]:
    """Logins mapped from more than one vendor id → those ids (in map order).

    Logins compare case-insensitively: twinzo's device store is not case-sensitive,
    so `Tugger-05` and `tugger-05` would be one device too.
    """
    owners: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for vendor_id, login in mapping.items():
        key = login.casefold()
        first.setdefault(key, login)
        owners.setdefault(key, []).append(vendor_id)
    return {first[key]: ids for key, ids in owners.items() if len(ids) > 1}


def mapping_problems(mapping: Mapping[str, str]) -> list[str]:
    """Every problem of a whole device map (empty list when it is usable).

    Two vendor ids on one login are refused: twinzo would see one device jumping
    between two robots, and the stats would count one.
    """
    problems = []
    for vendor_id, login in mapping.items():
        problem = vendor_id_problem(vendor_id) or login_problem(login)
        if problem:
            problems.append(f"{vendor_id!r}: {problem}")
    for login, vendor_ids in duplicate_logins(mapping).items():
        ids = " and ".join(repr(v) for v in vendor_ids)
        problems.append(f"login {login!r} is mapped from {ids} (one twinzo device for two robots)")
    return problems
