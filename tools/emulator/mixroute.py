"""MixRoute gateway protocol (shared/seeds/001_ecfd8d4591bdfd3a.txt) for the provider `mixroute`.

Owns POST /v1/images/generations and its per-family request rules: Gemini (ratio `size`, `image_size`,
`contents` parts, b64 only), Seedream (WxH `size`, seed, watermark, `contents` parts, URLs), GPT Image
(three sizes, n 1-10, a data-URL `image`, b64 only) and Qwen (DashScope's `input`/`parameters`, one image
per request). Replies are bare OpenAI bodies, or the doc's `{code, msg, data}` envelope (errors included)
when the key contains "wrapped". Where the doc is silent, the family's native rules apply (ark-seedream.md,
dashscope-qwen.md, gemini.md). Auth, latency, faults, the request log and image bytes are core's.

Seedream group mode is what the doc says and no more: a switch ("disabled" or "auto") with no count
field, after which the model makes 1-4 images of its own choosing (FAQ); here, the first digit 1-4 the
prompt names, else one. Seedream 4.x takes the bare sizes "2K" and "4K" only (the doc: "(2K/4K)").
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tools.emulator import images
from tools.emulator.core import (
    ApiError,
    Call,
    Delivery,
    Dialect,
    Provider,
    bearer_token,
    deliver_images,
    endpoint,
)

__all__ = ["BASE_PATH", "DIALECT", "WRAPPED_MARK", "routes"]

BASE_PATH = "/v1"
WRAPPED_MARK = "wrapped"  # a key containing this gets the {code, msg, data} envelope
MB = 1024 * 1024
MAX_SEED = 2147483647
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(.+)", re.DOTALL | re.IGNORECASE)
GEMINI_TIERS = {"1K": 1, "2K": 2, "3K": 3, "4K": 4}  # pixels: the 1K cell times this (as Google's 2K/4K)
GEMINI_MIMES = {"image/png": "png", "image/jpeg": "jpeg"}
GEMINI_FORMATS = ("PNG", "JPEG", "WEBP")  # FAQ: PNG, JPEG, JPG, WEBP, 7 MB
GPT_SIZES = ("1024x1024", "1024x1536", "1536x1024")
GPT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")  # FAQ: 10 MB
SEEDREAM_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # FAQ (4.x): 10 MB
QWEN_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")  # FAQ: 10 MB; sides 384-3072 (dashscope-qwen.md)
QWEN_SIZES = ("1664*928", "1472*1104", "1472*1140", "1328*1328", "1104*1472", "1140*1472", "928*1664")
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}  # OpenAI's per-1024² figures (openai.md)

FIELDS = {
    "gemini": {
        "model", "prompt", "size", "image_size", "quality", "n", "temperature", "top_p", "response_format",
        "mime_type", "response_modalities", "contents",
    },
    "seedream": {
        "model", "prompt", "size", "seed", "watermark", "guidance_scale", "sequential_image_generation",
        "optimize_prompt_options", "response_format", "contents", "n",
    },
    "gpt-image": {"model", "prompt", "size", "quality", "n", "image", "input_fidelity", "response_format"},
    "qwen": {"model", "input", "parameters", "response_format", "n"},
}  # fmt: skip
QWEN_PARAMETERS = {"negative_prompt", "prompt_extend", "seed", "watermark", "size", "n"}

FLASH_1K = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip
PRO_1K = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200), "4:3": (1200, 896),
    "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376), "16:9": (1376, 768), "21:9": (1584, 672),
}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """What one model accepts: its family, reference-image count and size rule."""

    family: str
    refs: tuple[int, int] = (0, 0)  # min, max reference images
    table: dict[str, tuple[int, int]] = field(default_factory=dict)  # Gemini 1K cells by ratio
    default: tuple[int, int] | None = None  # None: the output follows the (last) input image
    sides: tuple[int, int] | None = None  # min, max edge of a WxH size
    pixels: tuple[int, int] | None = None  # min, max width*height (Seedream 4.x; ratio 1:16..16:1)
    tiers: tuple[str, ...] = ()  # Seedream's bare "2K"-style sizes
    group: bool = False  # Seedream 4.x group mode (sequential_image_generation)
    formats: tuple[str, ...] = ()


# WxH from 1280x720 (Ark's span): the doc says "(2K/4K)" but its last example sends 1024x1024.
SEEDREAM_4 = Rule(
    "seedream", (0, 10), default=(2048, 2048), pixels=(921600, 16777216), tiers=("2K", "4K"),
    group=True, formats=SEEDREAM_FORMATS,
)  # fmt: skip
MODELS: dict[str, Rule] = {
    "gemini-2.5-flash-image": Rule("gemini", (0, 3), FLASH_1K, formats=GEMINI_FORMATS),
    "gemini-3-pro-image-preview": Rule("gemini", (0, 14), PRO_1K, formats=GEMINI_FORMATS),
    "doubao-seedream-3-0-t2i-250415": Rule("seedream", default=(1024, 1024), sides=(512, 2048)),
    "doubao-seedream-4-0-250828": SEEDREAM_4,
    "seedream-4.0-base": SEEDREAM_4,  # the doc's last example
    "doubao-seedream-4-5-251128": Rule(
        "seedream", (0, 10), default=(2048, 2048), pixels=(3686400, 16777216), tiers=("2K", "4K"), group=True,
        formats=SEEDREAM_FORMATS,
    ),
    "doubao-seededit-3-0-i2i-250628": Rule("seedream", (1, 1), formats=("JPEG", "PNG")),
    "gpt-image-1": Rule("gpt-image", (0, 16), default=(1024, 1024), formats=GPT_FORMATS),
    "gpt-image-1-mini": Rule("gpt-image", (0, 16), default=(1024, 1024), formats=GPT_FORMATS),
    "qwen-image-plus": Rule("qwen", default=(1664, 928)),
    "qwen-image-edit-plus": Rule("qwen", (1, 3), sides=(512, 2048), formats=QWEN_FORMATS),
}  # fmt: skip
PREFIXES = (  # a model id allowed through the control API's `models` takes the rule of its family
    ("gemini", "gemini-3-pro-image-preview"), ("gpt-image", "gpt-image-1"),
    ("qwen-image-edit", "qwen-image-edit-plus"), ("qwen", "qwen-image-plus"),
    ("doubao-seededit", "doubao-seededit-3-0-i2i-250628"),
    ("doubao-seedream", "doubao-seedream-4-0-250828"), ("seedream", "doubao-seedream-4-0-250828"),
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A validated request, reduced to what the reply needs."""

    count: int
    size: tuple[int, int]
    fmt: str = "png"
    delivery: Delivery = "b64"
    prompt: str = ""
    usage: dict[str, Any] | None = None


