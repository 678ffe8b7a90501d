"""ModelGate protocol, pure parts: request bodies, replies and errors (seeds/000_04e54511d4d1ae45.txt).

Fixtures in tests/fixtures/modelgate/ are the doc's own examples (the reply sample's truncated base64
replaced by a whole 4x3 PNG; the error sample without its JS comment). The Doubao request example
sends `output_format`, a field the doc's parameter table gives to the Google models only: the adapter
leaves it out for Seedream, so that test compares against the example without it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.http import ProviderClient, ProviderProfile
from imagegate.providers.modelgate import build_request, classify_error, parse_reply, run

FIXTURES = Path(__file__).parent.parent / "fixtures" / "modelgate"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAIAAAA7ljmRAAAAEElEQVR4nGP8z4AATAy4OAAmdgEF5PO41QAAAABJRU5ErkJggg=="
)
PROMPT = "A cat wearing a spacesuit"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


UPSTREAM = {
    "seedream-4.0": "volcengine/doubao-seedream-4-0",
    "gemini-2.5-flash-image": "google/nano-banana",
    "gemini-3-pro-image-preview": "google/nano-banana-pro",
}
"""Routes are found by the doc's upstream id, which does not move when a canonical model id does."""


def route(model: str) -> Route:
    upstream = UPSTREAM[model]
    return next(r for r in load_catalog().routes if r.provider == "modelgate" and r.upstream == upstream)


def job(model: str, size: str, count: int = 1, **kw: Any) -> Batch:
    width, height = (int(edge) for edge in size.split("x"))
    fields: dict[str, Any] = {"knobs": {}, **kw}
    return Batch(
        tool="edit" if fields.get("images") else "generate",
        route=route(model),
        prompt=PROMPT,
        count=count,
        size=ResolvedSize(width=width, height=height),
        **fields,
    )


# ---- requests


def test_seedream_body_is_the_docs_doubao_example_in_order_without_the_google_only_output_format():
    body = build_request(job("seedream-4.0", "2560x1440", count=3)).json

    expected = fixture("request_doubao")
    assert expected.pop("output_format") == "png"  # "只有 google/nano-banana 和 …-pro 支持该字段"
    assert list(body.items()) == list(expected.items())


def test_output_format_follows_the_routes_knob_not_what_a_batch_carries():
    body = build_request(job("seedream-4.0", "2048x2048", knobs={"output_format": "jpeg"})).json

    assert "output_format" not in body  # the route has no such knob: data, not a model name, decides


def test_no_size_is_invented_for_several_references_and_a_lone_tier_is_said_not_sent():
    refs = tuple(InputImage(f"images[{i}]", "", 0, 0, url=f"https://example.com/{i}.png") for i in range(2))
    base = job("gemini-3-pro-image-preview", "1024x1024", images=refs)

    bare = build_request(replace(base, size=ResolvedSize()))
    tiered = build_request(replace(base, size=ResolvedSize(tier="2K")))

    assert "size" not in bare.json and bare.warnings == ()
    assert "size" not in tiered.json
    (warning,) = tiered.warnings
    assert warning.feature == "resolution" and "2K was not sent" in warning.detail


def test_nano_banana_body_is_the_docs_google_example_field_for_field_and_in_order():
    body = build_request(job("gemini-2.5-flash-image", "1024x1024")).json

    expected = fixture("request_google")
    assert list(body.items()) == list(expected.items())


def test_output_format_knob_is_sent_and_nano_banana_pro_takes_the_google_order():
    body = build_request(job("gemini-3-pro-image-preview", "2048x2048", knobs={"output_format": "jpeg"})).json

    assert list(body) == ["model", "prompt", "size", "output_type", "output_format"]
    assert body["model"] == "google/nano-banana-pro"
    assert body["output_format"] == "jpeg"


def test_reference_urls_go_as_seed_images_in_order():
    refs = tuple(InputImage(f"images[{i}]", "", 0, 0, url=f"https://example.com/{i}.png") for i in range(3))
    body = build_request(job("gemini-3-pro-image-preview", "1200x896", images=refs)).json

    assert body["seed_images"] == [
        "https://example.com/0.png",
        "https://example.com/1.png",
        "https://example.com/2.png",
    ]


def test_seedream_reference_bytes_go_as_a_data_url_next_to_urls():
    refs = (
        InputImage("images[0]", "image/png", 4, 3, data=PNG),
        InputImage("images[1]", "", 0, 0, url="https://example.com/b.jpg"),
    )
    body = build_request(job("seedream-4.0", "2048x2048", images=refs)).json

    assert body["seed_images"] == [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "https://example.com/b.jpg",
    ]


