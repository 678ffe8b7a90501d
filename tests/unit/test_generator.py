"""The generator with a fake adapter (no network): n fans out into ⌈n / per_call⌉ batches merged in
batch order, a failing batch costs only its own images and the warning says what did not arrive,
images whose reply arrived are saved even when the call is cancelled, an adapter's bug becomes an
error (never a crash), and a reply with more images than asked is cut to the count with a warning."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.support import base_env, serve, text_of
from tests.support.fakes import FakeAdapter, images

from imagegate.errors import UpstreamError
from imagegate.generation import Outcome
from imagegate.providers.base import AdapterReply, Batch
from imagegate.service import Service, build_service

pytestmark = pytest.mark.anyio

PER_CALL = 2
CONFIG = f"""
[providers.local]
base_url = "http://127.0.0.1:9/v1"
key_env = "LOCAL_API_KEY"

[[providers.local.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
per_call = {PER_CALL}
"""
"""A config-defined OpenAI-protocol provider taking two images a call (its base URL is never reached)."""
ARGS = {"model": "gpt-image-1", "provider": "local", "prompt": "a lighthouse at dusk"}


def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "imagegate.toml"
    config.write_text(CONFIG)
    return base_env(tmp_path, LOCAL_API_KEY="test-sentinel-key-local", IMAGEGATE_CONFIG=str(config))


def service(tmp_path: Path, fake: FakeAdapter) -> Service:
    return build_service(env(tmp_path), adapters={"openai_images": fake})


async def _quiet(message: str) -> None:
    pass


async def generate(svc: Service, **args: Any) -> Outcome:
    try:
        return await svc.run_image_tool("generate_image", {**ARGS, **args}, _quiet)
    finally:
        await svc.aclose()


def saved_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())


def widths(outcome: Outcome) -> list[int]:
    return [image.width for image in outcome.images]


def after(seconds: float, width: int, count: int) -> Any:
    """An answer that arrives `seconds` late with `count` images `width` pixels wide."""

    async def answer(batch: Batch) -> AdapterReply:
        await anyio.sleep(seconds)
        return images(count, (width, 32))

    return answer


@pytest.mark.parametrize(("n", "plan"), [(1, [1]), (2, [2]), (3, [2, 1]), (5, [2, 2, 1]), (6, [2, 2, 2])])
async def test_n_fans_out_into_full_batches_with_the_remainder_last(tmp_path, n, plan):
    fake = FakeAdapter()
    outcome = await generate(service(tmp_path, fake), n=n)
    assert [b.count for b in fake.batches] == plan
    assert outcome.calls == len(plan) and len(outcome.images) == n
    assert {b.prompt for b in fake.batches} == {ARGS["prompt"]}


async def test_batches_run_together_and_merge_in_batch_order_not_arrival_order(tmp_path):
    fake = FakeAdapter().enqueue(after(0.3, 40, 2), after(0.0, 41, 2), after(0.15, 42, 1))
    outcome = await generate(service(tmp_path, fake), n=5)
    assert widths(outcome) == [40, 40, 41, 41, 42]
    assert outcome.warnings == () and outcome.calls == 3
    names = [image.path.name for image in outcome.images]
    assert len(set(names)) == 5 and all(image.path.is_file() for image in outcome.images)


async def test_a_failed_batch_costs_only_its_images_and_the_warning_says_what_did_not_arrive(tmp_path):
    failure = UpstreamError("the render farm is on fire", provider="local")
    fake = FakeAdapter().enqueue(images(2, (40, 32)), failure, images(1, (42, 32)))
    outcome = await generate(service(tmp_path, fake), n=5)
    assert widths(outcome) == [40, 40, 42]
    (warning,) = outcome.warnings
    assert warning.startswith("3 of 5 images were made: ") and "the render farm is on fire" in warning
    files = saved_files(tmp_path)
    assert (
        len([p for p in files if p.suffix == ".png"]) == 3
        and len([p for p in files if p.suffix == ".json"]) == 3
    )


async def test_when_every_batch_fails_the_first_error_is_raised(tmp_path):
    fake = FakeAdapter().enqueue(
        UpstreamError("first", provider="local"), UpstreamError("second", provider="local")
    )
    with pytest.raises(UpstreamError, match="first"):
        await generate(service(tmp_path, fake), n=3)
    assert saved_files(tmp_path) == []


async def test_an_adapter_bug_becomes_an_error_naming_a_log_reference_not_a_crash(tmp_path):
    fake = FakeAdapter().enqueue(KeyError("test-sentinel-key-local"), images(1))
    outcome = await generate(service(tmp_path, fake), n=3)
    assert len(outcome.images) == 1
    (warning,) = outcome.warnings
    assert "1 of 3 images were made" in warning and "internal error while handling its reply (ref " in warning
    assert "KeyError" not in warning and "test-sentinel-key-local" not in warning


async def test_an_adapter_bug_in_the_only_batch_is_an_error_result_over_mcp_and_logged_by_its_ref(tmp_path):
    fake = FakeAdapter().enqueue(RuntimeError("boom"))
    log = io.StringIO()
    async with serve(env(tmp_path), log, adapters={"openai_images": fake}) as client:
        result = await client.call_tool("generate_image", ARGS)
        following = await client.call_tool("generate_image", ARGS)
    assert result.is_error and result.meta["io.imagegate/error"]["kind"] == "upstream_error"
    assert "internal error while handling its reply" in text_of(result) and "boom" not in text_of(result)
    ref = text_of(result).split("(ref ")[1].split(")")[0]
    assert f"imagegate ERROR internal error in batch 1 of a local call (ref {ref})" in log.getvalue()
    assert "RuntimeError: boom" in log.getvalue()  # the details are in the log, and only there
    assert not following.is_error, text_of(following)


async def test_more_images_than_asked_are_cut_to_the_count_with_a_warning(tmp_path):
    fake = FakeAdapter().enqueue(images(5, (40, 32)), images(1, (41, 32)))
    outcome = await generate(service(tmp_path, fake), n=3)
    assert widths(outcome) == [40, 40, 41]
    assert "local returned 5 images for 2 asked in one call; the 3 extra were not saved" in outcome.warnings
    assert len([p for p in saved_files(tmp_path) if p.suffix == ".png"]) == 3


async def test_a_cancelled_call_still_saves_the_images_whose_reply_arrived_and_leaves_nothing_partial(
    tmp_path,
):
    replied = anyio.Event()

    async def arrives(batch: Batch) -> AdapterReply:
        replied.set()  # the reply is here: the generator goes on to save it without a checkpoint
        return images(batch.count, (40, 32))

    async def never(batch: Batch) -> AdapterReply:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    fake = FakeAdapter().enqueue(arrives, never)
    svc = service(tmp_path, fake)
    outcome: list[Outcome] = []

    async def call() -> None:
        outcome.append(await svc.run_image_tool("generate_image", {**ARGS, "n": 4}, progress=_quiet))

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await replied.wait()
        group.cancel_scope.cancel()  # lands while the first batch's images are being written
    await svc.aclose()

    assert outcome == []  # the call was cancelled
    files = saved_files(tmp_path)
    pngs = [p for p in files if p.suffix == ".png"]
    assert len(pngs) == 2 and all(p.with_suffix(".json").is_file() for p in pngs)
    assert all(json.loads(p.with_suffix(".json").read_text())["prompt"] == ARGS["prompt"] for p in pngs)
    assert not [p for p in (tmp_path / "out").rglob(".partial-*")] and not [
        p for p in files if ".partial" in p.name
    ]
