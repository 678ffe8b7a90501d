"""The MixRoute adapter's pure parts: per-family request bodies checked against the doc's own curl examples,
both reply shapes (bare and `{code, msg, data}`) and error classification, with the doc's examples as fixtures
(tests/fixtures/mixroute/, from shared/seeds/001_ecfd8d4591bdfd3a.txt); plus one call through a MockTransport
for what `run` adds (scrubbing texts that arrive in a 200 body)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from imagegate.catalog import ResolvedSize, Route, load_catalog, resolve_size
from imagegate.catalog.spec import WireOptions
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    InsufficientBalance,
    InvalidRequest,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.http import ProviderClient, ProviderProfile
from imagegate.providers.mixroute import DIALECTS, build_request, classify_error, parse_reply, run

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mixroute"
PNG = b"\x89PNG\r\n\x1a\n fake png bytes"
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
DOC_IMAGE = "data:image/png;base64,iVBORw0KGgoAAxxxx..."  # the doc's truncated placeholder
KEY = "test-sentinel-mixroute-key"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


DOC = fixture("doc_facts")  # the doc's own lines, fact by fact
SEEDREAM = ("seedream-3.0", "seedream-4.0", "seedream-4.5", "seededit-3.0")


def route(model: str) -> Route:
    """MixRoute's route of a model, named by the doc's id or the catalog's (aliases resolve)."""
    catalog = load_catalog()
    return next(
        r for r in catalog.routes_for(catalog.resolve_model(model) or model) if r.provider == "mixroute"
    )


def job(model: str, **kw: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "edit" if kw.get("images") else "generate",
        "route": route(model),
        "prompt": "a red fox",
        "count": 1,
        "size": ResolvedSize(),
        "knobs": {},
    }
    return Batch(**{**fields, **kw})


def image(width: int = 64, height: int = 64) -> InputImage:
    return InputImage(name="ref", mime="image/png", width=width, height=height, data=PNG)


def with_image(body: dict[str, Any], data_url: str) -> dict[str, Any]:
    """The doc's example with its truncated placeholder image replaced by ours."""
    return json.loads(json.dumps(body).replace(DOC_IMAGE, data_url))


# ---- build_request: the doc's curl examples, field for field


def test_every_mixroute_offering_names_a_dialect_the_adapter_speaks():
    routes = [r for r in load_catalog().routes if r.provider == "mixroute"]
    assert routes
    assert {r.wire.dialect for r in routes} == set(DIALECTS)


def test_gemini_text_to_image_is_the_docs_example_but_quality():
    doc = fixture("request_gemini")
    built = job(
        "gemini-2.5-flash-image",
        prompt=doc["prompt"],
        size=ResolvedSize(ratio="16:9", tier="2K"),
        knobs={"output_format": "png"},
        extra={"temperature": 1.1, "top_p": 0.95},
    )
    request = build_request(built)
    path, body = request.path, request.json
    assert path == "/images/generations"
    # `quality` has no documented values for Gemini, so it is not offered (see the offering's notes).
    assert body == {k: v for k, v in doc.items() if k != "quality"}


def test_gemini_edit_carries_the_prompt_only_in_contents_text_first():
    doc = fixture("request_gemini_edit")
    prompt = doc["contents"][0]["parts"][0]["text"]
    built = job(
        "gemini-2.5-flash-image",
        tool="edit",
        prompt=prompt,
        size=ResolvedSize(ratio="16:9", tier="3K"),
        images=(image(),),
        extra={"temperature": 1.1, "top_p": 0.95},
    )
    body = build_request(built).json
    assert "prompt" not in body
    expected = {k: v for k, v in with_image(doc, DATA_URL).items() if k != "quality"}
    assert body == {**expected, "n": 1, "response_modalities": "image"}


