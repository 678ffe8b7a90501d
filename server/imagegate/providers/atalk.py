"""AtalkAI image API (shared/seeds/004_f817f0b0c340ea4a.txt): one JSON POST to /images/generate
for text-to-image and reference edits alike, Flux and Gemini models on the same fields. Replies
`{code: 0, data[]: {type: url|base64, image, mimeType, revised_prompt}, usage}`; errors
`{code: -1, msg}`, possibly with HTTP 200. Flux vs Gemini is route data (`wire.dialect`), never a model name.

The reply's `model` ("实际使用的模型名称") and `provider` ("服务提供商名称", e.g. flux, gemini) travel
in the usage object, under those names, next to the cost (in CNY). The doc's retry sample retries
`code` 429, 500 and 503: those codes (in the body, or as the HTTP status) are marked retryable here
and `ProviderClient.call` retries them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from ..errors import (
    AuthFailed,
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
    InputImage,
    WireModel,
    WireRequest,
    WordTable,
    classify,
    reading,
)
from .http import ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run"]

DEFAULT_PATH = "/images/generate"
DIALECTS = ("flux", "gemini")
PIXEL_DIALECTS = frozenset({"flux"})
"""Dialects that take `width`/`height` ("Flux 模型专用参数", seeds/004); others send `aspect_ratio` only."""
COST_CURRENCY = "CNY"
"""usage.cost is in renminbi: "本次请求的费用(单位:人民币元)" (seeds/004, usage)."""

# The doc documents one auth message ("API key is invalid or expired"); the rest are the usual gateway
# wordings, English and Chinese, since errors come as free text under `msg` (seeds/004, 错误处理).
# A telling HTTP status wins over the words; the shared refusal vocabulary comes after these.
AUTH = "{provider} rejected the API key; check the key and its access"
BALANCE = "{provider} says the account balance is insufficient; top it up"
RATE = "{provider} is rate limiting; try again later"
STATUS_KINDS: dict[int, tuple[type[ImagegateError], str]] = {
    401: (AuthFailed, AUTH),
    403: (AuthFailed, AUTH),
    402: (InsufficientBalance, BALANCE),
    429: (RateLimited, RATE),
}
WORDS: WordTable = (
    (re.compile(r"api[ _-]?key|unauthori[sz]ed|authenticat|密钥|令牌", re.I), AuthFailed, AUTH),
    (re.compile(r"balance|insufficient|credit|quota|余额|欠费", re.I), InsufficientBalance, BALANCE),
    (re.compile(r"rate.?limit|too many requests|频繁|限流", re.I), RateLimited, RATE),
)
RETRY_CODES = frozenset({429, 500, 503})
"""`elif result.get("code") in [429, 500, 503]: # 可重试的错误` (seeds/004, 错误重试策略)."""
ERRORS = ErrorShape(messages=("msg", "message"), codes=("code",))
"""`{code: -1, msg}`; the doc's own retry sample builds `{"code": -1, "message": ...}`."""


class _Image(WireModel):
    model_config = ConfigDict(populate_by_name=True)
    type: str | None = None
    image: Encoded | None = None
    mime: str | None = Field(default=None, alias="mimeType")
    revised_prompt: str | None = None


class _Reply(WireModel):
    data: list[_Image] = []
    usage: dict[str, Any] | None = None
    model: str | None = None
    provider: str | None = None


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
    return WireRequest(job.route.wire.path or DEFAULT_PATH, json=body)


def _artifact(item: _Image) -> Artifact | None:
    if not item.image:
        return None
    if item.type == "url" and isinstance(item.image, str):  # mimeType is null for URL images (seeds/004)
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


def _usage(reply: _Reply) -> dict[str, Any] | None:
    """The usage object, its cost's currency, and who the reply says served the call."""
    usage = dict(reply.usage or {})
    if "cost" in usage:
        usage["currency"] = COST_CURRENCY
    served = {"model": reply.model, "provider": reply.provider}
    usage.update((key, value) for key, value in served.items() if value)
    return usage or None


def parse_reply(body: Any, provider: str) -> AdapterReply:
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
    return AdapterReply(artifacts=artifacts, usage=_usage(reply), failures=failures)


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (`{"code": -1, "msg": ...}`, any HTTP status) to the tree by status and message."""
    # The doc's retry sample reads HTTP-like values (429, 500, 503) from `code` (seeds/004, 错误重试策略).
    fault = ERRORS.read(body)
    effective = fault.status if status == 200 and fault.status and fault.status >= 400 else status
    if effective in STATUS_KINDS:
        kind, text = STATUS_KINDS[effective]
        return kind(text.format(provider=provider), provider=provider, upstream_message=fault.message)
    # A code from the body is passed as one (status_in_code), so no text calls it an HTTP status.
    error = classify(status, body, provider, shape=ERRORS, words=WORDS, status_in_code=effective != status)
    if effective in RETRY_CODES and type(error) is UpstreamError:
        error.retryable = True  # retried as the doc's sample retries it; never a refusal or a balance error
    return error


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One /images/generate call."""
    request = build_request(job)
    return await client.post_json(
        request.path, request.json, classify_error, read=reading(parse_reply, client, classify_error)
    )
