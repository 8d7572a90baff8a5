"""Fuzzing of the config loader (hypothesis).

`load_config(path, environ=...)` must either return a `ConsoleConfig` or raise
`ConfigError` whose message starts with the file name; never another exception
type, never a traceback in the message. Inputs: arbitrary bytes and text,
generated YAML/JSON documents over the config's own vocabulary, text and tree
mutations of `config/console.yaml`, hostile environments and legacy HiveMQ
JSON, and explicit deep-nesting, huge-number, NaN/Inf and 1 MB documents.
An accepted config must also survive what `config show` does with it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dtp_console.config.loader import ConfigError, load_config, masked_dump
from dtp_console.config.model import ConsoleConfig

REPO = Path(__file__).resolve().parents[2]
DEMO_TEXT = (REPO / "config" / "console.yaml").read_text(encoding="utf-8")
DEMO_TREE: dict[str, Any] = yaml.safe_load(DEMO_TEXT)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty working directory: no `.env` or `config/hivemq_config.json` leaks in."""
    directory = tmp_path_factory.mktemp("config-fuzz")
    previous = Path.cwd()
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(previous)


def load(directory: Path, content: str | bytes, env: dict[str, str] | None = None) -> object:
    """Load `content` as a config file; the config, or the `ConfigError` (checked)."""
    path = directory / "console.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path, environ=env or {})
    except ConfigError as exc:
        check_error(exc, path)
        return exc
    assert isinstance(config, ConsoleConfig)
    # What `config show` and `config show --json` do with it.
    json.dumps(masked_dump(config))
    repr(config)
    return config


def check_error(exc: ConfigError, path: Path) -> None:
    """A config error names the file, lists its problems, and carries no traceback."""
    text = str(exc)
    assert exc.source == str(path)
    assert text.startswith(f"{path}: "), text[:200]
    assert exc.problems
    assert all(isinstance(p, str) and p for p in exc.problems)
    assert "Traceback" not in text
    # No chained internals: a printed error never drags a parser's traceback along.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


# -- vocabulary and values -------------------------------------------------------------


def _keys(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(str(key))
            found |= _keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= _keys(value)
    return found


_FULL = ConsoleConfig.model_validate(
    {
        **DEMO_TREE,
        "plants": [
            {**DEMO_TREE["plants"][0], "generic": {}, "vendor_label": "x"},
            *DEMO_TREE["plants"][1:],
        ],
    }
)
VOCABULARY = sorted(_keys(_FULL.model_dump()) | _keys(DEMO_TREE) | {"A", "TX", "pasword"})

_HOSTILE_TEXT = [
    "${TWINZO_PASSWORD}",
    "${UNSET_VAR}",
    "${X:-}",
    "${X:-${Y}}",
    "$$",
    "${",
    "embedded",
    "0.0.0.0",
    "1e400",
    ".nan",
    "-.inf",
    "0x" + "F" * 40,
    "\x00",
    "",
    " ",
    "~",
    "3.1.1",
    "5",
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([10**400, -(10**400), 65_535, 65_536, 0, -1]),
    st.floats(),  # NaN and ±Inf; YAML writes them as .nan/.inf
    st.sampled_from(_HOSTILE_TEXT),
    st.text(max_size=16),
)
_documents = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


def _dump(document: Any, style: str) -> str:
    if style == "json":
        return json.dumps(document, allow_nan=True)
    return yaml.safe_dump(document, default_flow_style=style == "flow", allow_unicode=True)


_ENV_KEYS = [
    "TWINZO_CLIENT",
    "TWINZO_PASSWORD",
    "TWINZO_API_KEY",
    "LOG_EVERY_N",
    "ATI_MQTT_HOST",
    "ATI_MQTT_PORT",
    "ATI_MQTT_USERNAME",
    "ATI_MQTT_PASSWORD",
    "ATI_MQTT_TOPIC",
    "AFFINE_A",
    "AFFINE_D",
    "AFFINE_TX",
    "UNSET_VAR",
    "X",
    "Y",
]
_env_values = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "nan", "inf", "1e400", "9" * 5000, "${X}", "abc"]),
    st.text(max_size=12).filter(lambda s: "\x00" not in s),
)
environments = st.dictionaries(st.sampled_from(_ENV_KEYS), _env_values, max_size=6)

# -- arbitrary input -------------------------------------------------------------------