@pytest.mark.parametrize(
    ("size", "wire"),
    [
        (ResolvedSize(), {}),  # no size: the upstream follows the input's aspect, else 1:1
        (ResolvedSize(tier="4K"), {"image_size": "4K"}),
        (ResolvedSize(ratio="21:9"), {"size": "21:9"}),
        (ResolvedSize(ratio="9:16", tier="1K"), {"size": "9:16", "image_size": "1K"}),
    ],
)
def test_gemini_sends_only_the_parts_of_the_size_that_are_known(size, wire):
    body = build_request(job("gemini-3-pro-image-preview", size=size)).json
    assert {k: body[k] for k in ("size", "image_size") if k in body} == wire


def test_gemini_jpeg_output_is_asked_as_a_mime_type():
    body = build_request(job("gemini-3-pro-image-preview", knobs={"output_format": "jpeg"})).json
    assert body["mime_type"] == "image/jpeg"
    assert "output_format" not in body


def test_seedream_text_to_image_is_the_docs_example():
    doc = fixture("request_seedream")
    built = job(
        "seedream-4.0",
        prompt=doc["prompt"],
        size=ResolvedSize(2048, 2048, "1:1", "2K"),
        knobs={"watermark": False, "seed": 12345},
        extra={"optimize_prompt_options": {"mode": "standard"}},
    )
    assert build_request(built).json == doc


def test_seedream_edit_is_the_docs_example_with_images_before_the_text():
    doc = fixture("request_seedream_edit")
    built = job(
        "seedream-4.0",
        tool="edit",
        prompt=doc["prompt"],
        size=ResolvedSize(2048, 2048, "1:1", "2K"),
        knobs={"watermark": False, "seed": 12345},
        images=(image(),),
    )
    assert build_request(built).json == with_image(doc, DATA_URL)


@pytest.mark.parametrize(
    ("model", "size", "wire"),
    [
        ("seedream-4.0", ResolvedSize(tier="4K"), "4K"),
        ("seedream-4.5", ResolvedSize(2848, 1600, "16:9", "2K"), "2848x1600"),
        ("seedream-3.0", ResolvedSize(512, 2048, "1:4"), "512x2048"),
        ("seededit-3.0", ResolvedSize(auto=True), "adaptive"),
        ("seededit-3.0", ResolvedSize(), None),
    ],
)
def test_seedream_size_is_pixels_a_bare_tier_or_adaptive(model, size, wire):
    body = build_request(job(model, size=size)).json
    assert body.get("size") == wire
    assert "image_size" not in body and "n" not in body and "response_format" not in body


def test_group_mode_is_a_switch_without_a_count_so_no_route_asks_for_it():
    switch, (line,) = DOC["group_mode"][1], [q for q in DOC["counts"] if "組圖功能" in q]
    assert re.findall(r'"(\w+)"', switch) == ["disabled", "auto"]  # the only values: no count field
    assert re.search(r"(\d)-(\d)", line).groups() == ("1", "4")  # and the model makes 1-4 in "auto"
    for model in SEEDREAM:
        assert route(model).per_call == 1 and not route(model).wire.sequential
        for count in (1, 3):  # even a batch of several (the planner never makes one) stays single
            assert "sequential_image_generation" not in build_request(job(model, count=count)).json


def test_gpt_image_text_to_image_is_the_docs_example():
    doc = fixture("request_gpt_image")
    built = job(
        "gpt-image-1", prompt=doc["prompt"], size=ResolvedSize(1024, 1024, "1:1"), knobs={"quality": "high"}
    )
    assert build_request(built).json == doc


def test_gpt_image_edit_is_the_docs_example_with_the_image_as_a_data_url():
    doc = fixture("request_gpt_image_edit")
    built = job(
        "gpt-image-1",
        tool="edit",
        prompt=doc["prompt"],
        size=ResolvedSize(1024, 1024, "1:1"),
        knobs={"quality": "high", "input_fidelity": "medium"},
        images=(image(),),
    )
    assert build_request(built).json == with_image(doc, DATA_URL)


def test_gpt_image_asks_for_the_whole_batch_in_one_call():
    body = build_request(job("gpt-image-1", count=4, size=ResolvedSize(1536, 1024, "3:2"))).json
    assert (body["n"], body["size"]) == (4, "1536x1024")


