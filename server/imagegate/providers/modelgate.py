"""ModelGate gateway protocol (shared/seeds/000_04e54511d4d1ae45.txt): one JSON endpoint,
`POST /images/generations`, for text-to-image and reference-image calls alike. Owns the
request body (field order per model family), the reply's three image spellings and the
`status`/`code` error shapes; it does not fan out, retry or check sizes (the catalog does).

What the doc says and how it is read here:
- `output_format` "只有 google/nano-banana 和 google/nano-banana-pro 支持该字段": it is sent only on
  routes whose catalog entry has the `output_format` knob (the Google ones), with the doc's default
  png; the Doubao example's `"output_format": "png"` is a field that model does not support, so the
  Seedream body leaves it out.
- `size` defaults to 1024x1024 (parameter table); with several seed images nano-banana-pro takes only
  its "多图输入" list, for which the doc names no default: no size is invented, the upstream decides.
- Retry guidance (`is_retry` on 429; 500/503/508 "服务器错误,请稍后重试"), in an HTTP status or in a
  200 body, marks the error retryable; the HTTP layer's `ProviderClient.call` retries it.
- The reply's `model`, `task_id` and `request_id` travel with its `usage` list into the result.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from ..codec import Payload
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
    RouteWarning,
    WireModel,
    WireRequest,
    classify,
    reading,
    refusal_said,
    with_warnings,
)
from .http import ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run"]

PATH = "/images/generations"
DEFAULT_OUTPUT_FORMAT = "png"  # the doc's parameter table: default png (a field of the Google models only)
DEFAULT_OUTPUT_TYPE = "base64"
FORMAT_KNOB = "output_format"
"""A route sends `output_format` only when its catalog entry offers this knob (seeds/000: Google only)."""
# The doc's "参数顺序说明" gives two field orders; `wire.dialect` says which a route uses.
# Doubao sends number_results; the Google examples leave it out (one image per request).
# A field a route does not send (None) is left out, in either order.
ORDERS = {
    "doubao": ("output_type", "number_results", "model", "prompt", "size", "output_format"),
    "google": ("model", "prompt", "size", "output_type", "output_format"),
}
DIALECTS = tuple(ORDERS)
DEFAULT_DIALECT = "google"
SERVER_ERRORS = {500, 503, 508}  # the doc's error handler: "服务器错误,请稍后重试" (retried)
SUCCESS_CODES = {None, 0, 200}  # a reply without `code`, or one a gateway marks as fine
ERROR_STATUSES = {"error", "failed"}  # `status`: completed 成功, failed 失败, error 错误
DATA_URL = re.compile(r"^data:([\w/+.-]+)?(?:;[\w=-]+)*;base64,(.*)$", re.S | re.I)
ERRORS = ErrorShape(
    messages=("message.error.message", "error.message", "message", "msg", "error"), codes=("code",)
)
"""The doc's `{code, message: {error: {message}}}`, or the flatter shapes a gateway may also send.
The doc asks callers to moderate prompts ("内容审核") but shows no refusal message: the shared
refusal vocabulary reads the message."""


class _Item(WireModel):
    url: str | None = None
    b64_json: Encoded | None = None
    content: Encoded | None = None


class _Reply(WireModel):
    task_id: str | None = None
    request_id: str | None = None
    model: str | None = None
    data: list[_Item] | None = None
    usage: list[Any] | dict[str, Any] | None = None


def _seed_image(image: InputImage) -> str:
    # Seedream takes URL or base64 ("支持 Base64 和 URL 格式"); the doc shows neither, so bytes go
    # as a data URL, the form Seedream's own API (Ark) takes (a guess for ModelGate).
    return image.url if image.url is not None else image.data_url()


def _output_format(job: Batch) -> Any:
    if FORMAT_KNOB not in job.route.knobs:
        return None  # "只有 google/nano-banana 和 google/nano-banana-pro 支持该字段"
    return job.knobs.get(FORMAT_KNOB, DEFAULT_OUTPUT_FORMAT)


def _size_warnings(job: Batch) -> tuple[RouteWarning, ...]:
    # A tier without pixels (a resolution alone, where the size list has no default) cannot be said:
    # the body has `size` only, so the upstream picks the size.
    if job.size.pixels is None and job.size.tier:
        detail = (
            f"ModelGate takes only a pixel size, so {job.size.tier} was not sent; the upstream chose the size"
        )
        return (RouteWarning("resolution", detail, use_instead="a size from get_supported_sizes"),)
    return ()


def build_request(job: Batch) -> WireRequest:
    """The JSON body, its fields in the order the doc's own examples send them."""
    values: dict[str, Any] = {
        "output_type": job.route.wire.response_format or DEFAULT_OUTPUT_TYPE,
        "number_results": job.count,
        "model": job.route.upstream,
        "prompt": job.prompt,
        "size": job.size.pixels,  # None (left out): no documented default, the upstream decides
        "output_format": _output_format(job),
    }
    order = ORDERS[job.route.wire.dialect or DEFAULT_DIALECT]
    body = {name: values[name] for name in order if values[name] is not None}
    if job.images:
        body["seed_images"] = [_seed_image(image) for image in job.images]
    body.update(job.extra)
    return WireRequest(PATH, json=body, warnings=_size_warnings(job))


