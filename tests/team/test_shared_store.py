"""Tasks on a store every worker shares (Redis): a task started on one worker is read, awaited and
cancelled from another, get_image_job collects it anywhere, and a task whose worker stops renewing
its lease ends failed, naming the images it had saved, never "working" for ever. Two in-memory
servers stand for two workers; the Redis is a real redis-server."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest
from tests.support import provider_env, text_of
from tests.team.support import CreatedTask, call_as_task, cancel_task, get_task, until_final, worker

from imagegate.team.backend import Keys, connect
from imagegate.team.tasks import RedisTasks, TaskRecord

pytestmark = pytest.mark.anyio
ASK = {"model": "gpt-image-1", "prompt": "a harbour in fog", "n": 2}


@pytest.fixture
def deployment() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def env(tmp_path, emulator, redis_url: str, deployment: str, **extra: str) -> dict[str, str]:
    return provider_env(
        tmp_path,
        emulator,
        "openai",
        "test-key",
        IMAGEGATE_REDIS_URL=redis_url,
        IMAGEGATE_DEPLOYMENT=deployment,
        **extra,
    )


async def test_a_task_started_on_one_worker_is_read_and_awaited_on_another(
    tmp_path, emu, redis_url, deployment
):
    shared = env(tmp_path, emu, redis_url, deployment)
    async with worker(shared) as a, worker(shared) as b:
        task = await call_as_task(a, "generate_image", ASK)
        assert isinstance(task, CreatedTask)
        seen = await get_task(b, task.task_id)  # at once: created durably before its id was handed out
        state = await until_final(b, task.task_id)
    assert seen.status in ("working", "completed")
    assert state.status == "completed" and state.result is not None
    assert "2 images from gpt-image-1 via openai" in state.result["content"][0]["text"]


async def test_a_task_is_cancelled_from_another_worker(tmp_path, emu, redis_url, deployment):
    shared = env(tmp_path, emu, redis_url, deployment)
    emu.configure("openai", latency=5.0)
    try:
        async with worker(shared) as a, worker(shared) as b:
            task = await call_as_task(a, "generate_image", ASK)
            assert isinstance(task, CreatedTask)
            started = time.monotonic()
            await cancel_task(b, task.task_id)
            state = await until_final(b, task.task_id, seconds=4)
            took = time.monotonic() - started
    finally:
        emu.configure("openai", latency=0.0)
    assert state.status == "cancelled" and took < 2.0  # by the owner's cancel channel, not its heartbeat


async def test_get_image_job_collects_a_job_on_any_worker(tmp_path, emu, redis_url, deployment):
    shared = env(tmp_path, emu, redis_url, deployment, IMAGEGATE_WAIT_BUDGET="0.2")
    emu.configure("openai", latency=1.0)
    try:
        async with worker(shared, mode="legacy") as a, worker(shared, mode="legacy") as b:
            first = await a.call_tool("generate_image", ASK)
            job = text_of(first).split('get_image_job {"job": "')[1].split('"')[0]
            for _ in range(40):
                done = await b.call_tool("get_image_job", {"job": job, "wait": 5})
                if "Still working" not in text_of(done):
                    break
    finally:
        emu.configure("openai", latency=0.0)
    assert "Still working" in text_of(first)
    assert not done.is_error and "2 images from gpt-image-1" in text_of(done)
    assert [b.type for b in done.content][:3] == ["text", "image", "image"]


async def test_a_task_whose_worker_stopped_renewing_its_lease_ends_failed_with_its_files(
    tmp_path, emu, redis_url, deployment
):
    client = connect(redis_url)
    ghost = RedisTasks(client, Keys(deployment), lease=30)
    now = time.time()
    record = TaskRecord(
        id="a" * 24, tool="generate_image", user=None, owner="gone:1:x", created=now, updated=now
    )
    try:
        await ghost.create(record)
        await ghost.add_saved(record.id, "/out/2026-01-01/120000-fog-1.png")
        await client.delete(Keys(deployment).lease(record.id))  # as if its lease had lapsed
        async with worker(env(tmp_path, emu, redis_url, deployment)) as b:
            state = await get_task(b, record.id)
            again = await get_task(b, record.id)
    finally:
        await client.aclose()
    assert state.status == "failed" and again.status == "failed"
    assert state.error is not None and state.error["code"] == -32603
    assert state.error["data"] == {"saved": ["/out/2026-01-01/120000-fog-1.png"]}
    assert "the worker running this task stopped" in (state.status_message or "")


async def test_a_live_lease_keeps_a_task_working(tmp_path, emu, redis_url, deployment):
    client = connect(redis_url)
    store = RedisTasks(client, Keys(deployment), lease=0.3)
    other = RedisTasks(client, Keys(deployment), lease=0.3)
    now = time.time()
    record = TaskRecord(id="b" * 24, tool="generate_image", user=None, owner="w1", created=now, updated=now)
    try:
        await store.create(record)
        for _ in range(3):  # its owner beats; a reader on another worker sees it working throughout
            await store.heartbeat({record.id: "waiting for openai"})
            seen = await other.get(record.id)
            assert seen is not None and seen.status == "working" and seen.message == "waiting for openai"
            await anyio.sleep(0.15)
        await anyio.sleep(0.4)  # no more beats: the lease lapses in Redis
        lapsed = await other.get(record.id)
    finally:
        await client.aclose()
    assert lapsed is not None and lapsed.status == "failed"


async def test_an_owner_that_stalled_past_its_lease_stops_and_leaves_the_failed_record_as_it_is(
    redis_url, deployment
):
    """A reader failed the task while its owner stalled; the owner's next heartbeat must not renew the
    lease or rewrite the record, and tells the owner to stop the work (its result could not be kept)."""
    client = connect(redis_url)
    owner = RedisTasks(client, Keys(deployment), lease=0.2)
    reader = RedisTasks(client, Keys(deployment), lease=0.2)
    now = time.time()
    record = TaskRecord(id="c" * 24, tool="generate_image", user=None, owner="w1", created=now, updated=now)
    try:
        await owner.create(record)
        await anyio.sleep(0.3)  # the owner stalls past its lease
        failed = await reader.get(record.id)
        stop = await owner.heartbeat({record.id: "still drawing"})
        after = await reader.get(record.id)
        lease_back = await client.exists(Keys(deployment).lease(record.id))
    finally:
        await client.aclose()
    assert failed is not None and failed.status == "failed"
    assert stop == {record.id}
    assert after is not None and after.status == "failed" and after.message == failed.message
    assert not lease_back
