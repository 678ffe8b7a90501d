"""The BFL adapter's pure parts: request building, submit/poll parsing and error classification,
against the reply examples of shared/providers/bfl-flux.md (tests/fixtures/bfl/)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.bfl import (
    Submitted,
    build_request,
    classify_error,
    completed,
    is_finished,
    parse_result,
    parse_submit,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bfl"
PNG = b"\x89PNG\r\n\x1a\n fake bytes"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str) -> Route:
    return next(r for r in load_catalog().routes_for(model) if r.provider == "bfl")


def job(model: str = "flux-2-pro", **kw: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "generate",
        "route": route(model),
        "prompt": "a red fox",
        "count": 1,
        "size": ResolvedSize(),
        "knobs": {},
    }
    return Batch(**{**fields, **kw})


# ---- build_request


@pytest.mark.parametrize(
    ("model", "size", "expected_path", "size_fields"),
    [
        ("flux-2-pro", ResolvedSize(1024, 768, "4:3"), "/flux-2-pro", {"width": 1024, "height": 768}),
        ("flux-2-max", ResolvedSize(), "/flux-2-max", {}),
        ("flux-1.1-pro", ResolvedSize(1440, 256, "45:8"), "/flux-pro-1.1", {"width": 1440, "height": 256}),
        ("flux-kontext-pro", ResolvedSize(ratio="7:3"), "/flux-kontext-pro", {"aspect_ratio": "7:3"}),
        ("flux-1.1-pro-ultra", ResolvedSize(ratio="16:9"), "/flux-pro-1.1-ultra", {"aspect_ratio": "16:9"}),
    ],
)
def test_the_size_goes_as_pixels_or_aspect_ratio_to_the_models_path(model, size, expected_path, size_fields):
    request = build_request(job(model, size=size))
    path, body = request.path, request.json

    assert path == expected_path
    assert body == {"prompt": "a red fox", **size_fields}


def test_knobs_take_bfl_field_names_and_extra_is_merged_as_is():
    knobs = {
        "seed": 7,
        "safety_tolerance": 5,
        "output_format": "png",
        "guidance_scale": 3.5,
        "prompt_extend": False,
    }
    body = build_request(job("flux-2-flex", knobs=knobs, extra={"steps": 20})).json

    assert body == {
        "prompt": "a red fox",
        "seed": 7,
        "safety_tolerance": 5,
        "output_format": "png",
        "guidance": 3.5,
        "prompt_upsampling": False,
        "steps": 20,
    }


def test_references_go_as_numbered_fields_urls_as_given_bytes_as_raw_base64():
    images = (
        InputImage("images[0]", "image/png", 8, 8, data=PNG),
        InputImage("images[1]", "", 0, 0, url="https://example.com/b.png"),
        InputImage("images[2]", "image/png", 8, 8, data=PNG),
    )
    body = build_request(job(tool="edit", images=images)).json

    raw = base64.b64encode(PNG).decode()
    assert {k: v for k, v in body.items() if k.startswith("input_image")} == {
        "input_image": raw,
        "input_image_2": "https://example.com/b.png",
        "input_image_3": raw,
    }
    assert not raw.startswith("data:")


# ---- parse_submit / is_finished / parse_result


def test_submit_reply_gives_the_returned_polling_url_and_the_billing_figures():
    submitted = parse_submit(fixture("submit"), "bfl")
    url, usage = submitted.polling_url, submitted.usage

    assert submitted.task_id == "d5ba37dc-ba09-4658-852e-deea7e176439"
    assert url == "https://api.eu2.bfl.ai/v1/get_result?id=d5ba37dc-ba09-4658-852e-deea7e176439"
    assert usage == {"cost": 3.0, "input_mp": 0.0, "output_mp": 1.05}


def test_a_submit_reply_without_polling_url_falls_back_to_get_result_by_id():
    submitted = parse_submit({"id": "abc", "status": "Pending", "webhook_url": "https://hook.example"}, "bfl")

    assert (submitted.polling_url, submitted.usage) == ("/get_result?id=abc", {})


def test_a_submit_reply_without_id_is_an_upstream_error_with_its_detail():
    with pytest.raises(UpstreamError) as caught:
        parse_submit({"detail": "Something broke"}, "bfl")
    assert caught.value.upstream_message == "Something broke"


@pytest.mark.parametrize(
    ("body", "finished"),
    [
        (fixture("poll_pending"), False),
        ({"status": "Reasoning"}, False),
        ({"status": "Generating"}, False),
        (fixture("poll_ready"), True),
        (fixture("poll_moderated"), True),
        ({"status": "Content Moderated"}, True),
        ({"status": "Error"}, True),
        ({"status": "Task not found"}, True),
        ({"state": "Pending"}, False),
        ({"detail": "Internal Server Error"}, True),  # no status at all: stop and report it
        ("not json", True),
    ],
)
def test_polling_stops_on_any_status_but_the_in_progress_ones(body, finished):
    assert is_finished(body) is finished


def test_a_ready_task_gives_its_sample_url_seed_revised_prompt_and_the_submit_usage():
    submitted = Submitted(polling_url="/get_result?id=t1", usage={"cost": 3.0}, task_id="t1")
    reply = completed(parse_result(fixture("poll_ready"), "bfl"), submitted, "a red fox")

    (artifact,) = reply.artifacts
    assert artifact.url == fixture("poll_ready")["result"]["sample"]
    assert artifact.data is None and artifact.mime == "image/jpeg"
    assert artifact.seed == 42
    assert artifact.revised_prompt == "a red fox in the snow, golden hour, shallow depth of field"
    assert reply.usage == {"cost": 3.0} and reply.request_id == "t1"


def test_a_result_prompt_that_only_echoes_the_prompt_is_not_a_revised_prompt():
    body = {"status": "Ready", "result": {"sample": "https://delivery.bfl.ai/x.png", "prompt": "a red fox"}}

    submitted = Submitted(polling_url="/get_result?id=t1", usage={}, task_id="t1")
    (artifact,) = completed(parse_result(body, "bfl"), submitted, "a red fox").artifacts
    assert artifact.revised_prompt is None and artifact.mime == "image/png"


@pytest.mark.parametrize(
    ("body", "error", "fragments"),
    [
        (fixture("poll_moderated"), ContentRefused, ["prompt or an input image", "Request Moderated"]),
        (
            {"status": "Content Moderated", "details": {"Moderation Reasons": ["NSFW"]}},
            ContentRefused,
            ["generated image", "Moderation Reasons: NSFW"],
        ),
        (
            {"status": "Error", "details": {"error": "GPU fell over"}},
            UpstreamError,
            ["failed", "GPU fell over"],
        ),
        ({"status": "Task not found", "result": None}, UpstreamError, ["Task not found"]),
        ({"status": "Ready", "result": None}, NoImagesReturned, ["without a result.sample"]),
        ({"status": "Ready", "result": "oops"}, UpstreamError, ["malformed task"]),
        ({"status": "Exploded"}, UpstreamError, ["'Exploded'"]),
        ({"detail": "Internal Server Error"}, UpstreamError, ["Internal Server Error"]),
    ],
)
def test_a_task_that_did_not_end_ready_is_classified(body, error, fragments):
    with pytest.raises(ImagegateError) as caught:
        parse_result(body, "bfl")

    assert type(caught.value) is error
    for fragment in fragments:
        assert fragment in caught.value.agent_text()


# ---- classify_error


@pytest.mark.parametrize(
    ("status", "body", "error", "upstream"),
    [
        (402, {"detail": "Insufficient credits"}, InsufficientBalance, "Insufficient credits"),
        (403, {"detail": "Not authenticated"}, AuthFailed, "Not authenticated"),
        (422, fixture("error_422"), UpstreamError, "width: Input should be a multiple of 16"),
        (422, {"detail": "Bad input"}, UpstreamError, "Bad input"),
        (400, {"message": "malformed"}, UpstreamError, "malformed"),
        (429, {"detail": "Too many active tasks"}, RateLimited, "Too many active tasks"),
        (500, {"detail": "Internal Server Error"}, UpstreamError, "Internal Server Error"),
        (503, "Service Unavailable", UpstreamError, "Service Unavailable"),
    ],
)
def test_http_errors_map_to_the_tree_with_the_upstream_message(status, body, error, upstream):
    classified = classify_error(status, body, "bfl")

    assert type(classified) is error
    assert classified.upstream_message == upstream
    assert upstream in classified.agent_text()
