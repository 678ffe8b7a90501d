"""Google Gemini API protocol (shared/providers/gemini.md, imagen.md) for `gemini`.

Owns POST /v1beta/models/{model}:generateContent (Gemini image models: text and inlineData parts in, image
parts out, 3-pro's interim thought drafts, usageMetadata) and POST /v1beta/models/{model}:predict (Imagen:
predictions[]), Google's error envelope {"error": {code, message, status, details}} and the per-model rules of
gemini.md §3 and imagen.md §3: imageSize refused by gemini-2.5-flash-image, aspect ratios, tiers, input counts
and MIME types, one candidate, Vertex-only fields refused. Requests may spell fields camelCase or snake_case
(proto JSON, gemini.md §6.6); replies are camelCase. The key is `x-goog-api-key` (or `?key=`): none is 403
PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT with reason API_KEY_INVALID. A 429 carries RetryInfo.

Outcome control (like dashscope.py's), back to defaults on /_emulator/reset:
    POST /gemini/_emulator/outcomes {"outcome": o, "count": 1, ...} queues, for the next `count` calls:
    generateContent:
      "blocked" {"reason"?: "PROHIBITED_CONTENT"}      promptFeedback.blockReason and no candidates
      "finish" {"reason"?: "IMAGE_SAFETY", "message"?}  a candidate ending so, without content
      "text_only" {"text"?}                            finishReason STOP with one text part
    predict:
      "filtered" {"images"?: 1}                        that many images filtered by RAI
      "policy"                                         400: the prompt may violate the usage policies
Core's `partial` fault leaves a Gemini candidate without its image (text only, or NO_IMAGE when only IMAGE was
asked) and drops Imagen predictions silently. Auth, latency, faults, the log and image bytes are core's.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, Provider, deliver_images, endpoint
from tools.emulator.state import EmulatorState

__all__ = ["BASE_PATH", "GEMINI", "IMAGEN", "GoogleError", "routes"]

BASE_PATH = "/v1beta"
MB = 1024 * 1024
THOUGHT_TOKENS = 212  # any stable figure: 3-pro reports thinking separately (gemini.md §4)
MAX_REQUEST_BYTES = 20 * MB  # Developer API inline limit for the whole request (gemini.md §3, §6.5)
SERVICE = "generativelanguage.googleapis.com"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
TROUBLESHOOTING = "https://developers.generativeai.google/guide/troubleshooting"
STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
FLASH_1K = (  # gemini.md §3, restated from Google's table
    (1024, 1024), (832, 1248), (1248, 832), (864, 1184), (1184, 864),
    (896, 1152), (1152, 896), (768, 1344), (1344, 768), (1536, 672),
)  # fmt: skip
PRO_1K = (  # 2K, 4K: these doubled, quadrupled (16:9 2K = 2752x1536, gemini.md §3; cells UNCONFIRMED)
    (1024, 1024), (848, 1264), (1264, 848), (896, 1200), (1200, 896),
    (928, 1152), (1152, 928), (768, 1376), (1376, 768), (1584, 672),
)  # fmt: skip
IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
IMAGEN_1K = ((1024, 1024), (896, 1280), (1280, 896), (768, 1408), (1408, 768))  # Imagen's sizes (UNCONFIRMED)
GENERATION_FIELDS = frozenset(
    "responseModalities imageConfig candidateCount seed temperature topP topK maxOutputTokens stopSequences "
    "thinkingConfig presencePenalty frequencyPenalty responseMimeType mediaResolution".split()
)
TOP_FIELDS = frozenset("contents generationConfig safetySettings systemInstruction tools toolConfig".split())
IMAGEN_FIELDS = frozenset(
    "sampleCount aspectRatio sampleImageSize personGeneration safetySetting guidanceScale "
    "includeSafetyAttributes includeRaiReason language outputOptions".split()
)
VERTEX_ONLY = frozenset(
    {"negativePrompt", "seed", "addWatermark", "enhancePrompt", "storageUri"}
)  # imagen.md §2
THRESHOLDS = ("BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF")
OUTCOMES = {"blocked": "generateContent", "finish": "generateContent", "text_only": "generateContent",
            "filtered": "predict", "policy": "predict"}  # fmt: skip
RAI_REASON = (
    "Your current safety filter threshold filtered out 1 generated image. "
    "You will not be charged for blocked images. Try rephrasing the prompt. "
    "If you think this was an error, send feedback."
)


def _table(
    cells: tuple[tuple[int, int], ...], ratios: tuple[str, ...], scale: int = 1
) -> dict[str, tuple[int, int]]:
    return {ratio: (w * scale, h * scale) for ratio, (w, h) in zip(ratios, cells, strict=True)}


@dataclass(frozen=True)
class GeminiRule:
    """What one Gemini image model accepts and returns (gemini.md §3)."""

    tiers: dict[str, dict[str, tuple[int, int]]]  # imageSize → aspectRatio → pixels
    image_size_field: bool  # whether imageConfig.imageSize is accepted at all
    max_inputs: int
    input_mimes: tuple[str, ...]
    thoughts: bool  # interim thought drafts precede the final image
    output_tokens: dict[str, int]
    input_image_tokens: int


@dataclass(frozen=True)
class ImagenRule:
    """What one Imagen model accepts (imagen.md §3)."""

    tiers: tuple[str, ...]  # accepted sampleImageSize values; empty: the field is refused


BASE_MIMES = ("image/png", "image/jpeg", "image/webp")
PRO = GeminiRule(
    tiers={"1K": _table(PRO_1K, RATIOS), "2K": _table(PRO_1K, RATIOS, 2), "4K": _table(PRO_1K, RATIOS, 4)},
    image_size_field=True,
    max_inputs=14,
    input_mimes=(*BASE_MIMES, "image/heic", "image/heif"),
    thoughts=True,
    output_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
    input_image_tokens=560,
)
GEMINI: dict[str, GeminiRule] = {
    "gemini-2.5-flash-image": GeminiRule(
        tiers={"1K": _table(FLASH_1K, RATIOS)},
        image_size_field=False,
        max_inputs=3,
        input_mimes=BASE_MIMES,
        thoughts=False,
        output_tokens={"1K": 1290},
        input_image_tokens=258,
    ),
    "gemini-3-pro-image-preview": PRO,
    "gemini-3.1-flash-image-preview": PRO,  # 512 tier and extra ratios UNCONFIRMED: not offered
    # GA ids (ai.google.dev models page): the preview models' rules.
    "gemini-3-pro-image": PRO,
    "gemini-3.1-flash-image": PRO,
    # Nano Banana 2 Lite (its model page): imageSize 1K only, no thought drafts; cells and inputs UNCONFIRMED.
    "gemini-3.1-flash-lite-image": GeminiRule(
        tiers={"1K": _table(PRO_1K, RATIOS)},
        image_size_field=True,
        max_inputs=14,
        input_mimes=BASE_MIMES,
        thoughts=False,
        output_tokens={"1K": 1120},
        input_image_tokens=560,
    ),
}
IMAGEN: dict[str, ImagenRule] = {
    "imagen-4.0-generate-001": ImagenRule(("1K", "2K")),
    "imagen-4.0-ultra-generate-001": ImagenRule(("1K", "2K")),
    "imagen-4.0-fast-generate-001": ImagenRule(()),
    "imagen-3.0-generate-002": ImagenRule(()),
}


@dataclass
class GoogleError(ApiError):
    """An ApiError with Google's `details` list; `type` carries the RPC status (INVALID_ARGUMENT, ...)."""

    details: list[dict[str, Any]] = field(default_factory=list)


