"""Generate docs/configuration.md from the config model's field docstrings.

Run `python scripts/gen_config_doc.py` after changing the model; a test fails
when the committed file is stale (`--check`).
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from dtp_console.config.model import ConsoleConfig

OUT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

HEADER = """# Configuration reference

Generated from the config model (`dtp_console/config/model.py` and the models it
uses) by `scripts/gen_config_doc.py`; do not edit by hand. Every mapping rejects
unknown keys. Strings may use `${VAR}` and `${VAR:-default}`; `.env` is read
from the working directory and beside the config file. Secrets are masked in
`dtp-console config show` and everywhere else they are shown.
"""


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def _type_name(annotation: object) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(_type_name(a) for a in typing.get_args(annotation)).replace(
            "NoneType", "None"
        )
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(annotation))
    return text.replace("NoneType", "None")


def _default(field: typing.Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, SecretStr):
            return '`""` (secret)'
        return f"`{value!r}`" if value not in (None, "") else ("—" if value is None else '`""`')
    if field.default_factory is not None:
        value = field.default_factory()
        return "(section)" if isinstance(value, BaseModel) else f"`{value!r}`"
    return "**required**"


def render() -> str:
    """The whole document."""
    lines = [HEADER]
    seen: set[type[BaseModel]] = set()
    queue: list[tuple[str, type[BaseModel]]] = [("(top level)", ConsoleConfig)]
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        lines += [
            f"\n## `{path}`\n",
            f"{doc}\n",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for name, field in model.model_fields.items():
            description = " ".join((field.description or "").split()).replace("|", "\\|")
            type_name = _type_name(field.annotation).replace("|", "\\|")
            lines.append(f"| `{name}` | {type_name} | {_default(field)} | {description} |")
            for sub in _models(field.annotation):
                child = f"{path}.{name}" if path != "(top level)" else name
                if typing.get_origin(field.annotation) is list:
                    child += "[]"
                queue.append((child, sub))
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write the document, or with `--check` fail when it is stale."""
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python scripts/gen_config_doc.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
