"""Edit one field of one plant in the YAML config file, in place and atomically.

The file is edited as a round-trip document (ruamel.yaml): comments, key
order, quoting, flow/block style and the file's indentation survive; only the
edited field changes. When the field and the new value are both mappings the
existing mapping is updated key by key (kept keys keep their place and
comments, new keys are appended, missing keys removed), which is what a
device-map or affine edit wants.

The new text is written to a temporary file in the same directory, fsynced,
and moved over the old file with `os.replace`, so a reader (the console's live
reload) sees either the old file or the new one, never half of it. Any failure
leaves the old file untouched and raises `ConfigWriteError`.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import io
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken

from dtp_console.atomic import write_bytes_atomic
from dtp_console.bridge.device_map import mapping_problems
from dtp_console.config.loader import interpolate, load_env

__all__ = [
    "ConfigWriteError",
    "DeviceMapConflictError",
    "merge_device_map",
    "read_plant_field",
    "update_plant_field",
]

#: (mapping, sequence, offset) indentation styles tried to reproduce the file as written.
_INDENTS = (
    (2, 4, 2),
    (2, 2, 0),
    (4, 4, 2),
    (4, 4, 0),
    (4, 6, 4),
    (2, 2, 2),
    (3, 3, 1),
    (4, 2, 0),
)
_MISSING = object()


class ConfigWriteError(Exception):
    """The config file could not be edited; it is unchanged. The message says why."""


class DeviceMapConflictError(ConfigWriteError):
    """The same vendor id was changed in the file and in the editor; nothing was written.

    `current` is the device map in the file now (resolved), to reload the editor with.
    """

    def __init__(self, path: Path, keys: list[str], current: dict[str, str]) -> None:
        self.keys = keys
        self.current = current
        shown = ", ".join(repr(k) for k in keys)
        super().__init__(
            f"{path}: the file changed since you opened it ({shown} changed there too); "
            "reloaded, check and save again"
        )


def read_plant_field(path: Path, plant_name: str, field: str) -> Any:
    """The current value of `plants[<plant_name>].<field>` as plain data (None if absent).

    `field` may be dotted (`broker.topics`). The plant name matches case-insensitively.
    """
    text = _read(path)
    document = _yaml(_INDENTS[0]).load(text)
    plant = _find_plant(document, plant_name, path)
    node: Any = plant
    for part in _parts(field):
        if not isinstance(node, CommentedMap) or part not in node:
            return None
        node = node[part]
    return _plain(node)


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _editing(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of one file: a lock per path in this process and
    an advisory `flock` on the file's directory against other processes (`calibrate --write`
    while the console saves a device map)."""
    resolved = path.resolve()
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(resolved, threading.Lock())
    with lock:
        try:
            # The directory's inode outlives the file's (each save renames a new file in).
            fd = os.open(resolved.parent, os.O_RDONLY)
        except OSError:
            yield  # the read or write that follows fails and says why
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


def update_plant_field(path: Path, plant_name: str, field: str, value: Any) -> Any:
    """Set `plants[<plant_name>].<field>` to `value` in the file; return the old value.

    Concurrent saves of the same file (threads or processes) are serialised, so
    each one edits the result of the previous and none is lost.

    The file is not rewritten when the value is already there.

    `value` is plain data (mapping, list, str, int, float, bool, None). `field`
    may be dotted (`twinzo.sector_id`); missing intermediate mappings are
    created. The old value is returned as plain data (None if it was absent).
    Raises `ConfigWriteError` — with the file left as it was — when the file
    cannot be read or parsed, the plant is not there, or writing fails.
    """
    with _editing(path):
        return _update(path, plant_name, field, value)


