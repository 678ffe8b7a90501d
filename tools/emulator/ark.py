"""Volcengine Ark image generation (shared/providers/ark-seedream.md) for the `ark` provider.

Owns POST /api/v3/images/generations: the per-model rules for sizes, reference images and fields (§2–§3),
Ark's reply with `size`, `usage` and per-image errors (§4), SSE when `stream` is true (§4.1) and Ark's error
shape (§5). Auth, latency, faults, the request log and image bytes are core's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Delivery, Dialect, Provider, deliver_images, endpoint
from tools.emulator.state import DEFAULT_URL_TTL, ProviderSettings

__all__ = ["BASE_PATH", "RULES", "ModelRule", "routes"]

BASE_PATH = "/api/v3"
MB = 1024 * 1024
URL_TTL = 86400.0  # result links are signed for 24 h (§4: the URL carries `ept86400`)
MAX_GROUP = 15  # reference images + generated images in one group call (§2)
MAX_SEED = 2147483647
PIXELS = re.compile(r"([1-9]\d{1,4})x([1-9]\d{1,4})")
TIER = re.compile(r"\dK")
DATA_URL = re.compile(r"data:image/([^;,]+);base64,(.*)", re.DOTALL)
FORMATS_4X = ("jpeg", "png", "webp", "bmp", "tiff", "gif")  # [offdoc]; Pillow names, lowercased
REFUSAL = {
    "code": "OutputImageSensitiveContentDetected",
    "message": "The request failed because the output image may contain sensitive information.",
}


@dataclass(frozen=True)
class ModelRule:
    """What one Ark model accepts (§3)."""

    name: str  # how Ark's messages name the model
    tiers: dict[str, tuple[int, int]] = field(default_factory=dict)  # tier → what it renders (1:1)
    default: tuple[int, int] = (2048, 2048)
    min_pixels: int = 0
    max_pixels: int = 16777216
    edges: tuple[int, int] | None = None  # each side within (3.0 t2i)
    max_ratio: Fraction = Fraction(16)
    max_refs: int = 0  # 0: no `image` at all
    exact_one: bool = False  # SeedEdit: exactly one image, size only "adaptive"
    input_formats: tuple[str, ...] = FORMATS_4X
    guidance: bool = False
    group: bool = False  # sequential_image_generation and stream (4.x)
    optimize_modes: tuple[str, ...] = ()
    output: str = "jpeg"  # what it renders: always JPEG up to 4.5 (§3), PNG from 5.0 (3p)


SEEDREAM_4_0 = ModelRule(
    "doubao-seedream-4-0",
    tiers={"1K": (1024, 1024), "2K": (2048, 2048), "4K": (4096, 4096)},
    min_pixels=921600,
    max_refs=14,  # newest official table; imagegate's catalog caps 10 (launch-era docs)
    group=True,
    optimize_modes=("standard", "fast"),
)
RULES: dict[str, ModelRule] = {
    "doubao-seedream-4-0-250828": SEEDREAM_4_0,
    "doubao-seedream-4-5-251128": replace(
        SEEDREAM_4_0,
        name="doubao-seedream-4-5",
        tiers={"2K": (2048, 2048), "4K": (4096, 4096)},  # no 1K (gotcha 6)
        min_pixels=3686400,
        optimize_modes=("standard",),
    ),
    # Seedream 5.0 (shared/providers/models-2026-12.md; every figure 3p, UNCONFIRMED): PNG; 5.0 Pro is single
    # image (the group-mode fields are a 400), 0.92-4.19 MP, 10 refs; 5.0 Lite 2K/3K, 3.69-10.4 MP, 14 refs;
    # 5.0 Flash 1K-2K, 10 refs.
    "doubao-seedream-5-0-pro-260628": replace(
        SEEDREAM_4_0,
        name="doubao-seedream-5-0-pro",
        tiers={"1K": (1440, 1440), "2K": (2048, 2048)},
        max_pixels=4194304,
        max_refs=10,
        group=False,
        optimize_modes=("standard",),
        output="png",
    ),
    "doubao-seedream-5-0-260128": replace(
        SEEDREAM_4_0,
        name="doubao-seedream-5-0",
        tiers={"2K": (2048, 2048), "3K": (3072, 3072)},
        min_pixels=3686400,
        max_pixels=10404496,
        optimize_modes=("standard",),
        output="png",
    ),
    "doubao-seedream-5-0-flash-260915": replace(
        SEEDREAM_4_0,
        name="doubao-seedream-5-0-flash",
        tiers={"1K": (1024, 1024), "2K": (2048, 2048)},
        max_pixels=4194304,
        max_refs=10,
        group=False,
        output="png",
    ),
    "doubao-seedream-3-0-t2i-250415": ModelRule(
        "doubao-seedream-3-0-t2i", default=(1024, 1024), edges=(512, 2048), guidance=True
    ),
    "doubao-seededit-3-0-i2i-250628": ModelRule(
        "doubao-seededit-3-0-i2i",
        default=(1024, 1024),  # what an adaptive size renders when the input is a URL we do not fetch
        max_refs=1,
        exact_one=True,
        input_formats=("jpeg", "png"),
        guidance=True,
    ),
}

RULES["doubao-seedream-5-0-lite-260128"] = RULES["doubao-seedream-5-0-260128"]  # the Lite alias (3p)


@dataclass(frozen=True)
class _ArkProvider(Provider):
    """The `ark` mount: its links live 24 h unless a test configured another TTL."""

    @property
    def settings(self) -> ProviderSettings:
        settings = self.state.settings[self.name]
        return replace(settings, url_ttl=URL_TTL) if settings.url_ttl == DEFAULT_URL_TTL else settings


def routes(provider: Provider) -> list[BaseRoute]:
    ark = _ArkProvider(provider.name, provider.state)
    return [endpoint(ark, f"{BASE_PATH}/images/generations", "generations", _serve, DIALECT)]


async def _serve(call: Call) -> Response:
    try:
        return generate(call)
    except ApiError as error:  # Ark's messages end with the request id (§5)
        raise replace(error, message=f"{error.message} Request id: {call.record['id']}") from None


def generate(call: Call) -> Response:
    """POST /images/generations: check the body as Ark would, then answer with JPEGs."""
    if call.json is None:
        raise invalid("body", "the request body must be a JSON object")
    body = call.json
    model = _model(call, body)
    rule = RULES.get(model, SEEDREAM_4_0)  # ids allowed by configuration behave like Seedream 4.0
    _prompt(body)
    refs = _references(body, rule)
    size = _size(body.get("size"), rule, refs)
    count = _count(body, rule, len(refs))
    _check_options(body, rule)
    delivery = _choice(body, "response_format", ("url", "b64_json"), "url")
    stream = _boolean(body, "stream")
    if stream and not rule.group:
        raise unsupported("stream")
    return _reply(call, model, count, size, delivery, stream, rule.output)


def invalid(param: str, why: str) -> ApiError:
    message = f"The parameter `{param}` specified in the request is not valid: {why}."
    return ApiError(400, message, type="BadRequest", param=param, code="InvalidParameter")


def unsupported(param: str) -> ApiError:
    return invalid(param, f"the parameter `{param}` is not supported by the current model")


def _missing(param: str) -> ApiError:
    message = f"The request failed because it is missing the `{param}` parameter."
    return ApiError(400, message, type="BadRequest", param=param, code="MissingParameter")


def _model(call: Call, body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _missing("model")
    allowed = call.provider.settings.models or ()
    if not isinstance(model, str) or (model not in RULES and model not in allowed):
        message = f"The model or endpoint {model} does not exist or you do not have access to it."
        raise ApiError(404, message, type="NotFound", code="InvalidEndpointOrModel.NotFound")
    return model


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt", "prompt must be a non-empty string")
    return prompt


def _references(body: dict[str, Any], rule: ModelRule) -> list[tuple[int, int] | None]:
    """Each reference's pixels (None for a URL, which the emulator does not fetch)."""
    image = body.get("image")
    if image is None:
        if rule.exact_one:
            raise _missing("image")
        return []
    if rule.max_refs == 0:
        raise unsupported("image")
    refs = [image] if isinstance(image, str) else image
    if not isinstance(refs, list) or not refs or not all(isinstance(ref, str) for ref in refs):
        raise invalid("image", "image must be a string or a non-empty list of strings")
    if rule.exact_one and len(refs) != 1:
        raise invalid("image", "exactly one input image is required")
    if len(refs) > rule.max_refs:
        raise invalid("image", f"at most {rule.max_refs} reference images are supported, got {len(refs)}")
    return [_reference(ref, rule) for ref in refs]


