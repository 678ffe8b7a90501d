"""Replicate's wire mapping, pure: the create request each route's `wire.fields` implies, prediction
replies read (recorded by replicate-python's cassettes, tests/fixtures/replicate/), errors classified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import ResolvedSize, load_catalog
from imagegate.errors import AuthFailed, ContentRefused, RateLimited, UpstreamError, UpstreamTimeout
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.replicate import (
    build_request,
    cancel_after,
    classify_error,
    is_finished,
    parse_prediction,
    parse_result,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "replicate"
CATALOG = load_catalog()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def route(model: str) -> Any:
    return next(
        r for r in CATALOG.routes_for(CATALOG.resolve_model(model) or model) if r.provider == "replicate"
    )


def batch(model: str, size: ResolvedSize, count: int = 1, **kw: Any) -> Batch:
    return Batch(
        tool=kw.pop("tool", "generate"), route=route(model), prompt="a fox", count=count, size=size, **kw
    )


PNG = InputImage(name="a.png", mime="image/png", width=8, height=8, url="https://example.com/a.png")


@pytest.mark.parametrize(
    ("model", "size", "knobs", "expected"),
    [
        (  # pixels on FLUX1.1 [pro] go as aspect_ratio=custom + width/height; jpeg is spelled jpg
            "flux-1.1-pro",
            ResolvedSize(1024, 768, "4:3"),
            {"output_format": "jpeg", "prompt_extend": True},
            {
                "width": 1024,
                "height": 768,
                "aspect_ratio": "custom",
                "output_format": "jpg",
                "prompt_upsampling": True,
            },
        ),
        ("flux-1.1-pro", ResolvedSize(ratio="16:9"), {}, {"aspect_ratio": "16:9"}),
        ("seedream-4.0", ResolvedSize(ratio="16:9", tier="4K"), {}, {"aspect_ratio": "16:9", "size": "4K"}),
        (
            "seedream-4.0",
            ResolvedSize(2048, 1536, "4:3"),
            {},
            {"width": 2048, "height": 1536, "size": "custom"},
        ),
        ("nano-banana", ResolvedSize(1344, 768, "16:9", "1K"), {}, {"aspect_ratio": "16:9"}),
        (
            "nano-banana-pro",
            ResolvedSize(5504, 3072, "16:9", "4K"),
            {},
            {"aspect_ratio": "16:9", "resolution": "4K"},
        ),
    ],
)
def test_sizes_and_knobs_go_where_the_routes_fields_say(model, size, knobs, expected):
    request = build_request(batch(model, size, knobs=knobs), timeout=300)
    assert request.json == {"input": {"prompt": "a fox", **expected}}
    assert request.path == f"/models/{route(model).upstream}/predictions"


def test_count_goes_in_num_outputs_only_where_the_model_has_it():
    assert build_request(batch("flux-schnell", ResolvedSize(ratio="1:1"), 3, knobs={}), 300).json == {
        "input": {"prompt": "a fox", "aspect_ratio": "1:1", "num_outputs": 3}
    }
    assert (
        "num_outputs" not in build_request(batch("flux-1.1-pro", ResolvedSize(), knobs={}), 300).json["input"]
    )


def test_references_go_as_a_list_or_as_one_image_as_the_field_says():
    many = build_request(batch("nano-banana", ResolvedSize(), knobs={}, tool="edit", images=(PNG, PNG)), 300)
    one = build_request(batch("flux-kontext-pro", ResolvedSize(), knobs={}, tool="edit", images=(PNG,)), 300)
    assert many.json["input"]["image_input"] == [PNG.url, PNG.url]
    assert one.json["input"]["input_image"] == PNG.url


def test_a_pinned_version_is_created_at_predictions_with_its_version_and_extra_passes_through():
    from dataclasses import replace

    pinned = replace(route("flux-schnell"), upstream="someone/model:abc123")
    job = Batch("generate", pinned, "a fox", 1, ResolvedSize(ratio="1:1"), {}, extra={"go_fast": False})
    request = build_request(job, 300)
    assert request.path == "/predictions"
    assert request.json == {
        "version": "abc123",
        "input": {"prompt": "a fox", "aspect_ratio": "1:1", "num_outputs": 1, "go_fast": False},
    }


@pytest.mark.parametrize(
    ("timeout", "prefer", "deadline"), [(300, "wait", "5m"), (30, "wait=24", "30s"), (90, "wait", "90s")]
)
def test_sync_wait_and_deadline_follow_the_timeout(timeout, prefer, deadline):
    headers = build_request(batch("flux-schnell", ResolvedSize(), knobs={}), timeout).headers
    assert headers == {"Prefer": prefer, "Cancel-After": deadline}
    assert cancel_after(timeout) == deadline


def test_a_succeeded_prediction_yields_its_output_urls_and_metrics():
    reply = parse_result(
        parse_prediction(fixture("prediction-succeeded-sdxl.json"), "replicate"), "replicate"
    )
    (artifact,) = reply.artifacts
    assert artifact.url.endswith("/out-0.png") and artifact.mime == "image/png"
    assert reply.usage == {"predict_time": 4.981337} and reply.request_id == "dzsqmb3bg4lqpjkz2iptjqgccm"


def test_a_single_url_output_is_one_image():
    body = {**fixture("prediction-succeeded-sdxl.json"), "output": "https://replicate.delivery/x/out.webp"}
    assert [a.mime for a in parse_result(parse_prediction(body, "replicate"), "replicate").artifacts] == [
        "image/webp"
    ]


def test_processing_is_not_finished_and_every_end_status_is():
    assert not is_finished(fixture("prediction-processing.json"))
    assert all(is_finished({"status": s}) for s in ("succeeded", "failed", "canceled", "aborted"))


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        ("failed", "NSFW content detected. Try running it again, or try a different prompt.", ContentRefused),
        ("failed", "CUDA out of memory", UpstreamError),
        ("canceled", None, UpstreamError),
        ("aborted", None, UpstreamTimeout),
    ],
)
def test_a_prediction_that_did_not_succeed_is_its_error(status, error, kind):
    body = {**fixture("prediction-processing.json"), "status": status, "error": error}
    with pytest.raises(kind) as raised:
        parse_result(parse_prediction(body, "replicate"), "replicate")
    assert raised.value.upstream_message == error


def test_errors_are_classified_with_replicates_own_detail():
    assert isinstance(error := classify_error(401, fixture("error-401.json"), "replicate"), AuthFailed)
    assert error.upstream_message == "You did not pass a valid authentication token"
    assert isinstance(classify_error(429, {"detail": "Request was throttled."}, "replicate"), RateLimited)
    field = {"type": "invalid", "field": "input.width", "description": "Must be less than or equal to 1440"}
    invalid = {
        "title": "Input validation failed",
        "detail": "input.width: too big",
        "invalid_fields": [field],
    }
    error = classify_error(422, invalid, "replicate")
    assert isinstance(error, UpstreamError) and "422" in error.message
    assert error.upstream_message == "input.width: too big; input.width: Must be less than or equal to 1440"
    assert isinstance(classify_error(200, {"unexpected": True}, "replicate"), UpstreamError)
