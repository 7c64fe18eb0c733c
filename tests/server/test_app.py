"""What the server does at start-up."""

from __future__ import annotations

import gc

from server.app import YOUNG_ALLOCATIONS, create_app
from server.settings import Settings


async def test_start_up_freezes_what_it_made_out_of_the_collectors_reach(
    settings: Settings, clean_database: None
) -> None:
    # A full collection stops the event loop; with 1,000 connections it took 220-340 ms,
    # most of it walking what start-up made, which lives as long as the process.
    assert gc.get_freeze_count() == 0  # off unless asked for (attache-server run asks)
    before = gc.get_threshold()
    app = create_app(settings.model_copy(update={"gc_freeze": True}))
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 50_000
            # Short-lived objects die young rather than being moved towards the oldest
            # generation, whose growth sets off the full collections that stop the loop.
            assert gc.get_threshold() == (YOUNG_ALLOCATIONS, *before[1:])
        assert gc.get_threshold() == before  # the process's own again once the app stopped
    finally:
        gc.unfreeze()  # frozen objects are never collected: give the test process its own back
        gc.set_threshold(*before)


async def test_an_app_that_does_not_freeze_leaves_the_collector_alone(
    settings: Settings, clean_database: None
) -> None:
    before = gc.get_threshold()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
