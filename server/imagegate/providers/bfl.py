"""Black Forest Labs FLUX protocol (shared/providers/bfl-flux.md): POST the model's path, then poll
the `polling_url` the submit reply names until the task is Ready; the image is a signed URL on
another host, which the core downloads (the HTTP layer sends `x-key` only to *.bfl.ai / same origin).
Owns the wire mapping only: never polls by hand, retries or downloads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ..errors import ContentRefused, ImagegateError, NoImagesReturned, UpstreamError
from .base import (
    FORMAT_MIME,
    AdapterReply,
    Artifact,
    Batch,
    ErrorShape,
    WireModel,
    WireRequest,
    classify,
    reading,
)
from .http import ProviderClient

__all__ = [
    "DIALECTS",
    "Submitted",
    "build_request",
    "classify_error",
    "is_finished",
    "parse_result",
    "parse_submit",
    "run",
]

DIALECTS: tuple[str, ...] = ()
# Unified knob → BFL field (§2.2–2.4); seed, safety_tolerance and output_format keep their names.
WIRE_NAMES = {"guidance_scale": "guidance", "prompt_extend": "prompt_upsampling"}
IN_PROGRESS = frozenset({"Pending", "Reasoning", "Generating"})  # §4.2; the last two UNCONFIRMED
REFUSED = {
    "Request Moderated": "BFL's moderation flagged the prompt or an input image (not charged)",
    "Content Moderated": "BFL's moderation flagged the generated image (not charged)",
}
FAILED = {
    "Error": "BFL failed to generate the image",
    "Failed": "BFL failed to generate the image",  # Vercel tolerates this spelling (§4.2)
    "Task not found": "BFL lost the task (Task not found: unknown or expired id)",
}
USAGE_FIELDS = ("cost", "input_mp", "output_mp")
POLL_INTERVAL = 0.5  # BFL's own examples and Vercel poll every 500 ms (§4.2)
POLL_MAX_INTERVAL = 2.0
ERRORS = ErrorShape(messages=("message",), codes=())
"""FastAPI's `{"detail": …}` (read by `_detail_message`), else a `message`."""