def test_extra_fields_are_merged_as_given():
    body = build_request(job("seedream-4.0", "2048x2048", extra={"output_type": "url", "user": "u1"})).json

    assert body["output_type"] == "url"
    assert body["user"] == "u1"


# ---- replies


def test_url_reply_gives_a_url_artifact_and_keeps_usage_with_the_ids():
    reply = parse_reply(fixture("reply_url"), "modelgate")

    assert [a.url for a in reply.artifacts] == ["https://cdn.modelgate.com/images/abc123.png"]
    assert reply.usage == {
        "usage": [{"quality": "default", "size": "1696x2528"}],
        "model": "google/nano-banana-pro",
        "task_id": "03fb35089a8543f6a7eb4c27ecb0ebe3",
        "request_id": "1765174674381275",
    }


def test_content_data_url_reply_is_decoded_with_its_mime():
    (artifact,) = parse_reply(fixture("reply_content"), "modelgate").artifacts

    assert artifact.decoded() == PNG
    assert artifact.mime == "image/png"


def test_b64_json_reply_of_the_code_samples_is_decoded():
    reply = parse_reply(fixture("reply_b64_json"), "modelgate")

    assert [a.decoded() for a in reply.artifacts] == [PNG, PNG]
    assert reply.usage is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (base64.b64encode(PNG).decode(), {"decoded": PNG}),
        ("https://cdn.example.com/x.png", {"url": "https://cdn.example.com/x.png"}),
    ],
)
def test_content_may_also_hold_bare_base64_or_a_url(content, expected):
    (artifact,) = parse_reply({"status": "completed", "data": [{"content": content}]}, "modelgate").artifacts

    assert {
        key: artifact.decoded() if key == "decoded" else getattr(artifact, key) for key in expected
    } == expected


@pytest.mark.parametrize(
    "body",
    [
        {"status": "completed", "data": []},
        {"status": "completed", "data": [{}]},
        {"status": "completed"},
    ],
)
def test_a_reply_without_images_is_no_images_returned(body):
    with pytest.raises(NoImagesReturned):
        parse_reply(body, "modelgate")


def test_undecodable_base64_is_an_upstream_error():
    (artifact,) = parse_reply(
        {"status": "completed", "data": [{"b64_json": "*not base64*"}]}, "modelgate"
    ).artifacts
    with pytest.raises(UpstreamError, match="does not decode"):
        artifact.decoded()  # the core decodes each image on its own


def test_a_reply_of_another_shape_is_an_upstream_error():
    with pytest.raises(UpstreamError, match="shape"):
        parse_reply({"data": "nope"}, "modelgate")


def test_the_docs_error_example_in_a_200_body_raises_with_the_upstream_message():
    with pytest.raises(UpstreamError) as raised:
        parse_reply(fixture("error_invalid_size"), "modelgate")

    assert raised.value.kind == "upstream_error"
    assert "invalid Size for nano-banana-pro model: 1024x10214" in (raised.value.upstream_message or "")
    assert "invalid Size for nano-banana-pro" in raised.value.agent_text()


def test_a_200_body_with_a_numeric_code_is_classified_by_it():
    body = {"status": "error", "code": 402, "message": {"error": {"code": "", "message": "余额不足"}}}

    with pytest.raises(InsufficientBalance):
        parse_reply(body, "modelgate")


def test_a_failed_task_is_an_upstream_error_carrying_its_message():
    body = {"task_id": "t1", "status": "failed", "error": {"code": "", "message": "generation failed"}}

    with pytest.raises(UpstreamError) as raised:
        parse_reply(body, "modelgate")

    assert raised.value.upstream_message == "generation failed"
    assert "status failed" in raised.value.message


# ---- errors


def error_body(code: int | None, message: str = "boom", **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": {"status": "failed", "error": {"code": "", "message": message}},
    }
    if code is not None:
        body["code"] = code
    return {**body, **top}


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"),
    [
        (400, error_body(400), UpstreamError, False),
        (200, error_body(400), UpstreamError, False),
        (401, error_body(401), AuthFailed, False),
        (200, error_body(401), AuthFailed, False),
        (403, "forbidden", AuthFailed, False),
        (200, error_body(402), InsufficientBalance, False),
        (402, error_body(None), InsufficientBalance, False),
        (200, error_body(429, is_retry=True), RateLimited, True),
        (429, error_body(429, is_retry=False), RateLimited, False),
        (200, error_body(500), UpstreamError, True),
        (200, error_body(503), UpstreamError, True),
        (508, error_body(508), UpstreamError, True),
        (200, error_body("503"), UpstreamError, True),  # type: ignore[arg-type]  # a code spelt as a string
        (504, "<html>gateway timeout</html>", UpstreamTimeout, True),
        (502, error_body(None), UpstreamError, True),
        (200, error_body(None), UpstreamError, False),
    ],
)
def test_error_codes_map_to_the_tree(status, body, kind, retryable):
    error = classify_error(status, body, "modelgate")

    assert type(error) is kind
    assert error.retryable is retryable
    assert error.provider == "modelgate"


