"""Replicate predictions protocol: create a prediction of an official model (`POST /models/{owner}/
{name}/predictions`) or of a pinned version (`POST /predictions` with `version`, for an upstream
`owner/name:version`), held open with `Prefer: wait` (sync mode, at most 60 s) and bounded by
`Cancel-After`; a prediction still `starting`/`processing` is polled at its `urls.get` through the HTTP
layer's `poll`, and cancelled at `urls.cancel` when the wait ends without it (the agent cancelled, the
deadline passed). While it is polled, its status and the newest line of its `logs` are relayed as progress
(`Batch.report`), at most once a poll and never the same text twice in a row. Outputs are file URLs (one,
or a list), downloaded by the core without the key.

Owns the wire mapping only. Input field names are per model, so a route says where each thing goes in
`wire.fields` (role or knob -> the model's field): `images` (`name[]` takes a list, else one image),
`mask`, `count` (images per prediction), `ratio`, `tier`, `width`/`height`, `pixels` (one "WxH" string:
Recraft's `size`, Ideogram's `resolution`), `custom` (`field=value` sent with pixels, e.g.
`aspect_ratio=custom`), `jpeg` (how the model spells it; default `jpg`), and any knob.

Sources: replicate.com/docs/topics/predictions/create-a-prediction (sync mode, `Prefer: wait`),
replicate.com/docs/topics/predictions/lifecycle (statuses),
replicate.com/changelog/2025-10-16-prediction-deadlines (`Cancel-After: 1m`; `aborted` before start,
`canceled` while running); replicate/replicate-python @ 0110c2c `replicate/prediction.py` (Prediction
fields, `Prefer: wait=N`, the cancel path), `replicate/exceptions.py` (errors are RFC 7807 problem
details: `title`, `detail`, `status`), `tests/cassettes/*.yaml` (recorded replies, e.g. the 401 body);
vercel/ai `packages/replicate` (output is a URL or a list; cancel is built from the base URL so the key
stays on its origin); shared/providers/later.md. UNCONFIRMED: the 422 body's `invalid_fields` list, and
`Cancel-After` forms other than whole minutes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import ValidationError

from ..errors import ContentRefused, ImagegateError, NoImagesReturned, UpstreamError, UpstreamTimeout
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
    refusal_said,
    with_warnings,
)
from .http import ProviderClient

__all__ = [
    "DIALECTS",
    "Prediction",
    "build_request",
    "cancel_after",
    "classify_error",
    "is_finished",
    "parse_prediction",
    "parse_result",
    "progress_text",
    "run",
]

DIALECTS: tuple[str, ...] = ()
IN_PROGRESS = frozenset(
    {"starting", "processing"}
)  # lifecycle: the rest (succeeded, failed, canceled, aborted) end it
MAX_WAIT = 60  # sync mode holds the request at most 60 s (create-a-prediction)
POLL_INTERVAL = 1.0
POLL_MAX_INTERVAL = 5.0
CANCEL_GRACE = 10.0
"""Seconds a best-effort cancel may take after the wait ended without the prediction."""
DEFAULT_JPEG = "jpg"  # FLUX, Nano Banana, Seedream and Ideogram schemas spell it so
ERRORS = ErrorShape(messages=("detail", "title", "error"), codes=())
"""RFC 7807 problem details (`replicate/exceptions.py`: type, title, status, detail, instance)."""


Report = Callable[[str], Awaitable[None]]


class _Urls(WireModel):
    get: str | None = None
    cancel: str | None = None


class Prediction(WireModel):
    """The fields of a prediction object read here (replicate/prediction.py declares the rest)."""

    id: str
    status: str
    output: Any = None
    error: str | None = None
    urls: _Urls = _Urls()
    metrics: dict[str, Any] | None = None


def cancel_after(timeout: float) -> str:
    """The `Cancel-After` deadline for a request timeout: whole minutes as the changelog writes ("5m")."""
    seconds = max(1, int(timeout))
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _prefer(timeout: float) -> str:
    wait = min(MAX_WAIT, max(1, int(timeout * 0.8)))  # leave the HTTP timeout room to read the reply
    return "wait" if wait == MAX_WAIT else f"wait={wait}"


def _size_fields(job: Batch, fields: dict[str, str]) -> dict[str, Any]:
    """Pixels where the model takes them (with its `custom` marker), else the ratio and the tier."""
    size, out = job.size, dict[str, Any]()
    if size.width and size.height and "pixels" in fields:
        return {fields["pixels"]: f"{size.width}x{size.height}"}
    if size.width and size.height and "width" in fields and "height" in fields:
        out = {fields["width"]: size.width, fields["height"]: size.height}
        if "=" in (custom := fields.get("custom", "")):
            name, _, value = custom.partition("=")
            out[name] = value
        return out
    if size.ratio and "ratio" in fields:
        out[fields["ratio"]] = size.ratio
    if size.tier and "tier" in fields:
        out[fields["tier"]] = size.tier
    return out


def _image_fields(job: Batch, fields: dict[str, str]) -> dict[str, Any]:
    """Inputs as URLs or data URLs (`ref`), under the model's field: a list for `name[]`, else the first."""
    out: dict[str, Any] = {}
    if job.images and (name := fields.get("images")):
        refs = [image.ref() for image in job.images]
        out = {name[:-2]: refs} if name.endswith("[]") else {name: refs[0]}
    if job.mask is not None and (mask := fields.get("mask")):
        out[mask] = job.mask.ref()
    return out


