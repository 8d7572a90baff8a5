"""Values that become twinzo HTTP headers are refused at load, naming the field, never the value.

httpx encodes header values as ASCII: one pasted non-breaking space in the API
key used to raise `UnicodeEncodeError` inside a request (the key ended up on
stderr in "Task exception was never retrieved"). The config now refuses any
header value that is not printable ASCII without surrounding spaces.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dtp_console.config.loader import ConfigError, load_config
from dtp_console.config.model import ConsoleConfig, TwinzoConfig
from dtp_console.twinzo.client import parse_retry_after

#: Recognisable secret-looking values, each spoilt by one hostile character.
BAD_VALUES = {
    "nbsp": "tz-Key-Zx81\u00a0PqWv4",
    "newline": "tz-Key-Zx81\nPqWv4",
    "crlf_injection": "tz-Key-Zx81\r\nX-Evil: 1",
    "nul": "tz-Key-Zx81\x00PqWv4",
    "esc": "tz-Key-Zx81\x1b[2JPqWv4",
    "del": "tz-Key-Zx81\x7fPqWv4",
    "emoji": "tz-Key-Zx81\U0001f600PqWv4",
    "leading_space": " tz-Key-Zx81PqWv4",
    "trailing_tab": "tz-Key-Zx81PqWv4\t",
}
#: The part of every bad value that must never be echoed.
TELLTALE = "Zx81"


def _plant(**twinzo: Any) -> dict[str, Any]:
    return {"name": "Old Plant", "format": "ati_sherpa", "twinzo": {"sector_id": 2, **twinzo}}


@pytest.mark.parametrize("field", ["api_key", "client"])
@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_twinzo_header_fields_are_refused(field: str, kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TwinzoConfig.model_validate({field: BAD_VALUES[kind]})
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert "printable ASCII" in errors[0]["msg"]
    assert TELLTALE not in str(caught.value)
    assert TELLTALE not in repr(errors)


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_plant_branch_is_refused(kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ConsoleConfig.model_validate({"plants": [_plant(branch=BAD_VALUES[kind])]})
    locs = [e["loc"] for e in caught.value.errors()]
    assert ("plants", 0, "twinzo", "branch") in locs
    assert TELLTALE not in str(caught.value)


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("twinzo:\n  api_key: {value}\n", "twinzo.api_key"),
        ("twinzo:\n  client: {value}\n", "twinzo.client"),
        (
            "plants:\n  - name: Old Plant\n    format: ati_sherpa\n"
            "    twinzo: {{sector_id: 2, branch: {value}}}\n",
            "plants[0] (Old Plant).twinzo.branch",
        ),
    ],
)
@pytest.mark.parametrize("kind", ["nbsp", "newline", "esc"])
def test_load_config_names_the_field_never_the_value(
    tmp_path: Path, yaml_text: str, path: str, kind: str
) -> None:
    config = tmp_path / "console.yaml"
    # A JSON-style double-quoted YAML scalar carries every character through.
    quoted = '"' + BAD_VALUES[kind].encode("unicode_escape").decode().replace('"', '\\"') + '"'
    config.write_text(yaml_text.format(value=quoted), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    message = str(caught.value)
    assert f"{path}: " in message, message
    assert "printable ASCII" in message
    assert TELLTALE not in message
    assert TELLTALE not in repr(caught.value)


def test_env_interpolated_key_with_nbsp_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "console.yaml"
    config.write_text("twinzo:\n  api_key: ${TWINZO_API_KEY}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={"TWINZO_API_KEY": BAD_VALUES["nbsp"]})
    assert "twinzo.api_key: " in str(caught.value)
    assert TELLTALE not in str(caught.value)


@pytest.mark.parametrize("value", ["", "test-api-key", "a b", "~!@#$%^&*()_+{}|:<>?"])
def test_printable_ascii_header_values_pass(value: str) -> None:
    config = TwinzoConfig.model_validate({"api_key": value, "client": value})
    assert config.api_key.get_secret_value() == value


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "inf", "-inf", "Infinity", "nan", "NaN", "-5", "-0.5", "1e309", "1e3", "9" * 400,
        "0x10", "\u0661\u0662", "5 s", "", "   ", "\x00", "Fri, 31 Dec 9999 23:59:60 GMT",
        "Mon, 99 Foo 2100 99:99:99 GMT", "Wed, 21 Oct 2015 07:28:00", "garbage, 1 2 3",
    ],
)  # fmt: skip
def test_parse_retry_after_hostile_values(value: str) -> None:
    parsed = parse_retry_after(value)
    assert parsed is None or (math.isfinite(parsed) and parsed >= 0), parsed


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e309", "9" * 400, "\u0661\u0662"])
def test_parse_retry_after_refuses_non_numbers(value: str) -> None:
    assert parse_retry_after(value) is None


def test_parse_retry_after_reads_the_rfc_forms() -> None:
    assert parse_retry_after("86400") == 86400.0
    assert parse_retry_after(" 2 ") == 2.0
    assert parse_retry_after("0.5") == 0.5  # the sandbox sends fractions
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    far = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT")
    assert far is not None
    assert math.isfinite(far)
    assert far > 365 * 86400


def test_retry_after_cap_defaults_to_backoff_max() -> None:
    assert TwinzoConfig().retry_after_cap_s == TwinzoConfig().backoff_max_s
    assert TwinzoConfig(backoff_max_s=7.0).retry_after_cap_s == 7.0
    assert TwinzoConfig(backoff_max_s=7.0, retry_after_max_s=30.0).retry_after_cap_s == 30.0


@pytest.mark.parametrize("value", [-1, "inf", "nan", float("inf")])
def test_retry_after_cap_must_be_finite_and_non_negative(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        TwinzoConfig.model_validate({"retry_after_max_s": value})
    assert caught.value.errors()[0]["loc"] == ("retry_after_max_s",)
