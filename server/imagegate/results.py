"""What a finished call hands back, independent of MCP: the metadata (allowlisted, no
base64, no secret), a short human summary, and the previews within their byte budget.
The MCP layer and the CLI render these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel

from .generation import Outcome, SavedImage
from .imaging import NotAnImage, make_preview

__all__ = ["PREVIEW_TOTAL_BYTES", "ImageResult", "Preview", "make_previews", "metadata", "summary"]

PREVIEW_TOTAL_BYTES = 72 * 1024
"""All previews of one result together, raw: about 96 KiB once base64-encoded, which is what a client
receives and counts (Claude Code counts images against its token cap; research §3)."""
MIN_PREVIEW_BYTES = 6 * 1024


@dataclass(frozen=True, slots=True)
class Preview:
    """A small inline rendition of a saved image (JPEG, or PNG when transparency was asked for)."""

    data: bytes
    mime: str
    width: int
    height: int


class ImageEntry(BaseModel):
    path: str
    uri: str
    width: int
    height: int
    mime_type: str
    bytes: int
    revised_prompt: str | None = None
    seed: int | None = None


class ImageResult(BaseModel):
    """The metadata of a generate/edit result: in the text block, and as structuredContent when on."""

    model: str
    provider: str
    calls: int
    images: list[ImageEntry]
    warnings: list[str]
    usage: list[Any] | None = None
    notes: list[str] | None = None
    job: str | None = None
    """Set while the call is still running: the id get_image_job collects it by."""


def _image(image: SavedImage) -> ImageEntry:
    return ImageEntry(
        path=str(image.path),
        uri=image.path.as_uri(),
        width=image.width,
        height=image.height,
        mime_type=image.mime,
        bytes=image.bytes,
        revised_prompt=image.revised_prompt,
        seed=image.seed,
    )


def metadata(outcome: Outcome, extra_warnings: Sequence[str] = ()) -> dict[str, Any]:
    """The result as one JSON-ready object (no base64, no secret); None fields are left out."""
    route = outcome.request.route
    result = ImageResult(
        model=route.model,
        provider=route.provider,
        calls=outcome.calls,
        images=[_image(i) for i in outcome.images],
        warnings=[*outcome.warnings, *extra_warnings],
        usage=list(outcome.usage) or None,
        notes=list(outcome.notes) or None,
    )
    return result.model_dump(mode="json", exclude_none=True)


def summary(outcome: Outcome, extra_warnings: Sequence[str] = ()) -> str:
    """What a person or an agent reads first: what was made, where it is, what went wrong."""
    route = outcome.request.route
    count = len(outcome.images)
    head = f"{count} image{'s' if count != 1 else ''} from {route.model} via {route.provider} in {outcome.seconds:.1f} s ({outcome.calls} call{'s' if outcome.calls != 1 else ''}):"
    lines = [head, *(f"- {i.path} ({i.width}x{i.height})" for i in outcome.images)]
    lines += [f"warning: {w}" for w in (*outcome.warnings, *extra_warnings)]
    return "\n".join(lines)


def _wants_alpha(outcome: Outcome) -> bool:
    return outcome.request.knobs.get("background") == "transparent"


def _preview(image: SavedImage, max_edge: int, budget: int, alpha: bool) -> Preview | None:
    try:
        made = make_preview(image.path.read_bytes(), max_edge, budget, keep_alpha=alpha)
    except (OSError, NotAnImage):
        return None
    return Preview(*made) if made else None


async def make_previews(outcome: Outcome, max_edge: int, max_bytes: int) -> tuple[list[Preview], list[str]]:
    """Previews within the per-image cap and an equal share of the result budget, made
    concurrently off the event loop; images past what the budget can show get none, and a note."""
    images = outcome.images
    shown = min(len(images), PREVIEW_TOTAL_BYTES // MIN_PREVIEW_BYTES)
    budget = min(max_bytes, PREVIEW_TOTAL_BYTES // max(shown, 1))
    made: list[Preview | None] = [None] * shown

    async def one(i: int) -> None:
        made[i] = await anyio.to_thread.run_sync(_preview, images[i], max_edge, budget, _wants_alpha(outcome))

    async with anyio.create_task_group() as group:
        for i in range(shown):
            group.start_soon(one, i)
    dropped = [image.path.name for image, preview in zip(images, made + [None] * (len(images) - shown), strict=True) if preview is None]
    notes = [f"previews omitted to stay within the result budget: {', '.join(dropped)} (open the saved files)"] if dropped else []
    return [p for p in made if p is not None], notes
