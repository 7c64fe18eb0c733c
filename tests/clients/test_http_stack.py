"""What the SDK's HTTP stack needs to stay cheap per request."""

from __future__ import annotations

import importlib.util
import sys

from httpcore._synchronization import current_async_library


async def test_httpcore_finds_its_event_loop_without_an_import_search() -> None:
    # httpcore asks sniffio which event loop runs it several times per request; without
    # sniffio installed each ask is a failed import that searches sys.path again (~95 µs,
    # about 3 V a send in the channel benchmark). A declared dependency (pyproject.toml).
    assert importlib.util.find_spec("sniffio") is not None
    assert current_async_library() == "asyncio"
    assert "sniffio" in sys.modules