class Enveloped(ApiError):
    """An error rendered as the doc's `{code, msg, data}` envelope rather than OpenAI's `{error: {...}}`."""


def routes(provider: Provider) -> list[BaseRoute]:
    """The one endpoint: every family posts to /images/generations."""
    return [endpoint(provider, f"{BASE_PATH}/images/generations", "generations", generate, DIALECT)]


async def generate(call: Call) -> Response:
    """POST /images/generations: check the body by the model's family, then answer in the caller's shape."""
    try:
        plan = _plan(call)
    except ApiError as error:
        raise _shaped(call, error) from None
    return _reply(call, plan)


def _plan(call: Call) -> Plan:
    body = call.json
    if body is None:
        raise _bad("Invalid request: the body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Invalid request: 'model' is required.", "model")
    rule = _rule(call, model)
    unknown = sorted(set(body) - FIELDS[rule.family])
    if unknown:
        message = f"Unknown parameter '{unknown[0]}': {model} ({rule.family}) does not take it."
        raise _bad(message, unknown[0])
    return FAMILIES[rule.family](body, rule)


def _rule(call: Call, model: str) -> Rule:
    if model in MODELS:
        return MODELS[model]
    allowed = call.provider.settings.models or ()
    family = next((MODELS[like] for prefix, like in PREFIXES if model.startswith(prefix)), None)
    if model not in allowed or family is None:
        raise _bad(f"Invalid model: '{model}' is not offered by MixRoute.", "model", "model_not_found")
    return family


