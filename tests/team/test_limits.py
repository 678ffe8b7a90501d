"""Upstream limits as catalog data, held across workers: BFL's caps are in the catalog; a limit is
a count of calls in flight (leases that lapse when their holder dies) and of starts per minute;
two limiters on one Redis count as one; and a call fanned out past a limit waits for a slot rather
than failing, across two workers, with the emulator seeing no more calls at once than allowed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import pytest
from tests.support import base_env, text_of
from tests.team.support import worker

from imagegate.catalog import load_catalog
from imagegate.team.backend import Keys, connect
from imagegate.team.limits import Limit, MemoryLimits, RedisLimits, limits_of

pytestmark = pytest.mark.anyio


def test_bfl_caps_are_catalog_data_and_others_have_none():
    catalog = load_catalog()
    assert limits_of(catalog, "bfl", "flux-kontext-max") == [
        Limit("bfl", 24, None),
        Limit("bfl/flux-kontext-max", 6, None),
    ]
    assert limits_of(catalog, "bfl", "flux-2-pro") == [Limit("bfl", 24, None)]
    assert catalog.providers["bfl"].limits is not None and catalog.providers["bfl"].limits.unconfirmed
    assert limits_of(catalog, "openai", "gpt-image-1") == []


async def crowd(limits, cap: int, calls: int, hold: float = 0.03) -> tuple[int, list[str]]:
    """Run `calls` holders of one slot each at once; the most ever in flight, and what they said."""
    inside, most, said = 0, 0, []

    async def say(message: str) -> None:
        said.append(message)

    async def one(limiter) -> None:
        nonlocal inside, most
        async with limiter.slot([Limit("up", cap, None)], say):
            inside += 1
            most = max(most, inside)
            await anyio.sleep(hold)
            inside -= 1

    async with anyio.create_task_group() as group:
        for i in range(calls):
            group.start_soon(one, limits[i % len(limits)])
    return most, said


async def test_in_one_process_a_concurrency_limit_makes_calls_wait():
    most, said = await crowd([MemoryLimits()], cap=2, calls=6, hold=0)
    assert most == 2
    assert said and "waiting for a free slot at up (limit: 2 calls at once" in said[0]


async def test_two_limiters_on_one_redis_count_as_one(redis_url):
    client = connect(redis_url)
    keys = Keys(f"test-{uuid.uuid4().hex[:8]}")
    try:
        most, _ = await crowd([RedisLimits(client, keys, lease=5), RedisLimits(client, keys, lease=5)], 2, 6)
        left = await client.zcard(keys.slots("up"))
    finally:
        await client.aclose()
    assert most == 2 and left == 0  # every slot given back


async def test_the_slot_of_a_holder_that_died_comes_back_when_its_lease_lapses(redis_url):
    client = connect(redis_url)
    keys = Keys(f"test-{uuid.uuid4().hex[:8]}")
    now_ms = int(time.time() * 1000)
    try:
        await client.zadd(keys.slots("up"), {"dead-worker": now_ms + 300})  # lapses in 0.3 s
        started = time.monotonic()
        async with RedisLimits(client, keys, lease=5).slot([Limit("up", 1, None)]):
            waited = time.monotonic() - started
    finally:
        await client.aclose()
    assert 0.15 < waited < 3


async def test_starts_past_the_rate_wait_for_the_window(redis_url):
    client = connect(redis_url)
    asked: list[float] = []

    async def sleep(seconds: float) -> None:  # records the wait instead of waiting it out
        asked.append(seconds)
        raise anyio.get_cancelled_exc_class()

    limits = RedisLimits(client, Keys(f"test-{uuid.uuid4().hex[:8]}"), lease=5, sleep=sleep)
    rate = [Limit("up", None, 2)]
    try:
        for _ in range(2):
            async with limits.slot(rate):
                pass
        with pytest.raises(anyio.get_cancelled_exc_class()):
            async with limits.slot(rate):
                pass
    finally:
        await client.aclose()
    assert len(asked) == 1 and asked[0] > 1  # the window (60 s), capped per try


def limited_env(tmp_path: Path, emulator, redis_url: str, deployment: str) -> dict[str, str]:
    config = tmp_path / "team.toml"
    config.write_text(
        f"""
[providers.local]
base_url = "{emulator.base_url("compat")}"
key_env = "LOCAL_API_KEY"
limits = {{ concurrent = 1 }}

[[providers.local.offerings]]
model = "dall-e-2"
upstream = "dall-e-2"
per_call = 1
"""
    )
    return base_env(
        tmp_path,
        LOCAL_API_KEY="test-key",
        IMAGEGATE_CONFIG=str(config),
        IMAGEGATE_REDIS_URL=redis_url,
        IMAGEGATE_DEPLOYMENT=deployment,
    )


async def test_fanned_out_calls_on_two_workers_wait_for_the_shared_slot(tmp_path, emu, redis_url):
    latency = 0.15
    emu.configure("compat", latency=latency)
    shared = limited_env(tmp_path, emu, redis_url, f"test-{uuid.uuid4().hex[:8]}")
    ask = {"model": "dall-e-2", "prompt": "one at a time", "n": 2, "size": "256x256"}
    results = []
    try:
        async with worker(shared, tasks=False) as a, worker(shared, tasks=False) as b:

            async def call(client) -> None:
                results.append(await client.call_tool("generate_image", ask))

            async with anyio.create_task_group() as group:
                for client in (a, b, a, b):
                    group.start_soon(call, client)
    finally:
        emu.configure("compat", latency=0.0)
    starts = sorted(r["time"] for r in emu.requests("compat"))
    assert all(not r.is_error and "2 images from dall-e-2 via local" in text_of(r) for r in results)
    assert len(starts) == 8
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= latency * 0.9, gaps  # never two in flight at once, across both workers
