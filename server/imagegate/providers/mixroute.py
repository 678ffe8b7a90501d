"""MixRoute gateway protocol (shared/seeds/001_ecfd8d4591bdfd3a.txt): one OpenAI-style
`POST /images/generations` whose body differs per model family. The route's `wire.dialect`
(gemini | seedream | gpt-image | qwen) picks the body, never the model name. Replies come
bare (`{created, data}`) or wrapped as `{code, msg, data: {data, created}}`; both are read.

Each body holds the fields the doc shows for its family, plus one: Qwen's `parameters.size`
(DashScope's W*H), sent only when a size was asked, as the doc's Qwen example sends none. Never
sent: `sequential_image_generation` (the doc gives that switch no count, so it cannot ask for n;
see catalog/data/providers/mixroute.toml)."""

from __future__ import annotations

import re
from collections.abc import Callable
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
    WireModel,
    WireRequest,
    WordTable,
    classify,
    reading,
    unwrap,
)
from .http import ProviderClient

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run"]

DEFAULT_PATH = "/images/generations"
DIALECT_REQUIRED = True  # every route names its family: the bodies differ too much to guess one
ENVELOPE = "code_msg_data"  # the doc's wrapped replies, whatever the profile says (seeds/001)
# The seed documents no error shapes. The gateway fronts OpenAI, Gemini, Ark and DashScope and
# relays their refusals, so their content-policy codes are recognised here (openai.md §7,
# ark-seedream.md §5, dashscope-qwen.md, gemini.md); balance codes and words are one-api's.
REFUSED = "{provider}'s content policy refused this request; rephrase the prompt"
BALANCE = "{provider} says the account balance is insufficient; top it up"
REFUSAL_CODES = (
    "content_policy_violation moderation_blocked datainspectionfailed inputtextsensitivecontentdetected"
    " inputimagesensitivecontentdetected outputimagesensitivecontentdetected prohibited_content"
    " image_safety safety"
)
BALANCE_CODES = "insufficient_quota insufficient_user_quota insufficient_balance"
CODES: CodeTable = {
    **{code: (ContentRefused, REFUSED) for code in REFUSAL_CODES.split()},
    **{code: (InsufficientBalance, BALANCE) for code in BALANCE_CODES.split()},
}
WORDS: WordTable = (
    (
        re.compile("insufficient balance|insufficient quota|余额不足|餘額不足|额度不足|額度不足", re.I),
        InsufficientBalance,
        BALANCE,
    ),
)
ERRORS = ErrorShape(
    messages=("error.message", "msg", "message", "error"), codes=("error.code", "error.type", "code")
)
"""OpenAI's `{error: {code, message}}` relayed, or the envelope's `{code, msg}` (code 200: success)."""


class _Item(WireModel):
    b64_json: Encoded | None = None
    url: str | None = None
    revised_prompt: str | None = None
    error: dict[str, Any] | None = None


class _Images(WireModel):
    data: list[_Item] = []
    usage: dict[str, Any] | None = None


def _gemini(job: Batch) -> dict[str, Any]:
    """Ratio `size` + `image_size` tier; references as `contents` parts after the text (doc: Gemini)."""
    knobs = dict(job.knobs)
    body: dict[str, Any] = {"n": job.count, "response_modalities": "image"}
    if job.size.ratio:
        body["size"] = job.size.ratio
    if job.size.tier:
        body["image_size"] = job.size.tier
    if fmt := knobs.pop("output_format", None):
        body["mime_type"] = FORMAT_MIME[str(fmt)]  # the catalog offers png and jpeg
    body.update(knobs)
    if not job.images:
        return {**body, "prompt": job.prompt}
    # The doc's image-to-image example carries the prompt only inside `contents`, text part first
    # (every family takes references as data URLs, doc examples; a URL-form input passes as-is).
    parts = [{"text": job.prompt}, *({"image": i.ref()} for i in job.images)]
    return {**body, "contents": [{"role": "user", "parts": parts}]}


def _seedream_size(job: Batch) -> str | None:
    # "WxH" pixels, or a bare tier the route lists (the doc: "(2K/4K)"); SeedEdit follows its input
    # ("adaptive", Ark's form).
    if job.size.auto:
        return "adaptive"
    return job.size.pixels or job.size.tier