def test_qwen_text_to_image_is_the_docs_example_with_the_seed_as_a_string():
    doc = fixture("request_qwen")
    text = doc["input"]["messages"][0]["content"][0]["text"]
    knobs = {"negative_prompt": "1", "prompt_extend": True, "seed": 4, "watermark": True}
    assert build_request(job("qwen-image-plus", prompt=text, knobs=knobs)).json == doc


def test_qwen_sends_size_as_dashscope_w_star_h_and_images_before_the_text():
    built = job(
        "qwen-image-edit-plus",
        tool="edit",
        size=ResolvedSize(1024, 768, "4:3"),
        images=(image(), image(32, 32)),
    )
    body = build_request(built).json
    assert body["parameters"] == {"size": "1024*768"}
    assert body["input"]["messages"][0]["content"] == [
        {"image": DATA_URL},
        {"image": DATA_URL},
        {"text": "a red fox"},
    ]
    assert "prompt" not in body and "n" not in body


def test_a_url_input_is_passed_as_the_url():
    url_image = InputImage(name="ref", mime="", width=0, height=0, url="https://example.com/in.png")
    body = build_request(job("seedream-4.0", tool="edit", images=(url_image,))).json
    assert body["contents"][0]["parts"][0] == {"image": "https://example.com/in.png"}


def test_the_dialect_decides_the_body_not_the_model_name():
    gpt = route("gpt-image-1")
    as_gemini = replace(gpt, wire=WireOptions(dialect="gemini"))
    body = build_request(job("gpt-image-1", route=as_gemini, size=ResolvedSize(ratio="1:1"))).json
    assert body["model"] == "gpt-image-1"
    assert body["size"] == "1:1" and body["response_modalities"] == "image"


def test_extra_is_merged_last_and_as_is():
    body = build_request(job("gemini-3-pro-image-preview", extra={"temperature": 0.2, "n": 1})).json
    assert body["temperature"] == 0.2


# ---- the catalog's MixRoute offerings against the doc, fact by fact (tests/fixtures/mixroute/doc_facts.json)


def mixroute_routes() -> list[Route]:
    return [r for r in load_catalog().routes if r.provider == "mixroute"]


def test_every_model_id_the_doc_names_is_sent_by_one_route():
    named = set(re.findall(r"(?:qwen|gpt|doubao|gemini)[\w.-]*\w", " ".join(DOC["model_ids"] + DOC["table"])))
    assert len(named) == 10
    assert sorted(r.upstream for r in mixroute_routes()) == sorted(named)


def test_gpt_image_sizes_default_quality_and_fidelity_are_the_docs():
    sizes, quality, fidelity = DOC["gpt_image"]
    *listed, default = re.findall(r"\d+x\d+", sizes)
    for model in ("gpt-image-1", "gpt-image-1-mini"):
        gpt = route(model)
        assert (gpt.sizes.kind, gpt.sizes.sizes, gpt.sizes.default) == ("list", listed, default)
        assert set(gpt.knobs["quality"].values or ()) == set(re.findall(r'"(\w+)"', quality))
    assert set(route("gpt-image-1").knobs["input_fidelity"].values or ()) == set(
        re.findall(r'"(\w+)"', fidelity)
    )


def test_gemini_ratios_and_output_formats_are_the_docs():
    ratios, formats = DOC["gemini"]
    for model in ("gemini-2.5-flash-image", "gemini-3-pro-image-preview"):
        gemini = route(model)
        assert (gemini.sizes.kind, gemini.sizes.ratios) == ("ratio", re.findall(r"\d+:\d+", ratios))
        assert list(gemini.output_formats) == re.findall(r"image/(\w+)", formats)
        assert gemini.knobs["output_format"].values == list(gemini.output_formats)


FAMILY_ROUTES = {
    "通義千問": ("qwen-image-edit-plus",),
    "GPT Image": ("gpt-image-1", "gpt-image-1-mini"),
    "豆包 Seedream 4.x": ("seedream-4.0", "seedream-4.5"),
    "Gemini": ("gemini-2.5-flash-image", "gemini-3-pro-image-preview"),
}