def merge_device_map(
    path: Path,
    plant_name: str,
    base: Mapping[str, str],
    edited: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Apply the operator's edits (`base` → `edited`) to the plant's device map as it is
    in the file now; return the resulting map (with `${VAR}` resolved).

    Entries the operator did not touch are left as written — someone else's mapping
    added meanwhile stays, a `${VAR}` stays a `${VAR}`. A vendor id changed both in the
    file and in the editor (to different logins) raises `DeviceMapConflictError`; a merged
    map that breaks the device-map rules (a login now used twice) raises `ValueError`.
    Either way the file is unchanged.
    """
    with _editing(path):
        text = _read(path)
        yaml = _matching_yaml(text)
        document = yaml.load(text)
        plant = _find_plant(document, plant_name, path)
        node = plant.get("device_map")
        if node is not None and not isinstance(node, CommentedMap):
            msg = f"{path}: plant {plant_name!r}: device_map is not a mapping"
            raise ConfigWriteError(msg)
        env = load_env(path, environ)
        current = {str(k): _resolved(v, env) for k, v in (node or {}).items()}
        changed = [k for k in dict.fromkeys([*base, *edited]) if base.get(k) != edited.get(k)]
        conflicts = [k for k in changed if current.get(k) not in {base.get(k), edited.get(k)}]
        if conflicts:
            raise DeviceMapConflictError(path, conflicts, current)
        merged = dict(current)
        for key in changed:
            if key in edited:
                merged[key] = edited[key]
            else:
                merged.pop(key, None)
        problems = mapping_problems(merged)
        if problems:
            raise ValueError("; ".join(problems))
        if merged == current:
            return merged
        if node is None:
            plant["device_map"] = node = CommentedMap()
        for key in changed:
            if key in edited:
                _assign(node, key, edited[key])
            elif key in node:
                _remove_key(node, key)
        _dump_and_write(path, yaml, document, text, "device_map")
        return merged


def _resolved(value: Any, env: Mapping[str, str]) -> str:
    """A file value as the loader sees it; the raw text when it cannot be resolved."""
    try:
        return str(interpolate(value, env))
    except ValueError:
        return str(value)


def _dump_and_write(path: Path, yaml: YAML, document: Any, text: str, field: str) -> None:
    buffer = io.StringIO()
    try:
        yaml.dump(document, buffer)
    except (YAMLError, TypeError, ValueError) as exc:
        msg = f"{path}: cannot write {field} as YAML ({exc}); the file is unchanged"
        raise ConfigWriteError(msg) from None
    _atomic_write(path, buffer.getvalue(), expected=text)


def _update(path: Path, plant_name: str, field: str, value: Any) -> Any:
    parts = _parts(field)
    text = _read(path)
    yaml = _matching_yaml(text)
    document = yaml.load(text)
    plant = _find_plant(document, plant_name, path)
    parent: CommentedMap = plant
    while len(parts) > 1 and parts[0] in parent:
        child = parent[parts[0]]
        if not isinstance(child, CommentedMap):
            msg = f"{path}: plant {plant_name!r}: {parts[0]} is not a mapping; cannot set {field}"
            raise ConfigWriteError(msg)
        parent, parts = child, parts[1:]
    key = parts[0]
    old = _plain(parent.get(key))
    for missing in reversed(parts[1:]):
        # Build absent intermediate mappings around the value, then add them in one go.
        value = {missing: value}
    if not _assign(parent, key, value):
        # Nothing to change: do not touch the file (a running console would reload it).
        return old
    buffer = io.StringIO()
    try:
        yaml.dump(document, buffer)
    except (YAMLError, TypeError, ValueError) as exc:
        msg = f"{path}: cannot write {field} = {value!r} as YAML ({exc}); the file is unchanged"
        raise ConfigWriteError(msg) from None
    _atomic_write(path, buffer.getvalue(), expected=text)
    return old


def _parts(field: str) -> list[str]:
    parts = field.split(".")
    if not field or not all(parts):
        msg = f"not a field name: {field!r}"
        raise ConfigWriteError(msg)
    return parts


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: config file not found"
        raise ConfigWriteError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the config file: {exc}"
        raise ConfigWriteError(msg) from None


def _yaml(indent: tuple[int, int, int]) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    # Never re-wrap long lines (URLs, topic lists) that the file has on one line.
    yaml.width = 4096
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _matching_yaml(text: str) -> YAML:
    """The YAML instance whose output of the unedited document is closest to the file."""
    best: tuple[float, YAML] | None = None
    for indent in _INDENTS:
        yaml = _yaml(indent)
        try:
            document = yaml.load(text)
        except YAMLError as exc:
            msg = f"cannot parse the config file: {exc}"
            raise ConfigWriteError(msg) from None
        buffer = io.StringIO()
        yaml.dump(document, buffer)
        produced = buffer.getvalue()
        if produced == text:
            return yaml
        similarity = difflib.SequenceMatcher(None, text.splitlines(), produced.splitlines())
        score = similarity.ratio()
        if best is None or score > best[0]:
            best = (score, yaml)
    assert best is not None
    return best[1]


def _find_plant(document: Any, plant_name: str, path: Path) -> CommentedMap:
    plants = document.get("plants") if isinstance(document, CommentedMap) else None
    if not isinstance(plants, CommentedSeq):
        msg = f"{path}: no `plants:` list in the config file"
        raise ConfigWriteError(msg)
    found = [
        plant
        for plant in plants
        if isinstance(plant, CommentedMap)
        and str(plant.get("name", "")).lower() == plant_name.lower()
    ]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        msg = f"{path}: plant name {plant_name!r} appears {len(found)} times"
        raise ConfigWriteError(msg)
    names = [str(p.get("name")) for p in plants if isinstance(p, CommentedMap)]
    known = ", ".join(repr(n) for n in names) or "none"
    msg = f"{path}: no plant named {plant_name!r} in the config file (plants: {known})"
    raise ConfigWriteError(msg)


def _plain(node: Any) -> Any:
    """Round-trip nodes → plain dicts, lists and scalars."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _commented(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, CommentedMap):
        result = CommentedMap()
        for key, item in value.items():
            result[key] = _commented(item)
        return result
    if isinstance(value, list | tuple) and not isinstance(value, CommentedSeq):
        return CommentedSeq(_commented(item) for item in value)
    return value


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, bool) != isinstance(new, bool) or isinstance(old, str) != isinstance(
        new, str
    ):
        return False
    return bool(old == new)