def _reference(ref: str, rule: ModelRule) -> tuple[int, int] | None:
    if ref.startswith(("http://", "https://")):
        return None
    match = DATA_URL.fullmatch(ref)
    if match is None:
        raise invalid("image", "image must be an http(s) URL or a data:image/<format>;base64 URL")
    if match[1] != match[1].lower():  # gotcha 9
        raise invalid("image", f"the image format `{match[1]}` in the data URL must be lower case")
    try:
        data = base64.b64decode(match[2], validate=True)
    except (binascii.Error, ValueError):
        raise invalid("image", "the image data is not valid base64") from None
    if len(data) > 10 * MB:
        raise invalid("image", "each image must be at most 10 MB")
    info = images.probe(data)
    if info is None or info.format.lower() not in rule.input_formats:
        raise invalid("image", f"the image format must be one of {', '.join(rule.input_formats)}")
    return _check_input_shape(info.width, info.height, rule)


def _check_input_shape(width: int, height: int, rule: ModelRule) -> tuple[int, int]:
    # §3: sides > 14 px, at most 6000x6000 pixels; aspect within 1:3..3:1 (the launch-era rule; SeedEdit's
    # bounds are open).
    ratio = Fraction(width, height)
    inside = Fraction(1, 3) < ratio < 3 if rule.exact_one else Fraction(1, 3) <= ratio <= 3
    if min(width, height) <= 14 or width * height > 36_000_000 or not inside:
        why = f"image {width}x{height} needs sides > 14 px, at most 36000000 pixels and a ratio in 1/3..3"
        raise invalid("image", why)
    return width, height


