"""ModelGate gateway protocol (shared/seeds/000_04e54511d4d1ae45.txt) for the `modelgate` provider.

Owns POST /api/v1/images/generations: the per-model size tables, result and seed-image limits, the reply
(`status`, `task_id`, `data[]`, `usage` list, `request_id`) and the error body (`status: "error"`, numeric
`code`, `message.error.message`). Auth, latency, faults, the log and image bytes are core's.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Delivery, Dialect, Provider, deliver_images, endpoint

__all__ = ["BASE_PATH", "MODELS", "ModelRule", "routes"]

BASE_PATH = "/api/v1"
# The parameter table's default; not in the "多图输入" list, so a multi-image call without a size is refused.
DEFAULT_SIZE = "1024x1024"
OUTPUT_TYPES = ("url", "base64")
OUTPUT_FORMATS = ("png", "jpeg")
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(.*)", re.S | re.I)


def _sizes(text: str) -> frozenset[str]:
    return frozenset(text.replace("/", " ").split())


@dataclass(frozen=True)
class ModelRule:
    """What one model accepts, from its "支持的模型和参数" section."""

    name: str  # as the doc's own error message names it: "nano-banana-pro"
    sizes: frozenset[str] | None  # None: any WxH (an extra model configured through the control API)
    max_results: int
    max_seed_images: int
    seed_base64: bool  # Seedream takes base64 or URLs; the Google models URLs only
    honours_format: bool  # output_format: "只有 google/nano-banana 和 google/nano-banana-pro 支持该字段"
    delivery: (
        Delivery  # base64 replies: the Python sample reads b64_json, the reply sample a `content` data URL
    )
    multi_image_sizes: frozenset[str] | None = None  # "多图输入": two or more seed images


MODELS: dict[str, ModelRule] = {
    "volcengine/doubao-seedream-4-0": ModelRule(
        "doubao-seedream-4-0",
        _sizes("2048x2048 2304x1728 1728x2304 2560x1440 1440x2560 2496x1664 1664x2496 3024x1296"),
        max_results=15,
        max_seed_images=10,
        seed_base64=True,
        honours_format=False,
        delivery="b64",
    ),
    "google/nano-banana": ModelRule(
        "nano-banana",
        _sizes("1024x1024 832x1248/1248x832 864x1184/1184x864 896x1152/1152x896 768x1344/1344x768 1536x672"),
        max_results=1,
        # "支持单图输入" (parameter table) against "最大输入图像数: 10" (its limits): the limits' number,
        # as the catalog reads it (UNCONFIRMED there); the real gateway may refuse a second image.
        max_seed_images=10,
        seed_base64=False,
        honours_format=True,
        delivery="data_url",
    ),
    "google/nano-banana-pro": ModelRule(
        "nano-banana-pro",
        _sizes(
            "1024x1024 768x1376/1376x768 1584x672 1152x928/928x1152 848x1264/1264x848 896x1200/1200x896"
            " 2048x2048 1536x2752/2752x1536 3168x1344 2304x1856/1856x2304 1696x2528/2528x1696"
            " 1792x2400/2400x1792 4096x4096 3072x5504/5504x3072 6336x2688 4608x3712/3712x4608"
            " 3392x5056/5056x3392 3584x4800/4800x3584"
        ),
        max_results=1,
        max_seed_images=10,
        seed_base64=False,
        honours_format=True,
        delivery="data_url",
        multi_image_sizes=_sizes(
            "848x1264/1264x848 896x1200/1200x896 1696x2528/2528x1696 1792x2400/2400x1792"
            " 3392x5056/5056x3392 3584x4800/4800x3584"
        ),
    ),
}
EXTRA_MODEL = ModelRule("", None, 15, 10, True, True, "data_url")
# output_format is a field of the Google models only; the doc's own Doubao example still sends it, so
# Seedream takes it and ignores it. The doc names no Seedream format: Seedream 4.0 itself answers JPEG.
SEEDREAM_FORMAT = "jpeg"


def routes(provider: Provider) -> list[BaseRoute]:
    return [endpoint(provider, f"{BASE_PATH}/images/generations", "generations", generate, DIALECT)]


async def generate(call: Call) -> Response:
    """POST /images/generations (JSON): text-to-image, or with seed_images."""
    body = call.json
    if body is None:
        raise _invalid("request body must be a JSON object")
    rule = _model(call, body)
    _prompt(body)
    output_type = _choice(body, "output_type", OUTPUT_TYPES, "base64")
    fmt = _choice(body, "output_format", OUTPUT_FORMATS, "png")
    count = _number_results(body, rule)
    seeds = _seed_images(body, rule)
    width, height = _size(body, rule, seeds)
    fmt = fmt if rule.honours_format else SEEDREAM_FORMAT
    mode: Delivery = "url" if output_type == "url" else rule.delivery
    delivered = deliver_images(call, count, (width, height), fmt, mode=mode)
    key = {"url": "url", "b64": "b64_json", "data_url": "content"}[mode]
    return JSONResponse(
        {
            "task_id": uuid.uuid4().hex,
            "status": "completed",
            "model": body["model"],
            "created": int(time.time()),
            "data": [{key: item} for item in delivered],
            "usage": [{"quality": "default", "size": f"{width}x{height}"} for _ in delivered],
            "request_id": _request_id(),
        }
    )


def _invalid(detail: str) -> ApiError:
    return ApiError(400, f"failed to validate request: {detail}")


def _model(call: Call, body: dict[str, Any]) -> ModelRule:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model is required")
    extra = call.provider.settings.models or ()
    rule = MODELS.get(model) or (EXTRA_MODEL if model in extra else None)
    if rule is None:
        raise _invalid(f"unsupported model: {model}")
    return rule


def _prompt(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("prompt is required")


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in allowed:
        raise _invalid(f"invalid {name}: {value}. Must be one of {', '.join(allowed)}")
    return str(value)


def _number_results(body: dict[str, Any], rule: ModelRule) -> int:
    value = body.get("number_results", 1)
    if type(value) is not int or not 1 <= value <= rule.max_results:
        name = rule.name or body["model"]
        raise _invalid(f"invalid number_results for {name} model: {value}. Must be 1 to {rule.max_results}")
    return value


def _seed_images(body: dict[str, Any], rule: ModelRule) -> list[str]:
    seeds = body.get("seed_images", [])
    if not isinstance(seeds, list) or not all(isinstance(seed, str) for seed in seeds):
        raise _invalid("seed_images must be an array of strings")
    name = rule.name or body["model"]
    if len(seeds) > rule.max_seed_images:
        raise _invalid(f"too many seed_images for {name} model: {len(seeds)}. At most {rule.max_seed_images}")
    for index, seed in enumerate(seeds):
        if seed.startswith(("http://", "https://")):
            continue
        if not rule.seed_base64:
            raise _invalid(f"invalid seed_images[{index}] for {name} model: only image URLs are supported")
        if not _is_image(seed):
            raise _invalid(f"invalid seed_images[{index}]: not a valid base64 image")
    return seeds


def _is_image(seed: str) -> bool:
    match = DATA_URL.fullmatch(seed)
    try:
        data = base64.b64decode(match[1] if match else seed, validate=True)
    except (binascii.Error, ValueError):
        return False
    return images.probe(data) is not None


def _size(body: dict[str, Any], rule: ModelRule, seeds: list[str]) -> tuple[int, int]:
    size = body.get("size", DEFAULT_SIZE)
    match = re.fullmatch(r"([1-9]\d{1,4})x([1-9]\d{1,4})", size) if isinstance(size, str) else None
    table = rule.multi_image_sizes if len(seeds) >= 2 and rule.multi_image_sizes else rule.sizes
    if match is None or (table is not None and size not in table):
        # The doc's own example: "invalid Size for nano-banana-pro model: 1024x10214. Must be a valid NxN ..."
        name = rule.name or body["model"]
        raise _invalid(
            f"invalid Size for {name} model: {size}. Must be a valid NxN format from supported resolutions"
        )
    return int(match[1]), int(match[2])


def _request_id() -> str:
    return str(time.time_ns() // 1000)  # 16 digits, like the doc's "1765174674381275"


CANNED: dict[int, str] = {
    400: "failed to validate request: invalid parameters",
    401: "unauthorized: invalid API key",
    402: "insufficient balance, please recharge",
    429: "too many requests, please retry later",
    500: "internal server error, please retry later",
    503: "service unavailable, please retry later",
    508: "upstream task failed, please retry later",
}


def _canned(status: int, call: Call) -> ApiError:
    return ApiError(status, CANNED.get(status, "request failed"))


def _render(error: ApiError) -> dict[str, Any]:
    """The doc's error example, plus the numeric `code` (and 429's `is_retry`) its error handler reads."""
    body: dict[str, Any] = {
        "status": "error",
        "code": error.status,
        "message": {
            "task_id": "",
            "status": "failed",
            "created": int(time.time()),
            "error": {"code": error.code or "", "message": error.message},
            "request_id": _request_id(),
        },
    }
    if error.status == 429:
        body["is_retry"] = True
    return body


DIALECT = Dialect(render=_render, canned=_canned)
