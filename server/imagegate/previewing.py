"""Previews of one batch's images, begun the moment each image's bytes begin to arrive (from bytes in
memory, a download as it comes in, or base64 while its reply still streams) and made in worker
threads beside the saving. A preview that cannot be made never costs its image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from .imaging import Preview, PreviewPolicy, Source, make_preview
from .incoming import Incoming
from .validation import ImageRequest

__all__ = ["Made", "Previews"]

log = logging.getLogger("imagegate")


@dataclass(frozen=True, slots=True)
class PreviewJob:
    """A preview to make for one image: per-image caps from the call's policy and its share of the budget."""

    max_edge: int
    max_bytes: int
    alpha: bool


@dataclass
class Made:
    """A preview being made in a worker thread."""

    ready: anyio.Event = field(default_factory=anyio.Event)
    preview: Preview | None = None

    async def result(self) -> Preview | None:
        await self.ready.wait()
        return self.preview


class Previews:
    """The previews of one batch, begun as soon as each image's bytes begin to arrive and running in
    the batch's task group; an image past the call's preview budget gets none."""

    def __init__(
        self,
        group: TaskGroup,
        limiter: anyio.CapacityLimiter,
        policy: PreviewPolicy | None,
        request: ImageRequest,
        first: int,
    ):
        self._group, self._limiter, self._policy, self._request, self._first = (
            group,
            limiter,
            policy,
            request,
            first,
        )
        self._streamed: dict[int, tuple[bytearray, Made | None]] = {}
        self._incoming: list[Incoming] = []

    def start(self, source: Source, index: int) -> Made | None:
        job = _preview_job(self._policy, self._request, index)
        if job is None:
            return None
        made = Made()
        self._group.start_soon(self._make, source, job, made)
        return made

    def streaming(self, incoming: Incoming) -> None:
        """An image is streaming in inside the reply (codec's on_stream): start on it now. Replies list
        images in order, so the k-th to stream is taken as the k-th image for the budget."""
        self._incoming.append(incoming)
        self._streamed[id(incoming.buffer)] = (
            incoming.buffer,
            self.start(incoming.reader(), self._first + len(self._streamed)),
        )

    def abandon(self) -> None:
        """The batch is over: a stream that never ended (a reply cut off inside an image) fails its
        readers now, so no preview thread waits for bytes that will never come."""
        for incoming in self._incoming:
            incoming.abandon()

    def streamed(self, data: bytes | bytearray | None) -> Made | None:
        """The preview begun while these bytes streamed in, if they did."""
        entry = self._streamed.get(id(data))
        return entry[1] if entry is not None and entry[0] is data else None

    async def _make(self, source: Source, job: PreviewJob, made: Made) -> None:
        try:
            made.preview = await anyio.to_thread.run_sync(_make_preview, source, job, limiter=self._limiter)
        finally:
            made.ready.set()


def _preview_job(policy: PreviewPolicy | None, request: ImageRequest, index: int) -> PreviewJob | None:
    """Image `index` (1-based) gets a preview if the policy's budget reaches it."""
    if policy is None:
        return None
    shown, budget = policy.plan(request.n)
    alpha = request.knobs.get("background") == "transparent"  # a transparent image keeps it in its preview
    return PreviewJob(policy.max_edge, budget, alpha) if index <= shown else None


def _make_preview(source: Source, job: PreviewJob) -> Preview | None:
    """A preview, or None: a preview that cannot be made never costs the image."""
    try:
        return make_preview(source, job.max_edge, job.max_bytes, keep_alpha=job.alpha)
    except Exception:  # Pillow raises many types for odd files; the saved image is what counts
        log.debug("no preview", exc_info=True)
        return None