def _size(value: Any, rule: ModelRule, refs: list[tuple[int, int] | None]) -> tuple[int, int]:
    """The pixels to render: a tier of the model, WxH within its rule, or SeedEdit's "adaptive"."""
    not_supported = invalid("size", f"the specified size is not supported for model {rule.name}")
    if rule.exact_one:
        if value not in (None, "adaptive"):
            raise not_supported
        return refs[0] or rule.default
    if value is None:
        return rule.default
    if not isinstance(value, str):
        raise invalid("size", "size must be a string")
    if value in rule.tiers:
        return rule.tiers[value]
    match = PIXELS.fullmatch(value)
    if match is None:
        raise not_supported if TIER.fullmatch(value) or value == "adaptive" else invalid("size", "bad format")
    width, height = int(match[1]), int(match[2])
    _check_pixels(width, height, rule)
    return width, height


def _check_pixels(width: int, height: int, rule: ModelRule) -> None:
    if rule.edges and not all(rule.edges[0] <= edge <= rule.edges[1] for edge in (width, height)):
        raise invalid("size", f"width and height must be between {rule.edges[0]} and {rule.edges[1]}")
    if width * height < rule.min_pixels:
        raise invalid("size", f"image size must be at least {rule.min_pixels} pixels")
    if width * height > rule.max_pixels:
        raise invalid("size", f"image size must be at most {rule.max_pixels} pixels")
    if not 1 / rule.max_ratio <= Fraction(width, height) <= rule.max_ratio:
        raise invalid("size", f"the aspect ratio must be between 1/{rule.max_ratio} and {rule.max_ratio}")


def _count(body: dict[str, Any], rule: ModelRule, refs: int) -> int:
    """How many images to make: 1, or max_images in group mode (§2; the model may make fewer)."""
    mode = body.get("sequential_image_generation")
    options = body.get("sequential_image_generation_options")
    if not rule.group and (mode is not None or options is not None):
        raise unsupported("sequential_image_generation")
    if _choice(body, "sequential_image_generation", ("auto", "disabled"), "disabled") == "disabled":
        return 1
    if options is None:
        return 1  # the model decides (up to 15); one image is a valid decision
    if not isinstance(options, dict):
        raise invalid("sequential_image_generation_options", "must be an object")
    wanted = _integer(options, "max_images", 1, MAX_GROUP, MAX_GROUP)
    if refs + wanted > MAX_GROUP:
        why = (
            f"the number of reference images ({refs}) plus max_images ({wanted}) must not exceed {MAX_GROUP}"
        )
        raise invalid("sequential_image_generation_options.max_images", why)
    return wanted


