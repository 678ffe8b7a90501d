"""MixRoute gateway protocol (shared/seeds/001_ecfd8d4591bdfd3a.txt): one OpenAI-style
`POST /images/generations` whose body differs per model family. The route's `wire.dialect`
(gemini | seedream | gpt-image | qwen) picks the body, never the model name. Replies come
bare (`{created, data}`) or wrapped as `{code, msg, data: {data, created}}`; both are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import (
    ConfigError,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    UpstreamError,
)
from .base import AdapterReply, Artifact, Batch, InputImage
from .http import ProviderClient, default_error

__all__ = ["DIALECTS", "build_request", "classify_error", "parse_reply", "run"]

DEFAULT_PATH = "/images/generations"
GEMINI_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
SUCCESS_CODE = "200"
# The seed documents no error shapes. The gateway fronts OpenAI, Gemini, Ark and DashScope and
# relays their refusals, so their content-policy codes and wording are recognised here
# (openai.md §7, ark-seedream.md §5, dashscope-qwen.md, gemini.md); balance codes are one-api's.
CONTENT_POLICY_CODES = {
    "content_policy_violation",
    "moderation_blocked",
    "datainspectionfailed",
    "inputtextsensitivecontentdetected",
    "inputimagesensitivecontentdetected",
    "outputimagesensitivecontentdetected",
    "prohibited_content",
    "image_safety",
    "safety",
}
CONTENT_POLICY_WORDS = (
    "content policy", "safety system", "moderation", "sensitive", "inappropriate", "敏感", "违规", "違規",
)  # fmt: skip
BALANCE_CODES = {"insufficient_quota", "insufficient_user_quota", "insufficient_balance"}
BALANCE_WORDS = ("insufficient balance", "insufficient quota", "余额不足", "餘額不足", "额度不足", "額度不足")


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None
    error: dict[str, Any] | None = None


class _Images(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: list[_Item] = []
    usage: dict[str, Any] | None = None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: int | str
    msg: str | None = None
    data: _Images | None = None


def _ref(image: InputImage) -> str:
    """Every family takes references as data URLs (doc examples); a URL-form input passes as-is."""
    return image.url or image.data_url()


def _gemini(job: Batch) -> dict[str, Any]:
    """Ratio `size` + `image_size` tier; references as `contents` parts after the text (doc: Gemini)."""
    knobs = dict(job.knobs)
    body: dict[str, Any] = {"n": job.count, "response_modalities": "image"}
    if job.size.ratio:
        body["size"] = job.size.ratio
    if job.size.tier:
        body["image_size"] = job.size.tier
    if fmt := knobs.pop("output_format", None):
        body["mime_type"] = GEMINI_MIME[str(fmt)]
    body.update(knobs)
    if not job.images:
        return {**body, "prompt": job.prompt}
    # The doc's image-to-image example carries the prompt only inside `contents`, text part first.
    parts = [{"text": job.prompt}, *({"image": _ref(i)} for i in job.images)]
    return {**body, "contents": [{"role": "user", "parts": parts}]}


def _seedream_size(job: Batch) -> str | None:
    # "WxH" pixels, or a bare tier (the doc: "2K/4K"); SeedEdit follows its input ("adaptive", Ark).
    if job.size.auto:
        return "adaptive"
    return job.size.pixels or job.size.tier


def _seedream(job: Batch) -> dict[str, Any]:
    """`size` WxH, seed/watermark/guidance_scale as-is; references as `contents` parts before the text."""
    body: dict[str, Any] = {"prompt": job.prompt, **job.knobs}
    if size := _seedream_size(job):
        body["size"] = size
    if job.route.wire.sequential and job.count > 1:
        body["sequential_image_generation"] = "auto"  # group mode: 1-4 images per request (doc FAQ)
    if job.images:
        parts = [*({"image": _ref(i)} for i in job.images), {"text": job.prompt}]
        body["contents"] = [{"role": "user", "parts": parts}]
    return body


def _gpt_image(job: Batch) -> dict[str, Any]:
    """OpenAI's JSON fields, with the reference as a data-URL `image` string (doc: GPT Image)."""
    body: dict[str, Any] = {"prompt": job.prompt, "n": job.count, **job.knobs}
    if job.size.pixels:
        body["size"] = job.size.pixels
    if job.images:
        refs = [_ref(i) for i in job.images]
        body["image"] = refs[0] if len(refs) == 1 else refs  # a list for several: UNCONFIRMED
    return body


