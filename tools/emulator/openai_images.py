"""OpenAI Images protocol (shared/providers/openai.md) for `openai` and the OpenAI-compatible gateways.

Owns the endpoints /v1/images/{generations,edits,variations} and their reply and error shapes: OpenAI's strict
per-model rules (openai_rules.py), or the looser ones of ZhaoTou (seeds/002), ModelMax (seeds/003: generations
only) and any compatible endpoint (`compat`). Auth, latency, faults, the log and image bytes are core's.

ZhaoTou's "❗ 常见错误" list gives its 413 and 500 their own words: an upload over the size limit answers 413
"图像文件过大,请压缩后重试" (the limit itself is not documented; the gateways' 50 MB is kept), a status fault
500 says "建议重试". The error body keeps OpenAI's shape, which neither gateway documents otherwise.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tools.emulator.core import (
    ApiError,
    Call,
    Delivery,
    Dialect,
    FilePart,
    FormField,
    Provider,
    deliver_images,
    endpoint,
)
from tools.emulator.openai_rules import (
    DALL_E_2,
    DALL_E_3,
    DEFAULT_SIZE,
    MB,
    RULES,
    ModelRule,
    bad_request,
    check_fields,
    check_file,
    check_inputs,
    check_mask,
    check_strict_inputs,
    choice,
    integer,
    loose_size,
    missing,
    prompt_of,
    rule_for,
    strict_size,
)

__all__ = ["BASE_PATH", "FLAVOURS", "Flavour", "routes"]

BASE_PATH = "/v1"
ENDPOINTS = ("generations", "edits", "variations")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("transparent", "opaque", "auto")
RESPONSE_FORMATS = ("url", "b64_json")
IMAGE_PART = re.compile(r"image(\[\d*\])?")  # `image`, `image[]`, `image[N]` (§3, gotcha 7)
VARIATION_FIELDS = frozenset({"model", "n", "response_format", "size", "user"})  # §4
GATEWAY_MAX_BYTES = 50 * MB
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}  # per 1024x1024 image, scaled by area
OUTPUT_TOKENS |= {"xhigh": 7400, "max": 16600}  # GPT Image 2.5 tiers (3p figures, UNCONFIRMED)
IMAGE_INPUT_TOKENS = 323  # per input image: any stable figure serves imagegate's cost path


@dataclass(frozen=True)
class Flavour:
    """How one provider speaking this protocol differs from the others."""

    endpoints: tuple[str, ...] = ENDPOINTS
    models: tuple[str, ...] = ()  # ids its docs show, accepted on top of a configured allow-list
    strict: bool = False  # OpenAI's per-model rules; gateways pass most fields through unchecked
    usage: dict[str, int] | None = None  # the fixed `usage` block a gateway's reply example shows
    errors: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)  # status -> its own words
    too_large: int = 400  # the status of an upload over the size limit


FLAVOURS: dict[str, Flavour] = {
    "openai": Flavour(models=tuple(RULES), strict=True),
    "zhaotou": Flavour(
        models=("gemini-3-pro-image-preview",),
        errors={  # seeds/002 "❗ 常见错误"
            413: (
                "Payload Too Large: 图像文件过大,请压缩后重试",
                "invalid_request_error",
                "payload_too_large",
            ),
            500: ("Server Error: 服务器内部错误,建议重试", "server_error", None),
        },
        too_large=413,
    ),
    "modelmax": Flavour(
        endpoints=("generations",),
        models=("imagen-3",),
        usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    ),
}
COMPAT = Flavour()  # any other provider name mapped to this protocol


@dataclass(frozen=True)
class Job:
    """One validated request, normalized for the reply."""

    prompt: str
    n: int
    size: tuple[int, int]
    fmt: str = "png"
    background: str = "opaque"
    quality: str = "medium"
    delivery: str = "b64_json"  # or "url"
    gpt: bool = False  # GPT image reply: adds usage, size, quality, background, output_format
    revised: bool = False  # adds revised_prompt: dall-e-3 and the gateways (§6.1, seeds/003)
    stream: bool = False
    partial_images: int = 0
    inputs: int = 0


def routes(provider: Provider) -> list[BaseRoute]:
    """The endpoints `provider`'s flavour offers; the others answer 404."""
    flavour = FLAVOURS.get(provider.name, COMPAT)
    handlers = {"generations": generate, "edits": edit, "variations": vary}
    return [
        endpoint(provider, f"{BASE_PATH}/images/{name}", name, partial(handlers[name], flavour), DIALECT)
        for name in flavour.endpoints
    ]


async def generate(flavour: Flavour, call: Call) -> Response:
    """POST /images/generations (JSON)."""
    body = _json_body(call)
    model = _model(call, flavour, body, "generations")
    if not flavour.strict:
        return _reply(call, flavour, _loose_job(body, prompt_of(body, None)), "image_generation")
    rule = rule_for(model)
    check_fields(body, rule.generate_fields)
    return _reply(
        call, flavour, _strict_job(body, rule, prompt_of(body, rule.prompt_max)), "image_generation"
    )


