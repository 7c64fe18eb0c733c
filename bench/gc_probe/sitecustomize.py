"""Run at start-up by a Python whose path holds this folder (``PYTHONPATH``): with
``ATTACHE_BENCH_GC_LOG`` set, appends one line per collection of the oldest generation (the
garbage collector's long pauses, during which the event loop runs nothing) to that file: wall
time at its end, its duration in seconds, objects collected. bench/many_rooms.py starts its
server so.
"""

import gc
import os
import time

_path = os.environ.get("ATTACHE_BENCH_GC_LOG")
if _path:
    _log = open(_path, "a", buffering=1, encoding="utf-8")  # open while the process lives
    _started = [0.0]

    def _timed(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - _started[0]
            _log.write(f"{time.time():.3f} {pause:.6f} {info['collected']}\n")

    gc.callbacks.append(_timed)
