"""Volcengine Ark image generation protocol (shared/providers/ark-seedream.md): one synchronous
`POST /images/generations` for Seedream 3.0 / 4.x and SeedEdit 3.0, with or without reference
images. Serves the `ark` provider; which model takes which field is route data (knobs, sizes, wire).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from .base import AdapterReply, Artifact, Batch, RouteWarning
from .http import ProviderClient, default_error

__all__ = ["build_request", "classify_error", "parse_reply", "run"]

DEFAULT_PATH = "/images/generations"
ADAPTIVE = "adaptive"  # SeedEdit's only size: the output follows the input image (§3)
REFUSED = {  # what each content-filter code blocked (§5); the bare code is used too
    "InputTextSensitiveContentDetected": "the prompt",
    "InputImageSensitiveContentDetected": "a reference image",
    "OutputImageSensitiveContentDetected": "the generated image",
    "SensitiveContentDetected": "the request",
}
ACCESS = "{p} denied this key access to the model ({code}); activate the model for the key in the Ark console"
RATE = "{p} is rate limiting or overloaded ({code}) and still was after retries; try again later"
CODES: dict[
    str, tuple[type[ImagegateError], str]
] = {  # §5; matched on the whole code, then its first segment
    "AuthenticationError": (AuthFailed, "{p} rejected the API key ({code}); check the key"),
    "AccessDenied": (AuthFailed, ACCESS),
    "InvalidEndpointOrModel.ModelIDAccessDisabled": (AuthFailed, ACCESS),
    "AccountOverdueError": (InsufficientBalance, "{p} says the account is overdue ({code}); top it up"),
    "RateLimitExceeded": (RateLimited, RATE),
    "QuotaExceeded": (RateLimited, RATE),
    "ServerOverloaded": (RateLimited, RATE),
}


class _Failure(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: str = ""
    message: str | None = None


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str | None = None
    b64_json: str | None = None
    error: _Failure | None = None


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[_Item] | None = None
    usage: dict[str, Any] | None = None
    error: _Failure | None = None


@dataclass(frozen=True)
class WireRequest:
    """The JSON body for one call, and what the wire could not say."""

    path: str
    body: dict[str, Any]
    warnings: tuple[RouteWarning, ...] = ()


def _size(job: Batch) -> tuple[str | None, tuple[RouteWarning, ...]]:
    """A tier alone, or WxH pixels: never both (§2, gotcha 6); SeedEdit takes only "adaptive"."""
    size = job.size
    if size.auto or job.route.sizes.kind == "input":
        return ADAPTIVE, ()
    if size.pixels:
        return size.pixels, ()
    if size.ratio:  # `size` has no aspect form (§2); the route's data should always give pixels
        detail = f"Ark cannot be asked for ratio {size.ratio} without pixels; it chose the shape itself"
        return size.tier, (RouteWarning("size", detail, "a WxH size"),)
    return size.tier, ()


def _images(job: Batch) -> str | list[str] | None:
    """One reference as a string, several as a list (§2); URLs as given, bytes as data URLs."""
    refs = [image.url or image.data_url() for image in job.images]
    if len(refs) > 1:
        return refs
    return refs[0] if refs else None


def _knobs(job: Batch) -> dict[str, Any]:
    # The vocabulary's seed, guidance_scale and watermark are Ark's own field names. A default the
    # catalog states is sent when the knob is not given; none is set today, so watermark stays
    # Ark's default (on, gotcha 7) unless asked.
    fields: dict[str, Any] = {
        k: r.default for k, r in job.route.knobs_for(job.tool).items() if r.default is not None
    }
    fields.update(job.knobs)
    return fields


def _group(job: Batch) -> dict[str, Any]:
    # Ark has no `n`: several images in one call need group mode (§2), which the route must offer.
    # The model may return fewer than max_images (gotcha 2); references + outputs must stay <= 15.
    if job.count <= 1 or not job.route.wire.sequential:
        return {}
    return {
        "sequential_image_generation": "auto",
        "sequential_image_generation_options": {"max_images": job.count},
    }


def build_request(job: Batch) -> WireRequest:
    """Map a job (generate or edit alike) to the generations body."""
    size, warnings = _size(job)
    body: dict[str, Any] = {"model": job.route.upstream, "prompt": job.prompt}
    if (image := _images(job)) is not None:
        body["image"] = image
    if size:
        body["size"] = size
    body.update(_knobs(job))
    body.update(_group(job))
    if job.route.wire.response_format:
        body["response_format"] = job.route.wire.response_format
    body.update(job.extra)
    return WireRequest(job.route.wire.path or DEFAULT_PATH, body, warnings)


def _failure_text(failure: _Failure) -> str:
    return f"{failure.code}: {failure.message}" if failure.message else failure.code or "unknown error"


def _refusal(provider: str, failure: _Failure) -> ImagegateError:
    """The error for a reply whose every image failed (per-item errors, §4)."""
    return classify_error(200, {"error": failure.model_dump()}, provider)


def parse_reply(body: Any, provider: str = "ark", seed: int | None = None) -> AdapterReply:
    """Read images (url or b64_json), per-image failures and usage; an error in a 200 body is raised."""
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(
            "answered in a shape that is not an Ark images reply", provider=provider
        ) from None
    items = reply.data or []
    artifacts = tuple(
        Artifact(encoded=item.b64_json or None, url=item.url, seed=seed)
        for item in items
        if item.url or item.b64_json
    )
    failed = [item.error or _Failure() for item in items if not (item.url or item.b64_json)]
    if not artifacts:
        if reply.error is not None:  # gotcha 5: errors can arrive inside an HTTP 200 body
            raise classify_error(200, body, provider)
        if failed:
            raise _refusal(provider, failed[0])
        raise NoImagesReturned("answered without any image", provider=provider)
    # Partial success is normal in group mode (gotcha 4): each failed image is reported, the rest kept.
    failures = tuple(_failure_text(f) for f in failed)
    return AdapterReply(artifacts=artifacts, usage=reply.usage, failures=failures)


def _error_of(body: Any) -> tuple[str, str | None]:
    """`{"error": {code, message}}` (§5); SDK renderings drop the wrapper, so accept a bare object too."""
    if not isinstance(body, dict):
        return "", body if isinstance(body, str) and body.strip() else None
    error = body.get("error")
    if isinstance(error, str):
        return "", error
    found = error if isinstance(error, dict) else body
    message = found.get("message")
    return str(found.get("code") or ""), message if isinstance(message, str) else None


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an Ark error (by its `code`, then its HTTP status) to the error tree."""
    code, message = _error_of(body)
    head = code.split(".")[0]
    kw: dict[str, Any] = {"provider": provider, "upstream_message": message}
    if head in REFUSED:
        text = f"{provider}'s content filter refused {REFUSED[head]} ({code}); change it and try again"
        return ContentRefused(text, **kw)
    if known := CODES.get(code) or CODES.get(head):
        return known[0](known[1].format(p=provider, code=code), **kw)
    if code:  # InvalidParameter, MissingParameter, InvalidEndpointOrModel.NotFound, InternalServiceError...
        retry = head == "InternalServiceError"
        what = "failed internally" if retry else "refused the request"
        return UpstreamError(
            f"{provider} {what} ({code}, HTTP {status})", status=status, retryable=retry, **kw
        )
    if status == 200:
        return UpstreamError(f"{provider} answered with an error", **kw)
    return default_error(status, body, provider)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations call."""
    request = build_request(job)
    seed = job.knobs.get("seed")
    asked = seed if isinstance(seed, int) and seed >= 0 else None

    def read(body: Any) -> AdapterReply:  # an error in a 200 body is retried when it says so
        return parse_reply(body, client.profile.id, asked)

    reply = await client.post_json(request.path, request.body, classify_error, read=read)
    return replace(reply, warnings=request.warnings + reply.warnings)