@pytest.mark.parametrize("line", DOC["input_formats"])
def test_input_image_formats_and_bytes_are_the_docs(line):
    family, formats, megabytes = re.fullmatch(r"- (.+?):(.+),最大 (\d+)MB", line).groups()
    wanted = {"jpeg" if f == "JPG" else f.lower() for f in formats.split("、")}
    for model in FAMILY_ROUTES[family]:
        inputs = route(model).inputs
        assert set(inputs.formats or ()) == wanted, model
        assert inputs.max_bytes == int(megabytes) * 1024 * 1024, model


def test_images_per_call_are_the_docs():
    _, gpt, _, qwen = DOC["counts"]  # GPT n 1-10; Seedream group mode (above); Qwen one per request
    low, high = map(int, re.search(r"(\d+)-(\d+)", gpt).groups())
    assert "每次請求生成1張" in qwen
    for model in ("gpt-image-1", "gpt-image-1-mini"):
        assert (low, route(model).per_call, route(model).max_n) == (1, high, high)
    for model in ("qwen-image-plus", "qwen-image-edit-plus"):
        assert route(model).per_call == 1


def test_seedream_4x_takes_the_docs_tiers_and_sizes_and_never_a_bare_1k():
    _, _, four_x, _, three = DOC["seedream_sizes"]
    tiers = re.findall(r"\dK", four_x)
    assert tiers == ["2K", "4K"]
    for model in ("seedream-4.0", "seedream-4.5"):
        rule = route(model).sizes
        assert rule.tiers == tiers
        for pixels in re.findall(r"\d+x\d+", four_x):
            assert resolve_size(rule, pixels, None, model).pixels == pixels
        with pytest.raises(InvalidRequest, match="2K, 4K"):
            resolve_size(rule, None, "1K", model)
        body = build_request(job(model, size=resolve_size(rule, None, "2K", model))).json
        assert body["size"] == "2K"
    for pixels in re.findall(r"\d+x\d+", three):
        assert resolve_size(route("seedream-3.0").sizes, pixels, None, "seedream-3.0").pixels == pixels


def test_seedream_4_0_keeps_sizes_below_2k_because_the_doc_sends_1024x1024_itself():
    base = fixture("request_seedream_base")  # the doc's last example, model "seedream-4.0-base"
    seedream = route("seedream-4.0")
    assert resolve_size(seedream.sizes, base["size"], None, "x").pixels == base["size"]
    assert "sizes" in seedream.unconfirmed and "1024x1024" in seedream.unconfirmed["sizes"]


@pytest.mark.parametrize("model", ["seedream-3.0", "seededit-3.0"])
def test_guidance_scale_spans_the_docs_recommended_range(model):
    low, high = map(float, re.search(r"([\d.]+)-([\d.]+)", DOC["guidance_scale"][0]).groups())
    knob = route(model).knobs["guidance_scale"]
    assert (knob.min, knob.max) == (low, high)


def test_response_format_is_sent_only_where_the_docs_example_sends_it():
    only_b64 = [line for line in DOC["response_format"] if "僅支持" in line]
    assert only_b64 == ["- GPT Image 系列:僅支持", "- Gemini 系列:僅支持"]
    for r in mixroute_routes():
        body = build_request(job(r.model, images=(image(),) if not r.can("generate") else ())).json
        assert body.get("response_format") == ("b64_json" if r.wire.dialect == "gemini" else None), r.model


def test_gpt_image_1_takes_several_references_as_its_multi_image_fusion_says():
    (row,) = [line for line in DOC["table"] if line.startswith("gpt-image-1 |")]
    assert "多圖融合" in row
    gpt = route("gpt-image-1")
    assert gpt.can("multi_reference") and (gpt.inputs.max_images or 0) > 1
    assert "inputs" in gpt.unconfirmed  # the doc gives neither the count nor the form
    body = build_request(job("gpt-image-1", images=(image(), image(32, 32)))).json
    assert body["image"] == [DATA_URL, DATA_URL]


