"""fal queue protocol: submit `POST /{endpoint}`, poll the reply's `status_url` (`?logs=1`) until
COMPLETED, read the result at its `response_url`; the images are URLs on fal's CDN, which the core
downloads without the key (only queue.fal.run, the base URL's origin, is trusted with it). A call that
times out or is cancelled while queued asks fal to cancel it (`cancel_url`, PUT). Owns the wire mapping
only: polling is the HTTP layer's `poll`, downloading the core's. Each poll's news (the queue position, then
the runner's newest log line) is relayed as progress through `Batch.report`, at most once a poll and never
the same text twice in a row. A knob the endpoint spells otherwise is renamed by `wire.fields`
(Ideogram: `quality` -> `rendering_speed`, `prompt_extend` -> `expand_prompt`).

Sources: shared/providers/later.md (fal); fal-ai/fal-js @ 381105e (2026-08-02) libs/client/src/queue.ts
(status `?logs=1|0` and result and cancel on the owner/app root, cancel is PUT), types/common.ts (queue
status shapes, `ValidationErrorInfo {loc, msg, type}`), request.ts (`Authorization: Key …`),
response.ts (422 = validation error; `detail` a list or a string), types/endpoints.ts (each curated
endpoint's input and output fields); fal.ai/docs inference-api pages ("The status, result, and cancel
URLs use only the owner and the app … use the status_url, response_url and cancel_url fields", status
202 while queued), model-apis/errors (`detail[]` of `{loc, msg, type, url, ctx, input}`, type
`content_policy_violation`). UNCONFIRMED (fal-ai/fal issues #1112, #1147): a spent balance is HTTP 403
"User is locked. Reason: Exhausted balance"; what a failed request's status or result looks like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import anyio
from pydantic import ValidationError

from ..errors import (
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    UpstreamError,
    UpstreamTimeout,
)
from .base import (
    FORMAT_MIME,
    AdapterReply,
    Artifact,
    Batch,
    ErrorShape,
    RouteWarning,
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
    "progress_text",
    "run",
]

DIALECTS = ("image_size", "aspect_ratio", "image_url")
"""How an endpoint takes size and inputs: `image_size` (default: `{width, height}`, inputs as `image_urls`),
`aspect_ratio` (a ratio and, where the route has tiers, `resolution`; inputs as `image_urls`), `image_url`
(`{width, height}`, one input as `image_url`)."""
DONE = "COMPLETED"
IN_PROGRESS = frozenset({"IN_QUEUE", "IN_PROGRESS"})
POLL_INTERVAL = 0.5  # fal-js polls every 500 ms (queue.ts DEFAULT_POLL_INTERVAL)
POLL_MAX_INTERVAL = 2.0
CANCEL_WAIT = 5.0
STRING_KNOBS = frozenset({"safety_tolerance"})  # an enum of strings "1".."6" on fal (types/endpoints.ts)
ERRORS = ErrorShape(messages=("message", "error"), codes=("error_type",))
BALANCE = re.compile(r"exhausted balance|top[ _]?up|insufficient", re.IGNORECASE)


class _Submitted(WireModel):
    request_id: str
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """Where a queued request is watched, read and cancelled (URLs as fal handed them back)."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class _Image(WireModel):
    url: str | None = None
    content_type: str | None = None


class _Result(WireModel):
    images: list[_Image] = []
    image: _Image | None = None  # some endpoints answer one `image` (later.md)
    seed: int | None = None
    prompt: str | None = None
    description: str | None = None
    has_nsfw_concepts: list[bool] = []


def _size_fields(job: Batch, dialect: str) -> dict[str, Any]:
    size = job.size
    if dialect == "aspect_ratio":
        fields: dict[str, Any] = {"aspect_ratio": size.ratio} if size.ratio else {}
        if size.tier and size.tier in job.route.sizes.tiers:
            fields["resolution"] = size.tier
        return fields
    if size.width and size.height:
        return {"image_size": {"width": size.width, "height": size.height}}
    return {}  # the endpoint's default ("auto" on edit endpoints: follow the input)


