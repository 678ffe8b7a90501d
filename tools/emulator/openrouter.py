"""OpenRouter image output through chat completions, for `openrouter` (providers/openrouter.py cites the
documents: OpenRouterTeam/docs image-generation.mdx, image-understanding.mdx, errors-and-debugging.mdx,
openapi.yaml ChatRequest / ChatAssistantImages / GET /key).

Owns POST /api/v1/chat/completions for the image models below: `modalities` must ask for an image (image-only
models take exactly ["image"], the others ["image","text"]); `image_config.aspect_ratio` must be one of the
model's ratios and `image_config.image_size` one of its sizes; user content is a string or text and image_url
parts (http(s) URLs, or base64 data URLs of png/jpeg/webp/gif that decode). The reply carries one image as a
data URL in choices[0].message.images, text in content, and usage with cost. Errors are
`{error: {code, message, metadata?}}`: 401 a bad key, 402 credits, 403 a moderation flag (`metadata.reasons`),
429 rate limit. Also GET /api/v1/key (doctor's check). UNCONFIRMED, and strict here on purpose: unknown
image_config keys are refused (400); pixels of the 2K/4K sizes are the 1K table doubled / quadrupled.

Outcome control, back to defaults on /_emulator/reset:
    POST /openrouter/_emulator/outcomes {"outcome": "refusal"|"text_only"|"error_in_body", "count": 1}
        refusal: finish_reason content_filter and no image; text_only: text and no image;
        error_in_body: HTTP 200 with {error: {code: 502, metadata: {error_type: "provider_unavailable"}}}
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, Provider, deliver_images, endpoint
from tools.emulator.state import EmulatorState

__all__ = ["BASE_PATH", "MODELS", "OUTCOMES", "routes"]

BASE_PATH = "/api/v1"
TABLE_1K = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
"""image-generation.mdx: "Supported aspect ratios" with their pixels (1K)."""
SCALE = {"1K": 1, "2K": 2, "4K": 4}
DATA_URL = re.compile(r"^data:(image/(?:png|jpeg|webp|gif));base64,(.+)$", re.S)
OUTCOMES = ("refusal", "text_only", "error_in_body")
IMAGE_CONFIG = frozenset({"aspect_ratio", "image_size"})


@dataclass(frozen=True)
class ModelRule:
    """What one image model takes: its modalities, ratios and sizes."""

    modalities: tuple[str, ...] = ("image", "text")
    sizes: tuple[str, ...] = ()  # image_config.image_size values; none: the field is refused
    extra_ratios: tuple[str, ...] = ()


MODELS: dict[str, ModelRule] = {
    "google/gemini-2.5-flash-image": ModelRule(),
    "google/gemini-3-pro-image-preview": ModelRule(sizes=("1K", "2K", "4K")),
    "google/gemini-3.1-flash-image-preview": ModelRule(
        sizes=("0.5K", "1K", "2K", "4K"), extra_ratios=("1:4", "4:1", "1:8", "8:1")
    ),
    "black-forest-labs/flux.2-pro": ModelRule(modalities=("image",)),
    "black-forest-labs/flux.2-flex": ModelRule(modalities=("image",)),
}


class Outcomes:
    """Queued non-default outcomes, forgotten when the control API resets the state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state, self._log, self.queued = state, state.log, list[str]()

    def next(self) -> str | None:
        if self.state.log is not self._log:  # reset() replaces the log
            self._log, self.queued = self.state.log, []
        return self.queued.pop(0) if self.queued else None


def routes(provider: Provider) -> list[BaseRoute]:
    outcomes = Outcomes(provider.state)
    return [
        endpoint(provider, f"{BASE_PATH}/chat/completions", "chat", partial(_chat, outcomes), DIALECT),
        endpoint(provider, f"{BASE_PATH}/key", "key", _key, DIALECT, ("GET",)),
        Route("/_emulator/outcomes", partial(_configure, outcomes), methods=["POST"]),
    ]


async def _chat(outcomes: Outcomes, call: Call) -> Response:
    body = call.json
    if body is None:
        raise _bad("Invalid JSON body")
    model = body.get("model")
    rule = MODELS.get(model) if isinstance(model, str) else None
    if rule is None:
        raise _bad(f"{model} is not a valid model ID", status=400)
    _check_modalities(body.get("modalities"), rule, model)
    inputs = _check_messages(body.get("messages"))
    size = _size(body.get("image_config"), rule, inputs)
    if body.get("seed") is not None and (type(body["seed"]) is not int):
        raise _bad("seed: Expected integer")
    return _reply(call, model, size, outcomes.next())


def _check_modalities(value: Any, rule: ModelRule, model: str) -> None:
    if not isinstance(value, list) or "image" not in value:
        raise _bad(f'{model} needs modalities including "image" to generate images')
    if sorted(value) != sorted(rule.modalities):
        raise _bad(f"{model} supports output modalities {list(rule.modalities)}, got {value}")