@settings(max_examples=400)
@given(content=st.binary(max_size=1500))
def test_arbitrary_bytes(workdir: Path, content: bytes) -> None:
    load(workdir, content)


@settings(max_examples=300)
@given(content=st.text(max_size=400))
def test_arbitrary_text(workdir: Path, content: str) -> None:
    load(workdir, content)


@settings(max_examples=400)
@given(
    document=_documents,
    style=st.sampled_from(["block", "flow", "json"]),
    env=environments,
)
def test_generated_documents(workdir: Path, document: Any, style: str, env: dict[str, str]) -> None:
    load(workdir, _dump(document, style), env)


# -- mutations of the demo config --------------------------------------------------------

_SNIPPETS = [
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    "? ",
    "&a ",
    "*a",
    "!!python/object:os.system ",
    "!!binary ",
    "!!set ",
    "${X}",
    "1e400",
    "1" + "0" * 400,
    "0x" + "F" * 5000,
    ".nan",
    ".inf",
    "\t",
    "\x00",
    "\ufeff",
    "'",
    '"',
    "#",
    "\n  ",
    "<<: *a",
]


@st.composite
def text_mutations(draw: st.DrawFn) -> str:
    """`console.yaml` with a few character- and line-level edits."""
    text = DEMO_TEXT
    for _ in range(draw(st.integers(1, 5))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup_line", "drop_line"]))
        at = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:at] + draw(st.sampled_from(_SNIPPETS) | st.text(max_size=4)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        elif op == "replace":
            text = text[:at] + draw(st.sampled_from(_SNIPPETS)) + text[at + 1 :]
        elif op == "dup_line":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        else:
            del lines[draw(st.integers(0, len(lines) - 1))]
            text = "\n".join(lines)
    return text


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        found.append((*prefix, key))
        found += _paths(value, (*prefix, key))
    return found


@st.composite
def tree_mutations(draw: st.DrawFn) -> dict[str, Any]:
    """The demo config as data, with a few values replaced, removed or added."""
    tree = copy.deepcopy(DEMO_TREE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(tree)))
        parent: Any = tree
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add_key"]))
        if op == "replace":
            parent[path[-1]] = draw(_documents)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(VOCABULARY))] = draw(_scalars)
    return tree


@settings(max_examples=400)
@given(text=text_mutations(), env=environments)
def test_text_mutations_of_demo_config(workdir: Path, text: str, env: dict[str, str]) -> None:
    load(workdir, text, env)


@settings(max_examples=400)
@given(
    tree=tree_mutations(),
    style=st.sampled_from(["block", "flow", "json"]),
    env=environments,
)
def test_tree_mutations_of_demo_config(
    workdir: Path, tree: dict[str, Any], style: str, env: dict[str, str]
) -> None:
    load(workdir, _dump(tree, style), env)


@settings(max_examples=200)
@given(hivemq=_documents | st.text(max_size=50), env=environments)
def test_legacy_hivemq_json(workdir: Path, hivemq: Any, env: dict[str, str]) -> None:
    """A hitech plant pulls in the legacy HiveMQ JSON, whatever it holds."""
    legacy = workdir / "hivemq.json"
    legacy.write_text(hivemq if isinstance(hivemq, str) else json.dumps(hivemq, allow_nan=True))
    load(workdir, DEMO_TEXT, {**env, "DTP_HIVEMQ_CONFIG": str(legacy)})


def test_the_fuzzed_base_is_valid(workdir: Path) -> None:
    """The mutations start from a config that loads (so they test more than the parser)."""
    assert isinstance(load(workdir, DEMO_TEXT), ConsoleConfig)


# -- hostile documents, explicitly -------------------------------------------------------

_PLANT = "plants:\n- name: p\n  format: hitech\n  twinzo: {sector_id: 1}\n"

