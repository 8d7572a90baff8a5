"""What a token may learn about other tenants' twins through a twin it can see.

The registry flags `unknown_dependencies` over every tenant, and it must: a
plant fleet may depend on a lift shared from another tenant. But a token
restricted to some tenants must not learn from that flag that an id exists in
a tenant it cannot see (list `dt:secret` as a dependency, read the flag). So
the API answers per token: a dependency owned by a tenant the token does not
see is reported unknown, exactly like one that names no twin. A token granted
every tenant gets the registry's own answer.

Only records the registry flagged are re-flagged: a hard-deleted twin's record
carries no flags (`[]`), and adding some would tell hidden from absent apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from dtp_console.api.tokens import Principal
from dtp_console.registry.model import TwinRecord

__all__ = ["flagged_dependencies_known", "unknown_to", "visible_to"]


def flagged_dependencies_known(twin: TwinRecord) -> set[str]:
    """The twin's dependencies the registry found (whose owner a token must be checked for)."""
    flagged = set(twin.unknown_dependencies)
    return {dep for dep in twin.dependencies.all() if dep not in flagged}


def unknown_to(
    principal: Principal, twin: TwinRecord, owners: Mapping[str, str] | None
) -> list[str]:
    """`twin.unknown_dependencies` as `principal` may see it, in dependency order.

    `owners` maps registered ids to their tenant; an id missing from it (or None:
    the lookup failed) counts as unknown, so a failure hides rather than reveals.
    """
    if principal.all_tenants:
        return twin.unknown_dependencies
    flagged = set(twin.unknown_dependencies)
    known = owners or {}
    return [
        dep
        for dep in twin.dependencies.all()
        if dep in flagged or dep not in known or not principal.sees(known[dep])
    ]


def visible_to(
    principal: Principal, twin: TwinRecord, owners: Mapping[str, str] | None
) -> TwinRecord:
    """The twin with `unknown_dependencies` as `principal` may see it (itself when equal)."""
    unknown = unknown_to(principal, twin, owners)
    if unknown == twin.unknown_dependencies:
        return twin
    return twin.model_copy(update={"unknown_dependencies": unknown})