# --- Gemini ---------------------------------------------------------------------------------------


def _gemini(body: dict[str, Any], rule: Rule) -> Plan:
    size = body.get("size")
    if size is not None and size not in rule.table:
        ratios = ", ".join(rule.table)
        raise _bad(f"Invalid size '{size}': Gemini models take an aspect ratio, one of {ratios}.", "size")
    tier = _choice(body, "image_size", tuple(GEMINI_TIERS), "1K")
    fmt = GEMINI_MIMES[_choice(body, "mime_type", tuple(GEMINI_MIMES), "image/png")]
    _only_b64(body, "Gemini")
    _choice(body, "quality", ("auto", "low", "medium", "high"), "auto")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _modalities(body.get("response_modalities"))
    _integer(body, "n", 1, 1, 1, "Gemini models make one image per request.")
    texts, refs = _contents(body.get("contents"), rule, 7 * MB)
    prompt = _prompt(body, texts)
    ratio = size or (_nearest_ratio(refs[-1], rule.table) if refs else "1:1")
    width, height = rule.table[ratio]
    factor = GEMINI_TIERS[tier]
    return Plan(1, (width * factor, height * factor), fmt, "b64", prompt)


def _modalities(value: Any) -> None:
    tokens = value if isinstance(value, list) else str(value).split(",") if value is not None else ["image"]
    names = {str(token).strip().lower() for token in tokens}
    if "image" not in names or not names <= {"image", "text"}:
        raise _bad(f'Invalid response_modalities \'{value}\': use "image" (optionally with "text").')


def _nearest_ratio(info: images.ImageInfo, table: dict[str, tuple[int, int]]) -> str:
    target = math.log(info.width / info.height)
    return min(table, key=lambda ratio: abs(math.log(table[ratio][0] / table[ratio][1]) - target))


# --- Seedream -------------------------------------------------------------------------------------


def _seedream(body: dict[str, Any], rule: Rule) -> Plan:
    prompt = _text(body.get("prompt"), "prompt")
    _, refs = _contents(body.get("contents"), rule, 10 * MB)
    size = _seedream_size(body.get("size"), rule, refs)
    _integer(body, "seed", -1, -1, MAX_SEED)
    _boolean(body, "watermark")
    _number(body, "guidance_scale", 1, 10)
    _optimize(body.get("optimize_prompt_options"))
    modes = ("disabled", "auto") if rule.group else ("disabled",)
    auto = _choice(body, "sequential_image_generation", modes, "disabled") == "auto"
    count = _group_size(prompt) if auto else 1
    _integer(
        body, "n", 1, 1, 1, "Seedream makes more images only in group mode (sequential_image_generation)"
    )
    delivery = _choice(body, "response_format", ("url", "b64_json"), "url")
    return Plan(count, size, "jpeg", "url" if delivery == "url" else "b64", prompt)


def _group_size(prompt: str) -> int:
    """How many images group mode makes: the model's choice, 1-4 (FAQ); the prompt's first digit 1-4."""
    named = re.search(r"[1-4]", prompt)
    return int(named[0]) if named else 1


def _seedream_size(value: Any, rule: Rule, refs: list[images.ImageInfo]) -> tuple[int, int]:
    if rule.default is None:  # SeedEdit: the output follows the input
        if value not in (None, "adaptive"):
            raise _bad(f"Invalid size '{value}': this model takes size \"adaptive\" only.", "size")
        return refs[0].width, refs[0].height
    if value is None:
        return rule.default
    if value in rule.tiers:
        edge = int(value[:-1]) * 1024
        return edge, edge
    parsed = _pixels(value, "x")
    if parsed is None or not _fits(rule, *parsed):
        raise _bad(f"Invalid size '{value}': {_seedream_allowed(rule)}.", "size")
    return parsed


