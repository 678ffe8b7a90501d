"""OpenRouter protocol: image output through `POST /chat/completions` with `modalities`; the images come
back as data URLs in `choices[].message.images[].image_url.url`. Owns the wire mapping only.

Sources (OpenRouterTeam/docs @ c26125a, 2026-08-22, and @ 1c9b462, 2026-06-16):
- guides/overview/multimodal/image-generation.mdx @ 1c9b462: `modalities` ["image","text"] for models
  that answer text and images (Gemini), ["image"] for image-only ones (FLUX, Sourceful);
  `image_config.aspect_ratio` (ten ratios with their 1K pixels) and `image_config.image_size` (1K/2K/4K;
  0.5K on 3.1 Flash only); the reply example
  `{"type":"image_url","image_url":{"url":"data:image/png;base64,…"}}`. The page @ c26125a documents a
  dedicated `POST /images` API instead; chat completions keep `modalities` and `image_config` in
  openapi/openapi.yaml (ChatRequest, ChatAssistantImages: "URL or base64-encoded data").
- guides/overview/multimodal/image-understanding.mdx: input images as `image_url` content parts, URLs or
  base64 data URLs (png, jpeg, webp, gif); "we recommend sending the text prompt first, then the images".
- api_reference/errors-and-debugging.mdx: `{error: {code, message, metadata?}}` with the HTTP status in
  `code`; 402 credits, 403 moderation (`metadata.reasons`, `flagged_input`) or guardrail, 429 with
  Retry-After; provider errors that interrupt generation arrive on HTTP 200 with `metadata.error_type`.
UNCONFIRMED: that `seed` reaches image models; `finish_reason` values of an image refusal.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from ..codec import Payload
from ..errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from .base import (
    AdapterReply,
    Artifact,
    Batch,
    Encoded,
    ErrorShape,
    WireModel,
    WireRequest,
    classify,
    reading,
)
from .http import ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run"]

DIALECTS = ("image_text", "image")
"""The route's `modalities`: "image_text" (default: models that answer text too) or "image" (image-only)."""
MODALITIES = {"image_text": ["image", "text"], "image": ["image"]}
PATH = "/chat/completions"
DATA_URL = re.compile(r"^data:([\w.+/-]+)?(?:;[\w=.+-]+)*;base64,(.*)$", re.S)
REFUSED_FINISH = frozenset({"content_filter", "refusal", "image_safety", "prohibited_content", "safety"})
"""`finish_reason` / `native_finish_reason` values meaning a refusal (Gemini's IMAGE_SAFETY; UNCONFIRMED)."""
ERRORS = ErrorShape(messages=("error.message", "message"), codes=("error.code",))
ERROR_TYPES: dict[str, tuple[type[ImagegateError], str]] = {
    "content_policy_violation": (
        ContentRefused,
        "{provider}'s content filter refused this request; rephrase",
    ),
    "refusal": (ContentRefused, "the model refused this request through {provider}; rephrase the prompt"),
    "payment_required": (InsufficientBalance, "{provider} says the credits are insufficient; add credits"),
    "authentication": (AuthFailed, "{provider} rejected the API key; check OPENROUTER_API_KEY"),
    "rate_limit_exceeded": (RateLimited, "{provider} is rate limiting and still was after retries"),
}
"""`error.metadata.error_type` -> error class and text (errors-and-debugging.mdx, Typed error codes)."""


class _ImageUrl(WireModel):
    url: Encoded | None = None


class _Image(WireModel):
    image_url: _ImageUrl = _ImageUrl()


class _Message(WireModel):
    content: str | None = None
    refusal: str | None = None
    images: list[_Image] = []


class _Choice(WireModel):
    message: _Message = _Message()
    finish_reason: str | None = None
    native_finish_reason: str | None = None


class _Reply(WireModel):
    id: str | None = None
    choices: list[_Choice] = []
    usage: dict[str, Any] | None = None


def _content(job: Batch) -> str | list[dict[str, Any]]:
    """The user message: the prompt alone, or the prompt first and then each image as an image_url part."""
    if not job.images:
        return job.prompt
    parts: list[dict[str, Any]] = [{"type": "text", "text": job.prompt}]
    parts += [{"type": "image_url", "image_url": {"url": image.ref()}} for image in job.images]
    return parts


