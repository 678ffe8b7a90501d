"""What a finished call hands back, independent of MCP: the metadata (allowlisted, no
base64, no secret), a short human summary, and the previews (made within their byte budget
as the images arrived; see imaging.PreviewPolicy).
The MCP layer and the CLI render these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from .generation import Outcome, SavedImage
from .imaging import Preview
from .pricing import Cost, money

__all__ = ["ImageResult", "metadata", "previews", "summary"]


class ImageEntry(BaseModel):
    path: str
    uri: str
    width: int
    height: int
    mime_type: str
    bytes: int
    revised_prompt: str | None = None
    seed: int | None = None


class CostEntry(BaseModel):
    """What the call cost: the price table's estimate, and what the upstream reported (None: unknown)."""

    estimated: float | None = None
    currency: str | None = None
    reported: float | None = None


class ImageResult(BaseModel):
    """The metadata of a generate/edit result: in the text block, and as structuredContent when on."""

    model: str
    provider: str
    calls: int
    images: list[ImageEntry]
    warnings: list[str]
    usage: list[Any] | None = None
    cost: CostEntry | None = None
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
        cost=CostEntry(**outcome.cost.record()) if outcome.cost is not None else None,
        notes=list(outcome.notes) or None,
    )
    return result.model_dump(mode="json", exclude_none=True)


def summary(outcome: Outcome, extra_warnings: Sequence[str] = ()) -> str:
    """What a person or an agent reads first: what was made, where it is, what went wrong."""
    route = outcome.request.route
    count = len(outcome.images)
    head = (
        f"{count} image{'s' if count != 1 else ''} from {route.model} via {route.provider} "
        f"in {outcome.seconds:.1f} s ({outcome.calls} call{'s' if outcome.calls != 1 else ''}):"
    )
    lines = [head, *(f"- {i.path} ({i.width}x{i.height})" for i in outcome.images)]
    if outcome.cost is not None:
        lines.append(cost_words(outcome.cost, route.provider))
    lines += [f"warning: {w}" for w in (*outcome.warnings, *extra_warnings)]
    return "\n".join(lines)


def cost_words(cost: Cost, provider: str) -> str:
    """ "cost: about $0.67 by the price table; $0.64 reported by openai" (or that it is unknown)."""
    said = []
    if cost.estimated is not None and cost.currency:
        how = "up to" if cost.upper_bound else "about"
        said.append(f"{how} {money(cost.estimated, cost.currency, rounded=True)} by the price table")
    if cost.reported is not None and cost.currency:
        said.append(f"{money(cost.reported, cost.currency, rounded=True)} reported by {provider}")
    return "cost: " + (
        "; ".join(said) if said else f"unknown (no price known for this route, and {provider} reported none)"
    )


def previews(outcome: Outcome) -> tuple[list[Preview], list[str]]:
    """The previews made as the images arrived, and a note naming the images that have none
    (past what the result budget shows, or not decodable as a preview)."""
    dropped = [image.path.name for image in outcome.images if image.preview is None]
    notes = (
        [f"previews omitted to stay within the result budget: {', '.join(dropped)} (open the saved files)"]
        if dropped
        else []
    )
    return [image.preview for image in outcome.images if image.preview is not None], notes
