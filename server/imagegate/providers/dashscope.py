"""Alibaba DashScope protocol (shared/providers/dashscope-qwen.md): Qwen-Image, Qwen-Image-Edit and Wan.

Two call shapes, chosen by route data (`wire.mode`, `wire.dialect`, `wire.path`): the synchronous
multimodal-generation call, whose reply holds the image URLs, and the asynchronous task (submit with
`X-DashScope-Async: enable`, then GET /tasks/{id} through `client.poll` until a terminal status).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from .base import AdapterReply, Artifact, Batch, ErrorShape, WireModel, WireRequest, classify, reading
from .http import ProviderClient

__all__ = [
    "DIALECTS",
    "build_request",
    "classify_error",
    "parse_reply",
    "parse_submit",
    "parse_task",
    "run",
    "task_finished",
    "task_status",
]

DIALECTS = ("messages", "prompt")
"""`messages` (multimodal-generation, wan2.6 image-generation) or `prompt` (text2image tasks)."""
SYNC_PATH = "/services/aigc/multimodal-generation/generation"
ASYNC_PATH = "/services/aigc/text2image/image-synthesis"
ASYNC_HEADERS = {"X-DashScope-Async": "enable"}  # §1, gotcha 2: required on task endpoints, refused on sync
IN_PROGRESS = frozenset({"PENDING", "RUNNING", "SUSPENDED"})  # §4.2 (SDK TaskStatus); the rest are final
OUTPUT_MIME = "image/png"  # §3: every model answers PNG, URL only
MODE_MISMATCH = "synchronous calls"  # "current user api does not support (a)synchronous calls" (gotcha 2)
ERRORS = ErrorShape(messages=("message",), codes=("code",))
"""`{request_id, code, message}` at the top of an error, a failed task's output or a failed result (§5)."""


class _Content(WireModel):
    image: str | None = None
    text: str | None = None


class _Message(WireModel):
    content: list[_Content] = []


class _Choice(WireModel):
    message: _Message = _Message()


class _Result(WireModel):
    url: str | None = None
    actual_prompt: str | None = None
    code: str | None = None
    message: str | None = None


class _Output(WireModel):
    choices: list[_Choice] = []
    results: list[_Result] = []
    task_id: str | None = None
    task_status: str | None = None
    code: str | None = None
    message: str | None = None


class _Reply(WireModel):
    output: _Output | None = None
    usage: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None


def _dialect(job: Batch) -> str:
    """The route's dialect, or the one its mode implies."""
    wire = job.route.wire
    return wire.dialect or ("prompt" if wire.mode == "async" else "messages")


def _parameters(job: Batch, dialect: str) -> dict[str, Any]:
    # `n` always: Wan defaults to 4 billed images (gotcha 10). Sizes are W*H with an asterisk (gotcha 1).
    parameters: dict[str, Any] = {"n": job.count}
    if job.size.width and job.size.height:
        parameters["size"] = f"{job.size.width}*{job.size.height}"
    for name, value in job.knobs.items():
        if name != "negative_prompt" or dialect == "messages":
            parameters[name] = value
    return parameters


def _input(job: Batch, dialect: str) -> dict[str, Any]:
    images = [image.url or image.data_url() for image in job.images]
    if dialect == "prompt":  # §2.2; input.images is wan2.5-i2i's list of references
        fields: dict[str, Any] = {"prompt": job.prompt}
        if "negative_prompt" in job.knobs:
            fields["negative_prompt"] = job.knobs["negative_prompt"]
        return fields | ({"images": images} if images else {})
    # §2.1: one user message; image items before the instruction, exactly one text item.
    content: list[dict[str, str]] = [{"image": image} for image in images]
    return {"messages": [{"role": "user", "content": [*content, {"text": job.prompt}]}]}


