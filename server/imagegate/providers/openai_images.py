"""OpenAI Images API protocol (shared/providers/openai.md): generations as JSON, edits and
variations as multipart. Serves `openai`, the OpenAI-compatible gateways (`zhaotou`, seeds/002;
`modelmax`, seeds/003) and any OpenAI-compatible provider from the config file; their differences
are route and profile data (a profile's `envelope = "code_msg_data"` unwraps `{code, msg, data}`
replies, as MixRoute sends).

Variations (openai.md §4, seeds/002 "生成变体"): an edit without a prompt, which validation lets
through only on routes with the `variations` capability, goes to /images/variations with its one
image and no prompt. Errors: a 413 tells the agent to send a smaller image (seeds/002 "图像文件过大,
请压缩后重试"); a status in the route's `wire.retry_statuses` is retried (seeds/002: 500 "建议重试").
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import Any

from pydantic import ValidationError

from ..errors import ContentRefused, ImagegateError, InsufficientBalance, NoImagesReturned, UpstreamError
from .base import (
    FORMAT_MIME,
    AdapterReply,
    Artifact,
    Batch,
    CodeTable,
    Encoded,
    ErrorShape,
    InputImage,
    WireModel,
    WireRequest,
    classify,
    reading,
)
from .http import HttpReply, ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run"]

DIALECTS = ("dall-e", "gpt-image")
"""Route data naming the model family (which fields it takes is knob data); the body is the same."""
GENERATIONS_PATH = "/images/generations"
EDITS_PATH = "/images/edits"
VARIATIONS_PATH = "/images/variations"
TOO_LARGE = {
    True: "{provider} refused the request as too large (HTTP 413); send a smaller image: compress it or "
    "lower its pixel size",
    False: "{provider} refused the request as too large (HTTP 413); shorten the prompt",
}
"""What a 413 means for a request with input images, and without (seeds/002: 图像文件过大,请压缩后重试)."""
REFUSED = "{provider}'s content policy refused this request; rephrase the prompt"
NO_QUOTA = "{provider} says the account has no quota or credit left"
CODES: CodeTable = {
    "moderation_blocked": (ContentRefused, REFUSED),
    "content_policy_violation": (ContentRefused, REFUSED),
    "insufficient_quota": (InsufficientBalance, NO_QUOTA),
    "billing_hard_limit_reached": (InsufficientBalance, NO_QUOTA),
}
"""`error.code` (or `error.type`) values of openai.md §7."""
ERRORS = ErrorShape(messages=("error.message", "error", "msg", "message"))
"""`{"error": {message, type, code}}`; an envelope's `{code, msg}` for wrapped gateways."""


class _Item(WireModel):
    b64_json: Encoded | None = None
    url: str | None = None
    revised_prompt: str | None = None


class _Reply(WireModel):
    data: list[_Item] = []
    output_format: str | None = None
    usage: dict[str, Any] | None = None


def _fields(job: Batch) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": job.route.upstream, "prompt": job.prompt, "n": job.count}
    if size := "auto" if job.size.auto else job.size.pixels:
        fields["size"] = size
    fields.update(job.knobs)
    if (
        job.route.wire.response_format
    ):  # GPT image models answer 400 to it (openai.md §7): route data says who takes it
        fields["response_format"] = job.route.wire.response_format
    fields.update(job.extra)
    return fields


def _file(name: str, image: InputImage) -> tuple[str, tuple[str, bytes, str]]:
    assert image.data is not None, "edits take files: the route's input form is `file`"
    extension = image.mime.split("/")[-1].replace("jpeg", "jpg")
    return name, (f"{name.strip('[]')}.{extension}", image.data, image.mime)


def _form(fields: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}


def build_request(job: Batch) -> WireRequest:
    """Map a job to the generations (JSON), edits or variations (multipart) request."""
    fields = _fields(job)
    if job.tool == "generate":
        return WireRequest(job.route.wire.path or GENERATIONS_PATH, json=fields)
    if not job.prompt:  # validation lets an empty prompt through only where the route has variations
        del fields["prompt"]
        return WireRequest(VARIATIONS_PATH, form=_form(fields), files=[_file("image", job.images[0])])
    # One file goes as `image`, several as `image[]`, as the Vercel AI SDK sends them (openai.md §3).
    name = "image" if len(job.images) == 1 else "image[]"
    files = [_file(name, image) for image in job.images]
    if job.mask is not None:
        files.append(_file("mask", job.mask))
    return WireRequest(job.route.wire.edit_path or EDITS_PATH, form=_form(fields), files=files)


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """Read images (b64_json or url), revised prompts and usage from a reply body."""
    if isinstance(body, dict) and "error" in body and not body.get("data"):
        raise classify_error(200, body, provider)  # gateways may put an error in a 200 body
    try:
        reply = _Reply.model_validate(body)
    except ValidationError:
        raise UpstreamError(
            "answered in a shape that is not an Images API reply", provider=provider
        ) from None
    mime = FORMAT_MIME.get(reply.output_format or "")
    artifacts = tuple(
        Artifact(encoded=item.b64_json or None, url=item.url, mime=mime, revised_prompt=item.revised_prompt)
        for item in reply.data
        if item.b64_json or item.url
    )
    if not artifacts:
        raise NoImagesReturned("answered without any image", provider=provider)
    return AdapterReply(artifacts=artifacts, usage=reply.usage)


def classify_error(
    status: int, body: Any, provider: str, *, retry: Collection[int] = (), images: bool = True
) -> ImagegateError:
    """Map an error reply (`{"error": {message, type, code}}`, or an envelope's `{code, msg}`) to the tree.

    `retry`: statuses the route's docs say to retry (its `wire.retry_statuses`); `images`: whether
    the request carried input images (what a 413 asks the agent to shrink)."""
    error = classify(status, body, provider, shape=ERRORS, codes=CODES, status_in_code=True)
    if status == 413 and type(error) is UpstreamError:
        error.message = TOO_LARGE[images].format(provider=provider)
    if status in retry and isinstance(error, UpstreamError):
        error.retryable = True
    return error


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations, edits or variations call."""
    request = build_request(job)
    classifier = partial(classify_error, retry=job.route.wire.retry_statuses, images=bool(job.images))
    read = reading(parse_reply, client, classifier)
    if request.json is not None:
        return await client.post_json(request.path, request.json, classifier, read=read)

    async def read_form(reply: HttpReply) -> AdapterReply:
        return read(await reply.parsed())

    return await client.call(
        "POST", request.path, classifier, read_form, data=request.form, files=request.files
    )