def _fits(rule: Rule, width: int, height: int) -> bool:
    if rule.sides is not None:
        return all(rule.sides[0] <= edge <= rule.sides[1] for edge in (width, height))
    assert rule.pixels is not None
    return rule.pixels[0] <= width * height <= rule.pixels[1] and 1 / 16 <= width / height <= 16


def _seedream_allowed(rule: Rule) -> str:
    if rule.sides is not None:
        return f"width and height must be {rule.sides[0]}-{rule.sides[1]}"
    assert rule.pixels is not None
    tiers = f", or one of {', '.join(rule.tiers)}" if rule.tiers else ""
    return f"WxH with {rule.pixels[0]}-{rule.pixels[1]} pixels and a ratio within 1:16-16:1{tiers}"


def _optimize(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("mode", "standard") not in ("standard", "fast"):
        raise _bad('Invalid optimize_prompt_options: expected {"mode": "standard" | "fast"}.')


# --- GPT Image ------------------------------------------------------------------------------------


def _gpt_image(body: dict[str, Any], rule: Rule) -> Plan:
    prompt = _text(body.get("prompt"), "prompt")
    size = _pixels(_choice(body, "size", GPT_SIZES, "1024x1024"), "x")
    assert size is not None
    quality = _choice(body, "quality", ("low", "medium", "high"), "medium")
    n = _integer(body, "n", 1, 1, 10)
    _choice(body, "input_fidelity", ("auto", "high", "medium", "low"), "auto")
    _only_b64(body, "GPT Image")
    given = body.get("image")
    refs = given if isinstance(given, list) else [] if given is None else [given]
    for index, ref in enumerate(refs):
        _image(ref, f"image[{index}]" if isinstance(given, list) else "image", rule.formats, 10 * MB)
    if len(refs) > rule.refs[1]:
        raise _bad(f"Invalid image: at most {rule.refs[1]} images.", "image")
    text = len(prompt.split()) + 1
    output = n * round(OUTPUT_TOKENS[quality] * size[0] * size[1] / 1024**2)
    usage = {"input_tokens": text, "output_tokens": output, "total_tokens": text + output}
    return Plan(n, size, "png", "b64", prompt, usage)


# --- Qwen -----------------------------------------------------------------------------------------


def _qwen(body: dict[str, Any], rule: Rule) -> Plan:
    _integer(body, "n", 1, 1, 1, "Qwen models make one image per request; send concurrent requests for more.")
    texts, refs = _qwen_content(body.get("input"), rule)
    if len(texts) != 1:
        raise _bad("Invalid input: the message needs exactly one text item.", "input")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad("Invalid parameters: expected an object.", "parameters")
    unknown = sorted(set(parameters) - QWEN_PARAMETERS)
    if unknown:
        raise _bad(f"Unknown parameter 'parameters.{unknown[0]}'.", "parameters")
    if "negative_prompt" in parameters:
        _text(parameters["negative_prompt"], "negative_prompt", 500)
    _boolean(parameters, "prompt_extend")
    _boolean(parameters, "watermark")
    _integer(parameters, "seed", 0, 0, MAX_SEED, text_ok=True)
    _integer(parameters, "n", 1, 1, 1, "Qwen models make one image per request.")
    size = _qwen_size(parameters.get("size"), rule, refs)
    delivery = _choice(body, "response_format", ("url", "b64_json"), "url")
    return Plan(1, size, "png", "url" if delivery == "url" else "b64", texts[0])


def _qwen_content(value: Any, rule: Rule) -> tuple[list[str], list[images.ImageInfo]]:
    messages = value.get("messages") if isinstance(value, dict) else None
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise _bad("Invalid input: 'input.messages' must hold exactly one message.", "input")
    message = messages[0]
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list):
        raise _bad('Invalid input: the message needs role "user" and a content list.', "input")
    texts = [_text(item["text"], "text") for item in content if isinstance(item, dict) and "text" in item]
    shown = [item.get("image") for item in content if isinstance(item, dict) and "image" in item]
    if len(texts) + len(shown) != len(content):
        raise _bad('Invalid input: each content item is {"text": ...} or {"image": ...}.', "input")
    _ref_count(len(shown), rule)
    refs = [_image(ref, "input.messages[0].content", rule.formats, 10 * MB) for ref in shown]
    for info in refs:
        if not 384 <= min(info.width, info.height) or max(info.width, info.height) > 3072:
            raise _bad(f"Invalid image: {info.width}x{info.height}; each side must be 384-3072 px.", "input")
    return texts, refs


