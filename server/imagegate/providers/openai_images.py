"""OpenAI Images API protocol (shared/providers/openai.md): generations as JSON, edits as
multipart. Serves `openai`, the OpenAI-compatible gateways (`zhaotou`, `modelmax`) and any
OpenAI-compatible provider from the config file; their differences are route data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ContentRefused, ImagegateError, InsufficientBalance, NoImagesReturned, UpstreamError
from .base import AdapterReply, Artifact, Batch
from .http import HttpReply, ProviderClient, default_error

__all__ = ["build_request", "classify_error", "parse_reply", "run"]

CONTENT_POLICY_CODES = {"moderation_blocked", "content_policy_violation"}
BALANCE_CODES = {"insufficient_quota", "billing_hard_limit_reached"}
FORMAT_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[_Item] = []
    output_format: str | None = None
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request: JSON for generations, form fields and files for edits."""

    path: str
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None


def _size(job: Batch) -> str | None:
    if job.size.auto:
        return "auto"
    return job.size.pixels


def _common(job: Batch) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": job.route.upstream, "prompt": job.prompt, "n": job.count}
    if size := _size(job):
        fields["size"] = size
    fields.update(job.knobs)
    if job.route.wire.response_format:  # GPT image models answer 400 to it (openai.md §7): route data says who takes it
        fields["response_format"] = job.route.wire.response_format
    fields.update(job.extra)
    return fields


def _file(name: str, image: Any) -> tuple[str, tuple[str, bytes, str]]:
    extension = image.mime.split("/")[-1].replace("jpeg", "jpg")
    return name, (f"{name.strip('[]')}.{extension}", image.data, image.mime)


def build_request(job: Batch) -> WireRequest:
    """Map a job to the generations (JSON) or edits (multipart) request."""
    fields = _common(job)
    if job.tool == "generate":
        return WireRequest(path=job.route.wire.path or "/images/generations", json=fields)
    # One file goes as `image`, several as `image[]`, as the Vercel AI SDK sends them (openai.md §3).
    name = "image" if len(job.images) == 1 else "image[]"
    files = [_file(name, image) for image in job.images]
    if job.mask is not None:
        files.append(_file("mask", job.mask))
    form = {k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
    return WireRequest(path=job.route.wire.edit_path or "/images/edits", form=form, files=files)


def parse_reply(body: Any) -> AdapterReply:
    """Read images (b64_json or url), revised prompts and usage from a reply body."""
    if isinstance(body, dict) and "error" in body and not body.get("data"):
        raise classify_error(200, body, "the upstream")  # gateways may put an error in a 200 body
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError("answered in a shape that is not an Images API reply") from None
    mime = FORMAT_MIME.get(reply.output_format or "")
    artifacts = tuple(
        Artifact(encoded=item.b64_json or None, url=item.url, mime=mime, revised_prompt=item.revised_prompt)
        for item in reply.data
        if item.b64_json or item.url
    )
    if not artifacts:
        raise NoImagesReturned("answered without any image")
    return AdapterReply(artifacts=artifacts, usage=reply.usage)


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (`{"error": {message, type, code}}`) to the error tree."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code") or error.get("type") or "") if isinstance(error, dict) else ""
    message = error.get("message") if isinstance(error, dict) else None
    if code in CONTENT_POLICY_CODES:
        return ContentRefused(f"{provider}'s content policy refused this request; rephrase the prompt", upstream_message=message)
    if code in BALANCE_CODES:
        return InsufficientBalance(f"{provider} says the account has no quota or credit left", upstream_message=message)
    if status == 200:
        return UpstreamError(f"{provider} answered with an error", upstream_message=message)
    return default_error(status, body, provider)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations or edits call."""
    request = build_request(job)
    if request.json is not None:
        return await client.post_json(request.path, request.json, classify_error, read=parse_reply)

    async def read(reply: HttpReply) -> AdapterReply:
        return parse_reply(await reply.parsed())

    return await client.call("POST", request.path, classify_error, read, data=request.form, files=request.files)
