"""Running a validated call: load inputs, fan the images out over per-call batches under a
concurrency limit, and save every image the moment it arrives.

Saving is shielded from cancellation: an image an upstream returned has been paid for, so
once its bytes (or URL) are here it is written and published even if the call is being
cancelled. A batch that fails does not stop the others; what arrived is kept and reported.

Previews are made as each image arrives, from the bytes in memory, while the file is written;
for a URL while it downloads, and for base64 while the reply is still streaming in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from . import __version__, codec
from .errors import ImagegateError, NoImagesReturned, UpstreamError
from .imaging import ImageInfo, NotAnImage, Preview, PreviewPolicy, Source, make_preview, probe
from .incoming import Incoming
from .planner import InputPolicy, batches, load_inputs
from .providers import Registry
from .providers.base import AdapterReply, Artifact, InputImage, Job
from .providers.http import ProviderClient
from .storage import Store
from .validation import ImageRequest

__all__ = ["Generator", "Outcome", "Progress", "SavedImage"]

log = logging.getLogger("imagegate")
Progress = Callable[[str], Awaitable[None]]
"""Receives a human phase message; the MCP layer turns it into a progress notification."""
HEARTBEAT_SECONDS = 5.0
MAX_CONCURRENT_CALLS = 4
MAX_RESULT_BYTES = 200 * 1024 * 1024
MAX_CONCURRENT_PREVIEWS = 2
"""Full decodes at once: a 4096² image takes 64 MB while it is scaled down, and there are two cores."""


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One image on disk with what we know about it."""

    path: Path
    width: int
    height: int
    mime: str
    bytes: int
    revised_prompt: str | None = None
    seed: int | None = None
    fallback: bool = False
    preview: Preview | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one tool call: images in batch order, calls made, what went wrong on the way."""

    request: ImageRequest
    images: tuple[SavedImage, ...]
    calls: int
    warnings: tuple[str, ...] = ()
    usage: tuple[Any, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _PreviewJob:
    """A preview to make for one image: per-image caps from the call's policy and its share of the budget."""

    max_edge: int
    max_bytes: int
    alpha: bool


@dataclass
class _Made:
    """A preview being made in a worker thread."""

    ready: anyio.Event = field(default_factory=anyio.Event)
    preview: Preview | None = None

    async def result(self) -> Preview | None:
        await self.ready.wait()
        return self.preview


class _Previews:
    """The previews of one batch, begun as soon as each image's bytes begin to arrive and running in
    the batch's task group; an image past the call's preview budget gets none."""

    def __init__(self, group: TaskGroup, limiter: anyio.CapacityLimiter, policy: PreviewPolicy | None, request: ImageRequest, first: int):
        self._group, self._limiter, self._policy, self._request, self._first = group, limiter, policy, request, first
        self._streamed: dict[int, tuple[bytearray, _Made | None]] = {}

    def start(self, source: Source, index: int) -> _Made | None:
        job = _preview_job(self._policy, self._request, index)
        if job is None:
            return None
        made = _Made()
        self._group.start_soon(self._make, source, job, made)
        return made

    def streaming(self, incoming: Incoming) -> None:
        """An image is streaming in inside the reply (codec's on_stream): start on it now. Replies list
        images in order, so the k-th to stream is taken as the k-th image for the budget."""
        self._streamed[id(incoming.buffer)] = (incoming.buffer, self.start(incoming.reader(), self._first + len(self._streamed)))

    def streamed(self, data: bytes | bytearray | None) -> _Made | None:
        """The preview begun while these bytes streamed in, if they did."""
        entry = self._streamed.get(id(data))
        return entry[1] if entry is not None and entry[0] is data else None

    async def _make(self, source: Source, job: _PreviewJob, made: _Made) -> None:
        try:
            made.preview = await anyio.to_thread.run_sync(_make_preview, source, job, limiter=self._limiter)
        finally:
            made.ready.set()


@dataclass
class _Batch:
    index: int
    count: int
    first: int
    saved: list[SavedImage] = field(default_factory=list)
    reply: AdapterReply | None = None
    error: ImagegateError | None = None


