"""`dtp-console registry …`: scan, watch, list, show and retire twins.

`scan` registers every valid twin file and exits 1 if any file was invalid;
`list` prints an aligned table (`--json` for scripts); `deprecate` is the soft
delete, `delete` removes a twin for good.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dtp_console.cli.common import add_config_arg, load_or_exit
from dtp_console.events import Bus, LogLine, ServiceUpdated, TwinDeleted, TwinUpdated
from dtp_console.registry.config import RegistryConfig
from dtp_console.registry.discovery import Problem, TwinCatalog
from dtp_console.registry.errors import RegistryError
from dtp_console.registry.lifecycle import STATUSES
from dtp_console.registry.model import TwinRecord
from dtp_console.registry.runner import open_registry
from dtp_console.registry.service import RegistryService, SyncReport
from dtp_console.textsafe import safe_text

__all__ = ["register"]

#: Exit code when a twin file was invalid or a registry call failed.
EXIT_FAILED = 1

_Action = Callable[[RegistryService, RegistryConfig, argparse.Namespace], Awaitable[int]]


def register(sub: Any) -> None:
    """Add the `registry` command group."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "registry", help="twin registry: scan, watch, list, show, deprecate, delete"
    )
    add_config_arg(parser)
    inner = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    scan = inner.add_parser("scan", help="register every twin file; exit 1 if any is invalid")
    _root_arg(scan)
    scan.set_defaults(func=_runner(_scan))

    watch = inner.add_parser("watch", help="scan, then follow changes to the twin files")
    _root_arg(watch)
    watch.set_defaults(func=_runner(_watch))

    listing = inner.add_parser("list", help="registered twins as a table")
    listing.add_argument("--tenant", help="only this tenant")
    listing.add_argument("--status", choices=STATUSES, help="only this status")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_runner(_list))

    show = inner.add_parser("show", help="one twin with its status history")
    show.add_argument("twin_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_runner(_show))

    for name, helptext in (
        ("activate", "set a twin active (also re-activates a deprecated one)"),
        ("deprecate", "soft delete: set a twin deprecated"),
        ("delete", "hard delete: remove a twin and its history"),
    ):
        action = inner.add_parser(name, help=helptext)
        action.add_argument("twin_id", metavar="ID")
        action.set_defaults(func=_runner(_change), change=name)

    services = inner.add_parser("services", help="registered services as a table")
    services.add_argument("--category", help="only this category")
    services.add_argument("--json", action="store_true", help="print JSON")
    services.set_defaults(func=_runner(_services))


def _root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="twins folder (default: registry.twins_root)")


def _runner(action: _Action) -> Callable[[argparse.Namespace], int]:
    def _run(args: argparse.Namespace) -> int:
        config = load_or_exit(args).registry
        if getattr(args, "root", None) is not None:
            config = config.model_copy(update={"twins_root": args.root})
        try:
            return asyncio.run(_with_service(action, config, args))
        except KeyboardInterrupt:
            return 0
        except RegistryError as exc:
            print(safe_text(f"registry: {exc}"), file=sys.stderr)
            return EXIT_FAILED

    return _run


async def _with_service(action: _Action, config: RegistryConfig, args: argparse.Namespace) -> int:
    async with open_registry(config, Bus()) as service:
        return await action(service, config, args)


async def _scan(service: RegistryService, config: RegistryConfig, _args: argparse.Namespace) -> int:
    result = await asyncio.to_thread(TwinCatalog(config.twins_root).scan)
    report = await service.sync(result)
    _print_report(report)
    return 0 if report.ok else EXIT_FAILED


def _print_report(report: SyncReport) -> None:
    for problem in [*report.scan.problems, *report.failed]:
        print(safe_text(_problem_line(problem)), file=sys.stderr)
    for twin_id, unknown in report.unknown_dependencies.items():
        line = f"WARN {twin_id}: depends on unknown twins: {', '.join(unknown)}"
        print(safe_text(line), file=sys.stderr)
    for twin_id in report.deprecated:
        print(safe_text(f"INFO {twin_id}: deprecated (its file is gone)"))
    print(report.summary())


def _problem_line(problem: Problem) -> str:
    label = "ERROR" if problem.severity == "error" else "WARN"
    reason = problem.reason.replace(f"{Path.cwd()}{os.sep}", "")  # paths inside it too
    return f"{label} {_rel(problem.path)}: {problem.field}: {reason}"


