"""Find twin files under a root, parse and normalise them, and resolve duplicate ids.

One bad file never stops the others: every problem names its file, the field
and the reason. Two files claiming one id: the first in path order (compared
folder by folder) wins, and the other is reported naming both paths.

`TwinCatalog` keeps the parsed files, so the watcher re-reads only what changed.

A twin file (or a folder on its way) that is a symlink leading outside the twins
folder is refused, not followed: whoever can write to `twins/` could otherwise make
the registry read — and echo in its warnings — any file the console may read. A file
larger than `MAX_TWIN_FILE_BYTES` is refused without reading it whole (a 150 MB file
took 5.5 s and its size in memory twice over).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from dtp_console import yamlsafe
from dtp_console.registry.compose import COMPOSE_FILE_NAMES, ComposeError
from dtp_console.registry.model import TwinFile, TwinSpec, normalise
from dtp_console.yamlsafe import too_big

__all__ = [
    "MAX_TWIN_FILE_BYTES",
    "TWIN_FILE_NAMES",
    "ParsedFile",
    "Problem",
    "ScanResult",
    "TwinCatalog",
    "parse_twin_file",
    "scan",
]

#: File names that hold a twin.
TWIN_FILE_NAMES = ("twin.yaml", "twin.yml", "twin.json")

#: Larger twin files are refused unread (real ones are a few KiB).
MAX_TWIN_FILE_BYTES = 1024 * 1024

#: Folders never searched (besides hidden ones).
_SKIPPED_DIRS = frozenset({"node_modules", "__pycache__"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with one file: where, which field, why."""

    path: Path
    """The file."""
    field: str
    """Dotted field path (`interfaces.data_streams[0]`), or `<file>` for the whole file."""
    reason: str
    """What is wrong, in words."""
    severity: Literal["error", "warning"] = "error"
    """`error`: the twin was not registered; `warning`: registered anyway."""

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """One twin file read: its twin when it is valid, and what was wrong with it."""

    path: Path
    twin: TwinSpec | None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The twins under a root, one per id, and every problem found."""

    root: Path
    """The searched folder (absolute)."""
    files: int
    """Twin files found."""
    twins: dict[str, TwinSpec]
    """Valid twins by id, in path order of their files."""
    sources: dict[str, Path]
    """The file each twin comes from."""
    invalid: frozenset[Path]
    """Files that exist but could not be read as a twin (their ids are unknown)."""
    problems: tuple[Problem, ...] = field(default=())
    """Errors and warnings, in path order."""

    @property
    def errors(self) -> list[Problem]:
        """The problems that kept a file from registering."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        """Whether every file registered."""
        return not self.errors


def parse_twin_file(
    path: Path, environ: Mapping[str, str] | None = None, root: Path | None = None
) -> ParsedFile:
    """Read, validate and normalise one twin file; never raises for bad content.

    With `root`, a file whose real path is outside `root` (through a symlink) is refused.
    """
    env = os.environ if environ is None else environ
    if root is not None and not path.resolve().is_relative_to(root.resolve()):
        reason = (
            f"a symlink to {path.resolve()}, outside the twins folder {root.resolve()};"
            " not followed (copy the file into the twins folder instead)"
        )
        return _bad(path, "<file>", reason)
    try:
        text = _read_bounded(path)
    except (OSError, UnicodeDecodeError) as exc:
        return _bad(path, "<file>", f"cannot read: {exc}")
    except _TooLargeError as exc:
        return _bad(path, "<file>", str(exc))
    try:
        data = _load(path, text)
    except ValueError as exc:
        return _bad(path, "<file>", str(exc))
    if data is None:
        return _bad(path, "<file>", "the file is empty")
    if not isinstance(data, dict):
        return _bad(path, "<file>", f"the top level must be a mapping, not {type(data).__name__}")
    try:
        raw = TwinFile.model_validate(data)
    except ValidationError as exc:
        problems = tuple(Problem(path, loc, reason) for loc, reason in _validation_items(exc))
        return ParsedFile(path, None, problems)
    try:
        return ParsedFile(path, normalise(raw, path.parent, env))
    except ComposeError as exc:
        warning = Problem(
            exc.path, exc.field, f"{exc.reason}; interfaces.api left unset", "warning"
        )
        return ParsedFile(path, normalise(raw, path.parent, env, infer_api=False), (warning,))


def scan(root: Path, environ: Mapping[str, str] | None = None) -> ScanResult:
    """Every twin under `root` (one full pass)."""
    return TwinCatalog(root, environ).scan()


class TwinCatalog:
    """The parsed twin files under a root, refreshed file by file."""

    def __init__(self, root: Path, environ: Mapping[str, str] | None = None) -> None:
        self.root = root.resolve()
        self._environ = environ
        self._files: dict[Path, ParsedFile] = {}

    def scan(self) -> ScanResult:
        """Forget everything and read every twin file under the root."""
        self._files = {}
        if not self.root.is_dir():
            missing = Problem(self.root, "<root>", "the twins folder does not exist")
            return ScanResult(self.root, 0, {}, {}, frozenset(), (missing,))
        for path in self._walk(self.root):
            self._files[path] = parse_twin_file(path, self._environ, self.root)
        return self.result()

    def update(self, changed: Iterable[Path]) -> ScanResult:
        """Re-read what `changed` paths affect (files, compose files, folders) and resolve."""
        for raw_path in changed:
            path = Path(os.path.abspath(raw_path))  # keeps symlinks as given
            if not path.is_relative_to(self.root) or self._hidden(path):
                continue
            if path.name in TWIN_FILE_NAMES:
                self._refresh(path)
            elif path.name in COMPOSE_FILE_NAMES:
                for name in TWIN_FILE_NAMES:
                    self._refresh(path.parent / name)
            elif path.is_dir():
                # Files known under it are re-read too: a folder removed and recreated
                # may hold fewer files than it did (their own events can be lost).
                known = [p for p in self._files if p.is_relative_to(path)]
                for found in dict.fromkeys([*known, *self._walk(path)]):
                    self._refresh(found)
            elif not path.exists():
                for gone in [p for p in self._files if p.is_relative_to(path)]:
                    del self._files[gone]
        return self.result()

    def result(self) -> ScanResult:
        """The twins as of the last read, duplicates resolved."""
        ordered = sorted(self._files.values(), key=lambda f: self._order(f.path))
        twins: dict[str, TwinSpec] = {}
        sources: dict[str, Path] = {}
        invalid: set[Path] = set()
        problems: list[Problem] = []
        for parsed in ordered:
            problems.extend(parsed.problems)
            if parsed.twin is None:
                invalid.add(parsed.path)
                continue
            twin_id = parsed.twin.id
            if twin_id in twins:
                reason = (
                    f"duplicate id {twin_id!r}: {sources[twin_id]} defines it too and wins "
                    "(first in path order); this file was not registered"
                )
                problems.append(Problem(parsed.path, "@id", reason))
                continue
            twins[twin_id] = parsed.twin
            sources[twin_id] = parsed.path
        return ScanResult(
            self.root, len(ordered), twins, sources, frozenset(invalid), tuple(problems)
        )

    def _refresh(self, path: Path) -> None:
        if path.is_file():
            self._files[path] = parse_twin_file(path, self._environ, self.root)
        else:
            self._files.pop(path, None)

    def _order(self, path: Path) -> tuple[str, ...]:
        return path.relative_to(self.root).parts

    def _hidden(self, path: Path) -> bool:
        parts = path.relative_to(self.root).parts[:-1]
        return any(p.startswith(".") or p in _SKIPPED_DIRS for p in parts)

    @staticmethod
    def _walk(top: Path) -> Iterator[Path]:
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
            for name in TWIN_FILE_NAMES:
                if name in files:
                    yield Path(folder) / name


class _TooLargeError(Exception):
    pass


def _read_bounded(path: Path, limit: int = MAX_TWIN_FILE_BYTES) -> str:
    """The file's text; `_TooLargeError` past `limit` bytes, read no further than that."""
    # O_NONBLOCK: a FIFO named twin.yaml must not hang the scan on open.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            msg = "not a regular file"
            raise _TooLargeError(msg)
        if info.st_size > limit:
            msg = f"{info.st_size:,} bytes, more than the {limit:,} a twin file may have; not read"
            raise _TooLargeError(msg)
        data = stream.read(limit + 1)  # it may grow between fstat and read
    if len(data) > limit:
        msg = f"more than the {limit:,} bytes a twin file may have; not read"
        raise _TooLargeError(msg)
    return data.decode("utf-8")


