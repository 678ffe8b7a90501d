"""The emulator's OpenAI Images protocol, driven over HTTP as imagegate would.

Covers replies, strictness, auth, the request log and every fault kind.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from PIL import Image
from tools.emulator import ControlError, EmulatorClient, start_subprocess, start_thread
from tools.emulator.openai_images import GATEWAY_MAX_BYTES

KEY = "test-sentinel-7f3a9c"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    with start_thread() as running:
        yield running


@pytest.fixture
def client(emulator: EmulatorClient) -> Iterator[httpx2.Client]:
    emulator.reset()
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx2.Client(
        base_url=emulator.url, headers=headers, trust_env=False, verify=False, timeout=10
    ) as http:
        yield http


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    image.load()
    return image


def generate(http: httpx2.Client, provider: str = "openai", **body: Any) -> httpx2.Response:
    """POST a generation; a field given as None is left out."""
    fields = {"prompt": "a red fox", **body}
    return http.post(
        f"/{provider}/v1/images/generations", json={k: v for k, v in fields.items() if v is not None}
    )


def edit(
    http: httpx2.Client, files: list[tuple[str, Any]], provider: str = "openai", **fields: Any
) -> httpx2.Response:
    data = {"prompt": "add a hat", **{name: str(value) for name, value in fields.items()}}
    return http.post(f"/{provider}/v1/images/edits", data=data, files=files)


def error_of(response: httpx2.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# ---- replies


def test_gpt_image_generation_returns_b64_of_the_asked_size_with_usage(client: httpx2.Client) -> None:
    reply = generate(client, model="gpt-image-1", size="1536x1024", quality="high", n=2).json()

    assert [decode(item["b64_json"]).size for item in reply["data"]] == [(1536, 1024)] * 2
    assert {key: reply[key] for key in ("size", "quality", "output_format", "background")} == {
        "size": "1536x1024",
        "quality": "high",
        "output_format": "png",
        "background": "opaque",
    }
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "size", "fmt", "mode"),
    [
        ({"model": "gpt-image-1"}, (1024, 1024), "PNG", "RGB"),
        ({"model": "gpt-image-1", "size": "auto", "output_format": "jpeg"}, (1024, 1024), "JPEG", "RGB"),
        (
            {"model": "gpt-image-1.5", "background": "transparent", "output_format": "webp"},
            (1024, 1024),
            "WEBP",
            "RGBA",
        ),
        ({"model": "gpt-image-2", "size": "2048x1152"}, (2048, 1152), "PNG", "RGB"),
        ({"model": "dall-e-2", "size": "256x256", "response_format": "b64_json"}, (256, 256), "PNG", "RGB"),
    ],
)
def test_generated_image_has_the_asked_size_and_format(
    client: httpx2.Client, body: dict[str, Any], size: tuple[int, int], fmt: str, mode: str
) -> None:
    image = decode(generate(client, **body).json()["data"][0]["b64_json"])

    assert (image.size, image.format, image.mode) == (size, fmt, mode)


def test_dall_e_3_returns_a_downloadable_url_and_revised_prompt(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    item = generate(client, model="dall-e-3", size="1792x1024").json()["data"][0]

    download = httpx2.get(item["url"], trust_env=False, verify=False)
    assert download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (1792, 1024)
    assert "a red fox" in item["revised_prompt"]
    assert emulator.files()["downloads"] == 1


def test_gpt_image_stream_sends_partial_then_completed_events(client: httpx2.Client) -> None:
    response = generate(client, model="gpt-image-1", stream=True, partial_images=2)

    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [event["type"] for event in events] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"
    ]
    assert decode(events[-1]["b64_json"]).size == (1024, 1024)


def test_gateways_default_to_urls_accept_any_model_and_add_revised_prompt(client: httpx2.Client) -> None:
    zhaotou = generate(client, "zhaotou", model="seedream-4.5", size="1920x1080").json()
    modelmax = generate(client, "modelmax", model="imagen-3", response_format="b64_json").json()

    assert zhaotou["data"][0]["url"].endswith(".png") and zhaotou["data"][0]["revised_prompt"]
    assert decode(modelmax["data"][0]["b64_json"]).size == (1024, 1024)
    assert modelmax["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_zhaotou_edit_takes_a_single_image_part_and_answers_with_a_url(client: httpx2.Client) -> None:
    files = [("image", ("cat.jpg", _webp(), "image/webp"))]
    response = edit(client, files, "zhaotou", model="gemini-3-pro-image-preview", size="1792x1024")

    item = response.json()["data"][0]
    assert set(item) == {"url", "revised_prompt"}
    assert Image.open(io.BytesIO(httpx2.get(item["url"], trust_env=False, verify=False).content)).size == (
        1792,
        1024,
    )


def test_modelmax_offers_generations_only(client: httpx2.Client) -> None:
    response = edit(client, [("image", ("a.png", png(64, 64), "image/png"))], "modelmax", model="imagen-3")

    assert response.status_code == 404


def test_configured_model_allow_list_limits_a_gateway(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    emulator.configure("compat", models=["my-model"])

    assert generate(client, "compat", model="my-model").status_code == 200
    assert error_of(generate(client, "compat", model="other"), 400)["param"] == "model"


# ---- strictness


def test_response_format_to_gpt_image_model_is_rejected_exactly_as_openai_does(client: httpx2.Client) -> None:
    response = generate(client, model="gpt-image-1", response_format="b64_json")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Unknown parameter: 'response_format'.",
            "type": "invalid_request_error",
            "param": "response_format",
            "code": "unknown_parameter",
        }
    }


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "gpt-image-1", "size": "512x512"}, "size", "invalid_value"),
        ({"model": "gpt-image-2", "size": "1000x1000"}, "size", "invalid_value"),
        ({"model": "gpt-image-2", "size": "3840x1024"}, "size", "invalid_value"),
        ({"model": "dall-e-3", "size": "auto"}, "size", "invalid_value"),
        ({"model": "dall-e-3", "n": 2}, "n", "integer_above_max_value"),
        ({"model": "gpt-image-1", "n": 11}, "n", "integer_above_max_value"),
        ({"model": "gpt-image-1", "n": 0}, "n", "integer_below_min_value"),
        ({"prompt": "no model"}, "model", "missing_required_parameter"),
        ({"model": "gpt-image-1", "prompt": None}, "prompt", "missing_required_parameter"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt", "string_above_max_length"),
        ({"model": "gpt-image-1", "quality": "hd"}, "quality", "invalid_value"),
        ({"model": "gpt-image-1", "style": "vivid"}, "style", "unknown_parameter"),
        (
            {"model": "gpt-image-1", "background": "transparent", "output_format": "jpeg"},
            "background",
            "invalid_value",
        ),
        ({"model": "dall-e-3", "output_format": "png"}, "output_format", "unknown_parameter"),
        ({"model": "gpt-image-7"}, "model", "invalid_value"),
    ],
)
def test_openai_rejects_what_the_real_service_rejects(
    client: httpx2.Client, body: dict[str, Any], param: str, code: str
) -> None:
    error = error_of(generate(client, **body), 400)

    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_edit_takes_image_array_and_mask_and_logs_a_summary(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    files = [
        ("image[]", ("one.png", png(300, 200), "image/png")),
        ("image[]", ("two.png", png(64, 64), "image/png")),
        ("mask", ("mask.png", png(300, 200, "RGBA"), "image/png")),
    ]
    response = edit(client, files, model="gpt-image-1", n=2, size="1024x1536", input_fidelity="high")

    assert [decode(item["b64_json"]).size for item in response.json()["data"]] == [(1024, 1536)] * 2
    [record] = emulator.requests("openai")
    parts = {(part["name"], part.get("filename")): part for part in record["form"]}
    assert parts[("image[]", "one.png")] | {"bytes": 0} == {
        "name": "image[]",
        "filename": "one.png",
        "content_type": "image/png",
        "bytes": 0,
        "format": "PNG",
        "width": 300,
        "height": 200,
    }
    assert parts[("model", None)]["value"] == "gpt-image-1"


@pytest.mark.parametrize("name", ["image", "image[0]"])
def test_edit_accepts_every_image_part_name(client: httpx2.Client, name: str) -> None:
    response = edit(client, [(name, ("a.webp", _webp(), "image/webp"))], model="gpt-image-1.5")

    assert response.status_code == 200, response.text


def test_edit_part_without_image_type_gets_openais_mimetype_error(client: httpx2.Client) -> None:
    response = edit(
        client, [("image", ("a.png", png(64, 64), "application/octet-stream"))], model="gpt-image-1"
    )

    error = error_of(response, 400)
    assert error["code"] == "unsupported_file_mimetype"
    assert error["message"] == (
        "Invalid file 'image': unsupported mimetype ('application/octet-stream'). "
        "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
    )


@pytest.mark.parametrize(
    ("files", "fields", "param", "code"),
    [
        ([("image", ("a.png", b"not an image", "image/png"))], {}, "image", "invalid_image_file"),
        ([("mask", ("m.png", png(8, 8, "RGBA"), "image/png"))], {}, "image", "missing_required_parameter"),
        (
            [
                ("image", ("a.png", png(64, 64), "image/png")),
                ("mask", ("m.png", png(32, 32, "RGBA"), "image/png")),
            ],
            {},
            "mask",
            "invalid_value",
        ),
        (
            [("image", ("a.png", png(64, 64), "image/png")), ("mask", ("m.png", png(64, 64), "image/png"))],
            {},
            "mask",
            "invalid_value",
        ),
        (
            [("image", ("a.png", png(64, 64), "image/png"))],
            {"moderation": "low"},
            "moderation",
            "unknown_parameter",
        ),
        (
            [("image", ("a.png", png(64, 64), "image/png"))],
            {"model": "gpt-image-1-mini", "input_fidelity": "high"},
            "input_fidelity",
            "unknown_parameter",
        ),
        ([("image", ("a.png", png(64, 32), "image/png"))], {"model": "dall-e-2"}, "image", "invalid_image"),
        ([("image[]", ("a.png", png(64, 64), "image/png"))] * 17, {}, "image", "too_many_images"),
        ([("image", ("a.png", png(64, 64), "image/png"))], {"model": "dall-e-3"}, "model", "invalid_value"),
    ],
)
def test_edit_rejects_bad_inputs(
    client: httpx2.Client, files: list[tuple[str, Any]], fields: dict[str, str], param: str, code: str
) -> None:
    error = error_of(edit(client, files, **{"model": "gpt-image-1", **fields}), 400)

    assert (error["param"], error["code"]) == (param, code)


def test_dall_e_2_variation_and_gateway_variation_without_model(client: httpx2.Client) -> None:
    files = [("image", ("a.png", png(64, 64, "RGBA"), "image/png"))]
    openai = client.post("/openai/v1/images/variations", data={"model": "dall-e-2", "n": "2"}, files=files)
    zhaotou = client.post("/zhaotou/v1/images/variations", data={"size": "512x512"}, files=files)

    assert [set(item) for item in openai.json()["data"]] == [{"url"}, {"url"}]
    assert zhaotou.status_code == 200, zhaotou.text
    refused = client.post("/openai/v1/images/variations", data={"model": "gpt-image-1"}, files=files)
    assert error_of(refused, 400)["param"] == "model"


def test_zhaotou_takes_the_variations_and_the_edit_mask_its_doc_lists(client: httpx2.Client) -> None:
    # seeds/002: `-F "image=@original.png" -F "n=2" -F "size=1024x1024"`; edits list `mask file 编辑区域蒙版`.
    files = [("image", ("original.png", png(64, 64), "image/png"))]
    varied = client.post("/zhaotou/v1/images/variations", data={"n": "2", "size": "1024x1024"}, files=files)
    masked = edit(
        client,
        [*files, ("mask", ("mask.png", png(64, 64, "RGBA"), "image/png"))],
        "zhaotou",
        model="flux-2.0",
    )

    assert len(varied.json()["data"]) == 2 and "revised_prompt" not in varied.json()["data"][0]
    assert masked.status_code == 200, masked.text


@pytest.mark.parametrize(
    ("status", "words"),
    [(413, "图像文件过大,请压缩后重试"), (500, "服务器内部错误,建议重试"), (429, "Rate limit reached")],
)
def test_zhaotou_errors_carry_its_documented_words(
    client: httpx2.Client, emulator: EmulatorClient, status: int, words: str
) -> None:
    emulator.fault("zhaotou", "*", "status", status=status)

    assert words in error_of(generate(client, "zhaotou", model="m"), status)["message"]


def test_an_oversize_upload_is_a_413_on_zhaotou_and_a_400_elsewhere(client: httpx2.Client) -> None:
    big = png(8, 8) + bytes(GATEWAY_MAX_BYTES)  # a valid PNG header, then padding past the gateways' cap
    files = [("image", ("big.png", big, "image/png"))]

    zhaotou = edit(client, files, "zhaotou", model="gemini-3-pro-image-preview")
    compat = edit(client, files, "compat", model="gpt-image-1")

    assert "请压缩后重试" in error_of(zhaotou, 413)["message"]
    assert error_of(compat, 400)["code"] == "file_too_large"


# ---- auth and the request log


@pytest.mark.parametrize(
    "headers", [{"authorization": "Bearer wrong"}, {"authorization": ""}, {"x-api-key": KEY}]
)
def test_bad_or_missing_key_gets_401(client: httpx2.Client, headers: dict[str, str]) -> None:
    client.headers.pop("authorization")
    response = client.post("/openai/v1/images/generations", json={"model": "gpt-image-1"}, headers=headers)

    assert error_of(response, 401)["code"] == "invalid_api_key"


def test_configured_keys_replace_the_default_prefix(client: httpx2.Client, emulator: EmulatorClient) -> None:
    emulator.configure("openai", keys=["sk-live-like"])

    assert generate(client, model="gpt-image-1").status_code == 401
    assert generate(client, "zhaotou", model="m").status_code == 200


def test_request_log_keeps_header_names_never_the_key(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    generate(client, model="gpt-image-1")
    client.headers["authorization"] = "Bearer test-other-secret"
    generate(client, model="gpt-image-1")

    log = emulator.requests()
    assert [(record["auth_ok"], "authorization" in record["headers"]) for record in log] == [(True, True)] * 2
    assert KEY not in json.dumps(log) and "other-secret" not in json.dumps(log)
    assert log[0]["json"]["model"] == "gpt-image-1" and log[0]["status"] == 200


# ---- faults


@pytest.mark.parametrize(
    ("params", "model", "type_", "code"),
    [
        ({"status": 429, "retry_after": "2"}, "gpt-image-1", "requests", "rate_limit_exceeded"),
        ({"status": 429}, "gpt-image-1", "requests", "rate_limit_exceeded"),
        ({"status": 500}, "gpt-image-1", "server_error", None),
        ({"status": 502}, "gpt-image-1", "upstream_error", None),
        ({"status": 503}, "gpt-image-1", "server_error", None),
        ({"status": 504}, "gpt-image-1", "server_error", None),
        ({"status": 400}, "gpt-image-1", "image_generation_user_error", "moderation_blocked"),
        ({"status": 400}, "dall-e-3", "invalid_request_error", "content_policy_violation"),
        ({"status": 401}, "gpt-image-1", "invalid_request_error", "invalid_api_key"),
        ({"status": 402}, "gpt-image-1", "insufficient_quota", "insufficient_balance"),
        ({"status": 418, "code": "teapot"}, "gpt-image-1", "invalid_request_error", "teapot"),
    ],
)
def test_status_fault_answers_in_the_provider_error_shape(
    client: httpx2.Client,
    emulator: EmulatorClient,
    params: dict[str, Any],
    model: str,
    type_: str,
    code: str | None,
) -> None:
    emulator.fault("openai", "generations", "status", **params)

    response = generate(client, model=model)
    error = error_of(response, params["status"])
    assert (error["type"], error["code"]) == (type_, code)
    assert response.headers.get("retry-after") == params.get("retry_after")
    assert generate(client, model=model).status_code == 200  # consumed


def test_fault_count_and_endpoint_matching(client: httpx2.Client, emulator: EmulatorClient) -> None:
    emulator.fault("openai", "edits", "status", status=500)
    emulator.fault("openai", "*", "status", count=2, status=503)

    assert [generate(client, model="gpt-image-1").status_code for _ in range(3)] == [503, 503, 200]
    assert emulator.requests()[0]["fault"] == "status"


def test_error_in_200_fault(client: httpx2.Client, emulator: EmulatorClient) -> None:
    emulator.fault("zhaotou", "generations", "error_in_200", status=500)

    assert error_of(generate(client, "zhaotou", model="m"), 200)["type"] == "server_error"


def test_slow_fault_and_latency_delay_the_answer(client: httpx2.Client, emulator: EmulatorClient) -> None:
    emulator.fault("openai", "generations", "slow", seconds=0.3)
    started = time.monotonic()
    generate(client, model="gpt-image-1")

    assert time.monotonic() - started >= 0.3


def test_latency_sleeps_asynchronously_so_concurrent_calls_overlap(emulator: EmulatorClient) -> None:
    emulator.reset()
    emulator.configure(latency=0.2)
    emulator.configure("openai", latency=0.2)
    with httpx2.Client(
        base_url=emulator.url, headers={"authorization": f"Bearer {KEY}"}, trust_env=False, verify=False
    ) as http:
        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: generate(http, model="gpt-image-1").status_code, range(6)))
        elapsed = time.monotonic() - started

    assert statuses == [200] * 6
    assert 0.4 <= elapsed < 1.2


def test_malformed_json_fault(client: httpx2.Client, emulator: EmulatorClient) -> None:
    emulator.fault("openai", "generations", "malformed_json")

    with pytest.raises(json.JSONDecodeError):
        json.loads(generate(client, model="gpt-image-1").text)


def test_bad_base64_fault_fails_strict_and_lenient_decoders(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    emulator.fault("openai", "generations", "bad_base64")
    text = generate(client, model="gpt-image-1").json()["data"][0]["b64_json"]

    for validate in (True, False):
        with pytest.raises(ValueError):
            base64.b64decode(text, validate=validate)


def test_truncated_base64_fault_decodes_to_a_cut_image(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    emulator.fault("openai", "generations", "truncated_base64")
    text = generate(client, model="gpt-image-1").json()["data"][0]["b64_json"]

    with pytest.raises(OSError):
        decode(text)


def test_wrong_mime_fault_labels_one_format_and_sends_another(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    emulator.fault("openai", "*", "wrong_mime", count=2)
    gpt = generate(client, model="gpt-image-1", output_format="png").json()
    dalle_url = generate(client, model="dall-e-3").json()["data"][0]["url"]
    download = httpx2.get(dalle_url, trust_env=False, verify=False)

    assert gpt["output_format"] == "png" and decode(gpt["data"][0]["b64_json"]).format == "JPEG"
    assert download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).format == "JPEG"


def test_expired_url_fault_and_url_lifetime(client: httpx2.Client, emulator: EmulatorClient) -> None:
    emulator.fault("openai", "generations", "expired_url")
    expired = generate(client, model="dall-e-2").json()["data"][0]["url"]
    emulator.configure("openai", url_ttl=0)
    short_lived = generate(client, model="dall-e-2").json()["data"][0]["url"]

    assert [httpx2.get(url, trust_env=False, verify=False).status_code for url in (expired, short_lived)] == [
        404,
        404,
    ]
    assert emulator.files()["not_found"] == 2


def test_drop_connection_fault_closes_the_socket_without_a_reply(
    client: httpx2.Client, emulator: EmulatorClient
) -> None:
    emulator.fault("openai", "generations", "drop_connection")

    with pytest.raises(httpx2.RemoteProtocolError):
        generate(client, model="gpt-image-1")
    assert generate(client, model="gpt-image-1").status_code == 200


@pytest.mark.parametrize(("params", "left"), [({}, 2), ({"keep": 1}, 1)])
def test_partial_fault_returns_fewer_images(
    client: httpx2.Client, emulator: EmulatorClient, params: dict[str, int], left: int
) -> None:
    emulator.fault("openai", "generations", "partial", **params)

    assert len(generate(client, model="gpt-image-1", n=3).json()["data"]) == left


@pytest.mark.parametrize(
    ("provider", "endpoint", "kind", "params"),
    [
        ("nobody", "*", "slow", {"seconds": 1}),
        ("openai", "generation", "slow", {"seconds": 1}),
        ("openai", "*", "explode", {}),
        ("openai", "*", "status", {}),
        ("modelmax", "edits", "partial", {}),
        ("openai", "*", "status", {"status": "429"}),
        ("openai", "*", "slow", {"seconds": -1}),
    ],
)
def test_control_api_refuses_bad_faults(
    emulator: EmulatorClient, provider: str, endpoint: str, kind: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ControlError):
        emulator.fault(provider, endpoint, kind, **params)


@pytest.mark.slow
def test_subprocess_emulator_serves_and_stops() -> None:
    with start_subprocess() as running:
        running.prewarm(["512x512"])
        with httpx2.Client(trust_env=False, verify=False) as http:
            response = http.post(
                f"{running.base_url('openai')}/images/generations",
                headers={"authorization": f"Bearer {KEY}"},
                json={"model": "dall-e-2", "prompt": "p", "size": "512x512", "response_format": "b64_json"},
            )
        assert decode(response.json()["data"][0]["b64_json"]).size == (512, 512)
        assert running.requests()[0]["endpoint"] == "generations"


def _webp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buffer, format="WEBP")
    return buffer.getvalue()