def test_qwen_sends_no_size_unless_one_is_asked():
    for model in ("qwen-image-plus", "qwen-image-edit-plus"):
        qwen = route(model)
        assert "sizes" in qwen.unconfirmed
        images = () if qwen.can("generate") else (image(),)
        unasked = build_request(
            job(model, images=images, size=resolve_size(qwen.sizes, None, None, model))
        ).json
        assert "size" not in unasked.get("parameters", {})
    asked = resolve_size(route("qwen-image-plus").sizes, "16:9", None, "qwen-image-plus")
    assert build_request(job("qwen-image-plus", size=asked)).json["parameters"] == {"size": "1664*928"}


# ---- parse_reply: both documented shapes


def test_the_docs_wrapped_reply_yields_its_base64_image_and_no_empty_fields():
    body = fixture("reply_wrapped")
    body["data"]["data"][0]["b64_json"] = base64.b64encode(PNG).decode()  # the doc's base64 is truncated
    reply = parse_reply(body, "mixroute")
    (artifact,) = reply.artifacts
    assert artifact.decoded() == PNG
    assert artifact.url is None and artifact.revised_prompt is None  # "" means none
    assert reply.failures == ()


def test_the_docs_truncated_base64_is_an_upstream_error():
    (artifact,) = parse_reply(fixture("reply_wrapped"), "mixroute").artifacts
    with pytest.raises(UpstreamError, match="does not decode"):
        artifact.decoded()  # the core decodes each image on its own


def test_the_docs_bare_reply_yields_its_url_and_revised_prompt():
    (artifact,) = parse_reply(fixture("reply_bare"), "mixroute").artifacts
    assert artifact.url == "https://example.com/generated-image.png"
    assert artifact.revised_prompt == "一隻可愛的橙色小貓坐在花園裡"


def test_usage_is_passed_through_from_either_shape():
    usage = {"input_tokens": 7, "output_tokens": 4160, "total_tokens": 4167}
    item = {"b64_json": base64.b64encode(PNG).decode()}
    assert parse_reply({"created": 1, "data": [item], "usage": usage}, "mixroute").usage == usage
    wrapped = {"code": 200, "msg": "ok", "data": {"created": 1, "data": [item], "usage": usage}}
    assert parse_reply(wrapped, "mixroute").usage == usage


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"code": 401, "msg": "無效的令牌", "data": None}, AuthFailed, "無效的令牌"),
        ({"code": 402, "msg": "餘額不足", "data": None}, InsufficientBalance, "餘額不足"),
        ({"code": 429, "msg": "too many requests", "data": None}, RateLimited, "too many requests"),
        ({"code": 500, "msg": "upstream failed", "data": None}, UpstreamError, "upstream failed"),
        ({"code": 400, "msg": "sensitive content", "data": None}, ContentRefused, "sensitive"),
        ({"code": "InvalidParameter", "message": "bad size"}, UpstreamError, "bad size"),
        ({"error": {"message": "by the safety system", "code": None}}, ContentRefused, "safety system"),
    ],
)
def test_a_wrapped_or_bare_error_in_a_200_body_raises_with_the_upstreams_message(body, error, message):
    with pytest.raises(error) as raised:
        parse_reply(body, "mixroute")
    assert message in (raised.value.upstream_message or "")


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200, "msg": "操作成功", "data": None},
        {"code": 200, "msg": "操作成功", "data": {"data": [], "created": 1}},
        {"code": 200, "msg": "操作成功", "data": {"data": [{"url": "", "b64_json": ""}], "created": 1}},
        {"created": 1, "data": []},
    ],
)
def test_a_success_without_an_image_is_no_images(body):
    with pytest.raises(NoImagesReturned):
        parse_reply(body, "mixroute")


@pytest.mark.parametrize("body", [[1, 2], "<html>busy</html>", {"code": 200, "data": {"data": "x"}}])
def test_a_body_of_neither_shape_is_an_upstream_error(body):
    with pytest.raises(UpstreamError):
        parse_reply(body, "mixroute")