def _bad(path: Path, where: str, reason: str) -> ParsedFile:
    return ParsedFile(path, None, (Problem(path, where, reason),))


def _load(path: Path, text: str) -> Any:
    """Parsed JSON or YAML; ValueError with line and column on a syntax error."""
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
            raise ValueError(msg) from None
    try:
        data = yamlsafe.load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        hint = ' (quote keys that start with @: "@id":)' if _char_at(text, mark) == "@" else ""
        msg = f"{where}invalid YAML: {exc.problem}{hint}"
        raise ValueError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"invalid YAML: {exc}"
        raise ValueError(msg) from None
    except RecursionError:
        msg = "invalid YAML: nested too deeply"
        raise ValueError(msg) from None
    if (problem := too_big(data)) is not None:
        raise ValueError(problem)
    return data


def _char_at(text: str, mark: Any) -> str:
    """The character a YAML error points at ('' when out of range)."""
    if mark is None:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column] if mark.column < len(line) else ""


def _validation_items(error: ValidationError) -> Iterator[tuple[str, str]]:
    for item in error.errors(include_url=False):
        loc = ""
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        reason = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        # An unknown key's value is not echoed: it may be a misspelt `password:`.
        shown = item["type"] not in {"missing", "extra_forbidden"}
        if shown and not isinstance(given, dict | list) and given is not None:
            reason += f" (got {given!r})"
        yield loc or "<file>", reason
