"""Time a test does not have to wait out: retries' backoff and Retry-After, and poll intervals.

`VirtualTime` stands in for build_service's `sleep` and `clock`: a sleep returns at once (after a
checkpoint, so other tasks run) and moves the clock on by what it was asked to wait. The clock is
the real monotonic clock plus every skipped second, so a deadline still counts real time spent.
"""

from __future__ import annotations

import time
from typing import Any

import anyio


class VirtualTime:
    def __init__(self) -> None:
        self.skipped = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.skipped += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()

    def clock(self) -> float:
        return time.monotonic() + self.skipped

    @property
    def hooks(self) -> dict[str, Any]:
        """`serve(env, **VirtualTime().hooks)`: the service's sleep and clock."""
        return {"sleep": self.sleep, "clock": self.clock}
