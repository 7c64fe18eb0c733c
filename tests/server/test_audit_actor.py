"""The audit query's ``actor`` filter names a user by id or username, as every path and body
does (PROTOCOL.md §17.1, issue 10 item 6); a name that is no user's is 404, not an empty page."""

from __future__ import annotations

from typing import Any

import pytest

from clients.sdk import ApiError
from tests.factories import World


async def test_actor_by_username_or_id_and_an_unknown_one_is_404(world: World) -> None:
    await world.nation("USA")
    await world.nation("GBR")
    alice = await world.member("alice", "USA")
    bob = await world.member("bob", "GBR")
    auditor = await world.member("audrey", None, roles=("auditor",))
    await alice.client.create_channel("liaison", "NATO SECRET")
    await alice.client.add_member("liaison", "bob")
    await bob.client.create_channel("gbr-only", "NATO SECRET")

    async def events(actor: str) -> list[dict[str, Any]]:
        page = await auditor.client.request(
            "GET", "/v1/audit/events", params={"actor": actor, "action": "channel.create"}
        )
        return list(page["events"])

    by_name = await events("alice")
    assert [e["event"]["actor"]["user"] for e in by_name] == [alice.user.id]
    assert by_name == await events(alice.user.id)
    assert [e["event"]["actor"]["user"] for e in await events("bob")] == [bob.user.id]

    with pytest.raises(ApiError) as unknown:
        await events("alicia")
    assert unknown.value.status == 404
    assert unknown.value.problem["user"] == "alicia"
    assert "alicia" in unknown.value.detail