def _image_config(job: Batch) -> dict[str, str]:
    config: dict[str, str] = {}
    if job.size.ratio:
        config["aspect_ratio"] = job.size.ratio
    if job.size.tier and job.size.tier in job.route.sizes.tiers:  # only where the rule names upstream tiers
        config["image_size"] = job.size.tier
    return config


def build_request(job: Batch) -> WireRequest:
    """The chat completion asking the route's model for one image (no count field: per_call is 1)."""
    body: dict[str, Any] = {
        "model": job.route.upstream,
        "messages": [{"role": "user", "content": _content(job)}],
        "modalities": MODALITIES[job.route.wire.dialect or "image_text"],
    }
    if config := _image_config(job):
        body["image_config"] = config
    body.update(job.knobs)  # seed is a top-level chat parameter (ChatRequest.seed)
    for key, value in job.extra.items():  # an `image_config` in extra adds to ours, not replaces it
        both = isinstance(value, dict) and isinstance(body.get(key), dict)
        body[key] = {**body[key], **value} if both else value
    return WireRequest(PATH, json=body)


def _artifact(url: Encoded | None) -> Artifact | None:
    if not url:
        return None
    if isinstance(url, Payload):  # a long data URL, decoded while the body arrived
        return Artifact(encoded=url, mime=url.mime)
    if url.startswith(("http://", "https://")):
        return Artifact(url=url)
    match = DATA_URL.match(url)
    return Artifact(encoded=url) if match is None else Artifact(encoded=match[2], mime=match[1] or None)


def _refused(choice: _Choice) -> bool:
    reasons = {(choice.finish_reason or "").lower(), (choice.native_finish_reason or "").lower()}
    return bool(choice.message.refusal) or bool(reasons & REFUSED_FINISH)


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """The images of a chat completion; the model's text is the note (it often says why there is none)."""
    if isinstance(body, dict) and "error" in body:
        raise classify_error(200, body, provider)  # an upstream error that interrupted generation
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(f"{provider} answered in a shape that is not a chat completion") from None
    artifacts = tuple(
        a for c in reply.choices for image in c.message.images if (a := _artifact(image.image_url.url))
    )
    note = "\n".join(c.message.content for c in reply.choices if c.message.content) or None
    if not artifacts:
        refusal = next((c for c in reply.choices if _refused(c)), None)
        if refusal is not None:
            said = refusal.message.refusal or note or refusal.native_finish_reason or refusal.finish_reason
            raise ContentRefused(
                f"the model refused to draw this through {provider}; rephrase the prompt",
                upstream_message=said,
            )
        raise NoImagesReturned(f"{provider} answered without any image", upstream_message=note)
    return AdapterReply(artifacts=artifacts, usage=reply.usage, note=note, request_id=reply.id)


def _metadata(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    metadata = error.get("metadata") if isinstance(error, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map `{error: {code, message, metadata}}` (an HTTP error, or one inside a 200) to the error tree."""
    metadata, fault = _metadata(body), ERRORS.read(body)
    said: dict[str, Any] = {"provider": provider, "upstream_message": fault.message}
    reasons = metadata.get("reasons")
    if isinstance(reasons, list) and reasons:  # a moderation flag (ModerationErrorMetadata)
        flagged = ", ".join(str(r) for r in reasons)
        return ContentRefused(f"{provider}'s moderation flagged the input ({flagged}); rephrase", **said)
    if metadata.get("patterns"):
        return ContentRefused(f"a guardrail on this {provider} key blocked the request", **said)
    error_type = metadata.get("error_type")
    if isinstance(error_type, str) and error_type in ERROR_TYPES:
        kind, text = ERROR_TYPES[error_type]
        return kind(text.format(provider=provider), **said)
    return classify(status, body, provider, shape=ERRORS, status_in_code=True)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One chat completion, read for its images."""
    request = build_request(job)
    read = reading(parse_reply, client, classify_error)
    return await client.post_json(request.path, request.json, classify_error, read=read)
