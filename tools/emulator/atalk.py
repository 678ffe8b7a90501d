"""AtalkAI image protocol (shared/seeds/004_f817f0b0c340ea4a.txt) for the `atalk` provider.

Owns POST /images/generate under the host root (the real base is https://api.atalk-ai.com): the field
checks the doc states (model, prompt, nine aspect ratios, input_image..input_image_8 as URL or base64
≤ 20 MB and 20 MP for every model, Flux-only width/height in multiples of 16, seed, safety_tolerance 0-5,
output_format jpeg|png) and its reply shapes: URL images for Flux, base64 for Gemini, `{code: -1, msg}`
errors; the reply names the `model` and `provider` that served it. Auth, latency,
faults, the log and image bytes are core's. The doc gives no HTTP status for errors (UNCONFIRMED): this
answers 400 for bad fields and 401 for a bad key; the `error_in_200` fault gives the HTTP 200 variant.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Delivery, Dialect, Provider, deliver_images, endpoint

__all__ = ["BASE_PATH", "routes"]

BASE_PATH = ""  # endpoints hang from the host root: {base}/images/generate
MB = 1024 * 1024
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_FIELDS = ("input_image", *(f"input_image_{k}" for k in range(2, 9)))
STRAY_IMAGE_FIELD = re.compile(r"input_image_\d+")
MAX_IMAGE_BYTES = 20 * MB
MAX_IMAGE_PIXELS = 20_000_000  # "最大 20MB 或 20MP"
OUTPUT_FORMATS = ("jpeg", "png")
FLUX_ONLY = ("width", "height", "seed", "safety_tolerance", "output_format")
FLUX_AREA = 1024 * 1024  # what a bare aspect_ratio renders for Flux: about 1 MP, edges multiples of 16
MAX_PIXELS = 4096 * 4096  # the doc states no maximum; this only keeps the renderer's memory sane
# Gemini 2.5 Flash Image's 1K table (shared/providers/gemini.md), for the nine ratios the gateway takes.
GEMINI_SIZES = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class Model:
    """How one model id answers: Flux takes pixels and answers URLs, Gemini answers base64 PNG."""

    flux: bool
    cost: float  # the doc's examples: 0.04 for flux-2-pro, 0.02 for gemini-2.5-flash-image


MODELS: dict[str, Model] = {
    "flux-2-pro": Model(flux=True, cost=0.04),
    "flux-1.1-pro": Model(flux=True, cost=0.04),
    "gemini-2.5-flash-image": Model(flux=False, cost=0.02),
}


def routes(provider: Provider) -> list[BaseRoute]:
    return [endpoint(provider, f"{BASE_PATH}/images/generate", "generate", generate, DIALECT)]


async def generate(call: Call) -> Response:
    """POST /images/generate (JSON)."""
    body = call.json
    if body is None:
        raise bad_request("Invalid JSON body")
    model_id, model = _model(call, body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_request("Missing required parameter: prompt")
    ratio = _ratio(body)
    _check_inputs(body)
    if model.flux:
        size, fmt = _flux_size(body, ratio), _flux_options(body)
    else:
        _refuse_flux_only(body)
        size, fmt = GEMINI_SIZES[ratio], "png"
    return _reply(call, model_id, model, prompt, size, fmt)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def _model(call: Call, body: dict[str, Any]) -> tuple[str, Model]:
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise bad_request("Missing required parameter: model")
    extra = call.provider.settings.models or ()
    if model_id in MODELS:
        return model_id, MODELS[model_id]
    if model_id in extra:  # an allow-listed id behaves like its family
        return model_id, Model(flux=model_id.startswith("flux"), cost=0.04)
    raise bad_request(f"Unsupported model: {model_id}")


def _ratio(body: dict[str, Any]) -> str:
    ratio = body.get("aspect_ratio", "1:1")
    if ratio not in RATIOS:  # the doc's own error message (seeds/004, 错误响应示例)
        raise bad_request(f"Invalid aspect_ratio parameter. Supported ratios: {', '.join(RATIOS)}")
    return str(ratio)


def _check_inputs(body: dict[str, Any]) -> None:
    """input_image, then input_image_2..8 (1 main + 7 extra); each a URL or base64 of an image ≤ 20 MB."""
    stray = [name for name in body if STRAY_IMAGE_FIELD.fullmatch(name) and name not in IMAGE_FIELDS]
    if stray:
        raise bad_request(f"Too many input images: {stray[0]}. The API supports at most 8 images")
    given = [name for name in IMAGE_FIELDS if body.get(name) is not None]
    if given and "input_image" not in given:
        raise bad_request(f"{given[0]} requires input_image")
    for name in given:
        _check_image(name, body[name])


def _check_image(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise bad_request(f"Invalid {name}: expected a URL or a Base64 string")
    if value.startswith(("http://", "https://")):
        return  # fetched by the real service; the emulator takes any well-formed URL
    text = DATA_URL.sub("", value, count=1)
    if len(text) * 3 // 4 > MAX_IMAGE_BYTES:
        raise bad_request(f"Invalid {name}: image exceeds the maximum size of 20MB")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"Invalid {name}: not a valid URL or Base64 image") from None
    info = images.probe(data)
    if info is None:
        raise bad_request(f"Invalid {name}: the data could not be decoded as an image")
    if info.width * info.height > MAX_IMAGE_PIXELS:
        raise bad_request(f"Invalid {name}: image exceeds the maximum of 20MP")


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad_request(f"Invalid {name} parameter: expected an integer")
    return value


def _flux_size(body: dict[str, Any], ratio: str) -> tuple[int, int]:
    """width/height (multiples of 16, the doc's only rule, for every Flux model) override aspect_ratio;
    one alone keeps the ratio's shape."""
    width, height = _integer(body, "width"), _integer(body, "height")
    for name, edge in (("width", width), ("height", height)):
        if edge is not None and (edge <= 0 or edge % 16):
            raise bad_request(f"Invalid {name} parameter: {edge}. Must be a positive multiple of 16")
    w_ratio, h_ratio = (int(part) for part in ratio.split(":"))
    if width is not None and height is not None:
        size = width, height
    elif width is not None:
        size = width, _snap(width * h_ratio / w_ratio)
    elif height is not None:
        size = _snap(height * w_ratio / h_ratio), height
    else:
        scale = math.sqrt(FLUX_AREA / (w_ratio * h_ratio))
        size = _snap(w_ratio * scale), _snap(h_ratio * scale)
    if size[0] * size[1] > MAX_PIXELS:
        raise bad_request(f"Invalid size {size[0]}x{size[1]}: more than {MAX_PIXELS} pixels")
    return size


def _snap(edge: float) -> int:
    return max(16, round(edge / 16) * 16)


def _flux_options(body: dict[str, Any]) -> str:
    """seed, safety_tolerance (0-5) and output_format (jpeg default, png); returns the format."""
    _integer(body, "seed")
    tolerance = _integer(body, "safety_tolerance")
    if tolerance is not None and not 0 <= tolerance <= 5:
        raise bad_request(f"Invalid safety_tolerance parameter: {tolerance}. Must be between 0 and 5")
    fmt = body.get("output_format", "jpeg")
    if fmt not in OUTPUT_FORMATS:
        raise bad_request(f"Invalid output_format parameter: {fmt}. Supported formats: jpeg, png")
    return str(fmt)


def _refuse_flux_only(body: dict[str, Any]) -> None:
    # "以下参数仅在使用 Flux 系列模型时支持" (seeds/004): refused, so an adapter that sends them is caught.
    sent = [name for name in FLUX_ONLY if body.get(name) is not None]
    if sent:
        raise bad_request(f"Parameter {sent[0]} is only supported by Flux models")


def _reply(call: Call, model_id: str, model: Model, prompt: str, size: tuple[int, int], fmt: str) -> Response:
    mode: Delivery = "url" if model.flux else "b64"
    made = deliver_images(call, 1, size, fmt, mode=mode)
    mime = None if model.flux else images.FORMATS[fmt][1]
    revised = f"A detailed image of: {prompt}" if model.flux else None
    data = [
        {
            "type": "url" if model.flux else "base64",
            "image": image,
            "mimeType": mime,
            "revised_prompt": revised,
        }
        for image in made
    ]
    usage = {"cost": model.cost * len(made), "images_generated": len(made), "images_failed": 1 - len(made)}
    body = {
        "code": 0,
        "data": data,
        "model": model_id,
        "provider": "flux" if model.flux else "gemini",
        "usage": usage,
    }
    return JSONResponse(body)


CANNED: dict[int, str] = {
    400: "Invalid request parameters",
    401: "API key is invalid or expired",  # the doc's own example (seeds/004, 错误响应示例)
    402: "Insufficient balance, please recharge",
    403: "API key is invalid or expired",
    429: "Too many requests, please try again later",
    500: "Internal server error",
    502: "Upstream provider error",
    503: "Service temporarily unavailable",
    504: "Upstream timeout",
}


def _canned(status: int, call: Call) -> ApiError:
    return ApiError(status, CANNED.get(status, "Request failed"))


def _render(error: ApiError) -> dict[str, Any]:
    # Errors carry code -1; a fault's `code` may set an HTTP-like one, as the doc's retry sample reads
    # 429/500/503 from `code` (seeds/004, 错误重试策略).
    code = str(error.code) if error.code is not None else ""
    return {"code": int(code) if code.lstrip("-").isdigit() else -1, "msg": error.message}


def _credential(request: Request) -> str | None:
    """The key from `Authorization`, bare (the curl example) or `Bearer <key>` (the code examples)."""
    value = request.headers.get("authorization", "").strip()
    scheme, _, rest = value.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else value or None


DIALECT = Dialect(render=_render, canned=_canned, credential=_credential)
