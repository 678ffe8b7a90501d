"""The DashScope adapter's pure parts (build, parse, classify) against the reference's own examples
(tests/fixtures/dashscope/), and `run` over httpx2.MockTransport for the sync call and the polled task."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from imagegate.catalog import ResolvedSize, load_catalog
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from imagegate.providers import dashscope
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.http import ProviderClient, ProviderProfile

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dashscope"
BASE = "https://dashscope.aliyuncs.com/api/v1"
SYNC = "/services/aigc/multimodal-generation/generation"
T2I = "/services/aigc/text2image/image-synthesis"
PNG = b"\x89PNG\r\n\x1a\n(the adapter does not look inside)"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str, **wire: Any):
    found = next(r for r in load_catalog().routes_for(model) if r.provider == "dashscope")
    return replace(found, wire=found.wire.model_copy(update=wire)) if wire else found


def job(model: str = "qwen-image-plus", **changes: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "generate",
        "route": route(model),
        "prompt": "a flower shop",
        "count": 1,
        "size": ResolvedSize(1328, 1328, "1:1"),
        "knobs": {},
    }
    return Batch(**(fields | changes))


# --- build_request ----------------------------------------------------------------------------------


def test_sync_generation_sends_one_user_message_and_an_asterisk_size():
    request = dashscope.build_request(
        job(knobs={"seed": 42, "prompt_extend": False, "negative_prompt": "blurry"})
    )
    assert request.path == SYNC and request.headers == {}
    assert request.json == {
        "model": "qwen-image-plus",
        "input": {"messages": [{"role": "user", "content": [{"text": "a flower shop"}]}]},
        "parameters": {
            "n": 1,
            "size": "1328*1328",
            "seed": 42,
            "prompt_extend": False,
            "negative_prompt": "blurry",
        },
    }


def test_edit_puts_images_before_the_instruction_as_urls_or_data_urls():
    images = (
        InputImage("images[0]", "", 0, 0, url="https://example.com/in1.png"),
        InputImage("images[1]", "image/png", 1, 1, data=PNG),
    )
    request = dashscope.build_request(
        job("qwen-image-edit-plus", tool="edit", images=images, count=3, size=ResolvedSize())
    )
    content = request.json["input"]["messages"][0]["content"]
    assert content[0] == {"image": "https://example.com/in1.png"}
    assert content[1]["image"].startswith("data:image/png;base64,iVBOR")
    assert content[2] == {"text": "a flower shop"}
    assert request.json["parameters"] == {"n": 3}  # no size: the output follows the last input


def test_auto_size_sends_no_size_and_n_is_always_sent():
    request = dashscope.build_request(job("qwen-image-edit", tool="edit", size=ResolvedSize(auto=True)))
    assert request.json["parameters"] == {"n": 1}


def test_async_route_submits_a_prompt_task_with_the_async_header_and_n():
    request = dashscope.build_request(
        job(
            "wan2.2-t2i-flash",
            count=4,
            size=ResolvedSize(512, 1440),
            knobs={"negative_prompt": "low quality"},
        )
    )
    assert request.path == T2I and request.headers == {"X-DashScope-Async": "enable"}
    assert request.json == {
        "model": "wan2.2-t2i-flash",
        "input": {"prompt": "a flower shop", "negative_prompt": "low quality"},
        "parameters": {"n": 4, "size": "512*1440"},
    }


def test_wire_data_chooses_path_and_dialect():
    path = "/services/aigc/image-generation/generation"
    messages_task = job(route=route("wan2.6-t2i", mode="async", path=path, dialect="messages"))
    request = dashscope.build_request(messages_task)
    assert request.path == path and "messages" in request.json["input"]
    default = job(route=route("wan2.2-t2i-flash", path=None))
    assert dashscope.build_request(default).path == T2I


def test_extra_merges_into_the_body_and_adds_to_input_and_parameters():
    request = dashscope.build_request(job(extra={"parameters": {"style": "<photography>"}, "resources": [1]}))
    assert request.json["parameters"] == {"n": 1, "size": "1328*1328", "style": "<photography>"}
    assert request.json["resources"] == [1]


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        ("qwen-image", "sync"),
        ("qwen-image-edit-plus", "sync"),
        ("wan2.6-t2i", "sync"),
        ("wan2.2-t2i-flash", "async"),
    ],
)
def test_catalog_routes_use_the_endpoint_the_reference_names(model, mode):
    wire = route(model).wire
    assert wire.mode == mode and wire.dialect is None  # the dialect follows the mode unless set
    assert dashscope.build_request(job(model, route=route(model))).path == (T2I if mode == "async" else SYNC)


# --- parse ------------------------------------------------------------------------------------------


def test_sync_reply_gives_url_artifacts_and_usage():
    reply = dashscope.parse_reply(fixture("sync_qwen_image"), "dashscope")
    assert [a.url for a in reply.artifacts] == [
        "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1d/7f/qwen.png?Expires=1767951839&Signature=abc"
    ]
    assert reply.artifacts[0].mime == "image/png"
    assert reply.usage == {"width": 1328, "height": 1328, "image_count": 1}


def test_wan26_sync_reply_collects_every_content_image():
    reply = dashscope.parse_reply(fixture("sync_wan26"), "dashscope")
    assert len(reply.artifacts) == 2 and reply.usage is not None and reply.usage["size"] == "1280*1280"


def test_sync_reply_with_code_instead_of_output_is_classified():
    with pytest.raises(ContentRefused) as caught:
        dashscope.parse_reply(fixture("sync_error_in_200"), "dashscope")
    assert caught.value.upstream_message == "Output data may contain inappropriate content."


@pytest.mark.parametrize("body", [{"output": {"choices": []}}, {"output": {}}, {}])
def test_sync_reply_without_images_is_no_images(body):
    with pytest.raises(NoImagesReturned):
        dashscope.parse_reply(body, "dashscope")


def test_submit_gives_the_task_id():
    assert dashscope.parse_submit(fixture("submit"), "dashscope") == "0385dc79-5ff8-4d82-bcb6-5ef7cbd0e8aa"
    with pytest.raises(UpstreamError, match="no task_id"):
        dashscope.parse_submit({"request_id": "x", "output": {}}, "dashscope")


@pytest.mark.parametrize(
    ("name", "finished"),
    [
        ("submit", False),
        ("task_running", False),
        ("task_succeeded", True),
        ("task_failed", True),
        ("task_unknown", True),
    ],
)
def test_polling_stops_at_a_final_status(name, finished):
    assert dashscope.task_finished(fixture(name)) is finished


def test_an_unreadable_poll_reply_stops_polling():
    assert dashscope.task_finished({"code": "InternalError", "message": "boom"})


def test_succeeded_task_gives_urls_revised_prompts_and_per_result_failures():
    reply = dashscope.parse_task(fixture("task_succeeded"), "dashscope")
    assert [a.url for a in reply.artifacts] == [
        "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/1.png"
    ]
    assert reply.artifacts[0].revised_prompt == "A charming flower shop with a wooden door, morning light"
    assert reply.failures == ("DataInspectionFailed: Output data may contain inappropriate content.",)
    assert reply.usage == {"image_count": 1}


def test_succeeded_task_whose_every_result_failed_raises_the_results_error():
    with pytest.raises(ContentRefused):
        dashscope.parse_task(fixture("task_all_results_failed"), "dashscope")


def test_failed_task_raises_its_code():
    with pytest.raises(ContentRefused) as caught:
        dashscope.parse_task(fixture("task_failed"), "dashscope")
    assert caught.value.upstream_message == "Input data may contain inappropriate content."
    body = fixture("task_failed")
    body["output"] |= {"code": "InternalError.Algo", "message": "algorithm error"}
    with pytest.raises(UpstreamError, match="internal error"):
        dashscope.parse_task(body, "dashscope")


@pytest.mark.parametrize("status", ["UNKNOWN", "CANCELED"])
def test_unknown_and_canceled_tasks_are_upstream_errors(status):
    body = fixture("task_unknown")
    body["output"]["task_status"] = status
    with pytest.raises(UpstreamError, match=f"ended as {status}") as caught:
        dashscope.parse_task(body, "dashscope")
    assert type(caught.value) is UpstreamError


# --- classify ---------------------------------------------------------------------------------------

ERRORS = [
    (401, "InvalidApiKey", "Invalid API-key provided.", AuthFailed),
    (
        400,
        "Arrearage",
        "Access denied, please make sure your account is in good standing.",
        InsufficientBalance,
    ),
    (429, "Throttling", "Requests throttling triggered.", RateLimited),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", RateLimited),
    (429, "Throttling.AllocationQuota", "Free allocated quota exceeded.", RateLimited),
    (400, "DataInspectionFailed", "Input data may contain inappropriate content.", ContentRefused),
    (500, "InternalError", "An internal error has occured, please try again later.", UpstreamError),
    (500, "InternalError.Algo", "An internal error has occured during algorithm execution.", UpstreamError),
    (
        403,
        "AccessDenied.Unpurchased",
        "Access to model denied. Please make sure you are eligible.",
        AuthFailed,
    ),
    (400, "InvalidParameter", "The size '1328x1328' is invalid.", UpstreamError),
    (400, "InvalidURL", "The provided URL does not appear to be valid.", UpstreamError),
    (408, "RequestTimeOut", "Request timed out, please try again later.", UpstreamTimeout),
]


@pytest.mark.parametrize(("status", "code", "message", "kind"), ERRORS)
def test_error_codes_map_to_the_tree_with_the_upstream_message(status, code, message, kind):
    body = {"request_id": "0b7d6e2c", "code": code, "message": message}
    error = dashscope.classify_error(status, body, "dashscope")
    assert type(error) is kind, code
    assert error.upstream_message == message
    assert error.provider == "dashscope"


def test_a_wrong_call_mode_is_an_upstream_error_not_a_key_problem():
    body = {"code": "AccessDenied", "message": "current user api does not support synchronous calls"}
    error = dashscope.classify_error(403, body, "dashscope")
    assert type(error) is UpstreamError and "wire.mode" in error.message


def test_bodies_without_a_code_fall_back_on_the_status():
    assert isinstance(dashscope.classify_error(401, "Unauthorized", "dashscope"), AuthFailed)
    assert isinstance(dashscope.classify_error(503, {}, "dashscope"), UpstreamError)


# --- run over MockTransport -------------------------------------------------------------------------


async def _no_sleep(_: float) -> None:
    return None


def client_for(handler) -> ProviderClient:
    profile = ProviderProfile("dashscope", BASE, SecretStr("test-key"))
    transport = httpx2.MockTransport(handler)
    return ProviderClient(profile, timeout=30, max_retries=0, transport=transport, sleep=_no_sleep)


@pytest.mark.anyio
async def test_run_sync_posts_once_without_the_async_header():
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=fixture("sync_qwen_image"))

    client = client_for(handler)
    reply = await dashscope.run(job(), client)
    await client.aclose()
    assert len(reply.artifacts) == 1 and len(seen) == 1
    assert str(seen[0].url) == BASE + SYNC
    assert "x-dashscope-async" not in seen[0].headers
    assert seen[0].headers["authorization"] == "Bearer test-key"


@pytest.mark.anyio
async def test_run_async_submits_with_the_header_then_polls_the_task_to_its_end():
    polls = [fixture("task_running"), fixture("task_running"), fixture("task_succeeded")]
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx2.Response(200, json=fixture("submit"))
        return httpx2.Response(200, json=polls.pop(0))

    client = client_for(handler)
    reply = await dashscope.run(job("wan2.2-t2i-flash", count=2, size=ResolvedSize(1024, 1024)), client)
    await client.aclose()
    assert seen[0].headers["x-dashscope-async"] == "enable"
    assert [str(r.url) for r in seen[1:]] == [BASE + "/tasks/0385dc79-5ff8-4d82-bcb6-5ef7cbd0e8aa"] * 3
    assert all("x-dashscope-async" not in r.headers for r in seen[1:])
    assert len(reply.artifacts) == 1 and len(reply.failures) == 1


@pytest.mark.anyio
async def test_run_async_raises_the_failed_tasks_error():
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=fixture("submit" if request.method == "POST" else "task_failed"))

    client = client_for(handler)
    with pytest.raises(ContentRefused):
        await dashscope.run(job("wan2.2-t2i-flash"), client)
    await client.aclose()