def _qwen(job: Batch) -> dict[str, Any]:
    """DashScope's `input.messages` / `parameters` body (doc: 通義千問), images before the text."""
    content = [*({"image": _ref(i)} for i in job.images), {"text": job.prompt}]
    parameters: dict[str, Any] = dict(job.knobs)
    if "seed" in parameters:
        parameters["seed"] = str(parameters["seed"])  # the doc's example sends the seed as a string
    if job.size.pixels:
        parameters["size"] = job.size.pixels.replace("x", "*")  # DashScope's W*H; undocumented here
    body: dict[str, Any] = {"input": {"messages": [{"role": "user", "content": content}]}}
    return {**body, "parameters": parameters} if parameters else body


DIALECTS: dict[str, Callable[[Batch], dict[str, Any]]] = {
    "gemini": _gemini,
    "seedream": _seedream,
    "gpt-image": _gpt_image,
    "qwen": _qwen,
}


def build_request(job: Batch) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of one call, in the family's dialect (`job.route.wire.dialect`)."""
    wire = job.route.wire
    family = DIALECTS.get(wire.dialect or "")
    if family is None:
        known = ", ".join(DIALECTS)
        raise ConfigError(f"{job.route.where} needs wire.dialect, one of {known} (it is {wire.dialect!r})")
    body = {"model": job.route.upstream, **family(job)}
    if wire.response_format:  # route data: sent only where the doc's examples send it (Gemini)
        body["response_format"] = wire.response_format
    body.update(job.extra)
    return wire.path or DEFAULT_PATH, body


def _unwrap(body: Any, provider: str) -> Any:
    """The inner `{data, created}` of a `{code, msg, data}` envelope; a code other than 200 is an error."""
    if not (isinstance(body, dict) and "code" in body and not isinstance(body.get("data"), list)):
        return body
    try:
        envelope = _Envelope.model_validate(body)
    except ValidationError:
        raise UpstreamError(f"{provider} answered an envelope that cannot be read") from None
    if str(envelope.code) != SUCCESS_CODE:
        raise classify_error(200, body, provider)
    if envelope.data is None:
        raise NoImagesReturned(f"{provider} answered without any image", upstream_message=envelope.msg)
    return envelope.data.model_dump()


def _artifact(item: _Item) -> Artifact:
    revised = item.revised_prompt or None  # the wrapped example sends "" for "none"
    if item.b64_json:
        return Artifact(encoded=item.b64_json, revised_prompt=revised)
    return Artifact(url=item.url, revised_prompt=revised)


def parse_reply(body: Any, provider: str = "mixroute") -> AdapterReply:
    """Read images (b64_json or url), revised prompts and usage from a bare or wrapped reply."""
    if isinstance(body, dict) and "error" in body and not body.get("data"):
        raise classify_error(200, body, provider)  # an OpenAI-shaped error inside a 200
    try:
        reply = _Images.model_validate(_unwrap(body, provider))
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


def _code_and_message(body: Any) -> tuple[str, str | None, int | None]:
    """(error code, message, envelope status) from `{error: {code, message}}` or `{code, msg}`."""
    if not isinstance(body, dict):
        return "", body if isinstance(body, str) and body.strip() else None, None
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("code") or error.get("type") or ""), error.get("message"), None
    code, message = body.get("code"), body.get("msg") or body.get("message")
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    return str(code or ""), message if isinstance(message, str) else None, status


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """Map an error reply (HTTP status, or an envelope's `code`) to the error tree, keeping its message."""
    code, message, envelope_status = _code_and_message(body)
    code, text = code.lower(), (message or "").lower()
    effective = envelope_status if status == 200 and envelope_status else status
    # Wording counts below 500 only: "moderation service unavailable" is an outage, not a refusal.
    worded = effective < 500 and any(word in text for word in CONTENT_POLICY_WORDS)
    if code in CONTENT_POLICY_CODES or worded:
        refused = f"{provider}'s content policy refused this request; rephrase the prompt"
        return ContentRefused(refused, upstream_message=message)
    if effective == 402 or code in BALANCE_CODES or any(word in text for word in BALANCE_WORDS):
        short = f"{provider} says the account balance is insufficient; top it up"
        return InsufficientBalance(short, upstream_message=message)
    if effective == 200:
        return UpstreamError(f"{provider} answered with an error", upstream_message=message)
    error = default_error(effective, body, provider)
    error.upstream_message = message or error.upstream_message
    return error


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One generations call in the route's dialect."""
    path, body = build_request(job)
    return await client.post_json(path, body, classify_error, read=lambda reply: parse_reply(reply, client.profile.id))