def _qwen_size(value: Any, rule: Rule, refs: list[images.ImageInfo]) -> tuple[int, int]:
    if value is None:
        if rule.default is not None:
            return rule.default
        last = refs[-1]  # about 1024² px, keeping the last input's aspect
        width = math.sqrt(1024 * 1024 * last.width / last.height)
        return round(width / 16) * 16, round(1024 * 1024 / width / 16) * 16
    parsed = _pixels(value, "*")
    fits = value in QWEN_SIZES if rule.sides is None else parsed is not None and _fits(rule, *parsed)
    if parsed is None or not fits:
        sides = f"W*H with sides {rule.sides[0]}-{rule.sides[1]}" if rule.sides else ""
        allowed = sides or ", ".join(QWEN_SIZES)
        raise _bad(f"Invalid parameters.size '{value}': use {allowed}.", "parameters")
    return parsed


FAMILIES: dict[str, Callable[[dict[str, Any], Rule], Plan]] = {
    "gemini": _gemini,
    "seedream": _seedream,
    "gpt-image": _gpt_image,
    "qwen": _qwen,
}

# --- shared checks --------------------------------------------------------------------------------


def _bad(message: str, param: str | None = None, code: str = "invalid_parameter") -> ApiError:
    return ApiError(400, message, type="invalid_request_error", param=param, code=code)


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in allowed:
        raise _bad(f"Invalid {name} '{value}': supported values are {', '.join(allowed)}.", name)
    return str(value)


def _only_b64(body: dict[str, Any], family: str) -> None:
    if body.get("response_format", "b64_json") != "b64_json":
        raise _bad(f"Invalid response_format: {family} models return b64_json only.", "response_format")


def _integer(
    body: dict[str, Any],
    name: str,
    default: int,
    low: int,
    high: int,
    why: str = "",
    *,
    text_ok: bool = False,
) -> int:
    value = body.get(name, default)
    if text_ok and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)  # the doc's Qwen example sends "seed": "4"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"Invalid {name}: expected an integer.", name)
    if not low <= value <= high:
        raise _bad(why or f"Invalid {name} {value}: expected {low}-{high}.", name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"Invalid {name} '{value}': expected a number {low}-{high}.", name)


def _boolean(body: dict[str, Any], name: str) -> None:
    if name in body and not isinstance(body[name], bool):
        raise _bad(f"Invalid {name}: expected true or false.", name)


def _text(value: Any, name: str, limit: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"Invalid {name}: a non-empty string is required.", name)
    if limit is not None and len(value) > limit:
        raise _bad(f"Invalid {name}: at most {limit} characters.", name)
    return value


def _prompt(body: dict[str, Any], texts: list[str]) -> str:
    """Gemini's prompt: the top-level `prompt`, or the text parts of `contents` (the doc's edit form)."""
    if "prompt" in body or not texts:
        return _text(body.get("prompt"), "prompt")
    return " ".join(texts)


def _pixels(value: Any, separator: str) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    match = re.fullmatch(rf"([1-9]\d{{1,4}}){re.escape(separator)}([1-9]\d{{1,4}})", value)
    return (int(match[1]), int(match[2])) if match else None


