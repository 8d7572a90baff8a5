"""The HTTP API attacked from outside: hostile headers, ids and bodies over real HTTP.

Each test here was first written against a defect it reproduced (a 500 from a header,
a key file anyone may read, …); what held up under attack is listed in the module
docstrings of `tests/integration/test_api_*.py` and the helper's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.api import ApiRig, api_rig, auth

pytestmark = pytest.mark.integration

STREAM = "/api/portal/stream"


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    async with api_rig(tmp_path) as rig:
        yield rig


@pytest.mark.parametrize("seq", ["\u00b2", "\u0661", "\uff11", "1\u00b2", "-1", "+1", " 1"])
async def test_a_last_event_id_with_non_ascii_digits_is_a_gap_never_a_500(
    rig: ApiRig, seq: str
) -> None:
    # `str.isdigit()` is true for '²' (int() refuses it) and for Arabic-Indic digits
    # (int() reads them): neither is an id this server wrote.
    last = f"{rig.server.hub.last_id.rpartition('-')[0]}-{seq}"
    headers = {**auth("viewer-a"), "Last-Event-ID": last}
    async with rig.session.get(rig.url + STREAM, headers=headers) as resp:
        assert resp.status == 200
        opening = await resp.content.readuntil(b"data: {\"resync\": true}\n\n")
        assert b"event: stream.gap" in opening
    assert rig.server.stats.server_errors == 0
