"""Long calls as MCP tasks (the io.modelcontextprotocol/tasks extension, 2026-07-28): a client that
declares it gets a task at once and polls tasks/get for the result; one that does not never gets a
task; tasks/* without the declaration, or for an unknown id, are the spec's errors; a task can be
cancelled, and its received images stay saved. In memory, against the emulator."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError
from tests.support import provider_env, text_of
from tests.team.support import CreatedTask, call_as_task, cancel_task, get_task, until_final, worker

pytestmark = pytest.mark.anyio


def env(tmp_path, emulator, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emulator, "openai", "test-key", **extra)


ASK = {"model": "gpt-image-1", "prompt": "a lighthouse at dusk", "n": 2}


async def test_a_client_declaring_tasks_gets_a_task_and_its_result(tmp_path, emu):
    async with worker(env(tmp_path, emu)) as client:
        task = await call_as_task(client, "generate_image", ASK)
        assert isinstance(task, CreatedTask)
        state = await until_final(client, task.task_id)
        transparent = await client.call_tool("generate_image", {**ASK, "n": 1})  # the claim's resolver
    assert task.status == "working" and task.ttl_ms == 3_600_000 and task.poll_interval_ms
    assert state.status == "completed" and state.result is not None
    assert "2 images from gpt-image-1 via openai" in state.result["content"][0]["text"]
    assert [b["type"] for b in state.result["content"]][:3] == ["text", "image", "image"]
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3
    assert not transparent.is_error and "1 image from gpt-image-1" in text_of(transparent)


async def test_a_refusal_is_answered_at_once_and_a_legacy_client_never_gets_a_task(tmp_path, emu):
    async with worker(env(tmp_path, emu)) as client:
        refused = await call_as_task(client, "generate_image", {**ASK, "n": 99})
    async with worker(env(tmp_path, emu), mode="legacy") as legacy:
        plain = await legacy.call_tool("generate_image", ASK)
    assert not isinstance(refused, CreatedTask) and refused.is_error and "n 99" in text_of(refused)
    assert not plain.is_error and "2 images" in text_of(plain)


async def test_tasks_methods_need_the_declaration_and_a_known_id(tmp_path, emu):
    async with worker(env(tmp_path, emu)) as client:
        task = await call_as_task(client, "generate_image", ASK)
        assert isinstance(task, CreatedTask)
        await until_final(client, task.task_id)
        with pytest.raises(MCPError) as unknown:
            await get_task(client, "0123456789abcdef01234567")
    async with worker(env(tmp_path, emu), tasks=False) as undeclared:
        with pytest.raises(MCPError) as missing:
            await get_task(undeclared, task.task_id)
    assert unknown.value.error.code == -32602 and "Task not found" in unknown.value.error.message
    assert missing.value.error.code == -32021
    assert missing.value.error.data == {
        "requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}
    }


async def test_a_cancelled_task_ends_cancelled(tmp_path, emu):
    emu.configure("openai", latency=5.0)
    try:
        async with worker(env(tmp_path, emu)) as client:
            task = await call_as_task(client, "generate_image", ASK)
            assert isinstance(task, CreatedTask)
            await cancel_task(client, task.task_id)
            state = await until_final(client, task.task_id, seconds=5)
    finally:
        emu.configure("openai", latency=0.0)
    assert state.status == "cancelled" and state.result is None
