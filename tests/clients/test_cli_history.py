"""attache read / channel share-history (issue 10, item 8): a member who joins later sees the
messages they may read waiting for a key from a member (not a verification warning), a
member's client shares them, and then they read them; a GBR member never gets a REL TO USA
message."""

from __future__ import annotations

import re

import pytest

from tests.clients.test_cli_messages import People, _fails, _ok, people
from tests.factories import World

__all__ = ["people"]  # the fixture, shared

REL_USA_GBR = "NATO SECRET//REL TO USA, GBR"
REL_USA = "NATO SECRET//REL TO USA"


def _ids(out: str) -> list[str]:
    return re.findall(r"id ([0-9a-f-]{36})", out)


async def test_a_later_member_waits_for_a_key_then_reads(people: People, world: World) -> None:
    await _ok(people.alice, "send", "--channel", "liaison", "--label", REL_USA_GBR, "for both")
    await _ok(people.alice, "send", "--channel", "liaison", "--label", REL_USA, "US only")
    dave = await world.member("dave", "USA")
    gary = await world.member("gary", "GBR")
    await _ok(people.alice, "channel", "add", "liaison", "dave")
    await _ok(people.alice, "channel", "add", "liaison", "gary")

    waiting = await _ok(dave, "read", "--channel", "liaison")
    assert waiting.count("waiting for a key from a member") == 2, waiting
    assert "WARNING" not in waiting
    assert "for both" not in waiting
    assert f"labelled {REL_USA} (as the server says)" in waiting
    gary_waiting = await _ok(gary, "read", "--channel", "liaison")
    assert gary_waiting.count("waiting for a key from a member") == 1, gary_waiting

    shared = await _ok(people.alice, "channel", "share-history", "liaison")
    assert re.search(
        r"#\d+  id [0-9a-f-]{36}  " + re.escape(REL_USA_GBR) + r": shared with 2 ", shared
    )
    assert re.search(r"#\d+  id [0-9a-f-]{36}  " + re.escape(REL_USA) + r": shared with 1 ", shared)
    assert "nothing to share in liaison" in await _ok(
        people.bob, "channel", "share-history", "liaison"
    )

    read = await _ok(dave, "read", "--channel", "liaison")
    assert "waiting for a key" not in read
    assert "for both" in read
    assert "US only" in read
    assert read.count("shared with you by alice when you joined") == 2
    gary_read = await _ok(gary, "read", "--channel", "liaison")
    assert "for both" in gary_read
    assert "US only" not in gary_read
    assert "waiting for a key" not in gary_read


async def test_only_the_creator_sets_the_history_window(people: People) -> None:
    assert "the last 30 days" in await _ok(
        people.alice, "channel", "history-window", "liaison", "30"
    )
    assert "only the channel's creator" in await _fails(
        people.bob, "channel", "history-window", "liaison", "10"
    )


@pytest.mark.parametrize("days", ["-1", "3651"])
async def test_a_window_out_of_range_is_refused_by_the_cli(people: People, days: str) -> None:
    from tests.clients.test_cli_messages import _invoke

    result = await _invoke(people.alice, "channel", "history-window", "liaison", days)
    assert result.exit_code == 2