class Generator:
    """Executes ImageRequests against the registry's adapters and saves into the store."""

    def __init__(self, registry: Registry, store: Store, concurrency: int = MAX_CONCURRENT_CALLS, inputs: InputPolicy | None = None):
        self.registry = registry
        self.inputs = inputs or InputPolicy()
        self.store = store
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.previewing = anyio.CapacityLimiter(MAX_CONCURRENT_PREVIEWS)

    async def run(self, request: ImageRequest, progress: Progress, previews: PreviewPolicy | None = None) -> Outcome:
        """Run a call; raise an ImagegateError if no image at all could be made.

        With `previews`, the first images (as many as the policy's budget shows) get one each.
        """
        started = time.monotonic()
        route = request.route
        adapter = self.registry.adapter(route.protocol)
        client = self.registry.client(route.provider)
        await progress("checking input images" if request.images else f"sending to {route.provider}")
        images, mask = await load_inputs(request, lambda url, limit, address: _fetch(client, url, limit, address), self.inputs)
        plan = batches(request.n, route.per_call)
        starts = [sum(plan[:i]) for i in range(len(plan))]
        work = [_Batch(i, count, starts[i] + 1) for i, count in enumerate(plan)]
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat, progress, route.provider, started, work, group.cancel_scope)
            async with anyio.create_task_group() as calls:
                for batch in work:
                    calls.start_soon(self._run_batch, request, batch, adapter, client, images, mask, progress, previews)
            group.cancel_scope.cancel()
        return self._merge(request, work, time.monotonic() - started)

    async def _heartbeat(self, progress: Progress, provider: str, started: float, work: list[_Batch], scope: anyio.CancelScope) -> None:
        # Clients reset their idle timeouts on progress; say something at least every few seconds.
        while not scope.cancel_called:
            await anyio.sleep(HEARTBEAT_SECONDS)
            saved = sum(len(b.saved) for b in work)
            await progress(f"waiting for {provider}: {time.monotonic() - started:.0f} s, {saved} image(s) saved")

    async def _run_batch(
        self,
        request: ImageRequest,
        batch: _Batch,
        adapter: Callable[[Job, ProviderClient], Awaitable[AdapterReply]],
        client: ProviderClient,
        images: tuple[InputImage, ...],
        mask: InputImage | None,
        progress: Progress,
        previews: PreviewPolicy | None,
    ) -> None:
        job = Job(
            tool="edit" if request.tool == "edit" else "generate",
            route=request.route,
            prompt=request.prompt,
            count=batch.count,
            size=request.size,
            knobs=request.knobs,
            extra=request.extra,
            images=images,
            mask=mask,
        )
        async with anyio.create_task_group() as group:
            made = _Previews(group, self.previewing, previews, request, batch.first)
            try:
                async with self.limiter:
                    with codec.large_payloads(on_stream=made.streaming):  # images decoded as the reply arrives
                        batch.reply = _scrubbed(await adapter(job, client), client)
                with anyio.CancelScope(shield=True):
                    for j, artifact in enumerate(batch.reply.artifacts):
                        index = batch.first + j
                        batch.saved.append(await self._save(request, artifact, index, client, batch.reply.usage, made))
                        await progress(f"saved image {index} of {request.n}")
            except ImagegateError as e:
                # Errors an adapter raised from a 200 body never passed the client's scrubbing: scrub here.
                e.message = client.redact(e.message) or e.message
                e.upstream_message = client.redact(e.upstream_message)
                e.provider = e.provider or request.route.provider
                batch.error = e

    async def _save(
        self, request: ImageRequest, artifact: Artifact, index: int, client: ProviderClient, usage: Any, previews: _Previews
    ) -> SavedImage:
        made = previews.streamed(artifact.data)  # begun while the reply was arriving, or begun below

        def arrived(source: Source) -> None:
            nonlocal made
            made = made or previews.start(source, index)

        temp, info = await self._receive(artifact, client, arrived)
        # If publishing fails, the temporary file stays where it is and the error names it.
        saved = await anyio.to_thread.run_sync(self.store.publish, temp, request.prompt, info.extension, index)
        image = SavedImage(saved.path, info.width, info.height, info.mime, saved.bytes, artifact.revised_prompt, artifact.seed, saved.fallback)
        await anyio.to_thread.run_sync(self.store.write_sidecar, saved, sidecar(request, image, index, usage))
        return replace(image, preview=await made.result()) if made else image  # the image is on disk before this wait

    async def _receive(self, artifact: Artifact, client: ProviderClient, arrived: Callable[[Source], None]) -> tuple[Path, ImageInfo]:
        """The artifact in a temporary file, checked to be an image; `arrived` gets the bytes (or the
        download, as it comes in) so the preview is made meanwhile. Nothing is read back from disk."""
        if artifact.data is not None:
            arrived(artifact.data)
            return await anyio.to_thread.run_sync(self._write_checked, artifact.data)
        assert artifact.url is not None
        incoming = Incoming()
        arrived(incoming.reader())
        try:
            await client.download(artifact.url, _appender(incoming), MAX_RESULT_BYTES)
        except BaseException:
            incoming.end(complete=False)
            raise
        incoming.end(complete=True)
        return await anyio.to_thread.run_sync(self._write_checked, incoming)

    def _write_checked(self, data: bytes | bytearray | Incoming) -> tuple[Path, ImageInfo]:
        info = _probe(data.reader() if isinstance(data, Incoming) else data)  # refuse what is not an image before it gets a name
        return self.store.write_bytes(data.buffer if isinstance(data, Incoming) else data), info

    def _merge(self, request: ImageRequest, work: list[_Batch], seconds: float) -> Outcome:
        saved = tuple(image for batch in work for image in batch.saved)
        errors = [b.error for b in work if b.error is not None]
        if not saved:
            raise errors[0] if errors else NoImagesReturned(f"{request.route.where} returned no image", provider=request.route.provider)
        warnings = [w.text() for b in work if b.reply for w in b.reply.warnings]
        warnings += [f"{request.route.provider}: {f}" for b in work if b.reply for f in b.reply.failures]
        if len(saved) < request.n:
            reasons = "; ".join(dict.fromkeys(e.agent_text() for e in errors)) or "the upstream returned fewer images"
            warnings.append(f"{len(saved)} of {request.n} images were made: {reasons}")
        if any(image.fallback for image in saved):
            warnings.append(f"the output folder could not be written; images were saved in {self.store.fallback}")
        usage = tuple(b.reply.usage for b in work if b.reply and b.reply.usage)
        notes = tuple(n for b in work if b.reply and (n := b.reply.note))
        return Outcome(request, saved, calls=len(work), warnings=tuple(warnings), usage=usage, notes=notes, seconds=seconds)