def _rel(path: Path | str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


async def _watch(
    service: RegistryService, config: RegistryConfig, _args: argparse.Namespace
) -> int:
    from dtp_console.registry.watch import TwinWatcher  # watchfiles only when watching

    subscription = service.bus.subscribe()
    summarised = False

    def _first_summary(report: SyncReport) -> None:
        nonlocal summarised
        if not summarised:
            print(f"initial scan: {report.summary()}", flush=True)
            summarised = True

    watcher = TwinWatcher(
        service,
        config.twins_root,
        service.bus,
        debounce_ms=config.debounce_ms,
        resync_s=config.resync_s,
        on_report=_first_summary,
    )
    task = asyncio.create_task(watcher.run(), name="registry-watch")
    # SIGTERM (systemd, docker stop) ends the watch like Ctrl-C does.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    print(f"watching {_rel(watcher.root)} (Ctrl-C to stop)", flush=True)
    try:
        while not task.done():
            getter = asyncio.create_task(subscription.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            line = _event_line(getter.result())
            if line:
                print(safe_text(line), flush=True)
        if not task.cancelled():
            task.result()
    except FileNotFoundError as exc:
        print(safe_text(f"registry: {exc}"), file=sys.stderr)
        return EXIT_FAILED
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # stop watching before the repository closes
    return 0


def _event_line(event: object) -> str | None:
    if isinstance(event, TwinUpdated):
        twin = event.twin
        was = f"{event.previous_status} → " if event.previous_status else "new, "
        return f"{event.kind:<14} {twin.id}  {was}{twin.status}  ({event.reason})"
    if isinstance(event, TwinDeleted):
        how = "removed" if event.hard else "deprecated"
        return f"{event.kind:<14} {event.twin.id}  {how}  ({event.reason})"
    if isinstance(event, ServiceUpdated):
        return f"{event.kind:<14} {event.service.id}  {event.service.health}"
    if isinstance(event, LogLine) and event.level != "INFO":  # INFO repeats the events above
        return event.render()
    return None


async def _list(service: RegistryService, _config: RegistryConfig, args: argparse.Namespace) -> int:
    twins = await service.list_twins(tenant=args.tenant, status=args.status)
    if args.json:
        print(json.dumps([_twin_json(t) for t in twins], indent=2))
        return 0
    if not twins:
        print(
            "no twins registered" + (" matching the filter" if args.tenant or args.status else "")
        )
        return 0
    rows = [
        [
            t.id,
            t.name,
            t.tenant,
            t.status,
            t.interfaces.api or "-",
            f"unknown deps: {', '.join(t.unknown_dependencies)}" if t.unknown_dependencies else "",
        ]
        for t in twins
    ]
    print(_table(["ID", "NAME", "TENANT", "STATUS", "API", "NOTE"], rows))
    return 0


async def _show(service: RegistryService, _config: RegistryConfig, args: argparse.Namespace) -> int:
    twin = await service.get(args.twin_id)
    history = await service.history(twin.id)
    if args.json:
        data = _twin_json(twin)
        data["history"] = [h.model_dump(mode="json") for h in history]
        print(json.dumps(data, indent=2))
        return 0
    deps = twin.dependencies
    lines = [
        ("id", twin.id),
        ("name", twin.name),
        ("tenant", twin.tenant),
        ("status", twin.status),
        ("api", twin.interfaces.api or "-"),
        ("data streams", ", ".join(twin.interfaces.data_streams) or "-"),
        ("depends on", ", ".join(deps.static) or "-"),
        ("dynamic deps", ", ".join(deps.dynamic) or "-"),
        ("unknown deps", ", ".join(twin.unknown_dependencies) or "-"),
        ("metadata", json.dumps(twin.metadata, sort_keys=True)),
        ("source", _rel(twin.source) if twin.source else "-"),
        ("created", twin.created_at.isoformat(timespec="seconds")),
        ("updated", twin.updated_at.isoformat(timespec="seconds")),
    ]
    for key, value in lines:
        print(f"{key + ':':<14}{safe_text(value)}")
    print("history:")
    for h in history:
        start = h.from_status or "(new)"
        when = h.at.isoformat(timespec="seconds")
        print(f"  {when}  {start} → {h.to_status}  ({safe_text(h.reason)})")
    return 0


async def _change(
    service: RegistryService, _config: RegistryConfig, args: argparse.Namespace
) -> int:
    if args.change == "delete":
        removed = await service.delete(args.twin_id)
        print(f"{safe_text(removed.id)}: removed")
        _note_file(removed, "the next scan registers it again")
        return 0
    method = service.activate if args.change == "activate" else service.deprecate
    twin = await method(args.twin_id)
    print(f"{safe_text(twin.id)}: {twin.status}")
    if args.change == "deprecate":
        _note_file(
            twin,
            "editing it or the next scan re-activates the twin"
            " (delete the file, or set metadata.status: deprecated in it, to retire it)",
        )
    return 0


def _note_file(twin: TwinRecord, consequence: str) -> None:
    """Tell the operator when the twin's file would bring it back."""
    if twin.source and Path(twin.source).is_file():
        print(f"note: {_rel(twin.source)} still exists; {consequence}")


async def _services(
    service: RegistryService, _config: RegistryConfig, args: argparse.Namespace
) -> int:
    found = await service.list_services(category=args.category)
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        return 0
    if not found:
        print("no services registered")
        return 0
    rows = [[s.id, s.name, s.category, s.tenant, s.health, s.health_detail] for s in found]
    print(_table(["ID", "NAME", "CATEGORY", "TENANT", "HEALTH", "DETAIL"], rows))
    return 0


def _twin_json(twin: TwinRecord) -> dict[str, Any]:
    return twin.model_dump(mode="json")


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; trailing spaces trimmed.

    Cells are registry data any API client may have written: control, C1 and bidi
    characters are escaped visibly before they reach the operator's terminal.
    """
    rows = [[safe_text(cell, 200) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)