def _seedream(job: Batch) -> dict[str, Any]:
    """`size` WxH, seed/watermark/guidance_scale as-is; references as `contents` parts before the text.
    One image per call: no `n` and no group mode (whose count the model, not the caller, decides)."""
    body: dict[str, Any] = {"prompt": job.prompt, **job.knobs}
    if size := _seedream_size(job):
        body["size"] = size
    if job.images:
        parts = [*({"image": i.ref()} for i in job.images), {"text": job.prompt}]
        body["contents"] = [{"role": "user", "parts": parts}]
    return body


def _gpt_image(job: Batch) -> dict[str, Any]:
    """OpenAI's JSON fields, with the reference as a data-URL `image` string (doc: GPT Image)."""
    body: dict[str, Any] = {"prompt": job.prompt, "n": job.count, **job.knobs}
    if job.size.pixels:
        body["size"] = job.size.pixels
    if job.images:
        refs = [i.ref() for i in job.images]
        # The doc's example sends one data-URL string; its table lists 多圖融合 (multi-image fusion)
        # without a form, so several go as a list, as OpenAI's JSON edits take them (UNCONFIRMED).
        body["image"] = refs[0] if len(refs) == 1 else refs
    return body


def _qwen(job: Batch) -> dict[str, Any]:
    """DashScope's `input.messages` / `parameters` body (doc: 通義千問), images before the text."""
    content = [*({"image": i.ref()} for i in job.images), {"text": job.prompt}]
    parameters: dict[str, Any] = dict(job.knobs)
    if "seed" in parameters:
        parameters["seed"] = str(parameters["seed"])  # the doc's example sends the seed as a string
    if job.size.pixels:  # only when asked: the route has no default, as the doc's example sends none
        parameters["size"] = job.size.pixels.replace("x", "*")  # DashScope's W*H (UNCONFIRMED here)
    body: dict[str, Any] = {"input": {"messages": [{"role": "user", "content": content}]}}
    return {**body, "parameters": parameters} if parameters else body


DIALECTS: dict[str, Callable[[Batch], dict[str, Any]]] = {
    "gemini": _gemini,
    "seedream": _seedream,
    "gpt-image": _gpt_image,
    "qwen": _qwen,
}


def build_request(job: Batch) -> WireRequest:
    """The path and JSON body of one call, in the family's dialect (`job.route.wire.dialect`,
    checked against DIALECTS when the catalog loads)."""
    wire = job.route.wire
    body = {"model": job.route.upstream, **DIALECTS[wire.dialect or ""](job)}
    if wire.response_format:  # route data: sent only where the doc's examples send it (Gemini)
        body["response_format"] = wire.response_format
    body.update(job.extra)
    return WireRequest(wire.path or DEFAULT_PATH, json=body)


def _artifact(item: _Item) -> Artifact:
    revised = item.revised_prompt or None  # the wrapped example sends "" for "none"
    if item.b64_json:
        return Artifact(encoded=item.b64_json, revised_prompt=revised)
    return Artifact(url=item.url, revised_prompt=revised)


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """Read images (b64_json or url), revised prompts and usage from a bare or wrapped reply."""
    if isinstance(body, dict) and "error" in body and not body.get("data"):
        raise classify_error(200, body, provider)  # an OpenAI-shaped error inside a 200
    try:
        reply = _Images.model_validate(unwrap(body, ENVELOPE, provider, classify_error))
    except ValidationError:
        raise UpstreamError(f"{provider} answered in a shape that is not an images reply") from None
    artifacts = tuple(_artifact(item) for item in reply.data if item.b64_json or item.url)
    # Items that carry an error instead of an image (Ark relays per-image refusals this way).
    refused = [item.error for item in reply.data if item.error and not (item.b64_json or item.url)]
    if not artifacts:
        if refused:
            raise classify_error(200, {"error": refused[0]}, provider)
        raise NoImagesReturned(f"{provider} answered without any image")
    failures = tuple(str(error.get("message") or error.get("code")) for error in refused)
    return AdapterReply(artifacts=artifacts, usage=reply.usage, failures=failures)


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (HTTP status, or an envelope's `code`) to the error tree, keeping its message."""
    return classify(status, body, provider, shape=ERRORS, codes=CODES, words=WORDS, status_in_code=True)


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations call in the route's dialect."""
    request = build_request(job)
    assert request.json is not None
    return await client.post_json(
        request.path, request.json, classify_error, read=reading(parse_reply, client, classify_error)
    )