def _input_fields(job: Batch, dialect: str) -> dict[str, Any]:
    refs = [image.ref() for image in job.images]  # URLs as given, bytes as data URIs ("publicly accessible
    if not refs:  # or base64 data URI", types/endpoints.ts)
        return {}
    return {"image_url": refs[0]} if dialect == "image_url" else {"image_urls": refs}


def build_request(job: Batch) -> WireRequest:
    """The submit path (the route's generate or edit endpoint) and the endpoint's input JSON."""
    wire, dialect = job.route.wire, job.route.wire.dialect or "image_size"
    path = (job.tool == "edit" and wire.edit_path) or wire.path or f"/{job.route.upstream}"
    body: dict[str, Any] = {"prompt": job.prompt, **_input_fields(job, dialect), **_size_fields(job, dialect)}
    if job.route.per_call > 1:  # only endpoints whose schema has num_images get a per_call above 1
        body["num_images"] = job.count
    names = wire.fields  # a knob the endpoint spells otherwise (Ideogram: quality -> rendering_speed)
    body.update({names.get(k, k): str(v) if k in STRING_KNOBS else v for k, v in job.knobs.items()})
    body.update(job.extra)
    return WireRequest(path, json=body)


def _app_root(path: str) -> str:
    """`/fal-ai/bytedance/seedream/v4/edit` -> `/fal-ai/bytedance`: status and result hang from owner/app."""
    return "/" + "/".join(path.strip("/").split("/")[:2])


def parse_submit(body: Any, provider: str, path: str = "") -> Submitted:
    """The request id and the URLs to use (built on the owner/app root only when fal left one out)."""
    try:
        submitted = _Submitted.model_validate(body)
    except ValidationError:
        raise classify_error(200, body, provider) from None
    root = f"{_app_root(path)}/requests/{submitted.request_id}"
    return Submitted(
        request_id=submitted.request_id,
        status_url=submitted.status_url or f"{root}/status",
        response_url=submitted.response_url or root,
        cancel_url=submitted.cancel_url or f"{root}/cancel",
    )


def status_of(body: Any) -> str | None:
    status = body.get("status") if isinstance(body, dict) else None
    return status if isinstance(status, str) else None


def is_finished(body: Any) -> bool:
    """Whether a status reply ends the wait: COMPLETED, or anything that is not IN_QUEUE/IN_PROGRESS."""
    return status_of(body) not in IN_PROGRESS


def with_logs(url: str) -> str:
    """The status URL asking for the runner's logs (`?logs=1`, queue.ts)."""
    return url + ("&" if urlsplit(url).query else "?") + "logs=1"


def progress_text(body: Any) -> str | None:
    """What a status says while the request waits: its queue position, or the runner's newest log line."""
    status = status_of(body)
    if status == "IN_QUEUE":
        position = body.get("queue_position")
        ahead = isinstance(position, int) and not isinstance(position, bool)
        return f"queued, position {position}" if ahead else "queued"
    if status != "IN_PROGRESS":
        return None
    logs = body.get("logs")
    lines = [e.get("message") for e in logs if isinstance(e, dict)] if isinstance(logs, list) else []
    last = next((line.strip() for line in reversed(lines) if isinstance(line, str) and line.strip()), None)
    return f"in progress: {last[:120]}" if last else "in progress"


def check_status(body: Any, provider: str) -> None:
    """A finished status that is not COMPLETED, or a COMPLETED one carrying an error, raises it."""
    status = status_of(body)
    if status == DONE and not (isinstance(body, dict) and body.get("error")):
        return
    if status == DONE or status is None:
        raise classify_error(200, body, provider)
    raise UpstreamError(f"{provider} ended the request with status {status!r}", provider=provider)


def _mime(image: _Image) -> str | None:
    if image.content_type:
        return image.content_type
    extension = (image.url or "").split("?", 1)[0].rsplit(".", 1)[-1].lower()
    return FORMAT_MIME.get(extension)