def _check_messages(messages: Any) -> list[tuple[int, int]]:
    """Messages as ChatRequest has them; the sizes of the decodable input images ((0, 0) for URLs)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: Expected a non-empty array")
    sizes = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise _bad("messages: each message needs a role of system, user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            raise _bad("messages: content must be a string or a non-empty array of parts")
        sizes += [size for part in content if (size := _part(part)) is not None]
    return sizes


def _part(part: Any) -> tuple[int, int] | None:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        return None
    url = part.get("image_url", {}).get("url") if isinstance(part, dict) else None
    if not (isinstance(part, dict) and part.get("type") == "image_url" and isinstance(url, str)):
        raise _bad(
            "messages: content parts must be {type: text, text} or {type: image_url, image_url: {url}}"
        )
    if url.startswith(("http://", "https://")):
        return (0, 0)
    match = DATA_URL.match(url)
    try:
        info = images.probe(base64.b64decode(match[2], validate=True)) if match else None
    except (binascii.Error, ValueError):
        info = None
    if info is None:
        raise _bad(
            "image_url: expected an http(s) URL or a base64 data URL of a png, jpeg, webp or gif image"
        )
    return (info.width, info.height)


def _size(config: Any, rule: ModelRule, inputs: list[tuple[int, int]]) -> tuple[int, int]:
    config = {} if config is None else config
    if not isinstance(config, dict) or set(config) - IMAGE_CONFIG:
        raise _bad(f"image_config: unsupported keys {sorted(set(config) - IMAGE_CONFIG)}")
    ratio, tier = config.get("aspect_ratio"), config.get("image_size", "1K")
    ratios = (*TABLE_1K, *rule.extra_ratios)
    if ratio is not None and ratio not in ratios:
        raise _bad(f"image_config.aspect_ratio must be one of {list(ratios)}")
    if "image_size" in config and tier not in rule.sizes:
        raise _bad(f"image_config.image_size is not supported here; allowed: {list(rule.sizes)}")
    first = next(((w, h) for w, h in inputs if w), None)
    if ratio is None and first:  # no ratio: the last input's aspect, as Gemini does
        return first
    width, height = TABLE_1K.get(ratio or "1:1", (1024, 1024))
    scale = SCALE.get(tier, 0.5)
    return int(width * scale), int(height * scale)


def _reply(call: Call, model: str, size: tuple[int, int], outcome: str | None) -> Response:
    gen = f"gen-{uuid.uuid4().hex[:20]}"
    if outcome == "error_in_body":
        error = {
            "code": 502,
            "message": "Provider returned error",
            "metadata": {"error_type": "provider_unavailable"},
        }
        return JSONResponse({"id": gen, "error": error})
    refused = outcome == "refusal"
    urls = [] if outcome else deliver_images(call, 1, size, "png", mode="data_url")
    message = {
        "role": "assistant",
        "content": "I can't create that image." if refused else "Here is the image you asked for.",
        "images": [{"type": "image_url", "image_url": {"url": url}} for url in urls],
    }
    choice = {
        "index": 0,
        "finish_reason": "content_filter" if refused else "stop",
        "native_finish_reason": "IMAGE_SAFETY" if refused else "STOP",
        "message": message,
    }
    usage = {"prompt_tokens": 12, "completion_tokens": 1290, "total_tokens": 1302, "cost": 0.039}
    return JSONResponse(
        {
            "id": gen,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
    )


async def _key(call: Call) -> Response:
    return JSONResponse(
        {"data": {"label": "sk-or-v1-emu...", "limit": None, "usage": 0.5, "is_free_tier": False}}
    )


async def _configure(outcomes: Outcomes, request: Request) -> JSONResponse:
    body = await request.json()
    if not isinstance(body, dict) or body.get("outcome") not in OUTCOMES or set(body) - {"outcome", "count"}:
        return JSONResponse(
            {"error": f'expected {{"outcome": one of {OUTCOMES}, "count": n}}'}, status_code=400
        )
    outcomes.next()  # notices a reset first
    outcomes.queued += [body["outcome"]] * int(body.get("count", 1))
    return JSONResponse({"queued": len(outcomes.queued)})


# ---- errors: {error: {code, message, metadata?}} with the HTTP status in code


def _bad(message: str, status: int = 400) -> ApiError:
    return ApiError(status, message)


CANNED: dict[int, tuple[str, dict[str, Any] | None]] = {
    400: ("Bad Request", None),
    401: ("No auth credentials found", None),
    402: ("Insufficient credits. Add more using https://openrouter.ai/credits", None),
    403: (
        "Input was flagged by moderation",
        {
            "reasons": ["violence"],
            "flagged_input": "a red…fox",
            "provider_name": "Google",
            "model_slug": "gemini",
        },
    ),
    408: ("Request timed out", None),
    429: ("Rate limit exceeded", {"error_type": "rate_limit_exceeded"}),
    500: ("Internal Server Error", {"error_type": "server"}),
    502: ("Provider returned error", {"error_type": "provider_unavailable"}),
    503: (
        "No available model provider that meets your routing requirements",
        {"error_type": "provider_overloaded"},
    ),
}


def _canned(status: int, call: Call) -> ApiError:
    return ApiError(status, CANNED.get(status, ("Request failed", None))[0], type="openrouter_error")


def _render(error: ApiError) -> dict[str, Any]:
    payload: dict[str, Any] = {"code": error.status, "message": error.message}
    metadata = CANNED.get(error.status, ("", None))[1] if error.type == "openrouter_error" else None
    if metadata is not None:
        payload["metadata"] = metadata
    return {"error": payload}


DIALECT = Dialect(render=_render, canned=_canned)