def _merge(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The user's `extra` into the body as-is; `input`/`parameters` objects add to ours, not replace them."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def build_request(job: Batch) -> WireRequest:
    """Map a job to the sync call or the task submit its route names."""
    wire, dialect = job.route.wire, _dialect(job)
    body = {
        "model": job.route.upstream,
        "input": _input(job, dialect),
        "parameters": _parameters(job, dialect),
    }
    is_task = wire.mode == "async"
    path = (job.tool == "edit" and wire.edit_path) or wire.path or (ASYNC_PATH if is_task else SYNC_PATH)
    return WireRequest(
        path, json=_merge(body, dict(job.extra)), headers=dict(ASYNC_HEADERS) if is_task else {}
    )


def _validate(body: Any, provider: str) -> _Reply:
    if isinstance(body, dict) and body.get("code") and not body.get("output"):
        raise classify_error(200, body, provider)  # §4.1: a failure carries top-level code/message
    try:
        return _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(f"{provider} answered in a shape that is not a DashScope reply") from None


def _choice_artifacts(output: _Output) -> tuple[tuple[Artifact, ...], str | None]:
    # Collect every content image across every choice (n>1 layout UNCONFIRMED, §4.1); text items are notes.
    items = [item for choice in output.choices for item in choice.message.content]
    artifacts = tuple(Artifact(url=item.image, mime=OUTPUT_MIME) for item in items if item.image)
    notes = [item.text for item in items if item.text]
    return artifacts, "\n".join(notes) or None


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """Read the image URLs and usage of a synchronous multimodal-generation reply."""
    reply = _validate(body, provider)
    artifacts, note = _choice_artifacts(reply.output or _Output())
    if not artifacts:
        raise NoImagesReturned(f"{provider} answered without any image", provider=provider)
    return AdapterReply(artifacts=artifacts, usage=reply.usage, note=note, request_id=reply.request_id)


def parse_submit(body: Any, provider: str) -> str:
    """The task id of an async submit reply."""
    output = _validate(body, provider).output
    if output is None or not output.task_id:
        raise UpstreamError(f"{provider} accepted the task but returned no task_id", provider=provider)
    return output.task_id


def task_status(body: Any) -> str | None:
    """A poll reply's task_status (None when unreadable)."""
    output = body.get("output") if isinstance(body, dict) else None
    status = output.get("task_status") if isinstance(output, dict) else None
    return status if isinstance(status, str) else None


def task_finished(body: Any) -> bool:
    """Whether polling can stop: a final status, or a reply so odd that parse_task must say why."""
    return task_status(body) not in IN_PROGRESS


def _failure(code: str | None, message: str | None, provider: str) -> ImagegateError:
    if not code:
        return UpstreamError(
            f"{provider} reported the task as failed", provider=provider, upstream_message=message
        )
    return classify_error(200, {"code": code, "message": message}, provider)


def parse_task(body: Any, provider: str) -> AdapterReply:
    """Read a finished task: SUCCEEDED → images (per-result failures kept), else the task's error."""
    reply = _validate(body, provider)
    output = reply.output or _Output()
    if output.task_status == "FAILED":  # §4.2: output.code/message on HTTP 200
        raise _failure(output.code, output.message, provider)
    if output.task_status != "SUCCEEDED":  # CANCELED; UNKNOWN = task id not found or expired (§4.2)
        status = output.task_status or "no status"
        raise UpstreamError(
            f"{provider} task ended as {status}", provider=provider, upstream_message=output.message
        )
    results = [r for r in output.results if r.url]
    failed = [r for r in output.results if not r.url]  # §4.2: per-image code/message, no url
    artifacts = tuple(Artifact(url=r.url, mime=OUTPUT_MIME, revised_prompt=r.actual_prompt) for r in results)
    chosen, note = _choice_artifacts(output)  # image-generation tasks answer like the sync call
    if not artifacts + chosen:
        if failed:
            raise _failure(failed[0].code, failed[0].message, provider)
        raise NoImagesReturned(f"{provider} finished the task without any image", provider=provider)
    failures = tuple(f"{r.code}: {r.message}" if r.code else r.message or "failed" for r in failed)
    images = artifacts + chosen
    return AdapterReply(images, usage=reply.usage, note=note, failures=failures, request_id=reply.request_id)


def _by_code(code: str, message: str | None, provider: str, status: int) -> ImagegateError | None:
    said: dict[str, Any] = {"provider": provider, "upstream_message": message}
    if code == "InvalidApiKey":
        return AuthFailed(f"{provider} rejected the API key (InvalidApiKey; keys are region-bound)", **said)
    if code == "Arrearage":
        return InsufficientBalance(f"{provider} says the account is overdue (Arrearage); top it up", **said)
    if code.startswith("Throttling"):
        return RateLimited(f"{provider} is rate limiting ({code}) and still was after retries", **said)
    if code == "DataInspectionFailed":
        return ContentRefused(
            f"{provider}'s content inspection refused the input or output; rephrase", **said
        )
    if code.startswith("AccessDenied") and MODE_MISMATCH in (message or ""):
        return UpstreamError(f"{provider} refused the call mode: the route's wire.mode is wrong", **said)
    if code.startswith("AccessDenied"):
        return AuthFailed(f"{provider} denied access ({code}): is this model enabled for the key?", **said)
    if code.startswith("InternalError"):
        return UpstreamError(
            f"{provider} had an internal error ({code})", status=status, retryable=True, **said
        )
    return None


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map `{request_id, code, message}` (HTTP error, failed task or failed result) to the error tree (§5)."""
    fault = ERRORS.read(body)
    if fault.code and (known := _by_code(fault.code, fault.message, provider, status)) is not None:
        return known
    if fault.code and status in (200, 400):  # InvalidParameter, InvalidURL, BadRequest.*: the code says more
        said: dict[str, Any] = {"provider": provider, "upstream_message": fault.message}
        return UpstreamError(f"{provider} refused the request ({fault.code})", status=status, **said)
    return classify(status, body, provider, shape=ERRORS)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One sync call, or one task submitted and polled to its end."""
    request = build_request(job)
    if not request.headers:  # a synchronous call: the reply holds the images
        read = reading(parse_reply, client, classify_error)
        return await client.post_json(request.path, request.json, classify_error, read=read)
    submitted = await client.post_json(request.path, request.json, classify_error, headers=request.headers)
    task_id = reading(parse_submit, client, classify_error)(submitted)
    # The SDK polls from 1 s, backing off to 5 s (§4.2); the core's deadline is the request timeout.
    final = await client.poll(lambda: client.get_json(f"/tasks/{task_id}", classify_error), task_finished)
    return reading(parse_task, client, classify_error)(final)
