"""The OpenRouter adapter's pure parts: the chat-completion request, reading images out of the reply and
classifying errors, against the examples of OpenRouter's docs (tests/fixtures/openrouter/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.openrouter import build_request, classify_error, parse_reply

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openrouter"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str) -> Route:
    catalog = load_catalog()
    return next(
        r for r in catalog.routes_for(catalog.resolve_model(model) or model) if r.provider == "openrouter"
    )


def job(model: str = "gemini-2.5-flash-image", **kw: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "generate",
        "route": route(model),
        "prompt": "a sunset",
        "count": 1,
        "size": ResolvedSize(),
        "knobs": {},
    }
    return Batch(**{**fields, **kw})


def test_the_docs_request_for_gemini_3_pro_with_ratio_and_size():
    size = ResolvedSize(5504, 3072, "16:9", "4K")
    body = build_request(job("gemini-3-pro-image-preview", size=size)).json
    assert body == {
        "model": "google/gemini-3-pro-image-preview",
        "messages": [{"role": "user", "content": "a sunset"}],
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": "16:9", "image_size": "4K"},
    }


def test_a_model_without_tiers_gets_no_image_size_and_image_only_models_ask_for_image_alone():
    nano = build_request(job(size=ResolvedSize(1344, 768, "16:9", "1K"))).json
    flux = build_request(job("flux-2-pro", size=ResolvedSize(ratio="3:4"), knobs={"seed": 5})).json
    assert nano["image_config"] == {"aspect_ratio": "16:9"}
    assert (flux["modalities"], flux["image_config"], flux["seed"]) == (["image"], {"aspect_ratio": "3:4"}, 5)


def test_edit_puts_the_text_first_then_the_images_and_extra_image_config_adds_to_ours():
    images = (
        InputImage("a.png", "image/png", 2, 2, data=b"\x89PNG"),
        InputImage("b", "image/jpeg", 2, 2, url="https://example.com/b.jpg"),
    )
    request = build_request(
        job(tool="edit", images=images, size=ResolvedSize(ratio="1:1"), extra={"image_config": {"x": 1}})
    )
    text, first, second = request.json["messages"][0]["content"]
    assert text == {"type": "text", "text": "a sunset"}
    assert first["image_url"]["url"] == "data:image/png;base64,iVBORw=="
    assert second == {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}
    assert request.json["image_config"] == {"aspect_ratio": "1:1", "x": 1}


def test_the_docs_reply_gives_the_data_url_image_and_the_text_as_a_note():
    reply = parse_reply(fixture("reply_image"), "openrouter")
    (artifact,) = reply.artifacts
    assert (artifact.encoded, artifact.mime) == ("iVBORw0KGgoAAAANSUhEUgAA", "image/png")
    assert reply.note == "I've generated a beautiful sunset image for you."


def test_an_http_url_image_is_downloaded_and_a_reply_without_images_says_why():
    body = {"choices": [{"message": {"images": [{"image_url": {"url": "https://cdn.example/x.png"}}]}}]}
    assert parse_reply(body, "openrouter").artifacts[0].url == "https://cdn.example/x.png"
    with pytest.raises(NoImagesReturned) as none:
        parse_reply({"choices": [{"message": {"content": "Sure! What style?"}}]}, "openrouter")
    assert none.value.upstream_message == "Sure! What style?"
    refused = {"choices": [{"finish_reason": "content_filter", "message": {"content": "I can't."}}]}
    with pytest.raises(ContentRefused):
        parse_reply(refused, "openrouter")


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        (403, "error_moderation", ContentRefused),
        (403, "error_guardrail", ContentRefused),
        (200, "error_rate_limit_in_200", RateLimited),
    ],
)
def test_the_docs_error_examples_map_to_their_kinds(status, name, kind):
    error = classify_error(status, fixture(name), "openrouter")
    assert isinstance(error, kind)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, 401, AuthFailed),
        (402, 402, InsufficientBalance),
        (200, 402, InsufficientBalance),
        (502, 502, UpstreamError),
    ],
)
def test_the_status_or_the_code_in_a_200_decides_the_kind(status, code, kind):
    error = classify_error(status, {"error": {"code": code, "message": "said"}}, "openrouter")
    assert isinstance(error, kind) and error.upstream_message == "said"


def test_an_error_inside_a_200_reply_is_raised_as_its_kind():
    with pytest.raises(InsufficientBalance):
        parse_reply({"error": {"code": 402, "message": "Insufficient credits"}}, "openrouter")