def _knob_fields(job: Batch, fields: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in job.knobs.items():
        if name == "output_format" and value == "jpeg":
            value = fields.get("jpeg", DEFAULT_JPEG)
        out[fields.get(name, name)] = value
    return out


def build_request(job: Batch, timeout: float) -> WireRequest:
    """The create-prediction request: path, `{"input": …}` (and `version` for a pinned one), headers."""
    fields = dict(job.route.wire.fields)
    data: dict[str, Any] = {"prompt": job.prompt, **_size_fields(job, fields), **_image_fields(job, fields)}
    if "count" in fields:
        data[fields["count"]] = job.count
    data.update(_knob_fields(job, fields))
    data.update(job.extra)  # `extra` is the model's own input fields, passed as they are
    owner_name, _, version = job.route.upstream.partition(":")
    headers = {"Prefer": _prefer(timeout), "Cancel-After": cancel_after(timeout)}
    if version:
        return WireRequest("/predictions", json={"version": version, "input": data}, headers=headers)
    path = job.route.wire.path or f"/models/{owner_name}/predictions"
    return WireRequest(path, json={"input": data}, headers=headers)


def parse_prediction(body: Any, provider: str) -> Prediction:
    """A prediction object (create, poll or cancel reply), or the error its shape says."""
    try:
        return Prediction.model_validate(body)
    except ValidationError:
        raise classify_error(200, body, provider) from None


def is_finished(body: Any) -> bool:
    """Whether a poll reply ends the wait: any status but starting/processing (or no readable status)."""
    status = body.get("status") if isinstance(body, dict) else None
    return status not in IN_PROGRESS


def _urls(output: Any) -> list[str]:
    """`output` as the file URLs it holds: one URL, or a list of them (Vercel accepts both)."""
    items = output if isinstance(output, list) else [output]
    return [
        item for item in items if isinstance(item, str) and item.startswith(("http://", "https://", "data:"))
    ]


def _mime(url: str) -> str | None:
    if url.startswith("data:"):
        return url[5:].split(";", 1)[0] or None
    return FORMAT_MIME.get(url.split("?", 1)[0].rsplit(".", 1)[-1].lower())


def _ended(prediction: Prediction, provider: str) -> ImagegateError:
    """The error a prediction that did not succeed ended with."""
    said: dict[str, Any] = {"provider": provider, "upstream_message": prediction.error}
    if prediction.status == "failed":
        if refusal_said(prediction.error, 400):  # e.g. "NSFW content detected" from a model's safety checker
            return ContentRefused(
                f"{provider}'s model refused this request as unsafe; rephrase the prompt", **said
            )
        return UpstreamError(f"{provider}'s prediction {prediction.id} failed", **said)
    if prediction.status == "aborted":  # the Cancel-After deadline passed before it started
        return UpstreamTimeout(
            f"{provider} did not start prediction {prediction.id} before its deadline", **said
        )
    if prediction.status == "canceled":
        return UpstreamError(
            f"{provider}'s prediction {prediction.id} was canceled (deadline or by hand)", **said
        )
    return UpstreamError(f"{provider} ended prediction {prediction.id} as {prediction.status!r}", **said)


def parse_result(prediction: Prediction, provider: str) -> AdapterReply:
    """A finished prediction: its output files, `metrics` as usage; or the error it ended with."""
    if prediction.status != "succeeded":
        raise _ended(prediction, provider)
    urls = _urls(prediction.output)
    if not urls:
        raise NoImagesReturned(f"{provider} finished prediction {prediction.id} without an image URL")
    artifacts = tuple(Artifact(url=url, mime=_mime(url)) for url in urls)
    return AdapterReply(artifacts=artifacts, usage=prediction.metrics or None, request_id=prediction.id)


def _invalid_fields(body: dict[str, Any]) -> str | None:
    """A 422's per-field complaints (`invalid_fields: [{field, description}]`; shape UNCONFIRMED)."""
    items = body.get("invalid_fields")
    if not isinstance(items, list):
        return None
    parts = [
        f"{item.get('field', '?')}: {item.get('description', item.get('type', 'invalid'))}"
        for item in items
        if isinstance(item, dict)
    ]
    return "; ".join(parts) or None


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (problem details, or an unusable 200 body) to the error tree."""
    fault = ERRORS.read(body)
    if status == 200:
        return UpstreamError(
            f"{provider} answered in a shape that is not a prediction", upstream_message=fault.message
        )
    if status in (400, 422):
        fields = _invalid_fields(body) if isinstance(body, dict) else None
        message = "; ".join(m for m in (fault.message, fields) if m) or None
        if refusal_said(message, status):
            return ContentRefused(
                f"{provider}'s content policy refused this request", upstream_message=message
            )
        return UpstreamError(
            f"{provider} rejected the model input (HTTP {status})", status=status, upstream_message=message
        )
    return classify(status, body, provider, shape=ERRORS)


def _own(client: ProviderClient, url: str | None, fallback: str) -> str:
    """A URL the reply named, if the key may go there; else the documented path under the base URL
    (a proxy's base URL would otherwise send the poll to api.replicate.com without the key)."""
    return url if url and client.profile.trusts(client.url(url)) else fallback


async def _cancel(prediction: Prediction, client: ProviderClient) -> None:
    """Best effort, shielded from the cancellation that caused it, never retried past a short grace."""
    url = _own(client, prediction.urls.cancel, f"/predictions/{prediction.id}/cancel")
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_GRACE):
        try:
            await client.request("POST", url, classify_error)
        except ImagegateError:
            pass  # already finished, or unreachable: the deadline (Cancel-After) still ends it


def progress_text(body: Any) -> str | None:
    """What a running prediction says: its status and the newest line of its logs (a progress bar)."""
    status = body.get("status") if isinstance(body, dict) else None
    if status not in IN_PROGRESS:
        return None
    logs = body.get("logs")
    lines = [line.strip() for line in logs.replace("\r", "\n").splitlines()] if isinstance(logs, str) else []
    last = next((line for line in reversed(lines) if line), None)
    return f"{status}: {last[:120]}" if last else str(status)


async def _wait(prediction: Prediction, client: ProviderClient, report: Report | None = None) -> Prediction:
    """Poll `urls.get` until the prediction ends; cancel it if the wait ends first, for whatever reason."""
    url = _own(client, prediction.urls.get, f"/predictions/{prediction.id}")
    said: list[str] = []

    async def fetch() -> Any:
        body = await client.get_json(url, classify_error)
        text = progress_text(body)
        if text and text not in said[-1:] and report:  # at most one report a poll, none repeated
            said.append(text)
            await report(f"{client.profile.id}: {text}")
        return body

    try:
        body = await client.poll(
            fetch,
            is_finished,
            interval=POLL_INTERVAL,
            max_interval=POLL_MAX_INTERVAL,
        )
    except BaseException:
        await _cancel(prediction, client)
        raise
    return reading(parse_prediction, client, classify_error)(body)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """Create one prediction (held open up to 60 s), poll it if it is still running, read its output."""
    request = build_request(job, client.timeout)
    read = reading(parse_prediction, client, classify_error)
    prediction = await client.post_json(
        request.path, request.json, classify_error, request.headers, read=read
    )
    if prediction.status in IN_PROGRESS:
        prediction = await _wait(prediction, client, job.report)
    return with_warnings(parse_result(prediction, client.profile.id), request)