def _artifact(item: _Item) -> Artifact | None:
    """The doc shows `url`, `b64_json` (its code samples) and `content` as a data URL (its reply sample)."""
    if item.url:
        return Artifact(url=item.url)
    if item.b64_json:
        return Artifact(encoded=item.b64_json)
    if not item.content:
        return None
    if isinstance(item.content, Payload):  # a long base64 or data URL, decoded while it arrived
        return Artifact(encoded=item.content, mime=item.content.mime)
    if item.content.startswith(("http://", "https://")):
        return Artifact(url=item.content)
    match = DATA_URL.match(item.content)
    if match is None:
        return Artifact(encoded=item.content)
    return Artifact(encoded=match[2], mime=match[1] or None)


def _usage(reply: _Reply) -> dict[str, Any] | None:
    # `usage` is a list (one entry per image), kept whole; the ids let a call be traced with ModelGate,
    # and `model` is the model the reply says served it (the doc's reply sample).
    fields = {
        "usage": reply.usage,
        "model": reply.model,
        "task_id": reply.task_id,
        "request_id": reply.request_id,
    }
    kept = {key: value for key, value in fields.items() if value}
    return kept or None


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """Images and usage from a reply; an error in a 200 body is raised as the error it is."""
    if isinstance(body, dict) and (body.get("status") in ERROR_STATUSES or _code(body) not in SUCCESS_CODES):
        raise classify_error(200, body, provider)
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(f"{provider} answered in a shape that is not an image reply") from None
    artifacts = tuple(a for a in map(_artifact, reply.data or []) if a is not None)
    if not artifacts:
        raise NoImagesReturned(f"{provider} answered without any image")
    return AdapterReply(
        artifacts=artifacts, usage=_usage(reply), request_id=reply.request_id or reply.task_id
    )


def _code(body: dict[str, Any]) -> int | None:
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return code if isinstance(code, int) else None


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error (HTTP status, or the body's numeric `code`, which wins) to the error tree."""
    code = (_code(body) if isinstance(body, dict) else None) or status
    message = ERRORS.read(body).message
    kw: dict[str, Any] = {"provider": provider, "upstream_message": message}
    if refusal_said(message, code):
        return classify(code, body, provider, shape=ERRORS)
    if code in (401, 403):
        return AuthFailed(f"{provider} rejected the API key (code {code}); check the key", **kw)
    if code == 402:
        return InsufficientBalance(f"{provider} says the balance is insufficient (code 402); top it up", **kw)
    if code == 429:
        return _rate_limited(body, provider, kw)
    if code in SERVER_ERRORS:
        text = f"{provider} had a server error (code {code}); try again later"
        return UpstreamError(text, status=code, retryable=True, **kw)
    if code == 400:
        return UpstreamError(f"{provider} rejected the request (code 400)", status=400, **kw)
    if status == 200:
        state = body.get("status") if isinstance(body, dict) else None
        return UpstreamError(f"{provider} answered with status {state or 'error'}", **kw)
    return classify(code, body, provider, shape=ERRORS)


def _rate_limited(body: Any, provider: str, kw: dict[str, Any]) -> RateLimited:
    # The doc's handler retries a 429 when the body says `is_retry`; without the flag its best practice
    # ("实现指数退避重试机制,特别是对于 429 和 5xx 错误") still retries. Only `is_retry: false` stops it.
    error = RateLimited(f"{provider} is rate limiting (code 429); try again later", **kw)
    error.retryable = body.get("is_retry") is not False if isinstance(body, dict) else True
    return error


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations call (with seed_images for edits)."""
    # ModelGate marks retryable errors (is_retry; 500/503/508 "请稍后重试") in 200 bodies too:
    # they are read inside the client's retry.
    request = build_request(job)
    reply = await client.post_json(
        request.path, request.json, classify_error, read=reading(parse_reply, client, classify_error)
    )
    return with_warnings(reply, request)
