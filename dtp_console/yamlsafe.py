"""YAML from disk, bounded: how deep it nests and what its aliases expand to.

Two ways a few bytes of YAML hurt a reader:

- **Depth.** libyaml's loader (PyYAML's `CSafeLoader`) builds nested nodes by
  recursing in C: `[[[[…` 100,000 deep crashes the process (SIGSEGV). The
  pure-Python loader raises `RecursionError` instead. `load()` uses the C
  loader only when the text cannot nest deeper than `_C_DEPTH_BOUND` (block
  nesting needs at least one column per level, flow nesting one bracket), and
  the Python one otherwise.
- **Aliases** ("billion laughs"): nine lines can parse into shared references
  that expand to billions of values when walked — by `${VAR}` interpolation,
  pydantic, anything that copies. `too_big()` counts, alias uses included,
  and stops at the limit.

And one way YAML misleads: a key written twice in one mapping is last-wins in
PyYAML, silently (an operator edits the first `device_map:`, the second one is
in force). `load()` refuses it, naming the key and both lines.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_VALUES", "count_values", "load", "too_big"]

#: More values than any real config or twin file holds.
MAX_VALUES = 100_000

#: Texts that can nest deeper than this are parsed by the Python loader.
_C_DEPTH_BOUND = 1_000


def _no_duplicate_keys(loader: Any, node: Any, deep: bool = False) -> Any:
    """SafeConstructor.construct_mapping, refusing a key written twice."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merged keys may be overridden: that is what merging is for
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the constructor itself refuses it
            if first is not key_node:
                where = f"line {first.start_mark.line + 1}"
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {str(key)[:80]!r} (first at {where})",
                    key_node.start_mark,
                )
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


class _SafeLoader(yaml.SafeLoader):
    """The pure-Python safe loader, refusing duplicate keys."""

    construct_mapping = _no_duplicate_keys


_CBase: Any = getattr(yaml, "CSafeLoader", None)
_CLoader: Any = (
    type("_CSafeLoader", (_CBase,), {"construct_mapping": _no_duplicate_keys})
    if _CBase is not None
    else None
)


def _depth_bound(text: str) -> int:
    """An upper bound of the nesting depth: longest line plus every flow bracket."""
    longest = max((len(line) for line in text.splitlines()), default=0)
    return longest + text.count("[") + text.count("{")


def load(text: str) -> Any:
    """Parse YAML safely (libyaml when that cannot crash); `RecursionError` when too deep,
    `yaml.MarkedYAMLError` (with the line) for a duplicate key."""
    loader = _CLoader if _CLoader is not None and _depth_bound(text) <= _C_DEPTH_BOUND else None
    return yaml.load(text, Loader=loader or _SafeLoader)  # noqa: S506 - safe loaders only


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