def test_a_400_keeps_the_upstream_message_and_its_status():
    error = classify_error(400, fixture("error_invalid_size"), "modelgate")

    assert isinstance(error, UpstreamError) and error.status == 400
    assert error.upstream_message and error.upstream_message.startswith(
        "failed to validate request: invalid Size"
    )


@pytest.mark.parametrize(
    "message",
    [
        "The prompt was blocked by content moderation",
        "input contains sensitive content",
        "请求内容未通过审核",
        "提示词包含敏感词",
        "Request rejected by the safety system",
    ],
)
def test_a_moderation_message_is_a_content_refusal_whatever_the_code(message):
    assert isinstance(classify_error(200, error_body(400, message), "modelgate"), ContentRefused)
    assert isinstance(
        classify_error(200, {"status": "failed", "error": {"message": message}}, "modelgate"), ContentRefused
    )


@pytest.mark.parametrize(
    "body",
    [
        {"status": "error", "message": "plain text message"},
        {"status": "error", "msg": "plain text message"},
        {"status": "error", "error": "plain text message"},
        {"status": "error", "error": {"message": "plain text message"}},
        {"status": "error", "message": {"error": {"message": "plain text message"}}},
    ],
)
def test_the_message_is_found_in_every_shape(body):
    assert classify_error(200, body, "modelgate").upstream_message == "plain text message"


def test_case_sensitive_validation_text_is_not_mistaken_for_moderation():
    error = classify_error(400, error_body(400, "model ids are case-sensitive"), "modelgate")

    assert not isinstance(error, ContentRefused)
    assert isinstance(error, ImagegateError)


# ---- retries, as the doc's error handler does them


async def run_against(*replies: dict[str, Any]) -> tuple[Any, int]:
    """`run` against a scripted ModelGate (each request takes the next reply, all HTTP 200, as the doc
    shows errors); the reply or the error raised, and how many requests were sent."""
    script, sent = list(replies), []

    def handle(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json=script.pop(0) if len(script) > 1 else script[0])

    profile = ProviderProfile("modelgate", "https://mg.example/api/v1", SecretStr("test-key-modelgate"))
    client = ProviderClient(
        profile, timeout=5, max_retries=2, transport=httpx2.MockTransport(handle), sleep=no_wait
    )
    try:
        return await run(job("seedream-4.0", "2048x2048"), client), len(sent)
    except ImagegateError as e:
        return e, len(sent)
    finally:
        await client.aclose()


async def no_wait(_: float) -> None:
    return None


def error_reply(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """The doc's error shape: `status: "error"`, a numeric code, the message under message.error.message."""
    return {"status": "error", "code": code, "message": {"error": {"message": message}}, **extra}


@pytest.mark.anyio
@pytest.mark.parametrize("code", [500, 503, 508])
async def test_a_server_error_in_a_200_body_is_retried_as_the_doc_advises(code):
    # seeds/000: case 500/503/508 -> "服务器错误,请稍后重试" (server error, try again later)
    reply, sent = await run_against(error_reply(code, "服务器错误"), fixture("reply_url"))
    assert sent == 2 and reply.artifacts[0].url


@pytest.mark.anyio
async def test_a_429_is_retried_only_when_the_body_says_is_retry():
    # seeds/000: case 429 -> "if (data.is_retry) { … return generateImage(payload) }"
    reply, sent = await run_against(error_reply(429, "请求过于频繁", is_retry=True), fixture("reply_url"))
    assert sent == 2 and reply.artifacts[0].url
    error, sent = await run_against(error_reply(429, "请求过于频繁", is_retry=False), fixture("reply_url"))
    assert sent == 1 and isinstance(error, RateLimited)


@pytest.mark.anyio
async def test_a_bad_request_is_not_retried():
    error, sent = await run_against(error_reply(400, "参数错误"), fixture("reply_url"))
    assert sent == 1 and isinstance(error, UpstreamError) and error.upstream_message == "参数错误"
