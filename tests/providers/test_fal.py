"""The fal adapter's pure parts: the submit request per endpoint form, the queue replies and the result,
and error classification, against the examples of fal's docs (tests/fixtures/fal/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.errors import AuthFailed, ContentRefused, InsufficientBalance, NoImagesReturned, UpstreamError
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.fal import (
    build_request,
    check_status,
    classify_error,
    is_finished,
    parse_result,
    parse_submit,
    with_logs,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "fal"
IMAGE = InputImage("a.png", "image/png", 2, 2, data=b"\x89PNG")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str) -> Route:
    catalog = load_catalog()
    return next(r for r in catalog.routes_for(catalog.resolve_model(model) or model) if r.provider == "fal")


def job(model: str = "flux-2-pro", **kw: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "generate",
        "route": route(model),
        "prompt": "a fox",
        "count": 1,
        "size": ResolvedSize(),
        "knobs": {},
    }
    return Batch(**{**fields, **kw})


def test_flux_takes_image_size_and_a_string_safety_tolerance_and_no_num_images():
    request = build_request(
        job(size=ResolvedSize(1024, 768, "4:3"), knobs={"safety_tolerance": 2, "seed": 1})
    )
    assert request.path == "/fal-ai/flux-2-pro"
    assert request.json == {
        "prompt": "a fox",
        "image_size": {"width": 1024, "height": 768},
        "safety_tolerance": "2",
        "seed": 1,
    }


def test_edits_go_to_the_edit_endpoint_with_image_urls_or_one_image_url():
    flux = build_request(job(tool="edit", images=(IMAGE,)))
    qwen = build_request(job("qwen-image-edit", tool="edit", images=(IMAGE,)))
    assert (flux.path, flux.json) == (
        "/fal-ai/flux-2-pro/edit",
        {"prompt": "a fox", "image_urls": ["data:image/png;base64,iVBORw=="]},
    )
    assert (qwen.path, qwen.json) == (
        "/fal-ai/qwen-image-edit",
        {"prompt": "a fox", "image_url": "data:image/png;base64,iVBORw=="},
    )


def test_nano_banana_pro_takes_a_ratio_a_resolution_and_num_images():
    body = build_request(
        job("gemini-3-pro-image-preview", count=3, size=ResolvedSize(2752, 1536, "16:9", "2K"))
    ).json
    assert body == {"prompt": "a fox", "aspect_ratio": "16:9", "resolution": "2K", "num_images": 3}


def test_the_docs_submit_reply_names_the_urls_to_use():
    submitted = parse_submit(fixture("submit"), "fal", "/fal-ai/fast-sdxl")
    assert submitted.status_url.endswith("/requests/80e732af-660e-45cd-bd63-580e4f2a94cc/status")
    assert with_logs(submitted.status_url).endswith("/status?logs=1")
    bare = parse_submit({"request_id": "r1"}, "fal", "/fal-ai/bytedance/seedream/v4/edit")
    assert (bare.status_url, bare.response_url) == (
        "/fal-ai/bytedance/requests/r1/status",
        "/fal-ai/bytedance/requests/r1",
    )


def test_polling_ends_at_completed_and_an_error_in_a_status_is_raised():
    assert not is_finished(fixture("status_in_queue"))
    assert is_finished({"status": "COMPLETED"})
    check_status({"status": "COMPLETED", "logs": []}, "fal")
    with pytest.raises(UpstreamError):
        check_status({"status": "COMPLETED", "error": "Request was cancelled"}, "fal")


def test_a_result_gives_urls_with_seed_and_warns_about_flagged_images():
    reply = parse_result(fixture("result_qwen"), "fal")
    (artifact,) = reply.artifacts
    assert (artifact.url, artifact.mime, artifact.seed) == (
        "https://v3.fal.media/files/rabbit/abc.png",
        "image/png",
        42,
    )
    assert reply.warnings == ()
    flagged = parse_result({**fixture("result_qwen"), "has_nsfw_concepts": [True]}, "fal")
    assert "flagged" in flagged.warnings[0].detail
    with pytest.raises(NoImagesReturned):
        parse_result({"images": [], "description": "no"}, "fal")


@pytest.mark.parametrize(
    ("status", "body", "kind", "said"),
    [
        (422, fixture("error_content_policy"), ContentRefused, "prompt: The content was flagged"),
        (403, fixture("error_locked"), InsufficientBalance, "Exhausted balance"),
        (401, {"detail": "Invalid key"}, AuthFailed, "Invalid key"),
        (
            422,
            {"detail": [{"loc": ["body", "image_size"], "msg": "bad", "type": "value_error"}]},
            UpstreamError,
            "image_size: bad",
        ),
        (400, {"detail": "Request is still in progress"}, UpstreamError, "still in progress"),
    ],
)
def test_fals_detail_maps_to_its_kind(status, body, kind, said):
    error = classify_error(status, body, "fal")
    assert isinstance(error, kind) and said in (error.upstream_message or "")
