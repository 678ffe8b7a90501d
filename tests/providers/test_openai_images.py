"""The OpenAI Images adapter's pure parts, which serve `openai`, `zhaotou`, `modelmax` and any
OpenAI-compatible provider of the config file: generations as JSON and edits as multipart
(openai.md §2-3), both image spellings of a reply, the error codes of §7, and the `{code, msg, data}`
envelope a profile may name; plus calls through a MockTransport for what `run` adds. Fixtures in
tests/fixtures/openai/ follow the API reference's examples."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from imagegate import codec
from imagegate.catalog import ResolvedSize, Route, load_catalog, resolve_size
from imagegate.catalog.spec import WireOptions
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    UpstreamError,
)
from imagegate.providers.base import Batch, InputImage, reading
from imagegate.providers.http import ProviderClient, ProviderProfile
from imagegate.providers.openai_images import build_request, classify_error, parse_reply, run

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"
PNG = b"\x89PNG\r\n\x1a\n fake png bytes"
KEY = "test-sentinel-openai-key"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(provider: str = "openai", model: str = "gpt-image-1") -> Route:
    return next(r for r in load_catalog().routes_for(model) if r.provider == provider)


def job(**kw: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "generate",
        "route": route(),
        "prompt": "a red fox",
        "count": 1,
        "size": ResolvedSize(1024, 1024, "1:1"),
        "knobs": {},
    }
    return Batch(**{**fields, **kw})


def image(name: str = "ref", mime: str = "image/png") -> InputImage:
    return InputImage(name=name, mime=mime, width=64, height=64, data=PNG)


# ---- build_request


def test_a_generation_is_json_with_model_prompt_n_size_knobs_and_extra_last():
    request = build_request(job(count=2, knobs={"quality": "high"}, extra={"user": "u1", "n": 2}))

    assert request.path == "/images/generations" and request.form is None and request.files is None
    assert request.json == {
        "model": "gpt-image-1",
        "prompt": "a red fox",
        "n": 2,
        "size": "1024x1024",
        "quality": "high",
        "user": "u1",
    }


@pytest.mark.parametrize(
    ("size", "sent"),
    [
        (ResolvedSize(auto=True), "auto"),
        (ResolvedSize(1536, 1024, "3:2"), "1536x1024"),
        (ResolvedSize(), None),
    ],
)
def test_size_is_pixels_or_auto_or_left_to_the_model(size, sent):
    assert build_request(job(size=size)).json.get("size") == sent  # type: ignore[union-attr]


def test_response_format_is_sent_only_where_the_route_says_so():
    # GPT image models answer 400 to response_format (openai.md §7); DALL-E routes ask for b64_json.
    assert "response_format" not in (build_request(job()).json or {})
    dalle = replace(route(), wire=WireOptions(dialect="dall-e", response_format="b64_json"))
    assert (build_request(job(route=dalle)).json or {})["response_format"] == "b64_json"


def test_one_edit_image_goes_as_image_and_the_fields_as_form_text():
    request = build_request(
        job(tool="edit", images=(image(),), knobs={"background": "transparent", "stream": False})
    )

    assert request.path == "/images/edits" and request.json is None
    assert request.files == [("image", ("image.png", PNG, "image/png"))]
    assert request.form == {
        "model": "gpt-image-1",
        "prompt": "a red fox",
        "n": "1",
        "size": "1024x1024",
        "background": "transparent",
        "stream": "false",
    }


def test_several_edit_images_go_as_image_brackets_and_the_mask_last():
    images = (image("a"), image("b", "image/jpeg"))
    request = build_request(job(tool="edit", images=images, mask=image("m")))

    assert [(field, name) for field, (name, _, _) in request.files or []] == [
        ("image[]", "image.png"),
        ("image[]", "image.jpg"),
        ("mask", "mask.png"),
    ]


def test_a_route_may_move_the_paths():
    moved = replace(route(), wire=WireOptions(path="/v2/generate", edit_path="/v2/edit"))
    assert build_request(job(route=moved)).path == "/v2/generate"
    assert build_request(job(route=moved, tool="edit", images=(image(),))).path == "/v2/edit"


# ---- parse_reply


def test_a_b64_reply_gives_undecoded_base64_with_the_output_format_mime_revised_prompt_and_usage():
    reply = parse_reply(fixture("reply_b64"), "openai")

    (artifact,) = reply.artifacts
    assert artifact.encoded == "iVBORw0KGgo=" and artifact.url is None and artifact.mime == "image/png"
    assert artifact.decoded() == base64.b64decode("iVBORw0KGgo=")  # decoded by the core, per image
    assert artifact.revised_prompt == "A red fox in fresh snow"
    assert reply.usage == fixture("reply_b64")["usage"]


def test_a_url_reply_gives_one_url_per_image_and_no_mime_it_did_not_say():
    reply = parse_reply(fixture("reply_urls"), "zhaotou")

    assert [a.url for a in reply.artifacts] == [
        "https://files.example/img-1.png",
        "https://files.example/img-2.png",
    ]
    assert all(a.mime is None and a.encoded is None for a in reply.artifacts)


def test_a_long_base64_image_arrives_as_a_payload_and_a_long_base64_revised_prompt_as_its_text():
    blob = bytes(range(256)) * (codec.LARGE_STRING // 256 + 1)
    text = base64.b64encode(blob).decode()
    body = json.dumps({"data": [{"b64_json": text, "revised_prompt": text}]}).encode()
    with codec.large_payloads():
        (artifact,) = parse_reply(codec.loads(body), "openai").artifacts
        assert isinstance(artifact.encoded, codec.Payload) and artifact.decoded() == blob
    assert artifact.revised_prompt == text  # text fields never carry a payload


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"data": []}, NoImagesReturned),
        ({"data": [{"revised_prompt": "no image"}]}, NoImagesReturned),
        ({"data": "nope"}, UpstreamError),
        ([1, 2], UpstreamError),
        (fixture("error_moderation"), ContentRefused),  # an error in a 200 body
    ],
)
def test_unusable_replies_raise_errors_of_the_tree(body, error):
    with pytest.raises(error):
        parse_reply(body, "openai")


# ---- classify_error


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, fixture("error_moderation"), ContentRefused),
        (429, fixture("error_quota"), InsufficientBalance),  # quota, not a rate limit: retrying will not help
        (401, fixture("error_invalid_key"), AuthFailed),
        (400, {"error": {"message": "Invalid size", "type": "invalid_request_error"}}, UpstreamError),
        (500, "<html>bad gateway</html>", UpstreamError),
    ],
)
def test_error_replies_map_to_the_tree_with_the_upstreams_message(status, body, error):
    classified = classify_error(status, body, "openai")

    assert type(classified) is error
    expected = body["error"]["message"] if isinstance(body, dict) else body
    assert classified.upstream_message == expected


def test_a_429_rate_limit_is_retryable_but_a_bad_request_is_not():
    assert not classify_error(400, {"error": {"message": "Invalid size"}}, "openai").retryable
    assert classify_error(503, {"error": {"message": "overloaded"}}, "openai").retryable


# ---- the `{code, msg, data}` envelope a profile names


def client_for(
    envelope: str | None, *replies: tuple[int, Any]
) -> tuple[ProviderClient, list[httpx2.Request]]:
    script, sent = list(replies), []

    def handle(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        status, body = script.pop(0)
        return httpx2.Response(status, json=body)

    profile = ProviderProfile("mygate", "https://gate.example/v1", SecretStr(KEY), envelope=envelope)
    return ProviderClient(profile, timeout=5, max_retries=0, transport=httpx2.MockTransport(handle)), sent


def test_a_wrapped_reply_is_unwrapped_when_the_profile_names_the_envelope():
    client, _ = client_for("code_msg_data")
    read = reading(parse_reply, client, classify_error)

    (artifact,) = read(fixture("reply_wrapped")).artifacts
    assert artifact.url == "https://files.example/img-1.png" and artifact.revised_prompt == ""
    assert read(fixture("reply_urls")).artifacts[1].url.endswith("img-2.png")  # a bare reply still reads


def test_a_wrapped_error_is_classified_by_its_code_and_message():
    client, _ = client_for("code_msg_data")
    with pytest.raises(InsufficientBalance) as caught:
        reading(parse_reply, client, classify_error)(fixture("error_wrapped"))
    assert caught.value.upstream_message == "余额不足"


def test_without_the_envelope_a_wrapped_reply_is_not_an_images_reply():
    client, _ = client_for(None)
    with pytest.raises(UpstreamError, match="not an Images API reply"):
        reading(parse_reply, client, classify_error)(fixture("reply_wrapped"))


# ---- run


@pytest.mark.anyio
async def test_run_posts_json_with_the_key_and_reads_a_wrapped_reply():
    client, sent = client_for("code_msg_data", (200, fixture("reply_wrapped")))
    try:
        reply = await run(job(), client)
    finally:
        await client.aclose()

    (request,) = sent
    assert str(request.url) == "https://gate.example/v1/images/generations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content)["model"] == "gpt-image-1"
    assert reply.artifacts[0].url == "https://files.example/img-1.png"


@pytest.mark.anyio
async def test_run_sends_an_edit_as_multipart_and_classifies_an_error_reply():
    client, sent = client_for(None, (400, fixture("error_moderation")))
    try:
        with pytest.raises(ImagegateError) as caught:
            await run(job(tool="edit", images=(image(),)), client)
    finally:
        await client.aclose()

    assert isinstance(caught.value, ContentRefused)
    assert sent[0].headers["content-type"].startswith("multipart/form-data")
    assert b'name="image"; filename="image.png"' in sent[0].content


# ---- ZhaoTou (seeds/002) and ModelMax (seeds/003): what their documents say, fact by fact.
# The fixtures in tests/fixtures/zhaotou/ and tests/fixtures/modelmax/ quote the documents verbatim.

ZHAOTOU_FIXTURES = FIXTURES.parent / "zhaotou"
MODELMAX_FIXTURES = FIXTURES.parent / "modelmax"
ZHAOTOU_MODELS = {  # the doc's display name -> the catalog model its offering serves
    "Gemini-3-Pro-Image-preview": "gemini-3-pro-image-preview",
    "Gemini-2.5-Flash-Image-preview": "gemini-2.5-flash-image",
    "GPT-4o-image": "gpt-4o-image",
    "Seedream-4.0": "seedream-4.0",
    "Seedream-4.5": "seedream-4.5",
    "Flux Kontext": "flux-kontext-pro",
    "Flux 2.0": "flux-2-pro",
}
ZHAOTOU_FAMILIES = {  # the size table's rows -> the models they cover
    "Gemini 系列": ("gemini-3-pro-image-preview", "gemini-2.5-flash-image"),
    "GPT-4o-image": ("gpt-4o-image",),
    "Seedream 系列": ("seedream-4.0", "seedream-4.5"),
    "Flux 系列": ("flux-kontext-pro", "flux-2-pro"),
}


def doc(folder: Path, name: str) -> Any:
    return json.loads((folder / f"{name}.json").read_text())


def zhaotou(model: str) -> Route:
    return route("zhaotou", load_catalog().resolve_model(model) or model)


def modelmax() -> Route:
    return route("modelmax", "imagen-3")


def test_every_zhaotou_wire_id_no_example_sends_is_marked_unconfirmed():
    quoted = doc(ZHAOTOU_FIXTURES, "models")
    shown = " ".join(quoted["wire_ids_in_examples"].values())
    for line in quoted["models_table"]:
        name = next(n for n in ZHAOTOU_MODELS if line.startswith(n + " "))
        served = zhaotou(ZHAOTOU_MODELS[name])
        if served.upstream in shown:
            assert "upstream" not in served.unconfirmed, name
        else:  # the display name, lower-cased (or invented from it), and said so
            assert f'"{name}"' in served.unconfirmed["upstream"], name
    assert [zhaotou(m).upstream in shown for m in ZHAOTOU_MODELS.values()].count(True) == 1


def test_zhaotou_sizes_are_its_table_and_flux_adds_the_size_its_section_recommends():
    quoted = doc(ZHAOTOU_FIXTURES, "sizes")
    for family, line in quoted["table"].items():
        *listed, default = (cell.rstrip(",") for cell in line.removeprefix(family).split())
        for model in ZHAOTOU_FAMILIES[family]:
            offered = zhaotou(model).sizes
            extra = [s for s in offered.sizes if s not in listed]
            assert listed == offered.sizes[: len(listed)], model
            assert offered.default == default
            if family == "Flux 系列":
                assert "1792x1024" in quoted["flux_section"][1] and extra == ["1792x1024"]
                assert "1792x1024" in zhaotou(model).unconfirmed["sizes"]
                assert "recommends 1792x1024" in " ".join(zhaotou(model).notes)
            else:
                assert extra == [] and "sizes" not in zhaotou(model).unconfirmed


def test_a_zhaotou_edit_without_a_prompt_is_the_documented_variations_request():
    quoted = doc(ZHAOTOU_FIXTURES, "variations")
    served = zhaotou("gemini-3-pro-image-preview")
    assert served.can("variations") and "variations" not in served.unconfirmed.get("capabilities", "")
    assert served.upstream in quoted["javascript"][0]  # the doc's own variations example sends this id

    request = build_request(job(tool="edit", route=served, prompt="", count=2, images=(image(),)))

    assert quoted["endpoint"].endswith("/v1" + request.path)
    assert request.json is None and request.form is not None and set(request.form) <= set(quoted["fields"])
    assert request.form == {
        "model": served.upstream,
        "n": "2",
        "size": "1024x1024",
        "response_format": "b64_json",
    }
    assert [(field, mime) for field, (_, _, mime) in request.files or []] == [("image", "image/png")]
    curl_fields = {line.split('"')[1].split("=")[0] for line in quoted["curl"] if "-F" in line}
    assert curl_fields == {"image", "n", "size"} and curl_fields <= set(request.form) | {"image"}


def test_every_other_zhaotou_model_offers_variations_and_mask_marked_unconfirmed():
    edit_fields = doc(ZHAOTOU_FIXTURES, "edits")["fields"]
    assert "mask" in edit_fields and "mask" not in doc(ZHAOTOU_FIXTURES, "variations")["fields"]
    for model in ZHAOTOU_MODELS.values():
        served = zhaotou(model)
        assert served.can("mask") and served.can("variations") and served.can("edit"), model
        assert "mask" in served.unconfirmed["capabilities"], model


def test_a_zhaotou_edit_sends_the_mask_it_documents():
    request = build_request(
        job(tool="edit", route=zhaotou("seedream-4.0"), images=(image(),), mask=image("m"))
    )

    assert request.path == "/images/edits"
    assert [field for field, _ in request.files or []] == ["image", "mask"]
    assert set(request.form or {}) | {"image", "mask"} <= set(doc(ZHAOTOU_FIXTURES, "edits")["fields"])


def test_dall_e_2_offers_variations_as_openai_md_documents_and_gpt_image_does_not():
    assert route("openai", "dall-e-2").can("variations")
    assert not route("openai", "gpt-image-1").can("variations")
    request = build_request(job(tool="edit", route=route("openai", "dall-e-2"), prompt="", images=(image(),)))
    assert request.path == "/images/variations" and "prompt" not in (request.form or {})


def test_zhaotou_413_asks_for_a_smaller_image_and_500_is_retried_as_its_doc_advises():
    errors = doc(ZHAOTOU_FIXTURES, "errors")["errors"]
    assert "请压缩后重试" in errors["413"] and "建议重试" in errors["500"]
    retry = zhaotou("gpt-4o-image").wire.retry_statuses
    assert retry == [500] and route("openai", "gpt-image-1").wire.retry_statuses == []

    too_large = classify_error(413, {"error": {"message": errors["413"]}}, "zhaotou", retry=retry)
    assert type(too_large) is UpstreamError and not too_large.retryable
    assert "send a smaller image" in too_large.message and too_large.upstream_message == errors["413"]
    assert "shorten the prompt" in classify_error(413, "", "zhaotou", images=False).message
    assert classify_error(500, {"error": {"message": errors["500"]}}, "zhaotou", retry=retry).retryable
    assert not classify_error(500, {"error": {"message": "boom"}}, "openai").retryable  # OpenAI: unchanged
    assert not classify_error(500, fixture("error_quota"), "zhaotou", retry=retry).retryable  # quota stays


def scripted(*replies: tuple[int, Any]) -> tuple[ProviderClient, list[httpx2.Request]]:
    """A client that retries (once, without waiting) against scripted replies."""
    script, sent = list(replies), []

    def handle(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        status, body = script.pop(0)
        return httpx2.Response(status, json=body)

    async def no_wait(_: float) -> None:
        return None

    profile = ProviderProfile("zhaotou", "https://zhaotouai.com/v1", SecretStr(KEY))
    transport = httpx2.MockTransport(handle)
    return ProviderClient(profile, timeout=5, max_retries=1, transport=transport, sleep=no_wait), sent


@pytest.mark.anyio
async def test_run_retries_a_zhaotou_500_as_its_doc_advises():
    message = doc(ZHAOTOU_FIXTURES, "errors")["errors"]["500"]
    client, sent = scripted((500, {"error": {"message": message}}), (200, fixture("reply_urls")))
    try:
        reply = await run(job(route=zhaotou("gemini-3-pro-image-preview")), client)
    finally:
        await client.aclose()
    assert len(sent) == 2 and len(reply.artifacts) == 2


@pytest.mark.anyio
async def test_run_does_not_retry_an_openai_500():
    client, sent = scripted((500, {"error": {"message": "boom"}}), (200, fixture("reply_urls")))
    try:
        with pytest.raises(UpstreamError, match="HTTP 500"):
            await run(job(), client)
    finally:
        await client.aclose()
    assert len(sent) == 1


def test_modelmax_accepts_any_pixel_size_for_modelmax_to_judge_and_marks_what_it_infers():
    quoted = doc(MODELMAX_FIXTURES, "generations")
    served = modelmax()
    assert "如" in quoted["parameters"]["size"] and "默认 1" in quoted["parameters"]["n"]
    for size in ("1024x1024", "1536x1024", "1792x1024", "896x1280"):
        assert resolve_size(served.sizes, size, None, served.where).pixels == size
    assert resolve_size(served.sizes, None, None, served.where).pixels == quoted["request_example"]["size"]
    assert served.per_call == 4 and "maximum" in served.unconfirmed["per_call"]
    assert served.output_formats == ("png",) and "generated-image.png" in served.unconfirmed["output_formats"]
    assert "如" in served.unconfirmed["sizes"]
    assert served.capabilities == {"generate"}


def test_modelmax_402_is_the_balance_502_the_upstream_and_its_example_reply_reads():
    quoted = doc(MODELMAX_FIXTURES, "generations")
    assert "余额不足" in quoted["status_codes"]["402"] and "上游供应商错误" in quoted["status_codes"]["502"]
    assert type(classify_error(402, {"error": {"message": "余额不足"}}, "modelmax")) is InsufficientBalance
    upstream = classify_error(502, {"error": {"message": "上游供应商错误"}}, "modelmax")
    assert type(upstream) is UpstreamError and upstream.retryable and "HTTP 502" in upstream.message

    reply = parse_reply(quoted["response_example"], "modelmax")
    (artifact,) = reply.artifacts
    assert artifact.url == "https://storage.example.com/generated-image.png"
    assert artifact.revised_prompt == quoted["response_example"]["data"][0]["revised_prompt"]
    assert reply.usage == quoted["response_example"]["usage"]
