"""A remembered principal is attached to the request's session without a query, and a
session that already holds its rows keeps the instances it holds."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from server.auth.service import access_principal
from server.directory.models import User
from server.errors import AuthenticationRequired
from tests.factories import World


async def test_a_remembered_principal_joins_the_session_without_a_query(world: World) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    token = alice.client.token
    assert token is not None
    async with world.app.state.sessionmaker() as session:
        await access_principal(session, token)  # read once, remembered
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    engine = world.app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        async with world.app.state.sessionmaker() as session:
            first = await access_principal(session, token)
            again = await access_principal(session, token)  # the session holds the rows now
            loaded = await session.get(User, first.user.id)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements == []
    assert again.user is first.user
    assert again.device is first.device
    assert loaded is first.user
    assert first.user.username == "alice"


async def test_a_reading_principal_is_shared_detached_and_forgotten_at_logout(
    world: World,
) -> None:
    await world.nation("USA")
    alice = await world.member("alice", "USA")
    token = alice.client.token
    assert token is not None
    async with world.app.state.sessionmaker() as session:
        await access_principal(session, token)  # read once, remembered
    async with world.app.state.sessionmaker() as one, world.app.state.sessionmaker() as two:
        first = await access_principal(one, token, reading=True)
        second = await access_principal(two, token, reading=True)
        # The same instances for every request, and no session's: none attaches or expires them.
        assert second.user is first.user
        assert second.device is first.device
        assert first.user not in one
        assert first.user not in two
        assert first.user.username == "alice"
        assert first.device.id == alice.device_id
    await alice.client.logout()
    async with world.app.state.sessionmaker() as session:
        with pytest.raises(AuthenticationRequired):
            await access_principal(session, token, reading=True)
