"""JSON columns are written by orjson where it can and by the standard library where it
cannot (server.db.engine.json_text), and read by the standard library: whatever goes in
comes back the same."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from server.audit import log as audit
from server.audit.models import AuditEvent
from server.db.engine import json_text

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # beyond orjson's 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # lone surrogates included: orjson refuses them
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_a_value_comes_back_as_it_went_in(value: Any) -> None:
    assert json.loads(json_text(value)) == value


def test_what_orjson_cannot_write_goes_through_the_standard_library() -> None:
    for value in ({1: "a"}, {"n": 2**80}, {"s": "\ud800"}):
        assert json_text(value) == json.dumps(value)


async def test_an_audit_events_details_go_through_a_column_and_back(app: Any) -> None:
    # What a leaf can hold (RFC 8785 refuses integers beyond 2**53 and lone surrogates).
    details = {
        "channel_id": "liaison",
        "released_to": [{"device_id": f"d{n}", "note": "é\u2028\U0001f600"} for n in range(3)],
        "big": 2**53 - 1,
    }
    async with app.state.sessionmaker() as session, session.begin():
        audit.record(
            session,
            actor=None,
            action="test.json",
            object_type="test",
            object_id="json",
            details=details,
        )
    async with app.state.sessionmaker() as session:
        stored = (
            await session.execute(select(AuditEvent).where(AuditEvent.action == "test.json"))
        ).scalar_one()
    assert stored.details == {"via": "anonymous", **details}
