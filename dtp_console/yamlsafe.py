"""YAML from disk with a bound on what aliases expand to.

A few lines of nested aliases ("billion laughs") parse into a structure that
shares references but expands to billions of values when walked — by
`${VAR}` interpolation, by pydantic, by anything that copies it. The config
file and the registry's twin files both come from disk, so both are counted
before anything walks them.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_VALUES", "SafeLoader", "count_values", "too_big"]

#: More values than any real config or twin file holds.
MAX_VALUES = 100_000

#: libyaml's safe loader when the PyYAML wheel has it (≈10× faster), else PyYAML's.
SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def count_values(data: Any, limit: int = MAX_VALUES) -> int:
    """Values in `data`, every alias use counted, stopping once past `limit`."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def too_big(data: Any, limit: int = MAX_VALUES) -> str | None:
    """Why `data` is refused, or None when it is within `limit` values."""
    count = count_values(data, limit)
    if count <= limit:
        return None
    return f"more than {limit:,} values (YAML aliases expanding?)"