def _check_options(body: dict[str, Any], rule: ModelRule) -> None:
    """seed, guidance_scale, watermark and optimize_prompt_options, per model (§2–§3)."""
    _integer(body, "seed", -1, MAX_SEED, -1)  # accepted by 4.x too (effect UNCONFIRMED, §2)
    if "guidance_scale" in body:
        if not rule.guidance:  # "not supported on 4.0/4.5" [offdoc]; rejecting is the strict reading
            raise unsupported("guidance_scale")
        scale = body["guidance_scale"]
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 1 <= scale <= 10:
            raise invalid("guidance_scale", "guidance_scale must be a number in [1, 10]")
    _boolean(body, "watermark")
    options = body.get("optimize_prompt_options")
    if options is not None:
        if not rule.optimize_modes:
            raise unsupported("optimize_prompt_options")
        if not isinstance(options, dict):
            raise invalid("optimize_prompt_options", "must be an object")
        _choice(options, "mode", rule.optimize_modes, "standard", "optimize_prompt_options.mode")


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str, shown: str = "") -> str:
    value = body.get(name, default)
    if value not in allowed:
        raise invalid(shown or name, f"`{value}` is not one of {', '.join(allowed)}")
    return str(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(name, f"{name} must be an integer in [{low}, {high}]")
    return value


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise invalid(name, f"{name} must be a boolean")
    return value


def _reply(
    call: Call, model: str, count: int, size: tuple[int, int], delivery: str, stream: bool, fmt: str
) -> Response:
    """JPEG up to 4.5 (§3); images a `partial` fault withholds come back as per-image errors (§4)."""
    mode: Delivery = "url" if delivery == "url" else "b64"
    made = deliver_images(call, count, size, fmt, mode=mode)
    pixels = f"{size[0]}x{size[1]}"
    items = [{delivery: image, "size": pixels} for image in made] + [{"error": REFUSAL}] * (count - len(made))
    tokens = len(made) * size[0] * size[1] // 256  # output_tokens = Σ(w×h)/256 (§4)
    usage = {"generated_images": len(made), "output_tokens": tokens, "total_tokens": tokens}
    created = int(time.time())
    if stream:
        return _stream(model, created, items, usage)
    return JSONResponse({"model": model, "created": created, "data": items, "usage": usage})


def _stream(model: str, created: int, items: list[dict[str, Any]], usage: dict[str, int]) -> Response:
    """§4.1: one partial_succeeded / partial_failed event per image, then completed, then [DONE]."""
    head = {"model": model, "created_at": created}
    events = [
        {"type": f"image_generation.partial_{'failed' if 'error' in item else 'succeeded'}", **head}
        | {"image_index": index, **item}
        for index, item in enumerate(items)
    ]
    events.append({"type": "image_generation.completed", **head, "usage": usage})
    lines = [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]
    return Response("".join(lines), media_type="text/event-stream")


CANNED: dict[int, tuple[str, str, str]] = {  # status → (code, message, type), from captured replies (§5)
    400: (
        "InputTextSensitiveContentDetected",
        "The request failed because the input text may contain sensitive information.",
        "BadRequest",
    ),
    401: (
        "AuthenticationError",
        "The API key or AK/SK in the request is missing or invalid.",
        "Unauthorized",
    ),
    403: (
        "AccessDenied",
        "The request failed because you do not have access to the requested resource.",
        "Forbidden",
    ),
    404: ("InvalidEndpointOrModel.NotFound", "The model or endpoint does not exist.", "NotFound"),
    429: (
        "RateLimitExceeded.EndpointRPMExceeded",
        "The request has exceeded the rate limit of the endpoint. Please retry after a while.",
        "TooManyRequests",
    ),
    500: (
        "InternalServiceError",
        "The service encountered an unexpected internal error.",
        "InternalServerError",
    ),
    503: (
        "ServerOverloaded",
        "The service is currently unable to handle additional requests due to server overload.",
        "ServiceUnavailable",
    ),
}


def _canned(status: int, call: Call) -> ApiError:
    fallback = ("InternalServiceError", "The service encountered an unexpected internal error.", "")
    code, message, kind = CANNED.get(status, fallback if status >= 500 else CANNED[400])
    return ApiError(status, f"{message} Request id: {call.record['id']}", type=kind, code=code)


def _render(error: ApiError) -> dict[str, Any]:
    return {
        "error": {
            "code": error.code,
            "message": error.message,
            "param": error.param or "",
            "type": error.type,
        }
    }


DIALECT = Dialect(render=_render, canned=_canned)