def test_per_image_refusals_are_failures_beside_the_images_that_came():
    error = {"code": "OutputImageSensitiveContentDetected", "message": "may contain sensitive information"}
    refused = {"error": error}
    reply = parse_reply({"created": 1, "data": [{"url": "https://x/1.jpeg"}, refused]}, "mixroute")
    assert len(reply.artifacts) == 1
    assert reply.failures == ("may contain sensitive information",)
    with pytest.raises(ContentRefused):
        parse_reply({"created": 1, "data": [refused]}, "mixroute")


# ---- classify_error


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": {"message": "Invalid token (無效的令牌).", "code": "invalid_api_key"}}, AuthFailed),
        (403, {"error": {"message": "用户额度不足", "code": "insufficient_user_quota"}}, InsufficientBalance),
        (402, {"code": 402, "msg": "Insufficient balance (餘額不足)", "data": None}, InsufficientBalance),
        (429, {"error": {"message": "Rate limit exceeded", "code": "rate_limit_exceeded"}}, RateLimited),
        (400, {"error": {"message": "rejected", "code": "content_policy_violation"}}, ContentRefused),
        (400, {"error": {"message": "blocked", "code": "moderation_blocked"}}, ContentRefused),
        (400, {"code": "DataInspectionFailed", "message": "inappropriate content"}, ContentRefused),
        (400, {"error": {"code": "InputTextSensitiveContentDetected", "message": "x"}}, ContentRefused),
        (400, {"code": 400, "msg": "提示詞包含違規內容", "data": None}, ContentRefused),
        (400, {"error": {"message": "Invalid size", "code": "invalid_parameter"}}, UpstreamError),
        (500, {"error": {"message": "Internal server error.", "code": "internal_error"}}, UpstreamError),
        (502, "<html>Bad gateway</html>", UpstreamError),
        (503, {"code": 503, "msg": "No channel is available", "data": None}, UpstreamError),
        (504, {"error": {"message": "Gateway timeout"}}, UpstreamTimeout),
        (200, {"code": 429, "msg": "slow down", "data": None}, RateLimited),
    ],
)
def test_error_replies_map_into_the_tree(status, body, error):
    classified = classify_error(status, body, "mixroute")
    assert type(classified) is error
    assert classified.upstream_message


def test_a_classified_error_keeps_the_upstreams_own_message():
    body = {"code": 402, "msg": "Insufficient balance (餘額不足), please top up.", "data": None}
    error = classify_error(402, body, "mixroute")
    assert error.upstream_message == "Insufficient balance (餘額不足), please top up."
    assert "mixroute" in error.agent_text() and "餘額不足" in error.agent_text()


def test_server_errors_stay_retryable_and_client_errors_do_not():
    assert classify_error(502, {"error": {"message": "x"}}, "mixroute").retryable
    assert not classify_error(400, {"error": {"message": "x"}}, "mixroute").retryable


# ---- run: one call through a MockTransport


async def call(reply: httpx2.Response, seen: list[httpx2.Request] | None = None) -> Any:
    def handler(request: httpx2.Request) -> httpx2.Response:
        (seen if seen is not None else []).append(request)
        return reply

    profile = ProviderProfile(id="mixroute", base_url="https://console.mixroute.io/v1", key=SecretStr(KEY))
    client = ProviderClient(profile, timeout=5, max_retries=0, transport=httpx2.MockTransport(handler))
    try:
        return await run(job("gpt-image-1", size=ResolvedSize(1024, 1024, "1:1")), client)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_run_posts_the_body_with_the_key_and_reads_the_reply():
    seen: list[httpx2.Request] = []
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}
    reply = await call(httpx2.Response(200, json=body), seen)
    assert reply.artifacts[0].decoded() == PNG
    (request,) = seen
    assert str(request.url) == "https://console.mixroute.io/v1/images/generations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content)["model"] == "gpt-image-1"