def _scrubbed(reply: AdapterReply, client: ProviderClient) -> AdapterReply:
    """Texts from a 200 body never passed the HTTP client's scrubbing: remove the key from them here."""
    warnings = tuple(replace(w, detail=client.redact(w.detail) or "") for w in reply.warnings)
    failures = tuple(client.redact(f) or "" for f in reply.failures)
    return replace(reply, warnings=warnings, failures=failures, note=client.redact(reply.note))


def _probe(data: Source) -> ImageInfo:
    try:
        return probe(data)
    except NotAnImage as e:
        raise UpstreamError(f"returned data that is not a usable image (it {e})") from None


def _appender(incoming: Incoming) -> Callable[[bytes], Awaitable[None]]:
    async def append(chunk: bytes) -> None:
        incoming.append(chunk)

    return append


def _preview_job(policy: PreviewPolicy | None, request: ImageRequest, index: int) -> _PreviewJob | None:
    """Image `index` (1-based) gets a preview if the policy's budget reaches it."""
    if policy is None:
        return None
    shown, budget = policy.plan(request.n)
    alpha = request.knobs.get("background") == "transparent"  # a transparent image keeps it in its preview
    return _PreviewJob(policy.max_edge, budget, alpha) if index <= shown else None


def _make_preview(source: Source, job: _PreviewJob) -> Preview | None:
    """A preview, or None: a preview that cannot be made never costs the image."""
    try:
        return make_preview(source, job.max_edge, job.max_bytes, keep_alpha=job.alpha)
    except Exception:  # Pillow raises many types for odd files; the saved image is what counts
        log.debug("no preview", exc_info=True)
        return None


async def _fetch(client: ProviderClient, url: str, limit: int, address: str | None) -> bytes:
    buffer = bytearray()

    async def sink(chunk: bytes) -> None:
        buffer.extend(chunk)

    await client.download(url, sink, limit, follow_redirects=False, connect_to=address)  # the checked host, and no other
    return bytes(buffer)


def _shown_input(ref: str) -> str:
    return ref if not ref.startswith("data:") else ref[:40] + "…"


def sidecar(request: ImageRequest, image: SavedImage, index: int, usage: Any = None) -> dict[str, Any]:
    """The sidecar, built from an allowlist: what was asked, who served it, what came back. No secret."""
    route = request.route
    return {
        "imagegate": __version__,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "tool": f"{request.tool}_image",
        "prompt": request.prompt,
        "model": route.model,
        "provider": route.provider,
        "upstream_model": route.upstream,
        "size_requested": request.size.label(),
        "n": request.n,
        "index": index,
        "options": dict(request.knobs),
        "extra": dict(request.extra),
        "inputs": [_shown_input(r) for r in request.images] + ([f"mask: {_shown_input(request.mask)}"] if request.mask else []),
        "image": {"width": image.width, "height": image.height, "mime_type": image.mime, "bytes": image.bytes},
        "revised_prompt": image.revised_prompt,
        "seed": image.seed,
        "usage": usage,
    }
