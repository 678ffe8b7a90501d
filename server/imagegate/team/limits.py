"""Upstream limits every worker of a deployment respects together: how many calls may be in flight at
a provider (and at one model there), and how many may start in a minute (catalog `limits`, a
`Throttle`; BFL: 24 active tasks, 6 for Kontext max).

A call takes a slot of each limit that applies, provider first, before its upstream request and
holds it until the adapter has its answer (for an async API: until its task is done); past a limit
it waits for a slot rather than failing, telling the agent why it waits. In one process the slots are
anyio limiters; with Redis they are leases in a sorted set (member: the holder, score: when its lease
lapses), taken and renewed by Lua scripts on the server's clock, so four workers on three hosts count
as one and a worker that dies gives its slots back when their leases lapse. Starts per minute are a
sliding window of start times, the same way.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from ..catalog import Catalog
from ..catalog.spec import Throttle
from .backend import Keys

if TYPE_CHECKING:
    from .backend import Redis

__all__ = ["Limit", "Limits", "MemoryLimits", "RedisLimits", "limits_of"]

log = logging.getLogger("imagegate")
Say = Callable[[str], Awaitable[None]]
WINDOW_SECONDS = 60.0
MIN_WAIT, MAX_WAIT = 0.05, 0.25
"""How long a waiter sleeps between tries for a slot held elsewhere (doubling, with jitter)."""


@dataclass(frozen=True)
class Limit:
    """One limit a call is under: its name ("bfl", "bfl/flux-kontext-max") and numbers."""

    name: str
    concurrent: int | None
    per_minute: int | None


def limits_of(catalog: Catalog, provider: str, model: str) -> list[Limit]:
    """The limits a call of `model` at `provider` is under, the provider's first."""
    spec = catalog.providers.get(provider)
    if spec is None:
        return []
    found: list[tuple[str, Throttle | None]] = [(provider, spec.limits)]
    found += [(f"{provider}/{o.model}", o.limits) for o in spec.offerings if o.model == model][:1]
    return [
        Limit(name, t.concurrent, t.per_minute)
        for name, t in found
        if t is not None and (t.concurrent or t.per_minute)
    ]


class Limits(Protocol):
    """MemoryLimits or RedisLimits: `async with limits.slot([...], say):` around one upstream call."""

    def slot(self, limits: list[Limit], say: Say | None = None) -> AbstractAsyncContextManager[None]: ...


class MemoryLimits:
    """Limits within one process: a capacity limiter per concurrency limit, a deque of start times per
    rate limit."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ):
        self.clock = clock
        self.sleep = sleep
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._starts: dict[str, deque[float]] = {}
        self._lock = anyio.Lock()

    @asynccontextmanager
    async def slot(self, limits: list[Limit], say: Say | None = None) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for limit in limits:
                if limit.concurrent:
                    limiter = self._limiters.setdefault(limit.name, anyio.CapacityLimiter(limit.concurrent))
                    if limiter.available_tokens == 0 and say is not None:
                        await say(_waiting(limit))
                    await stack.enter_async_context(limiter)
                if limit.per_minute:
                    await self._start(limit, say)
            yield

    async def _start(self, limit: Limit, say: Say | None) -> None:
        assert limit.per_minute is not None
        starts = self._starts.setdefault(limit.name, deque())
        told = False
        while True:
            async with self._lock:
                now = self.clock()
                while starts and starts[0] <= now - WINDOW_SECONDS:
                    starts.popleft()
                if len(starts) < limit.per_minute:
                    starts.append(now)
                    return
                wait = starts[0] + WINDOW_SECONDS - now
            if say is not None and not told:
                told = True
                await say(_waiting(limit, rate=True))
            await self.sleep(max(wait, MIN_WAIT))


# KEYS[1] the limit's sorted set; ARGV: holder, limit, lease ms. Drops lapsed leases, then takes a slot
# if one is free. Times are the Redis server's, so hosts with skewed clocks agree.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"""
# KEYS: the sorted sets the holder is in; ARGV: holder, lease ms. Pushes its leases out; 0 if one lapsed.
_RENEW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local kept = 1
for i, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[1]) then
    redis.call('ZADD', key, 'XX', now + tonumber(ARGV[2]), ARGV[1])
  else
    kept = 0
  end
  redis.call('PEXPIRE', key, tonumber(ARGV[2]) * 2)
end
return kept
"""
# KEYS[1] the limit's start times; ARGV: a unique member, limit per window, window ms. 0 when started,
# else the milliseconds until the oldest start leaves the window.
_START = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class RedisLimits:
    """Limits shared by every worker through Redis; a slot's lease is renewed while it is held and
    lapses `lease` seconds after its holder stops renewing it (a worker that died)."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        lease: float,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ):
        self.client = client
        self.keys = keys
        self.lease = lease
        self.sleep = sleep
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._start_script = client.register_script(_START)

    @asynccontextmanager
    async def slot(self, limits: list[Limit], say: Say | None = None) -> AsyncIterator[None]:
        holder = secrets.token_hex(8)
        held: list[str] = []
        try:
            for limit in limits:
                if limit.concurrent:
                    await self._take(limit, holder, say)
                    held.append(self.keys.slots(limit.name))
                if limit.per_minute:
                    await self._start(limit, say)
            if not held:
                yield
                return
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep, held, holder)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        finally:
            if held:
                with anyio.CancelScope(shield=True):
                    await self._release(held, holder)

    async def _take(self, limit: Limit, holder: str, say: Say | None) -> None:
        wait, told = MIN_WAIT, False
        lease_ms = int(self.lease * 1000)
        while not await self._acquire(
            keys=[self.keys.slots(limit.name)], args=[holder, limit.concurrent or 1, lease_ms]
        ):
            if say is not None and not told:
                told = True
                await say(_waiting(limit))
            await self.sleep(wait * random.uniform(0.5, 1.0))
            wait = min(wait * 2, MAX_WAIT)

    async def _start(self, limit: Limit, say: Say | None) -> None:
        told = False
        member = secrets.token_hex(8)
        while wait_ms := int(
            await self._start_script(
                keys=[self.keys.starts(limit.name)],
                args=[member, limit.per_minute or 1, int(WINDOW_SECONDS * 1000)],
            )
        ):
            if say is not None and not told:
                told = True
                await say(_waiting(limit, rate=True))
            await self.sleep(min(wait_ms / 1000, MAX_WAIT * 5))

    async def _keep(self, held: list[str], holder: str) -> None:
        """Renew the slots' leases a few times per lease while the call runs."""
        while True:
            await self.sleep(self.lease / 3)
            try:
                if not await self._renew(keys=held, args=[holder, int(self.lease * 1000)]):
                    log.warning("an upstream slot's lease lapsed while its call ran; its limit may be passed")
            except Exception:  # a Redis hiccup costs a renewal, never the call
                log.warning("could not renew an upstream slot's lease", exc_info=True)

    async def _release(self, held: list[str], holder: str) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in held:
                pipe.zrem(key, holder)
            await pipe.execute()
        except Exception:  # its lease lapses on its own
            log.warning("could not give an upstream slot back; its lease will lapse", exc_info=True)


def _waiting(limit: Limit, rate: bool = False) -> str:
    what = f"{limit.per_minute} calls a minute" if rate else f"{limit.concurrent} calls at once"
    return f"waiting for a free slot at {limit.name} (limit: {what}, shared by every worker)"