class _Submitted(WireModel):
    id: str
    polling_url: str | None = None
    cost: float | None = None
    input_mp: float | None = None
    output_mp: float | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a submit reply says: the URL to poll, the billing figures (credits, megapixels), the task id."""

    polling_url: str
    usage: dict[str, float]
    task_id: str


class _Result(WireModel):
    sample: str | None = None
    prompt: str | None = None
    seed: int | None = None


class _Task(WireModel):
    status: str
    result: _Result | None = None
    details: Any = None


def _input_fields(job: Batch) -> dict[str, str]:
    """References as `input_image`, `input_image_2`, … (§6.6): a URL as given, bytes as raw base64."""
    names = (f"input_image_{i}" if i > 1 else "input_image" for i in range(1, len(job.images) + 1))
    return {name: image.url or image.base64() for name, image in zip(names, job.images, strict=True)}


def _size_fields(job: Batch) -> dict[str, Any]:
    # FLUX.2 and FLUX1.1 [pro] take pixels, Kontext and Ultra a ratio (§3); the catalog's size rule
    # resolved whichever the route has. Nothing known: the model decides (FLUX.2: match the input).
    if job.size.width and job.size.height:
        return {"width": job.size.width, "height": job.size.height}
    if job.size.ratio:
        return {"aspect_ratio": job.size.ratio}
    return {}


def build_request(job: Batch) -> WireRequest:
    """The submit path and JSON body for one task (one image: BFL has no `n`)."""
    body: dict[str, Any] = {"prompt": job.prompt, **_input_fields(job), **_size_fields(job)}
    body.update({WIRE_NAMES.get(name, name): value for name, value in job.knobs.items()})
    body.update(job.extra)
    return WireRequest(job.route.wire.path or f"/{job.route.upstream}", json=body)


def parse_submit(body: Any, provider: str) -> Submitted:
    """The URL to poll and the billing figures (`cost` in credits, megapixels) of a submit reply."""
    try:
        submitted = _Submitted.model_validate(body)
    except ValidationError:
        raise classify_error(200, body, provider) from None
    # Always poll the returned (cluster-specific) URL; the global one may not know the task (§6.1).
    url = submitted.polling_url or f"/get_result?id={submitted.id}"
    usage = {name: value for name in USAGE_FIELDS if (value := getattr(submitted, name)) is not None}
    return Submitted(polling_url=url, usage=usage, task_id=submitted.id)


def _status(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    status = body.get("status", body.get("state"))  # Vercel also reads `state` (§4.2)
    return status if isinstance(status, str) else None


def is_finished(body: Any) -> bool:
    """Whether a poll reply ends the wait: any status but the in-progress ones (or no status at all)."""
    return _status(body) not in IN_PROGRESS


def _details(details: Any) -> str | None:
    """`details` is an object of UNCONFIRMED keys (e.g. moderation reasons): say it as text."""
    if isinstance(details, dict):
        parts = [f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in details.items()]
        return "; ".join(parts) or None
    return str(details) if details else None


def parse_result(body: Any, provider: str) -> AdapterReply:
    """A finished poll reply: the image URL with seed and `result.prompt`, or the classified failure."""
    status = _status(body)
    if status is None:
        raise classify_error(200, body, provider)
    try:
        task = _Task.model_validate({**body, "status": status})
    except ValidationError:
        raise UpstreamError("BFL answered a poll with a malformed task", upstream_message=status) from None
    if status in REFUSED:
        raise ContentRefused(REFUSED[status], upstream_message=_details(task.details) or status)
    if status != "Ready":
        message = FAILED.get(status, f"BFL ended the task with status {status!r}")
        raise UpstreamError(message, upstream_message=_details(task.details))
    result = task.result or _Result()
    if not result.sample:
        raise NoImagesReturned("BFL reported the task Ready without a result.sample URL")
    artifact = Artifact(
        url=result.sample, mime=_mime(result.sample), revised_prompt=result.prompt, seed=result.seed
    )
    return AdapterReply(artifacts=(artifact,))


def _mime(url: str) -> str | None:
    extension = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
    return FORMAT_MIME.get(extension)


def _detail_message(detail: Any) -> str | None:
    """FastAPI's `detail`: a string, or a list of {loc, msg} (§5; shape UNCONFIRMED)."""
    if isinstance(detail, str):
        return detail or None
    if isinstance(detail, list):
        parts = [
            f"{'.'.join(str(p) for p in item.get('loc', []) if p != 'body')}: {item.get('msg')}".lstrip(": ")
            for item in detail
            if isinstance(item, dict)
        ]
        return "; ".join(parts) or None
    return _details(detail)


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (HTTP status + `{"detail": …}`, or an unusable 200 body) to the error tree."""
    detail = _detail_message(body.get("detail")) if isinstance(body, dict) else None
    message = detail or (ERRORS.read(body).message if isinstance(body, dict) else None)
    if status == 200:
        return UpstreamError(
            f"{provider} answered in a shape that is not a BFL task", upstream_message=message
        )
    if status in (400, 422):
        return UpstreamError(
            f"{provider} rejected the request (HTTP {status})", status=status, upstream_message=message
        )
    error = classify(status, body, provider, shape=ERRORS)
    error.upstream_message = message or error.upstream_message
    return error


def completed(reply: AdapterReply, submitted: Submitted, prompt: str) -> AdapterReply:
    """The result with the submit's billing and id; `result.prompt` kept only when it is not the
    prompt sent (it echoes it, or carries the upsampled one: UNCONFIRMED, §4.2)."""
    artifacts = tuple(
        a if a.revised_prompt != prompt else replace(a, revised_prompt=None) for a in reply.artifacts
    )
    return replace(reply, artifacts=artifacts, usage=submitted.usage or None, request_id=submitted.task_id)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """Submit one task, poll its polling_url until it finishes, and read the result."""
    request = build_request(job)
    submitted = await client.post_json(
        request.path, request.json, classify_error, read=reading(parse_submit, client, classify_error)
    )
    finished = await client.poll(
        lambda: client.get_json(submitted.polling_url, classify_error),
        is_finished,
        interval=POLL_INTERVAL,
        max_interval=POLL_MAX_INTERVAL,
    )
    return completed(reading(parse_result, client, classify_error)(finished), submitted, job.prompt)