HOSTILE: dict[str, str | bytes] = {
    "deep_flow_list": "[" * 10_000,
    "deep_flow_list_closed": "a: " + "[" * 10_000 + "]" * 10_000,
    "deep_flow_map": "a: " + "{b: " * 5_000 + "1" + "}" * 5_000,
    "deep_block_map": "".join(" " * i + f"k{i}:\n" for i in range(3_000)),
    "deep_block_list": "".join(" " * (2 * i) + "-\n" for i in range(3_000)),
    "deep_json": "{" + '"a": {' * 10_000,
    "deep_but_parseable": "plants: " + "[" * 200 + "]" * 200,
    "int_10e400_port": _PLANT + "  broker: {port: 1" + "0" * 400 + "}\n",
    "int_10e400_float": _PLANT + "  movement_threshold_mm: 1" + "0" * 400 + "\n",
    "int_10e400_affine": _PLANT + "  affine: {A: 1" + "0" * 400 + "}\n",
    "int_5000_digits": "logging: {log_every_n: " + "9" * 5_000 + "}\n",
    "hex_5000_digits": _PLANT + "  broker: {port: 0x" + "F" * 5_000 + "}\n",
    "float_1e400": _PLANT + "  affine: {A: 1e400, D: 1e400}\n",
    "nan_affine": _PLANT + "  affine: {A: .nan}\n",
    "inf_bounds": _PLANT + "  bounds: {x_min: -.inf, x_max: .inf, y_min: 0, y_max: .nan}\n",
    "inf_protocol": _PLANT + "  broker: {protocol: .inf}\n",
    "nan_protocol": _PLANT + "  broker: {protocol: .nan}\n",
    "nan_timeouts": "twinzo: {timeout_s: .nan, backoff_max_s: .inf}\n",
    "wrong_section_types": "twinzo: [1, 2]\nlogging: 5\nsandbox: abc\nstores: []\n",
    "wrong_plant_types": _PLANT + "  broker: [1]\n  affine: abc\n  device_map: [a, b]\n",
    "negative_topic_level": _PLANT.replace("hitech", "generic")
    + "  generic: {id_topic_level: -9}\n",
    "top_level_list": "- 1\n- 2\n",
    "top_level_scalar": "42\n",
    "empty": "",
    "comments_only": "# nothing\n",
    "python_tag": "a: !!python/object/apply:os.system [echo hi]\n",
    "undefined_alias": "a: *nope\n",
    "merge_keys": "x: &x {client: a}\ntwinzo:\n  <<: *x\n",
    "set_section": "twinzo: !!set {a, b}\n",
    "binary_value": "twinzo: {client: !!binary aGVsbG8=}\n",
    "date_value": "twinzo: {client: 2020-01-01}\n",
    "non_string_keys": "{1: 2, [1]: 3}\n",
    "duplicate_plants": _PLANT + "- {name: p, format: hitech, twinzo: {sector_id: 1}}\n",
    "nul_in_path": 'stores: {sqlite_path: "a\\0b"}\nlogging: {file: "\\0"}\n',
    "megabyte_string": 'twinzo: {client: "' + "x" * 1_000_000 + '"}\n',
    "megabyte_bad_string": "twinzo: {client: [" + "'" + "x" * 1_000_000 + "']}\n",
    "megabyte_key": "x" * 1_000_000 + ": 1\n",
    "many_plants": "plants:\n" + "- {name: p, format: hitech, twinzo: {sector_id: 1}}\n" * 2_000,
    "not_utf8": b"twinzo: {client: \xff\xfe}\n",
    "utf16": "twinzo: {client: a}\n".encode("utf-16"),
    "nul_bytes": b"\x00" * 1_000,
    "random_megabyte": bytes(range(256)) * 4_096,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents(workdir: Path, name: str) -> None:
    load(workdir, HOSTILE[name])


@pytest.mark.parametrize(
    "name", ["deep_flow_list", "int_5000_digits", "inf_protocol", "wrong_section_types"]
)
def test_regressions_are_config_errors(workdir: Path, name: str) -> None:
    """These escaped as RecursionError, ValueError, OverflowError and TypeError."""
    assert isinstance(load(workdir, HOSTILE[name]), ConfigError)


@pytest.mark.parametrize(
    "name", ["float_1e400", "nan_affine", "inf_bounds", "negative_topic_level"]
)
def test_nonsense_numbers_are_refused(workdir: Path, name: str) -> None:
    """A non-finite transform or floor, or a negative topic level, is a config error."""
    assert isinstance(load(workdir, HOSTILE[name]), ConfigError)


def test_missing_file_and_directory(workdir: Path) -> None:
    for path in (workdir / "nope.yaml", workdir):
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        assert str(caught.value).startswith(f"{path}: ")


def test_huge_value_is_not_echoed_whole(workdir: Path) -> None:
    """A rejected value is shown shortened, not as a megabyte of error message."""
    error = load(workdir, "twinzo: {client: 7}\nx: '" + "y" * 1_000_000 + "'\n")
    assert isinstance(error, ConfigError)
    assert len(str(error)) < 1_000