async def edit(flavour: Flavour, call: Call) -> Response:
    """POST /images/edits (multipart)."""
    fields, inputs, mask = _split_form(call)
    model = _model(call, flavour, fields, "edits")
    if not flavour.strict:
        _gateway_files(call, flavour, inputs, mask, 16)
        return _reply(call, flavour, _loose_job(fields, prompt_of(fields, None)), "image_edit")
    rule = rule_for(model)
    check_fields(fields, rule.edit_fields)
    prompt = prompt_of(fields, rule.prompt_max)
    first = check_strict_inputs(inputs, rule)
    if mask is not None:
        check_mask(mask, first)
    return _reply(call, flavour, _strict_job(fields, rule, prompt, len(inputs)), "image_edit")


async def vary(flavour: Flavour, call: Call) -> Response:
    """POST /images/variations (multipart): dall-e-2 only on OpenAI (§4)."""
    fields, inputs, mask = _split_form(call)
    if not flavour.strict:
        if "model" in fields:  # ZhaoTou's own curl example sends none (seeds/002)
            _model(call, flavour, fields, "variations")
        _gateway_files(call, flavour, inputs, None, 1)
        return _reply(call, flavour, replace(_loose_job(fields, ""), revised=False), "")
    _model(call, flavour, fields, "variations")
    check_fields([*fields, *(["mask"] if mask else [])], VARIATION_FIELDS)
    check_strict_inputs(inputs, DALL_E_2)
    return _reply(call, flavour, _strict_job(fields, DALL_E_2, ""), "")


def _gateway_files(
    call: Call, flavour: Flavour, inputs: list[FilePart], mask: FilePart | None, max_images: int
) -> None:
    """A gateway's loose checks of the uploaded images; an oversize file gets the flavour's status."""
    try:
        check_inputs(inputs, None, GATEWAY_MAX_BYTES, max_images=max_images)
        if mask is not None:
            check_file(mask, None, GATEWAY_MAX_BYTES)
    except ApiError as error:
        if error.code == "file_too_large" and flavour.too_large != error.status:
            raise _canned(flavour.too_large, call) from None
        raise


def _json_body(call: Call) -> dict[str, Any]:
    if call.json is None:
        raise bad_request(
            "We could not parse the JSON body of your request. (HINT: The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        )
    return call.json


def _split_form(call: Call) -> tuple[dict[str, FormField], list[FilePart], FilePart | None]:
    """Text fields (plus stray files, which the field check rejects), input images in order, mask."""
    if call.form is None:
        content_type = call.request.headers.get("content-type")
        raise bad_request(f"Invalid Content-Type header ({content_type}), expected multipart/form-data.")
    fields: dict[str, FormField] = {}
    inputs: list[FilePart] = []
    mask: FilePart | None = None
    for name, value in call.form:
        if not (IMAGE_PART.fullmatch(name) or name == "mask"):
            fields[name] = value
        elif not isinstance(value, FilePart):
            message = f"Invalid type for '{name}': expected a file, but got a string instead."
            raise bad_request(message, name, "invalid_type")
        elif name == "mask":
            mask = value
        else:
            inputs.append(value)
    return fields, inputs, mask


def _model(call: Call, flavour: Flavour, body: dict[str, Any], endpoint_name: str) -> str:
    """The required `model` (gotcha 1: defaults differ per endpoint and change over time)."""
    model = body.get("model")
    if model is None:
        raise missing("model")
    allowed = call.provider.settings.models
    known = model in flavour.models or (model in allowed if allowed is not None else not flavour.strict)
    if not isinstance(model, str) or not known or not _serves(flavour, model, endpoint_name):
        message = f"Invalid value for 'model': '{model}' is not supported on /images/{endpoint_name}."
        raise bad_request(message, "model", "invalid_value")
    return model


def _serves(flavour: Flavour, model: str, endpoint_name: str) -> bool:
    if not flavour.strict or endpoint_name == "generations":
        return True
    rule = rule_for(model)
    return bool(rule.edit_fields) if endpoint_name == "edits" else rule is DALL_E_2


def _strict_job(body: dict[str, Any], rule: ModelRule, prompt: str, inputs: int = 0) -> Job:
    n = integer(body, "n", 1, 1, rule.max_n)
    size = strict_size(body.get("size"), rule)
    quality = choice(body, "quality", rule.qualities, "auto")
    if not rule.gpt:
        delivery = choice(body, "response_format", RESPONSE_FORMATS, "url")
        choice(body, "style", ("vivid", "natural"), "vivid")
        return Job(prompt, n, size, delivery=delivery, revised=rule is DALL_E_3)
    fmt = choice(body, "output_format", OUTPUT_FORMATS, "png")
    background = choice(body, "background", BACKGROUNDS, "auto")
    if background == "transparent" and fmt == "jpeg":  # gotcha 6
        message = "Transparent background is not supported with output_format 'jpeg'; use png or webp."
        raise bad_request(message, "background", "invalid_value")
    integer(body, "output_compression", 100, 0, 100)
    choice(body, "input_fidelity", ("high", "low"), "low")
    choice(body, "moderation", ("auto", "low"), "auto")
    stream = choice(body, "stream", (True, False, "true", "false"), False) in (True, "true")
    partials = integer(body, "partial_images", 0, 0, 3)
    background = "opaque" if background == "auto" else background
    quality = "medium" if quality == "auto" else quality  # the reply names the resolved quality (§6.1)
    return Job(
        prompt,
        n,
        size,
        fmt,
        background,
        quality,
        gpt=True,
        stream=stream,
        partial_images=partials,
        inputs=inputs,
    )


def _loose_job(body: dict[str, Any], prompt: str) -> Job:
    fmt = choice(body, "output_format", OUTPUT_FORMATS, "png")
    delivery = choice(body, "response_format", RESPONSE_FORMATS, "url")
    return Job(
        prompt,
        integer(body, "n", 1, 1, 10),
        loose_size(body.get("size")),
        fmt,
        delivery=delivery,
        revised=True,
    )


def _reply(call: Call, flavour: Flavour, job: Job, event_prefix: str) -> Response:
    mode: Delivery = "url" if job.delivery == "url" else "b64"
    transparent = job.background == "transparent"
    images = deliver_images(call, job.n, job.size, job.fmt, transparent=transparent, mode=mode)
    if job.stream:
        return _stream(job, images, event_prefix)
    revised = {"revised_prompt": f"A detailed image of: {job.prompt}"} if job.revised else {}
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": [{job.delivery: i, **revised} for i in images],
    }
    if job.gpt:
        body.update(_gpt_fields(job), usage=_usage(job))
    elif flavour.usage is not None:
        body["usage"] = flavour.usage
    return JSONResponse(body)