def _assign(parent: CommentedMap, key: str, value: Any) -> bool:
    """Set `parent[key]`, merging mappings in place; whether anything changed."""
    current = parent.get(key, _MISSING)
    if current is _MISSING:
        _add_key(parent, key, value)
        return True
    if isinstance(current, CommentedMap) and isinstance(value, Mapping) and value:
        changed = False
        for old_key in [k for k in current if k not in value]:
            _remove_key(current, old_key)
            changed = True
        for new_key, item in value.items():
            changed = _assign(current, new_key, item) or changed
        return changed
    if _same(current, value):
        return False
    tail = _take_tail(parent, key)
    parent[key] = _commented(value)
    _give_tail(parent, key, tail)
    return True


# Comment lines after an item are stored on the deepest last item before them
# (`ca.items[key][2]` in a mapping, `ca.items[index][0]` in a sequence) together
# with that item's end-of-line comment. Adding or removing the last item would
# drag them along; these helpers move the full-line part to the new last item.


def _add_key(parent: CommentedMap, key: str, value: Any) -> None:
    last = next(reversed(parent), _MISSING) if len(parent) else _MISSING
    tail = "" if last is _MISSING else _take_tail(parent, last)
    parent[key] = _commented(value)
    _give_tail(parent, key, tail)


def _remove_key(parent: CommentedMap, key: str) -> None:
    keys = list(parent)
    tail = _take_tail(parent, key)
    del parent[key]
    parent.ca.items.pop(key, None)
    index = keys.index(key)
    if index > 0:
        _give_tail(parent, keys[index - 1], tail)


def _tail_slot(container: Any, key: Any) -> tuple[Any, Any, int]:
    value = container[key]
    if isinstance(value, CommentedMap) and len(value):
        return _tail_slot(value, next(reversed(value)))
    if isinstance(value, CommentedSeq) and len(value):
        return _tail_slot(value, len(value) - 1)
    return container, key, 0 if isinstance(container, CommentedSeq) else 2


def _take_tail(container: Any, key: Any) -> str:
    """Detach and return the full-line comments after `container[key]` (keeps its EOL part)."""
    holder, slot_key, slot = _tail_slot(container, key)
    entry = holder.ca.items.get(slot_key)
    token = entry[slot] if entry and len(entry) > slot else None
    if not isinstance(token, CommentToken):
        return ""
    text = str(token.value)
    newline = text.find("\n")
    if newline < 0 or newline == len(text) - 1:
        return ""
    head, tail = text[: newline + 1], text[newline + 1 :]
    if head.strip():
        token.value = head
    else:
        entry[slot] = None
    return tail


def _give_tail(container: Any, key: Any, tail: str) -> None:
    if not tail:
        return
    holder, slot_key, slot = _tail_slot(container, key)
    entry = holder.ca.items.setdefault(slot_key, [None, None, None, None])
    token = entry[slot]
    if isinstance(token, CommentToken):
        token.value = str(token.value) + tail
    else:
        entry[slot] = CommentToken("\n" + tail, CommentMark(0), None)


def _atomic_write(path: Path, text: str, expected: str) -> None:
    """Replace the file's content with `text` atomically, unless it changed since read."""
    target = path.resolve()
    try:
        if target.read_text(encoding="utf-8") != expected:
            msg = f"{path}: the file changed while it was being edited; try again"
            raise ConfigWriteError(msg)
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError as exc:
        msg = f"{path}: cannot write beside the config file: {exc}; the file is unchanged"
        raise ConfigWriteError(msg) from None
    try:
        write_bytes_atomic(target, text.encode("utf-8"), mode=mode)
    except OSError as exc:
        msg = f"{path}: writing the config file failed: {exc}; the file is unchanged"
        raise ConfigWriteError(msg) from None