def _contents(value: Any, rule: Rule, max_bytes: int) -> tuple[list[str], list[images.ImageInfo]]:
    """Texts and checked images of `contents[].parts[]`: {"text": ...} and {"image": "data:..."} parts."""
    if value is None:
        _ref_count(0, rule)
        return [], []
    messages_ok = isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("parts"), list) for m in value
    )
    if not messages_ok:
        raise _bad('Invalid contents: expected [{"role": "user", "parts": [...]}].', "contents")
    parts = [part for message in value for part in message["parts"]]
    if not all(isinstance(part, dict) and len(part.keys() & {"text", "image"}) == 1 for part in parts):
        raise _bad('Invalid contents: each part is {"text": ...} or {"image": "data:..."}.', "contents")
    texts = [_text(part["text"], "contents text") for part in parts if "text" in part]
    shown = [part["image"] for part in parts if "image" in part]
    _ref_count(len(shown), rule)
    return texts, [_image(ref, f"contents image {i}", rule.formats, max_bytes) for i, ref in enumerate(shown)]


def _ref_count(count: int, rule: Rule) -> None:
    low, high = rule.refs
    if not low <= count <= high:
        wanted = f"{low}" if low == high else f"{low}-{high}"
        raise _bad(f"Invalid images: this model takes {wanted} reference image(s), got {count}.", "image")


def _image(value: Any, where: str, formats: tuple[str, ...], max_bytes: int) -> images.ImageInfo:
    match = DATA_URL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(f"Invalid {where}: expected a data:image/<type>;base64,... URL.", "image")
    try:
        data = base64.b64decode(match[1], validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"Invalid {where}: the base64 data does not decode.", "image") from None
    if len(data) > max_bytes:
        raise _bad(f"Invalid {where}: images must be at most {max_bytes // MB} MB.", "image")
    info = images.probe(data)
    if info is None or info.format not in formats:
        found = info.format if info else "not an image"
        raise _bad(f"Invalid {where}: {found}; supported formats are {', '.join(formats)}.", "image")
    return info


# --- replies and errors ---------------------------------------------------------------------------


def _wrapped(call: Call) -> bool:
    return WRAPPED_MARK in (bearer_token(call.request) or "")


def _reply(call: Call, plan: Plan) -> JSONResponse:
    """The doc's two shapes: bare `{created, data[]}`, or wrapped with `url`/`b64_json` both present."""
    pictures = deliver_images(call, plan.count, plan.size, plan.fmt, mode=plan.delivery)
    key, other = ("url", "b64_json") if plan.delivery == "url" else ("b64_json", "url")
    wrapped = _wrapped(call)
    extra = {other: "", "revised_prompt": ""} if wrapped else {"revised_prompt": plan.prompt}
    page: dict[str, Any] = {"created": int(time.time()), "data": [{key: p, **extra} for p in pictures]}
    if plan.usage is not None:
        page["usage"] = plan.usage
    return JSONResponse({"code": 200, "msg": "操作成功", "data": page} if wrapped else page)


CANNED: dict[int, tuple[str, str]] = {
    401: ("Invalid token (無效的令牌).", "invalid_api_key"),
    402: ("Insufficient balance (餘額不足), please top up.", "insufficient_user_quota"),
    403: ("This token may not use the model.", "access_denied"),
    429: ("Rate limit exceeded, please try again later.", "rate_limit_exceeded"),
    500: ("Internal server error.", "internal_error"),
    502: ("Bad gateway: the upstream model provider failed.", "bad_response_status_code"),
    503: ("No channel is available for this model right now.", "model_not_available"),
    504: ("Gateway timeout: the upstream did not answer in time.", "timeout"),
}
CONTENT_POLICY = "Your request was rejected by the safety system: the prompt may contain sensitive content."


def _canned(status: int, call: Call) -> ApiError:
    if status == 400:
        error = ApiError(400, CONTENT_POLICY, type="invalid_request_error", code="content_policy_violation")
    else:
        message, code = CANNED.get(status, ("Request failed.", "error"))
        error = ApiError(status, message, type="mixroute_error", code=code)
    return _shaped(call, error)


def _shaped(call: Call, error: ApiError) -> ApiError:
    if not _wrapped(call) or isinstance(error, Enveloped):
        return error
    return Enveloped(error.status, error.message, error.type, error.param, error.code, error.headers)


def _render(error: ApiError) -> dict[str, Any]:
    if isinstance(error, Enveloped):
        return {"code": error.status, "msg": error.message, "data": None}
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


DIALECT = Dialect(render=_render, canned=_canned)
