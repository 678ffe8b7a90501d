"""Volcengine Ark image generation protocol (shared/providers/ark-seedream.md): one synchronous
`POST /images/generations` for Seedream 3.0 / 4.x and SeedEdit 3.0, with or without reference
images. Serves the `ark` provider; which model takes which field is route data (knobs, sizes, wire).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from ..errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    ModelNotFound,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from .base import (
    AdapterReply,
    Artifact,
    Batch,
    CodeTable,
    Encoded,
    ErrorShape,
    RouteWarning,
    WireModel,
    WireRequest,
    classify,
    from_table,
    reading,
    with_warnings,
)
from .http import ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run", "with_seed"]

DIALECTS: tuple[str, ...] = ()
DEFAULT_PATH = "/images/generations"
ADAPTIVE = "adaptive"  # SeedEdit's only size: the output follows the input image (§3)
REFUSED = {  # what each content-filter code blocked (§5); the bare code is used too
    "InputTextSensitiveContentDetected": "the prompt",
    "InputImageSensitiveContentDetected": "a reference image",
    "OutputImageSensitiveContentDetected": "the generated image",
    "SensitiveContentDetected": "the request",
}
ACCESS_HINT = "activate the model for the key in the Ark console"
ACCESS = "{provider} denied this key access to the model ({code}); " + ACCESS_HINT
RATE = "{provider} is rate limiting or overloaded ({code}) and still was after retries; try again later"
CODES: CodeTable = {  # §5; matched on the whole code, then its first segment
    **{
        code: (
            ContentRefused,
            f"{{provider}}'s content filter refused {what} ({{code}}); change it and try again",
        )
        for code, what in REFUSED.items()
    },
    "AuthenticationError": (AuthFailed, "{provider} rejected the API key ({code}); check the key"),
    "AccessDenied": (AuthFailed, ACCESS),
    "InvalidEndpointOrModel.ModelIDAccessDisabled": (AuthFailed, ACCESS),
    "InvalidEndpointOrModel.NotFound": (ModelNotFound, "{provider} has no such model or endpoint ({code})"),
    "AccountOverdueError": (
        InsufficientBalance,
        "{provider} says the account is overdue ({code}); top it up",
    ),
    "RateLimitExceeded": (RateLimited, RATE),
    "QuotaExceeded": (RateLimited, RATE),
    "ServerOverloaded": (RateLimited, RATE),
}
ERRORS = ErrorShape(messages=("error.message", "error", "message"), codes=("error.code", "code"))
"""`{"error": {code, message}}` (§5); SDK renderings drop the wrapper, so a bare object is read too."""


class _Failure(WireModel):
    code: str = ""
    message: str | None = None


class _Item(WireModel):
    url: str | None = None
    b64_json: Encoded | None = None
    error: _Failure | None = None


class _Reply(WireModel):
    data: list[_Item] | None = None
    usage: dict[str, Any] | None = None
    error: _Failure | None = None


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
    return WireRequest(job.route.wire.path or DEFAULT_PATH, json=body, warnings=warnings)


def _failure_text(failure: _Failure) -> str:
    return f"{failure.code}: {failure.message}" if failure.message else failure.code or "unknown error"


def _refusal(provider: str, failure: _Failure) -> ImagegateError:
    """The error for a reply whose every image failed (per-item errors, §4)."""
    return classify_error(200, {"error": failure.model_dump()}, provider)


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """Read images (url or b64_json), per-image failures and usage; an error in a 200 body is raised."""
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(
            "answered in a shape that is not an Ark images reply", provider=provider
        ) from None
    items = reply.data or []
    artifacts = tuple(
        Artifact(encoded=item.b64_json or None, url=item.url) for item in items if item.url or item.b64_json
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


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an Ark error (by its `code`, then its HTTP status) to the error tree."""
    fault = ERRORS.read(body)
    if known := from_table(CODES, fault.code, provider, fault.message):
        return known
    if fault.code:  # InvalidParameter, MissingParameter, InternalServiceError...
        retry = fault.code.split(".")[0] == "InternalServiceError"
        what = "failed internally" if retry else "refused the request"
        text = f"{provider} {what} ({fault.code}, HTTP {status})"
        return UpstreamError(
            text, provider=provider, status=status, retryable=retry, upstream_message=fault.message
        )
    return classify(status, body, provider, shape=ERRORS)


def with_seed(reply: AdapterReply, seed: Any) -> AdapterReply:
    """Ark echoes no seed: the one asked for is the images' seed (a negative one means random)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return reply
    return replace(reply, artifacts=tuple(replace(a, seed=seed) for a in reply.artifacts))


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations call."""
    request = build_request(job)
    assert request.json is not None
    # An error in a 200 body is read inside the client's retry, and retried when it says so.
    reply = await client.post_json(
        request.path, request.json, classify_error, read=reading(parse_reply, client, classify_error)
    )
    return with_warnings(with_seed(reply, job.knobs.get("seed")), request)
