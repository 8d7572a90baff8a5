"""Render the console's screens (those the snapshots take) to `screenshots/*.svg` and `*.png`.

Usage: `.venv/bin/python scripts/screenshots.py [--out screenshots] [NAME ...]`

PNG conversion needs `rsvg-convert` (apt `librsvg2-bin`) and `fonts-firacode`.
Two fixes make rsvg draw what a terminal draws: `xml:space="preserve"` on the
root element (else leading spaces vanish), and one `<text>` per braille
character (Fira Code has no braille, the fallback font's glyphs are wider than
a cell and rsvg ignores `textLength`, so runs of braille would drift right).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.widgets import TabbedContent

from dtp_console.ui.app import DtpConsoleApp
from tests.ui.attached import FrozenRemote, make_attached_app
from tests.ui.harness import SCREENS, TWIN_SCREENS, Shot, make_app, prepare

ALL_SCREENS = {**SCREENS, **TWIN_SCREENS}
#: Attached consoles (a frozen service snapshot, as the attach snapshots take it): link down?
ATTACHED = {"attached-120x40": False, "attached-down-120x40": True}

_TEXT = re.compile(r'<text ([^>]*?)x="([\d.]+)"([^>]*?)textLength="([\d.]+)"([^>]*)>([^<]*)</text>')
_BRAILLE = re.compile("[\u2800-\u28ff]")


def _split_braille(match: re.Match[str]) -> str:
    before, x, middle, length, after, text = match.groups()
    if not _BRAILLE.search(text) or len(text) < 2:
        return match.group(0)
    width = float(length) / len(text)
    return "".join(
        f'<text {before}x="{float(x) + i * width:.1f}"{middle}textLength="{width:.1f}"{after}>'
        f"{char}</text>"
        for i, char in enumerate(text)
        if char != " "
    )


def fix_svg(svg: str) -> str:
    """The SVG with the two rsvg fixes applied."""
    svg = svg.replace("<svg ", '<svg xml:space="preserve" ', 1)
    return _TEXT.sub(_split_braille, svg)


async def render(name: str, shot: Shot, out: Path) -> Path:
    """Save one screen as `out/NAME.svg`."""
    with tempfile.TemporaryDirectory() as folder:
        app = make_app(Path(folder), twins=shot.twins)
        async with app.run_test(size=shot.size) as pilot:
            await prepare(pilot, shot)
            path = out / f"{name}.svg"
            app.save_screenshot(path.name, path=str(out))
            await pilot.press("q")
    return path


async def render_attached(name: str, down: bool, out: Path) -> Path:
    """Save an attached console's first plant tab as `out/NAME.svg` (link up or down)."""
    with tempfile.TemporaryDirectory() as folder:
        app = make_attached_app(Path(folder))
        async with app.run_test(size=(120, 40)) as pilot:
            engine = app.engine
            assert isinstance(engine, FrozenRemote)
            assert isinstance(app, DtpConsoleApp)
            await engine.ready.wait()
            app.main.query_one(TabbedContent).active = "tab-plant-0"
            await pilot.pause()
            if down:
                engine.drop("the service closed the connection")
            app.refresh_now()
            await pilot.pause()
            path = out / f"{name}.svg"
            app.save_screenshot(path.name, path=str(out))
            await pilot.press("q")
    return path


def to_png(svg: Path) -> Path | None:
    """Convert with rsvg-convert; None when it is not installed."""
    if shutil.which("rsvg-convert") is None:
        return None
    png = svg.with_suffix(".png")
    fixed = fix_svg(svg.read_text(encoding="utf-8"))
    subprocess.run(["rsvg-convert", "-o", str(png)], input=fixed.encode(), check=True)
    return png


def main() -> int:
    """Render the chosen (default: all) screens."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    names = [*ALL_SCREENS, *ATTACHED]
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(names))
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown screen(s): {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or names:
        if name in ATTACHED:
            svg = asyncio.run(render_attached(name, ATTACHED[name], args.out))
        else:
            svg = asyncio.run(render(name, ALL_SCREENS[name], args.out))
        png = to_png(svg)
        print(svg, png or "(no rsvg-convert: apt install librsvg2-bin)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