def invalid(message: str, details: list[dict[str, Any]] | None = None) -> GoogleError:
    return GoogleError(400, message, type="INVALID_ARGUMENT", details=details or [])


def unknown_name(name: str, where: str) -> GoogleError:
    at = f" at '{where}'" if where else ""
    message = f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
    violation = {"field": where, "description": message}
    return invalid(
        message, [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
    )


def bad_value(where: str, kind: str, value: Any) -> GoogleError:
    return invalid(f"Invalid value at '{where}' ({kind}), {json.dumps(value)}")


def not_found(model: str, method: str) -> GoogleError:
    message = (
        f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods."
    )
    return GoogleError(404, message, type="NOT_FOUND")


# ---- outcomes


@dataclass
class Outcome:
    kind: str
    params: dict[str, Any]


class Outcomes:
    """Queued outcomes per endpoint, forgotten when the control API resets the state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._clear()

    def _clear(self) -> None:
        self._log = self.state.log  # reset() replaces the log: that is how a reset is noticed here
        self.queue: list[Outcome] = []

    def take(self, endpoint_name: str) -> Outcome | None:
        if self.state.log is not self._log:
            self._clear()
        found = next((o for o in self.queue if OUTCOMES[o.kind] == endpoint_name), None)
        if found is not None:
            self.queue.remove(found)
        return found

    def add(self, outcome: Outcome, count: int) -> int:
        self.take("")  # notice a reset before queueing
        self.queue += [outcome] * count
        return len(self.queue)


async def _configure(outcomes: Outcomes, request: Request) -> JSONResponse:
    """POST {"outcome": kind, "count": n, ...params}; see the module docstring."""
    try:
        body = json.loads(await request.body() or b"{}")
        kind, count = body.pop("outcome", None), body.pop("count", 1)
        if kind not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be an integer >= 1")
        return JSONResponse({"queued": outcomes.add(Outcome(kind, body), count)})
    except (ValueError, TypeError, AttributeError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)


def routes(provider: Provider) -> list[BaseRoute]:
    """generateContent and predict for every model id (unknown ones answer 404), plus outcome control."""
    outcomes = Outcomes(provider.state)
    return [
        endpoint(
            provider,
            f"{BASE_PATH}/models/{{model}}:generateContent",
            "generateContent",
            partial(generate_content, outcomes),
            DIALECT,
        ),
        endpoint(
            provider, f"{BASE_PATH}/models/{{model}}:predict", "predict", partial(predict, outcomes), DIALECT
        ),
        Route("/_emulator/outcomes", partial(_configure, outcomes), methods=["POST"]),
    ]


# ---- request reading shared by both endpoints


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camelized(value: Any) -> Any:
    """Proto JSON takes `inline_data` and `inlineData` alike: read every key as camelCase."""
    if isinstance(value, dict):
        return {_camel(key): camelized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camelized(item) for item in value]
    return value


async def _body(call: Call) -> dict[str, Any]:
    if len(await call.request.body()) > MAX_REQUEST_BYTES:
        raise invalid(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
    if call.json is None:
        raise invalid("Invalid JSON payload received. Expected an object.")
    return dict(camelized(call.json))


def _only(fields: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    for name in fields:
        if name not in allowed:
            raise unknown_name(name, where)


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise bad_value(where, "TYPE_INT32" if integer else "TYPE_FLOAT", value)
    if not low <= value <= high:
        raise invalid(f"{where.split('.')[-1]} must be between {low:g} and {high:g}; got {value}.")


def _usage(prompt_tokens: int, image_tokens: int, output: int, thoughts: int = 0) -> dict[str, Any]:
    prompt_details = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if image_tokens:
        prompt_details.append({"modality": "IMAGE", "tokenCount": image_tokens})
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens + image_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt_tokens + image_tokens + output + thoughts,
        "promptTokensDetails": prompt_details,
    }
    if output:
        usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": output}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


# ---- generateContent


@dataclass(frozen=True)
class Ask:
    """One checked generateContent request."""

    model: str
    rule: GeminiRule
    prompt: str
    inputs: tuple[images.ImageInfo | None, ...]  # None: a fileData reference, not seen here
    modalities: tuple[str, ...]
    ratio: str
    tier: str


async def generate_content(outcomes: Outcomes, call: Call) -> Response:
    """POST /v1beta/models/{model}:generateContent."""
    model = call.request.path_params["model"]
    rule = _gemini_rule(call, model)
    ask = _read_ask(model, rule, await _body(call))
    outcome = outcomes.take("generateContent")
    text_tokens = len(ask.prompt.split()) + 4
    head = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
    if outcome is not None and outcome.kind == "blocked":
        feedback = {"blockReason": outcome.params.get("reason", "PROHIBITED_CONTENT")}
        return JSONResponse({"promptFeedback": feedback, "usageMetadata": _usage(text_tokens, 0, 0), **head})
    candidate = _candidate(call, ask, outcome)
    made = sum(
        1 for p in candidate.get("content", {}).get("parts", []) if "inlineData" in p and not p.get("thought")
    )
    output = rule.output_tokens[ask.tier] * made
    thoughts = THOUGHT_TOKENS if rule.thoughts else 0
    usage = _usage(text_tokens, rule.input_image_tokens * len(ask.inputs), output, thoughts)
    return JSONResponse({"candidates": [candidate], "usageMetadata": usage, **head})


def _gemini_rule(call: Call, model: str) -> GeminiRule:
    if model in GEMINI:
        return GEMINI[model]
    allowed = call.provider.settings.models
    if allowed is not None and model in allowed and model not in IMAGEN:
        return PRO
    raise not_found(model, "generateContent")


def _read_ask(model: str, rule: GeminiRule, body: dict[str, Any]) -> Ask:
    _only(body, TOP_FIELDS, "")
    prompt, inputs = _read_contents(body.get("contents"), rule)
    config = body.get("generationConfig", {})
    if not isinstance(config, dict):
        raise bad_value("generation_config", "type.googleapis.com/GenerationConfig", config)
    _only(config, GENERATION_FIELDS, "generation_config")
    modalities = _modalities(config.get("responseModalities", ["TEXT", "IMAGE"]))
    _check_sampling(config, model)
    _check_safety(body.get("safetySettings", []))
    ratio, tier = _image_config(config.get("imageConfig", {}), rule, inputs)
    return Ask(model, rule, prompt, tuple(inputs), modalities, ratio, tier)


def _read_contents(contents: Any, rule: GeminiRule) -> tuple[str, list[images.ImageInfo | None]]:
    if not isinstance(contents, list) or not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
    texts: list[str] = []
    inputs: list[images.ImageInfo | None] = []
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role", "user") not in ("user", "model"):
            raise invalid("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise invalid(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            text, image = _read_part(part, f"contents[{i}].parts[{j}]", rule)
            if content.get("role", "user") == "user":
                texts += [text] if text else []
                inputs += [image] if text is None else []
    if len(inputs) > rule.max_inputs:  # gemini.md §3 (Vertex page limits; wording UNCONFIRMED)
        raise invalid(
            f"Too many input images: this model takes at most {rule.max_inputs}, got {len(inputs)}."
        )
    return " ".join(texts), inputs


def _read_part(part: Any, where: str, rule: GeminiRule) -> tuple[str | None, images.ImageInfo | None]:
    """(text, None) for a text part, (None, image or None for fileData) for an image part."""
    data = (
        {k: v for k, v in part.items() if k not in ("thought", "thoughtSignature")}
        if isinstance(part, dict)
        else {}
    )
    if len(data) != 1 or next(iter(data)) not in ("text", "inlineData", "fileData"):
        field_name = f"GenerateContentRequest.{where}.data"
        raise invalid(f"* {field_name}: required oneof field 'data' must have one initialized field\n")
    if "text" in data:
        return str(data["text"]), None
    if "fileData" in data:
        if not isinstance(data["fileData"], dict) or not data["fileData"].get("fileUri"):
            raise invalid(f"* GenerateContentRequest.{where}.file_data.file_uri: file_uri must be set\n")
        return None, None
    return None, _inline_image(data["inlineData"], f"{where}.inline_data", rule)


def _inline_image(blob: Any, where: str, rule: GeminiRule) -> images.ImageInfo:
    mime = blob.get("mimeType") if isinstance(blob, dict) else None
    if not isinstance(mime, str) or not mime:
        raise invalid(f"* GenerateContentRequest.{where}.mime_type: mime_type must be set\n")
    if mime.lower() not in rule.input_mimes:
        raise invalid(f"Unsupported MIME type: {mime}")
    try:
        data = base64.b64decode(str(blob.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise bad_value(f"{where}.data", "TYPE_BYTES", "Base64 decoding failed") from None
    info = images.probe(data)
    if info is None:
        raise invalid(f"Unable to process input image. Please retry or report in {TROUBLESHOOTING}")
    return info


def _modalities(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise bad_value("generation_config.response_modalities", "TYPE_ENUM", value)
    for i, item in enumerate(value):
        if item not in ("TEXT", "IMAGE"):
            kind = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality"
            raise bad_value(f"generation_config.response_modalities[{i}]", kind, item)
    return tuple(value)


def _check_sampling(config: dict[str, Any], model: str) -> None:
    if "candidateCount" in config:
        _number(config["candidateCount"], "generation_config.candidate_count", 1, 8, integer=True)
        if config["candidateCount"] != 1:  # gemini.md §3, §6.1: one image per request
            raise invalid(f"Multiple candidates is not enabled for models/{model}")
    if "seed" in config:
        _number(config["seed"], "generation_config.seed", -(2**31), 2**31 - 1, integer=True)
    if "temperature" in config:
        _number(config["temperature"], "generation_config.temperature", 0, 2)
    if "topP" in config:
        _number(config["topP"], "generation_config.top_p", 0, 1)


def _check_safety(settings: Any) -> None:
    if not isinstance(settings, list):
        raise bad_value("safety_settings", "TYPE_MESSAGE", settings)
    for i, setting in enumerate(settings):
        if not isinstance(setting, dict):
            raise bad_value(f"safety_settings[{i}]", "TYPE_MESSAGE", setting)
        _only(setting, frozenset({"category", "threshold", "method"}), f"safety_settings[{i}]")
        if not str(setting.get("category", "")).startswith("HARM_CATEGORY_"):
            raise bad_value(f"safety_settings[{i}].category", "TYPE_ENUM", setting.get("category"))
        if setting.get("threshold") not in THRESHOLDS:
            raise bad_value(f"safety_settings[{i}].threshold", "TYPE_ENUM", setting.get("threshold"))


def _image_config(config: Any, rule: GeminiRule, inputs: list[images.ImageInfo | None]) -> tuple[str, str]:
    if not isinstance(config, dict):
        raise bad_value("generation_config.image_config", "TYPE_MESSAGE", config)
    # personGeneration & co. are Vertex-only: the Developer API does not know them (gemini.md §2, §6.7).
    _only(config, frozenset({"aspectRatio", "imageSize"}), "generation_config.image_config")
    tier = config.get("imageSize", "1K")
    if "imageSize" in config and not rule.image_size_field:  # gemini.md §6.2 (wording UNCONFIRMED)
        raise invalid("imageSize is not supported for this model.")
    if tier not in rule.tiers:  # uppercase only: "2k" is refused (gemini.md §6.2)
        raise invalid(f"Unsupported image size: {tier}. Supported values are: {', '.join(rule.tiers)}.")
    ratio = config.get("aspectRatio") or _follow_input(inputs)
    if ratio not in rule.tiers[tier]:
        raise invalid(
            f"Unsupported aspect ratio: {ratio}. Supported values are: {', '.join(rule.tiers[tier])}."
        )
    return ratio, tier


def _follow_input(inputs: list[images.ImageInfo | None]) -> str:
    """No aspectRatio: the last input image's shape, else 1:1 (gemini.md §2)."""
    last = next((info for info in reversed(inputs) if info is not None), None)
    if last is None:
        return "1:1"
    aspect = Fraction(last.width, last.height)
    return min(RATIOS, key=lambda r: abs(float(Fraction(*map(int, r.split(":"))) - aspect)))


def _candidate(call: Call, ask: Ask, outcome: Outcome | None) -> dict[str, Any]:
    if outcome is not None and outcome.kind == "finish":
        ending = {"finishReason": outcome.params.get("reason", "IMAGE_SAFETY"), "index": 0}
        return {
            **ending,
            **({"finishMessage": outcome.params["message"]} if "message" in outcome.params else {}),
        }
    if outcome is not None and outcome.kind == "text_only":  # the model declines in prose (gemini.md §4.1)
        text = outcome.params.get("text", "I can't create that image, but I can describe it instead.")
        return {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
    width, height = ask.rule.tiers[ask.tier][ask.ratio]
    made = deliver_images(call, 1, (width, height), "png")
    parts = _thought_parts(ask) if ask.rule.thoughts else []
    if "TEXT" in ask.modalities:
        parts.append({"text": f"Here is the image: {ask.prompt[:80]}" if made else "I could not draw that."})
    signature = base64.b64encode(uuid.uuid4().bytes).decode()
    parts += [
        {"inlineData": {"mimeType": "image/png", "data": b64}, "thoughtSignature": signature} for b64 in made
    ]
    if not made and "TEXT" not in ask.modalities:
        return {"finishReason": "NO_IMAGE", "index": 0}
    return {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}


def _thought_parts(ask: Ask) -> list[dict[str, Any]]:
    """3-pro's interim drafts (gemini.md §4): smaller than the final image, marked `thought`."""
    width, height = ask.rule.tiers["1K"][ask.ratio]
    draft = base64.b64encode(images.render(width // 2, height // 2, "png")).decode()
    text = {"text": "**Composing the scene**\nLaying out the subject before rendering.", "thought": True}
    return [
        text,
        *({"inlineData": {"mimeType": "image/png", "data": draft}, "thought": True} for _ in range(2)),
    ]


# ---- predict (Imagen)


async def predict(outcomes: Outcomes, call: Call) -> Response:
    """POST /v1beta/models/{model}:predict."""
    model = call.request.path_params["model"]
    rule = IMAGEN.get(model)
    if rule is None:
        raise not_found(model, "predict")
    body = await _body(call)
    _only(body, frozenset({"instances", "parameters"}), "")
    prompt = _instance_prompt(body.get("instances"), model)
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise bad_value("parameters", "TYPE_MESSAGE", params)
    count, size, fmt = _imagen_parameters(params, rule, model)
    outcome = outcomes.take("predict")
    if outcome is not None and outcome.kind == "policy":
        raise invalid(
            "Image generation failed with the following error: The prompt could not be submitted. "
            f"{prompt[:40]!r} may violate our policies. Try rephrasing the prompt."
        )
    filtered = min(count, int(outcome.params.get("images", 1))) if outcome is not None else 0
    made = deliver_images(call, count - filtered, size, fmt)
    mime = images.FORMATS[fmt][1]
    predictions: list[dict[str, Any]] = [{"bytesBase64Encoded": b64, "mimeType": mime} for b64 in made]
    if params.get("includeRaiReason"):
        predictions += [{"raiFilteredReason": RAI_REASON}] * filtered
    return JSONResponse({"predictions": predictions} if predictions else {})  # all dropped: no field (§4)


def _instance_prompt(instances: Any, model: str) -> str:
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise invalid("instances must hold exactly one instance with a prompt.")
    if set(instances[0]) - {"prompt"}:  # editing (referenceImages, image, mask) is Vertex-only (imagen.md §2)
        raise invalid(f"Image editing is not supported by {model} on the Gemini API.")
    prompt = instances[0].get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("The prompt is empty. Please provide a prompt.")
    return prompt


def _imagen_parameters(
    params: dict[str, Any], rule: ImagenRule, model: str
) -> tuple[int, tuple[int, int], str]:
    for name in params:
        if name in VERTEX_ONLY:
            raise invalid(f"{name} parameter is not supported in Gemini API.")
    _only(params, IMAGEN_FIELDS, "parameters")
    count = params.get("sampleCount", 4)  # the default is 4 (imagen.md §6.3)
    _number(count, "parameters.sample_count", 1, 4, integer=True)
    ratio = params.get("aspectRatio", "1:1")
    if ratio not in IMAGEN_RATIOS:
        raise invalid(f"Unsupported aspect ratio: {ratio}. Supported values are: {', '.join(IMAGEN_RATIOS)}.")
    tier = params.get("sampleImageSize", "1K")
    if "sampleImageSize" in params and tier not in rule.tiers:
        allowed = ", ".join(rule.tiers) if rule.tiers else "none"
        raise invalid(f"sampleImageSize {tier!r} is not supported for {model}; supported: {allowed}.")
    person = params.get("personGeneration", "allow_adult")
    if str(person).lower() not in ("dont_allow", "allow_adult", "allow_all"):
        raise invalid(f"Unsupported personGeneration: {person}.")
    fmt = _output_format(params.get("outputOptions", {}))
    if "guidanceScale" in params:
        _number(params["guidanceScale"], "parameters.guidance_scale", 0, 1000)
    width, height = _table(IMAGEN_1K, IMAGEN_RATIOS, 2 if tier == "2K" else 1)[ratio]
    return count, (width, height), fmt


def _output_format(options: Any) -> str:
    if not isinstance(options, dict):
        raise bad_value("parameters.output_options", "TYPE_MESSAGE", options)
    _only(options, frozenset({"mimeType", "compressionQuality"}), "parameters.output_options")
    mime = options.get("mimeType", "image/png")
    if mime not in ("image/png", "image/jpeg"):
        raise invalid(f"Unsupported output mime type: {mime}. Supported values are: image/png, image/jpeg.")
    if "compressionQuality" in options:
        _number(options["compressionQuality"], "parameters.output_options.compression_quality", 0, 100, True)
    return "jpeg" if mime == "image/jpeg" else "png"


# ---- errors and auth


def _credential(request: Request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key")


def _canned(status: int, call: Call) -> ApiError:
    makers: dict[int, Callable[[Call], GoogleError]] = {401: _auth_error, 429: _quota_error}
    if status in makers:
        return makers[status](call)
    messages = {
        400: "Request contains an invalid argument.",
        403: "The caller does not have permission",
        404: "Requested entity was not found.",
        500: f"An internal error has occurred. Please retry or report in {TROUBLESHOOTING}",
        503: "The model is overloaded. Please try again later.",
        504: "Deadline expired before operation could complete.",
    }
    return GoogleError(
        status, messages.get(status, "Request failed."), type=STATUS_BY_CODE.get(status, "UNKNOWN")
    )


def _auth_error(call: Call) -> GoogleError:
    if not _credential(call.request):
        message = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return GoogleError(403, message, type="PERMISSION_DENIED")
    message = "API key not valid. Please pass a valid API key."
    localized = {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": message,
    }
    return GoogleError(400, message, type="INVALID_ARGUMENT", code="API_KEY_INVALID", details=[localized])


def _quota_error(call: Call) -> GoogleError:
    delay = call.fault.params.get("retry_after", 41) if call.fault is not None else 41
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
    )
    violation = {
        "quotaMetric": f"{SERVICE}/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinute",
    }
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay}s"},
    ]
    return GoogleError(429, message, type="RESOURCE_EXHAUSTED", details=details)


def _render(error: ApiError) -> dict[str, Any]:
    status = error.type if error.type.isupper() else STATUS_BY_CODE.get(error.status, "UNKNOWN")
    details = list(error.details) if isinstance(error, GoogleError) else []
    if error.code:  # the reason (API_KEY_INVALID, or a fault's `code`) travels as ErrorInfo
        details.insert(0, {"@type": ERROR_INFO, "reason": error.code, "domain": "googleapis.com",
                           "metadata": {"service": SERVICE}})  # fmt: skip
    body = {"code": error.status, "message": error.message, "status": status}
    return {"error": {**body, "details": details} if details else body}


DIALECT = Dialect(render=_render, canned=_canned, credential=_credential)
