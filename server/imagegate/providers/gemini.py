"""Google Gemini API image protocol (shared/providers/gemini.md, imagen.md). The route's
`wire.dialect` picks the shape: "gemini" (`:generateContent`, image parts in and out) or
"imagen" (`:predict`, `predictions[]`). Both share Google's error envelope. Maps only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import AliasChoices, Field, ValidationError

from ..errors import AuthFailed, ContentRefused, ImagegateError, NoImagesReturned, RateLimited, UpstreamError
from .base import (
    FORMAT_MIME,
    AdapterReply,
    Artifact,
    Batch,
    Encoded,
    InputImage,
    RouteWarning,
    WireModel,
    WireRequest,
    classify,
    reading,
    refusal_said,
    with_warnings,
)
from .http import ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_predictions", "parse_reply", "run"]

DIALECTS = ("gemini", "imagen")
DEFAULT_DIALECT = "gemini"
RESPONSE_MODALITIES = ["IMAGE"]  # image only, as Vercel's Google image model sends (gemini.md §2)
# Where an `extra` key that is not a top-level request field goes (§2 both docs): users write
# {"temperature": 0.4} or {"personGeneration": "allow_all"} and mean the config object.
GEMINI_TOP = "contents generationConfig safetySettings systemInstruction tools toolConfig cachedContent"
TOP_LEVEL = {"gemini": set(GEMINI_TOP.split()), "imagen": {"instances", "parameters", "labels"}}
NESTED = {"gemini": "generationConfig", "imagen": "parameters"}
# Knob → path under NESTED (imagen.md §2 table; gemini.md §2 for seed).
KNOB_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "gemini": {"seed": ("seed",)},
    "imagen": {
        "guidance_scale": ("guidanceScale",),
        "output_format": ("outputOptions", "mimeType"),
        "output_compression": ("outputOptions", "compressionQuality"),
        "negative_prompt": ("negativePrompt",),  # Vertex only (imagen.md §2): only if a route offers it
        "seed": ("seed",),
    },
}
# finishReasons that mean a policy stopped the image (gemini.md §4.1); NO_IMAGE, OTHER and
# IMAGE_OTHER are "no image" without a stated policy reason.
REFUSED_FINISH = frozenset(
    ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"]
    + ["IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"]
)
AUTH_STATUSES = {"PERMISSION_DENIED", "UNAUTHENTICATED"}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def _alias(*names: str) -> Any:
    return Field(None, validation_alias=AliasChoices(*names))


class _Blob(WireModel):
    mime_type: str | None = _alias("mimeType", "mime_type")
    data: Encoded | None = None


class _Part(WireModel):
    text: str | None = None
    inline_data: _Blob | None = _alias("inlineData", "inline_data")  # §6.6: accept both spellings
    thought: bool | None = None


class _Content(WireModel):
    parts: list[_Part] = []


class _Candidate(WireModel):
    content: _Content | None = None
    finish_reason: str | None = _alias("finishReason", "finish_reason")
    finish_message: str | None = _alias("finishMessage", "finish_message")


class _Feedback(WireModel):
    block_reason: str | None = _alias("blockReason", "block_reason")
    block_reason_message: str | None = _alias("blockReasonMessage", "block_reason_message")


class _GeminiReply(WireModel):
    candidates: list[_Candidate] = []
    prompt_feedback: _Feedback | None = _alias("promptFeedback", "prompt_feedback")
    usage_metadata: dict[str, Any] | None = _alias("usageMetadata", "usage_metadata")


class _Prediction(WireModel):
    bytes_base64_encoded: Encoded | None = _alias("bytesBase64Encoded", "bytes_base64_encoded")
    mime_type: str | None = _alias("mimeType", "mime_type")
    rai_filtered_reason: str | None = _alias("raiFilteredReason", "rai_filtered_reason")
    prompt: str | None = None


class _ImagenReply(WireModel):
    predictions: list[_Prediction] = []


class _GoogleError(WireModel):
    code: int | None = None
    message: str | None = None
    status: str | None = None
    details: list[dict[str, Any]] = []


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merge `extra` into `base`: objects merge, anything else replaces."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _apply_knobs_and_extra(job: Batch, dialect: str, body: dict[str, Any]) -> tuple[RouteWarning, ...]:
    nested: dict[str, Any] = body.setdefault(NESTED[dialect], {})
    warnings = []
    for name, value in job.knobs.items():
        path = KNOB_FIELDS[dialect].get(name)
        if path is None:
            warnings.append(RouteWarning(name, f"not sent: the {dialect} API has no field for it"))
            continue
        _put(nested, path, FORMAT_MIME.get(str(value), value) if name == "output_format" else value)
    top = {k: v for k, v in job.extra.items() if k in TOP_LEVEL[dialect]}
    _merge(nested, {k: v for k, v in job.extra.items() if k not in TOP_LEVEL[dialect]})
    _merge(body, top)
    return tuple(warnings)


def _tier(job: Batch) -> str | None:
    # Only a rule with `tiers` names sizes the upstream accepts as a field: gemini-2.5-flash-image
    # answers 400 to any imageSize (gemini.md §6.2), Imagen Fast to sampleImageSize (imagen.md §3).
    return job.size.tier if job.size.tier in job.route.sizes.tiers else None


def _gemini_part(image: InputImage) -> dict[str, Any]:
    if image.data is None:  # a URL-taking route: Files API / GCS URIs go as fileData (§2)
        return {"fileData": {"mimeType": image.mime or "image/*", "fileUri": image.url}}
    return {"inlineData": {"mimeType": image.mime, "data": image.base64()}}


def _gemini_body(job: Batch) -> dict[str, Any]:
    image_config: dict[str, str] = {}
    if job.size.ratio:
        image_config["aspectRatio"] = job.size.ratio
    if tier := _tier(job):
        image_config["imageSize"] = tier
    config: dict[str, Any] = {"responseModalities": list(RESPONSE_MODALITIES)}
    if image_config:
        config["imageConfig"] = image_config
    parts = [{"text": job.prompt}, *(_gemini_part(image) for image in job.images)]
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def _imagen_body(job: Batch) -> dict[str, Any]:
    # sampleCount defaults to 4 upstream: always send it (imagen.md §6.3). includeRaiReason makes
    # filtered images explain themselves instead of silently vanishing (§4).
    parameters: dict[str, Any] = {"sampleCount": job.count, "includeRaiReason": True}
    if job.size.ratio:
        parameters["aspectRatio"] = job.size.ratio
    if tier := _tier(job):
        parameters["sampleImageSize"] = tier
    return {"instances": [{"prompt": job.prompt}], "parameters": parameters}


def build_request(job: Batch) -> WireRequest:
    """Map a job to `:generateContent` (Gemini image models) or `:predict` (Imagen)."""
    dialect = job.route.wire.dialect or DEFAULT_DIALECT
    if dialect == "gemini":
        path, body = f"/models/{job.route.upstream}:generateContent", _gemini_body(job)
    else:
        path, body = f"/models/{job.route.upstream}:predict", _imagen_body(job)
    warnings = _apply_knobs_and_extra(job, dialect, body)
    return WireRequest(path, json=body, warnings=warnings)


def _is_image(part: _Part) -> bool:
    blob = part.inline_data
    return blob is not None and bool(blob.data) and (blob.mime_type or "image/").startswith("image/")


def _parse_gemini(body: Any, provider: str) -> AdapterReply:
    reply = _GeminiReply.model_validate(body)
    feedback = reply.prompt_feedback or _Feedback()
    if feedback.block_reason and feedback.block_reason != "BLOCKED_REASON_UNSPECIFIED":
        text = f"{provider} blocked the prompt ({feedback.block_reason}); rephrase it or change the inputs"
        raise ContentRefused(text, provider=provider, upstream_message=feedback.block_reason_message)
    candidate = reply.candidates[0] if reply.candidates else _Candidate()
    parts = [p for p in (candidate.content.parts if candidate.content else []) if not p.thought]
    note = "\n".join(p.text for p in parts if p.text) or None
    images = [p.inline_data for p in parts if _is_image(p) and p.inline_data]
    if images:  # 3-pro sends interim "thought" drafts first: the final image is the last one (§4)
        final = images[-1]
        artifact = Artifact(encoded=final.data, mime=final.mime_type)
        return AdapterReply(artifacts=(artifact,), usage=reply.usage_metadata, note=note)
    reason = candidate.finish_reason or "no candidate"
    said = candidate.finish_message or note
    if reason in REFUSED_FINISH:
        text = f"{provider}'s safety filters withheld the image ({reason}); rephrase the prompt"
        raise ContentRefused(text, provider=provider, upstream_message=said)
    # "STOP" with only text: the model declined in prose (§4.1); its words are the message.
    text = f"{provider} answered without an image ({reason})"
    raise NoImagesReturned(text, provider=provider, upstream_message=said)


def _parse_imagen(body: Any, provider: str) -> AdapterReply:
    reply = _ImagenReply.model_validate(body)
    artifacts = tuple(
        Artifact(encoded=p.bytes_base64_encoded, mime=p.mime_type, revised_prompt=p.prompt)
        for p in reply.predictions
        if p.bytes_base64_encoded
    )
    failures = tuple(p.rai_filtered_reason for p in reply.predictions if p.rai_filtered_reason)
    if artifacts:
        return AdapterReply(artifacts=artifacts, failures=failures)
    if failures:
        text = f"{provider}'s safety filters removed every image; rephrase the prompt"
        raise ContentRefused(text, provider=provider, upstream_message=failures[0])
    # Imagen drops filtered images silently unless asked for reasons (imagen.md §6.2).
    text = f"{provider} returned no image (Imagen drops images its safety filters remove; try rephrasing)"
    raise NoImagesReturned(text, provider=provider)


def _read(body: Any, provider: str, dialect: str, parse: Callable[[Any, str], AdapterReply]) -> AdapterReply:
    shape = UpstreamError(f"{provider} answered in a shape that is not a {dialect} reply", provider=provider)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise classify_error(200, body, provider)  # a proxy may put Google's error in a 200 body
    if not isinstance(body, dict):
        raise shape
    try:
        return parse(body, provider)
    except ValidationError:
        raise shape from None


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """Read a `:generateContent` reply: the image, the model's text note and usage; or the right error."""
    return _read(body, provider, "gemini", _parse_gemini)