def _stream(job: Job, images: list[str], event_prefix: str) -> Response:
    """SSE (§6.2): `partial_images` partial events, then one completed event, per image."""
    fields = {"created_at": int(time.time()), **_gpt_fields(job)}
    events: list[dict[str, Any]] = []
    for image in images:
        partial_type = f"{event_prefix}.partial_image"
        events += [
            {"type": partial_type, "partial_image_index": index, "b64_json": image, **fields}
            for index in range(job.partial_images)
        ]
        events.append(
            {"type": f"{event_prefix}.completed", "b64_json": image, **fields, "usage": _usage(job)}
        )
    return Response(
        "".join(f"data: {json.dumps(event)}\n\n" for event in events), media_type="text/event-stream"
    )


def _gpt_fields(job: Job) -> dict[str, str]:
    size = f"{job.size[0]}x{job.size[1]}"
    return {"background": job.background, "output_format": job.fmt, "quality": job.quality, "size": size}


def _usage(job: Job) -> dict[str, Any]:
    text = len(job.prompt.split()) + 1
    image = IMAGE_INPUT_TOKENS * job.inputs
    output = job.n * round(OUTPUT_TOKENS[job.quality] * job.size[0] * job.size[1] / DEFAULT_SIZE[0] ** 2)
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"image_tokens": image, "text_tokens": text},
        "output_tokens": output,
        "total_tokens": text + image + output,
    }


CANNED: dict[int, tuple[str, str, str | None]] = {
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    402: ("Insufficient balance.", "insufficient_quota", "insufficient_balance"),  # ModelMax (seeds/003)
    429: ("Rate limit reached for images. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway: the upstream provider failed.", "upstream_error", None),  # ModelMax (seeds/003)
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def _canned(status: int, call: Call) -> ApiError:
    if status == 400:
        return _content_policy(call)
    default = ("Request failed.", "server_error" if status >= 500 else "invalid_request_error", None)
    own = FLAVOURS.get(call.provider.name, COMPAT).errors
    message, kind, code = own.get(status) or CANNED.get(status, default)
    return ApiError(status, message, type=kind, code=code)


def _content_policy(call: Call) -> ApiError:
    """A safety rejection in the shape the asked model gets (§7): GPT image vs DALL·E and gateways."""
    fields = call.json if call.json is not None else dict(call.form or [])
    model = fields.get("model")
    if isinstance(model, str) and model.startswith(("gpt-image", "chatgpt-image")):
        message = (
            "Your request was rejected by the safety system. If you believe this is an error, contact us at "
            "help.openai.com."
        )
        return ApiError(400, message, type="image_generation_user_error", code="moderation_blocked")
    message = (
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
        "not allowed by our safety system."
    )
    return ApiError(400, message, code="content_policy_violation")


def _render(error: ApiError) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


DIALECT = Dialect(render=_render, canned=_canned)
