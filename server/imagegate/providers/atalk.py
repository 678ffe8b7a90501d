"""AtalkAI image API (shared/seeds/004_f817f0b0c340ea4a.txt): one JSON POST to /images/generate
for text-to-image and reference edits alike, Flux and Gemini models on the same fields. Replies
`{code: 0, data[]: {type: url|base64, image, mimeType, revised_prompt}, usage}`; errors
`{code: -1, msg}`, possibly with HTTP 200. Flux vs Gemini is route data (`wire.dialect`), never a model name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from .base import AdapterReply, Artifact, Batch, InputImage
from .http import ProviderClient, default_error

__all__ = ["WireRequest", "build_request", "classify_error", "parse_reply", "run"]

DEFAULT_PATH = "/images/generate"
PIXEL_DIALECTS = frozenset({"flux"})
"""Dialects that take `width`/`height` ("Flux 模型专用参数", seeds/004); others send `aspect_ratio` only."""
COST_CURRENCY = "CNY"
"""usage.cost is in renminbi: "本次请求的费用(单位:人民币元)" (seeds/004, usage)."""

# The doc documents one auth message ("API key is invalid or expired"); the rest are the usual gateway
# wordings, English and Chinese, since errors come as free text under `msg` (seeds/004, 错误处理).
# A telling HTTP status wins over the words; the first matching pattern wins after that.
STATUS_KINDS: dict[int, type[ImagegateError]] = {
    401: AuthFailed,
    403: AuthFailed,
    402: InsufficientBalance,
    429: RateLimited,
}
REFUSAL_WORDS = re.compile(
    r"content.?polic|moderat|nsfw|safety (system|filter|check)|flagged|sensitive|违规|敏感|审核", re.I
)
WORD_KINDS: tuple[tuple[re.Pattern[str], type[ImagegateError]], ...] = (
    (re.compile(r"api[ _-]?key|unauthori[sz]ed|authenticat|密钥|令牌", re.I), AuthFailed),
    (re.compile(r"balance|insufficient|credit|quota|余额|欠费", re.I), InsufficientBalance),
    (re.compile(r"rate.?limit|too many requests|频繁|限流", re.I), RateLimited),
    (REFUSAL_WORDS, ContentRefused),
)
AGENT_TEXT: dict[type[ImagegateError], str] = {
    AuthFailed: "{provider} rejected the API key; check the key and its access",
    InsufficientBalance: "{provider} says the account balance is insufficient; top it up",
    RateLimited: "{provider} is rate limiting; try again later",
    ContentRefused: "{provider}'s moderation refused this request; rephrase the prompt",
}


class _Image(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: str | None = None
    image: str | None = None
    mime: str | None = Field(default=None, alias="mimeType")
    revised_prompt: str | None = None


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[_Image] = []
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request: the path under the base URL and its JSON body."""

    path: str
    json: dict[str, Any]


def _image_field(index: int) -> str:
    # The first reference is `input_image`, the others `input_image_2`..`input_image_8` (seeds/004).
    return "input_image" if index == 0 else f"input_image_{index + 1}"


def _image_value(image: InputImage) -> str:
    # "Base64 编码的图片数据或图片 URL": a URL, else bare base64 (no data: prefix) (seeds/004, input_image).
    return image.url or image.base64()


def _size_fields(job: Batch) -> dict[str, Any]:
    size = job.size
    # width/height override aspect_ratio when both are given, so send one or the other (seeds/004, width).
    if size.width and size.height and job.route.wire.dialect in PIXEL_DIALECTS:
        return {"width": size.width, "height": size.height}
    return {"aspect_ratio": size.ratio} if size.ratio else {}


def build_request(job: Batch) -> WireRequest:
    """Map a job (generate, or edit with references) to the one /images/generate request."""
    body: dict[str, Any] = {"model": job.route.upstream, "prompt": job.prompt}
    body.update((_image_field(i), _image_value(image)) for i, image in enumerate(job.images))
    body.update(_size_fields(job))
    body.update(job.knobs)  # seed, safety_tolerance, output_format: the wire uses the vocabulary's names
    body.update(job.extra)
    return WireRequest(path=job.route.wire.path or DEFAULT_PATH, json=body)


def _artifact(item: _Image) -> Artifact | None:
    if not item.image:
        return None
    if item.type == "url":  # mimeType is always null for URL images (seeds/004, URLImageObject)
        return Artifact(url=item.image, revised_prompt=item.revised_prompt)
    if item.type == "base64":
        return Artifact(encoded=item.image, mime=item.mime, revised_prompt=item.revised_prompt)
    return None


def _failures(reply: _Reply, skipped: int) -> tuple[str, ...]:
    failed = (reply.usage or {}).get("images_failed")
    notes: list[str] = []
    if isinstance(failed, int) and failed > 0:
        notes.append(f"the upstream reports {failed} image(s) failed (usage.images_failed)")
    if skipped:
        notes.append(f"{skipped} item(s) of an unknown image type were ignored")
    return tuple(notes)


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if usage is None or "cost" not in usage:
        return usage
    return {**usage, "currency": COST_CURRENCY}


def parse_reply(body: Any, provider: str = "atalk") -> AdapterReply:
    """Read images (URL or base64), revised prompts, usage and failed-image counts from a reply body."""
    if not isinstance(body, dict):
        raise UpstreamError(f"{provider} answered in a shape that is not an image reply")
    if body.get("code", 0) not in (0, "0"):
        raise classify_error(200, body, provider)  # code -1 may come with HTTP 200 (seeds/004, 错误处理)
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(f"{provider} answered in a shape that is not an image reply") from None
    found = [_artifact(item) for item in reply.data]
    artifacts = tuple(a for a in found if a is not None)
    skipped = sum(1 for item, a in zip(reply.data, found, strict=True) if item.image and a is None)
    failures = _failures(reply, skipped)
    if not artifacts:
        detail = f": {'; '.join(failures)}" if failures else ""
        raise NoImagesReturned(f"{provider} answered without any image{detail}", provider=provider)
    return AdapterReply(artifacts=artifacts, usage=_usage(reply.usage), failures=failures)


def _message(body: Any) -> str | None:
    if not isinstance(body, dict):
        return body[:300] if isinstance(body, str) and body.strip() else None
    for key in ("msg", "message"):  # the doc's own retry sample builds {"code": -1, "message": ...}
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return None


def _effective_status(status: int, body: Any) -> int:
    # The doc's retry sample reads HTTP-like values (429, 500, 503) from `code` (seeds/004, 错误重试策略).
    code = body.get("code") if isinstance(body, dict) else None
    if status == 200 and isinstance(code, int) and 400 <= code <= 599:
        return code
    return status


def _kind(status: int, message: str) -> type[ImagegateError] | None:
    if status in STATUS_KINDS:
        return STATUS_KINDS[status]
    return next((kind for pattern, kind in WORD_KINDS if pattern.search(message)), None)


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (`{"code": -1, "msg": ...}`, any HTTP status) to the tree by status and message."""
    message = _message(body)
    status = _effective_status(status, body)
    if kind := _kind(status, message or ""):
        return kind(AGENT_TEXT[kind].format(provider=provider), provider=provider, upstream_message=message)
    if status == 200:
        return UpstreamError(
            f"{provider} answered with an error", provider=provider, upstream_message=message
        )
    return default_error(status, body, provider)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One /images/generate call."""
    request = build_request(job)
    return await client.post_json(
        request.path, request.json, classify_error, read=lambda body: parse_reply(body, client.profile.id)
    )