def parse_predictions(body: Any, provider: str) -> AdapterReply:
    """Read an Imagen `:predict` reply: the images and their revised prompts; or the right error."""
    return _read(body, provider, "imagen", _parse_imagen)


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """`RetryInfo.retryDelay` ("41s", "1.5s") from the error details (gemini.md §5)."""
    for detail in details:
        if detail.get("@type") == RETRY_INFO and (match := DURATION.match(str(detail.get("retryDelay")))):
            return float(match[1])
    return None


def _google_error(body: Any) -> _GoogleError | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    try:
        return _GoogleError.model_validate(error)
    except ValidationError:
        return None


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map Google's `{"error": {code, message, status, details}}` to the error tree."""
    error = _google_error(body)
    if error is None:
        return classify(status, body, provider)
    code = (error.code or status) if status == 200 else status  # a 200 body names the real code
    name, message = error.status or "", error.message
    kw: dict[str, Any] = {"provider": provider, "upstream_message": message}
    if name == "RESOURCE_EXHAUSTED" or code == 429:
        delay = _retry_delay(error.details)
        hint = f"; Google suggests retrying in {delay:g} s" if delay is not None else "; try again later"
        text = f"{provider} quota or rate limit is exhausted (HTTP 429){hint}"
        return RateLimited(text, retry_after=delay, **kw)
    reasons = {detail.get("reason") for detail in error.details}
    if name in AUTH_STATUSES or "API_KEY_INVALID" in reasons:  # a wrong key is 400 API_KEY_INVALID
        text = f"{provider} rejected the API key ({name or code}); check the key and that it may use this API"
        return AuthFailed(text, **kw)
    if code == 400 and refusal_said(message, code):  # Imagen: 400 "…may violate our policies…" (imagen.md §5)
        return ContentRefused(f"{provider}'s content policy refused this prompt; rephrase it", **kw)
    if code in (400, 404, 409, 412, 413):
        return UpstreamError(f"{provider} refused the request ({name or 'HTTP'} {code})", status=code, **kw)
    return classify(code, body, provider)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One `:generateContent` or `:predict` call."""
    request = build_request(job)
    parse = parse_predictions if job.route.wire.dialect == "imagen" else parse_reply
    read = reading(parse, client, classify_error)
    return with_warnings(
        await client.post_json(request.path, request.json, classify_error, read=read), request
    )
