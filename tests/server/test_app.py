"""What the server does at start-up."""

from __future__ import annotations

import gc

from server.app import create_app
from server.settings import Settings


async def test_start_up_freezes_what_it_made_out_of_the_collectors_reach(
    settings: Settings, clean_database: None
) -> None:
    # A full collection stops the event loop; with 1,000 connections it took 220-340 ms,
    # most of it walking what start-up made, which lives as long as the process.
    assert gc.get_freeze_count() == 0  # off unless asked for (attache-server run asks)
    app = create_app(settings.model_copy(update={"gc_freeze": True}))
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 50_000
    finally:
        gc.unfreeze()  # frozen objects are never collected: give the test process its own back
