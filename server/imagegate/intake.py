"""What an upstream's reply may bring into a result, bounded once: the bytes a reply and one image
may take (the HTTP layer's caps come from here), no more images than were asked, and every text
taken from a body (revised prompts, usage, notes, warnings, errors) scrubbed of the key, clipped,
and never a payload token. The generator applies it to every reply before anything is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .catalog import Route
from .errors import ImagegateError, clip
from .providers.base import AdapterReply
from .providers.http import ProviderClient

__all__ = ["bounded", "image_cap", "reply_cap", "scrubbed_error", "upstream_text", "upstream_value"]

IMAGE_BYTES_PER_PIXEL = 4
"""The most an encoded image can take per pixel: RGBA stored without compression (real ones take far less)."""
IMAGE_SLACK = 1024 * 1024
"""Room in an image file beyond its pixels: metadata, an embedded colour profile or thumbnail."""
REPLY_SLACK = 16 * 1024 * 1024
MIN_REPLY_BYTES = 64 * 1024 * 1024
"""Body caps never go below this: JSON around the images, a model's interim drafts (Gemini 3 Pro)."""
MAX_USAGE_ITEMS = 50
MAX_USAGE_DEPTH = 6


def reply_cap(route: Route, count: int) -> int:
    """The most bytes a reply with `count` images from `route` can legitimately hold: each at the
    route's largest, uncompressed, as base64, plus room for the JSON around them."""
    return max(MIN_REPLY_BYTES, count * image_cap(route) * 4 // 3 + REPLY_SLACK)


def image_cap(route: Route) -> int:
    """The most bytes one image file from `route` can legitimately take (a download's cap)."""
    return route.largest_image * IMAGE_BYTES_PER_PIXEL + IMAGE_SLACK


def bounded(reply: AdapterReply, count: int, client: ProviderClient, warnings: list[str]) -> AdapterReply:
    """The reply as it may go on: never more images than the `count` asked (the extras are dropped,
    and `warnings` says so), every text from the body scrubbed of the key and clipped."""
    artifacts = reply.artifacts
    if len(artifacts) > count:
        extra = len(artifacts) - count
        warnings.append(
            f"{client.profile.id} returned {len(artifacts)} images for {count} asked in one call; "
            f"the {extra} extra were not saved"
        )
        artifacts = artifacts[:count]
    return replace(
        reply,
        artifacts=tuple(
            replace(a, revised_prompt=upstream_text(client, a.revised_prompt)) for a in artifacts
        ),
        warnings=tuple(
            replace(w, detail=upstream_text(client, w.detail) or "") for w in reply.warnings[: count + 8]
        ),
        failures=tuple(upstream_text(client, f) or "" for f in reply.failures[:count]),
        note=upstream_text(client, reply.note),
        usage=upstream_value(client, reply.usage, 0) if reply.usage else None,
    )


def upstream_text(client: ProviderClient, text: str | None) -> str | None:
    """A text from a reply body as it may reach a result, a sidecar or a log: the key removed and
    clipped (a long base64 string that was not an image is text again already: the wire models
    give a Payload back as its text everywhere but in image fields)."""
    return clip(client.redact(text)) if text else text


def upstream_value(client: ProviderClient, value: Any, depth: int) -> Any:
    """A JSON value from a reply (usage), with every string scrubbed and its size bounded."""
    if isinstance(value, str):
        return upstream_text(client, value)
    if depth >= MAX_USAGE_DEPTH and isinstance(value, (Mapping, list, tuple)):
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_USAGE_ITEMS]
        return {upstream_text(client, str(k)): upstream_value(client, v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [upstream_value(client, v, depth + 1) for v in value[:MAX_USAGE_ITEMS]]
    return (
        value if value is None or isinstance(value, (bool, int, float)) else upstream_text(client, str(value))
    )


def scrubbed_error(error: ImagegateError, client: ProviderClient, provider: str) -> ImagegateError:
    """Errors an adapter raised from a 200 body never passed the client's scrubbing: scrub them here."""
    error.message = upstream_text(client, error.message) or error.message
    error.upstream_message = upstream_text(client, error.upstream_message)
    error.provider = error.provider or provider
    return error
