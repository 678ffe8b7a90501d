"""Hosts that stop waiting at about 60 s: past the wait budget a call answers at once with a job
id, the generation goes on and saves its images, and get_image_job collects the result."""

from __future__ import annotations

import time

import pytest
from tests.support import provider_env, serve, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def env(tmp_path, emulator, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emulator, "openai", "test-key", **extra)


def job_id(text: str) -> str:
    return text.split('get_image_job {"job": "')[1].split('"')[0]


async def test_a_call_past_its_budget_hands_back_a_job_that_finishes_and_is_collected(tmp_path, emulator):
    emulator.reset()
    emulator.configure("openai", latency=2.5)
    try:
        async with serve(env(tmp_path, emulator, IMAGEGATE_WAIT_BUDGET="0.5")) as client:
            started = time.monotonic()
            first = await client.call_tool(
                "generate_image", {"model": "gpt-image-1", "prompt": "slow lighthouse", "n": 2}
            )
            answered = time.monotonic() - started
            job = job_id(text_of(first))
            early = await client.call_tool("get_image_job", {"job": job, "wait": 0})
            for _ in range(40):  # each collect waits at most the budget: an agent simply asks again
                done = await client.call_tool("get_image_job", {"job": job, "wait": 10})
                if "Still working" not in text_of(done):
                    break
            unknown = await client.call_tool("get_image_job", {"job": "nope"})
    finally:
        emulator.configure("openai", latency=0.0)
    assert not first.is_error and answered < 2.0 and "Nothing is lost" in text_of(first)
    assert "Still working" in text_of(early)
    assert not done.is_error and "2 images from gpt-image-1 via openai" in text_of(done)
    assert [b.type for b in done.content][:3] == ["text", "image", "image"]
    assert len(list((tmp_path / "out").rglob("*.png"))) == 2
    assert unknown.is_error and 'job "nope" is unknown' in text_of(unknown)


async def test_without_a_budget_the_call_simply_waits(tmp_path, emulator):
    emulator.reset()
    async with serve(env(tmp_path, emulator)) as client:  # the SDK's client is not a 60 s host
        result = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "quick"})
    assert not result.is_error and "1 image from gpt-image-1" in text_of(result)


async def test_an_invalid_call_is_refused_at_once_not_turned_into_a_job(tmp_path, emulator):
    async with serve(env(tmp_path, emulator, IMAGEGATE_WAIT_BUDGET="0.5")) as client:
        result = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "x", "n": 99})
    assert result.is_error and "n 99 is out of range" in text_of(result)