def parse_result(body: Any, provider: str) -> AdapterReply:
    """The result JSON: each image's URL (with seed), and a warning for images the safety checker flagged."""
    try:
        result = _Result.model_validate(body)
    except ValidationError:
        raise UpstreamError(f"{provider} answered a result that is not an image result") from None
    images = [i for i in [*result.images, *([result.image] if result.image else [])] if i.url]
    if not images:
        if isinstance(body, dict) and "detail" in body:
            raise classify_error(200, body, provider)
        raise NoImagesReturned(
            f"{provider} completed the request without any image", upstream_message=result.description
        )
    artifacts = tuple(Artifact(url=i.url, mime=_mime(i), seed=result.seed) for i in images)
    flagged = [str(k + 1) for k, nsfw in enumerate(result.has_nsfw_concepts) if nsfw]
    warnings = (
        (RouteWarning("safety_checker", f"image {', '.join(flagged)} flagged; fal may have blacked it out"),)
        if flagged
        else ()
    )
    return AdapterReply(artifacts=artifacts, warnings=warnings, note=result.description)


def _detail(body: Any) -> tuple[str | None, list[str]]:
    """FastAPI's `detail`: a string, or a list of `{loc, msg, type}`; the text and the types."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail or None, []
    if not isinstance(detail, list):
        return None, []
    items = [item for item in detail if isinstance(item, dict)]
    texts = [
        f"{'.'.join(str(p) for p in item.get('loc', []) if p != 'body')}: {item.get('msg')}".lstrip(": ")
        for item in items
    ]
    return "; ".join(texts) or None, [str(item.get("type")) for item in items]


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map fal's `{"detail": …}` (or an error in a status or result) to the error tree."""
    message, types = _detail(body)
    message = message or ERRORS.read(body).message
    said: dict[str, Any] = {"provider": provider, "upstream_message": message}
    error_type = body.get("error_type") if isinstance(body, dict) else None
    if "content_policy_violation" in (*types, error_type):
        return ContentRefused(f"{provider}'s content checker flagged the input or output; rephrase", **said)
    if status in (402, 403) and message and BALANCE.search(message):
        return InsufficientBalance(f"{provider} says the balance is exhausted; top it up", **said)
    if status in (400, 422) or (status == 200 and message):
        label = f"HTTP {status}" if status != 200 else "in its status"
        return UpstreamError(f"{provider} rejected the request ({label})", status=status, **said)
    error = classify(status, body, provider, shape=ERRORS)
    error.upstream_message = message or error.upstream_message
    return error


async def _cancel(client: ProviderClient, submitted: Submitted) -> None:
    """Ask fal to drop a request we stopped waiting for; best effort, shielded from our own cancellation."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_WAIT):
        try:
            await client.request("PUT", submitted.cancel_url, classify_error)
        except ImagegateError:
            pass  # already running to its end, or gone: nothing more to do


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """Submit one request, poll its status_url until it completes, and read the result at response_url."""
    request = build_request(job)
    submitted = await client.post_json(
        request.path,
        request.json,
        classify_error,
        read=reading(
            lambda body, provider: parse_submit(body, provider, request.path), client, classify_error
        ),
    )
    said: list[str] = []

    async def status() -> Any:
        body = await client.get_json(with_logs(submitted.status_url), classify_error)
        text = progress_text(body)
        if text and text not in said[-1:] and job.report:  # at most one report a poll, none repeated
            said.append(text)
            await job.report(f"{client.profile.id}: {text}")
        return body

    try:
        final = await client.poll(
            status,
            is_finished,
            interval=POLL_INTERVAL,
            max_interval=POLL_MAX_INTERVAL,
        )
    except (UpstreamTimeout, anyio.get_cancelled_exc_class()):
        await _cancel(client, submitted)
        raise
    check_status(final, client.profile.id)
    result = await client.get_json(submitted.response_url, classify_error)
    reply = reading(parse_result, client, classify_error)(result)
    return replace(reply, request_id=submitted.request_id)
