"""Running a validated call: load inputs, fan the images out over per-call batches under a
concurrency limit, and save every image the moment it arrives.

Saving is shielded from cancellation: an image an upstream returned has been paid for, so
once its bytes (or URL) are here it is written and published even if the call is being
cancelled. A batch that fails does not stop the others, an image that cannot be used does not
stop its siblings; what arrived is kept and reported. No exception escapes a batch: whatever an
adapter, a parser, the image decoder or the disk raises becomes that batch's (or image's) error.
Every text taken from an upstream's reply is scrubbed of the key and clipped before it goes on.

Previews are made as each image arrives, from the bytes in memory, while the file is written;
for a URL while it downloads, and for base64 while the reply is still streaming in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from . import codec, intake
from .addresses import check_result_url
from .catalog import Route
from .catalog.sizes import ratio_value
from .catalog.spec import RATIO
from .errors import (
    ImagegateError,
    ModelNotFound,
    NoImagesReturned,
    StorageError,
    UpstreamError,
    model_id_text,
)
from .imaging import ImageInfo, NotAnImage, Preview, PreviewPolicy, Source, probe
from .incoming import Incoming
from .inputs import InputPolicy, load_inputs
from .previewing import Previews
from .pricing import Cost, Pricing
from .providers import Registry
from .providers.base import AdapterReply, Artifact, Batch, InputImage
from .providers.http import CheckUrl, ProviderClient
from .storage import Sidecar, Store
from .validation import ImageRequest

__all__ = ["Generator", "Outcome", "Progress", "SavedImage", "batches"]

log = logging.getLogger("imagegate")
Progress = Callable[[str], Awaitable[None]]
"""Receives a human phase message; the MCP layer turns it into a progress notification."""
HEARTBEAT_SECONDS = 5.0
MAX_CONCURRENT_CALLS = 4
MAX_CONCURRENT_PREVIEWS = 2
"""Full decodes at once: a 4096² image takes 64 MB while it is scaled down, and there are two cores."""
MODEL_MISSING = re.compile(
    r"does not exist|not (?:found|supported|offered|available)|(?:unsupported|unknown|invalid) model"
    r"|no (?:available )?channel|无可用|不存在|不支持",
    re.IGNORECASE,
)
"""How an upstream says it has no such model, in a message that also names the id sent: the gateways'
documents give no wording (ModelMax's 400 is "无效请求或模型不支持图像生成", seeds/003), so this reads the
phrasings of OpenAI ("The model `x` does not exist"), Ark (ark-seedream.md §5), the one-api family the
gateways run on ("无可用渠道", "no available channel") and the emulator's gateways."""
MODEL_MISSING_STATUSES = (None, 400, 404, 503)
"""None: an error inside a 200 envelope; 503: the one-api family's "no channel for model x"."""


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
    request_ids: tuple[str, ...] = ()
    """The upstream's ids of the calls made, where its replies name them."""
    cost: Cost | None = None
    """What the price table estimated for the call, and what the upstream reported (pricing.py)."""


@dataclass
class _BatchRun:
    index: int
    count: int
    first: int
    saved: list[SavedImage] = field(default_factory=list)
    reply: AdapterReply | None = None
    error: ImagegateError | None = None
    lost: list[ImagegateError] = field(default_factory=list)
    """Images of the reply that could not be used, each with why."""
    problems: list[str] = field(default_factory=list)
    """Warnings of this batch's own: images lost or dropped, sidecars not written."""


class Generator:
    """Executes ImageRequests against the registry's adapters and saves into the store."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        concurrency: int = MAX_CONCURRENT_CALLS,
        inputs: InputPolicy | None = None,
        max_reply_bytes: int | None = None,
        pricing: Pricing | None = None,
    ):
        self.registry = registry
        self.pricing = pricing or Pricing()
        self.inputs = inputs or InputPolicy()
        self.max_reply_bytes = max_reply_bytes
        self.store = store
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.previewing = anyio.CapacityLimiter(MAX_CONCURRENT_PREVIEWS)

    async def run(
        self, request: ImageRequest, progress: Progress, previews: PreviewPolicy | None = None
    ) -> Outcome:
        """Run a call; raise an ImagegateError if no image at all could be made.

        With `previews`, the first images (as many as the policy's budget shows) get one each.
        """
        started = time.monotonic()
        route = request.route
        adapter = self.registry.adapter(route.protocol)
        client = self.registry.client(route.provider)
        await _say(progress, "checking input images" if request.images else f"sending to {route.provider}")
        images, mask = await load_inputs(
            request, lambda url, limit, address: _fetch(client, url, limit, address), self.inputs
        )
        plan = batches(request.n, route.per_call)
        starts = [sum(plan[:i]) for i in range(len(plan))]
        work = [_BatchRun(i, count, starts[i] + 1) for i, count in enumerate(plan)]
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat, progress, route.provider, started, work, group.cancel_scope)
            async with anyio.create_task_group() as calls:
                for batch in work:
                    calls.start_soon(
                        self._run_batch, request, batch, adapter, client, images, mask, progress, previews
                    )
            group.cancel_scope.cancel()
        return self._merge(request, work, time.monotonic() - started)

    async def _heartbeat(
        self,
        progress: Progress,
        provider: str,
        started: float,
        work: list[_BatchRun],
        scope: anyio.CancelScope,
    ) -> None:
        # Clients reset their idle timeouts on progress; say something at least every few seconds.
        while not scope.cancel_called:
            await anyio.sleep(HEARTBEAT_SECONDS)
            saved = sum(len(b.saved) for b in work)
            await _say(
                progress,
                f"waiting for {provider}: {time.monotonic() - started:.0f} s, {saved} image(s) saved",
            )

    async def _run_batch(
        self,
        request: ImageRequest,
        batch: _BatchRun,
        adapter: Callable[[Batch, ProviderClient], Awaitable[AdapterReply]],
        client: ProviderClient,
        images: tuple[InputImage, ...],
        mask: InputImage | None,
        progress: Progress,
        previews: PreviewPolicy | None,
    ) -> None:
        job = Batch(
            tool="edit" if request.tool == "edit" else "generate",
            route=request.route,
            prompt=request.prompt,
            count=batch.count,
            size=request.size,
            knobs=request.knobs,
            extra=request.extra,
            images=images,
            mask=mask,
            report=partial(_say, progress),
        )
        capped = client.limited(self.max_reply_bytes or intake.reply_cap(request.route, batch.count))
        async with anyio.create_task_group() as group:
            made = Previews(group, self.previewing, previews, request, batch.first)
            try:
                # Payloads are decoded as the reply arrives, and stay in scope until every image is saved.
                with codec.large_payloads(on_stream=made.streaming):
                    async with self.limiter:
                        reply = await adapter(job, capped)
                    batch.reply = reply = intake.bounded(reply, batch.count, client, batch.problems)
                    with anyio.CancelScope(shield=True):
                        for j, artifact in enumerate(reply.artifacts):
                            if await self._save_one(request, batch, artifact, batch.first + j, client, made):
                                await _say(progress, f"saved image {batch.first + j} of {request.n}")
            except ImagegateError as e:
                batch.error = _about_the_model(
                    intake.scrubbed_error(e, client, request.route.provider), request.route
                )
            except Exception:  # a bug, or a failure nobody classified: this batch's error, never the server's
                batch.error = _internal(request.route.provider, f"batch {batch.index + 1}")
            finally:
                made.abandon()

    async def _save_one(
        self,
        request: ImageRequest,
        batch: _BatchRun,
        artifact: Artifact,
        index: int,
        client: ProviderClient,
        made: Previews,
    ) -> bool:
        """Save one image (True when saved); whatever goes wrong costs this image only, and is
        kept as its error."""
        try:
            batch.saved.append(await self._save(request, batch, artifact, index, client, made))
            return True
        except Exception as e:
            error = (
                intake.scrubbed_error(e, client, request.route.provider)
                if isinstance(e, ImagegateError)
                else _internal(request.route.provider, f"image {index}")
            )
            batch.lost.append(error)  # the "k of n images were made" warning gives its reason
            return False

    async def _save(
        self,
        request: ImageRequest,
        batch: _BatchRun,
        artifact: Artifact,
        index: int,
        client: ProviderClient,
        previews: Previews,
    ) -> SavedImage:
        data = artifact.decoded()  # a corrupt payload raises here and costs this image only
        made = previews.streamed(data)  # begun while the reply was arriving, or begun below

        def arrived(source: Source) -> None:
            nonlocal made
            made = made or previews.start(source, index)

        temp, info = await self._receive(data, artifact.url, request.route, client, arrived)
        # If publishing fails, the temporary file stays where it is and the error names it.
        saved = await anyio.to_thread.run_sync(
            self.store.publish, temp, request.prompt, info.extension, index
        )
        image = SavedImage(
            saved.path,
            info.width,
            info.height,
            info.mime,
            saved.bytes,
            artifact.revised_prompt,
            artifact.seed,
            saved.fallback,
        )
        usage = batch.reply.usage if batch.reply else None
        try:
            await anyio.to_thread.run_sync(
                self.store.write_sidecar,
                saved,
                _sidecar(request, image, index, usage, self._image_cost(request, batch)),
            )
        except (
            StorageError
        ) as e:  # the image is saved: say so, and where, rather than lose it behind its sidecar
            batch.problems.append(
                f"image {index} is saved at {saved.path} but its sidecar is not: {e.message}"
            )
        return (
            replace(image, preview=await made.result()) if made else image
        )  # the image is on disk before this wait

    async def _receive(
        self,
        data: bytes | bytearray | None,
        url: str | None,
        route: Route,
        client: ProviderClient,
        arrived: Callable[[Source], None],
    ) -> tuple[Path, ImageInfo]:
        """The image in a temporary file, checked to be an image; `arrived` gets the bytes (or the
        download, as it comes in) so the preview is made meanwhile. Nothing is read back from disk."""
        if data is not None:
            arrived(data)
            return await anyio.to_thread.run_sync(self._write_checked, data)
        if url is None:
            raise UpstreamError("returned an image item with neither data nor a URL")
        incoming = Incoming()
        arrived(incoming.reader())
        try:
            await client.download(
                url, _appender(incoming), intake.image_cap(route), check=self._result_check(client)
            )
        except BaseException:
            incoming.end(complete=False)
            raise
        incoming.end(complete=True)
        # The check reads the whole download as bytes in hand: the streaming reader serves the
        # preview only, so nothing about it can cost an image.
        return await anyio.to_thread.run_sync(self._write_checked, incoming.buffer)

    def _result_check(self, client: ProviderClient) -> CheckUrl:
        """Result URLs obey the input URLs' address rule, except on the provider's own host."""
        own_host = urlsplit(client.profile.base_url).hostname

        async def check(url: str) -> str | None:
            return (await check_result_url(url, self.inputs, own_host))[1]

        return check

    def _write_checked(self, data: bytes | bytearray) -> tuple[Path, ImageInfo]:
        info = _probe(data)  # refuse what is not an image before it gets a name
        return self.store.write_bytes(data), info

    def _merge(self, request: ImageRequest, work: list[_BatchRun], seconds: float) -> Outcome:
        saved = tuple(image for batch in work for image in batch.saved)
        errors = [e for b in work for e in ([b.error] if b.error else []) + b.lost]
        if not saved:
            raise (
                errors[0]
                if errors
                else NoImagesReturned(
                    f"{request.route.where} returned no image", provider=request.route.provider
                )
            )
        warnings = [w.text() for b in work if b.reply for w in b.reply.warnings]
        warnings += [f"{request.route.provider}: {f}" for b in work if b.reply for f in b.reply.failures]
        warnings += [p for b in work for p in b.problems]
        if len(saved) < request.n:
            reasons = (
                "; ".join(dict.fromkeys(e.agent_text() for e in errors))
                or "the upstream returned fewer images"
            )
            warnings.append(f"{len(saved)} of {request.n} images were made: {reasons}")
        if shape := _shape_note(request):
            warnings.append(shape)
        if any(image.fallback for image in saved):
            warnings.append(
                f"the output folder could not be written; images were saved in {self.store.fallback}"
            )
        usage = tuple(b.reply.usage for b in work if b.reply and b.reply.usage)
        notes = tuple(n for b in work if b.reply and (n := b.reply.note))
        return Outcome(
            request,
            saved,
            calls=len(work),
            warnings=tuple(warnings),
            usage=usage,
            notes=notes,
            seconds=seconds,
            request_ids=tuple(i for b in work if b.reply and (i := b.reply.request_id)),
            cost=self._call_cost(request, usage),
        )

    def _call_cost(self, request: ImageRequest, usage: tuple[Any, ...]) -> Cost:
        """The call's estimate (all n images, from the price table) and what its replies reported."""
        quote = self.pricing.quote(request.route, request.n, request.size, request.knobs)
        reported = self.pricing.reported(request.route, usage, quote)
        if reported is not None and quote.currency not in (None, reported[1]):
            converted = self.pricing.convert(reported[0], reported[1], quote.currency)
            reported = (converted, quote.currency) if converted is not None else None
        currency = quote.currency or (reported[1] if reported else None)
        return Cost(quote.total, currency, reported[0] if reported else None, quote.upper_bound)

    def _image_cost(self, request: ImageRequest, batch: _BatchRun) -> Cost:
        """One image's share: the table's price of one, and its batch's reported cost split evenly."""
        reply = batch.reply
        one = self._call_cost(replace(request, n=1), (reply.usage,) if reply and reply.usage else ())
        made = len(reply.artifacts) if reply and reply.artifacts else 1
        share = None if one.reported is None else one.reported / made
        return Cost(one.estimated, one.currency, share, one.upper_bound)


SHAPE_TOLERANCE = 0.01


def _shape_note(request: ImageRequest) -> str | None:
    """Said when a ratio asked for is made at pixels of a visibly different shape (3:2 as 1216x832);
    never when the call gave pixels (the ratio a route lists them under is only their name) or no size."""
    size, ratio = request.size, request.size_asked
    if not (ratio and RATIO.match(ratio) and size.width and size.height):
        return None
    asked, made = float(ratio_value(ratio)), size.width / size.height
    if abs(made - asked) <= SHAPE_TOLERANCE * asked:
        return None
    return (
        f"size {ratio} is made as {size.width}x{size.height} ({made:.2f}:1), the nearest size "
        f"{request.route.where} has for it; give pixels (WxH) for an exact shape"
    )


def batches(n: int, per_call: int) -> list[int]:
    """⌈n / per_call⌉ calls, full ones first, the remainder last: batches(5, 2) == [2, 2, 1]."""
    full, rest = divmod(n, per_call)
    return [per_call] * full + ([rest] if rest else [])


def _about_the_model(error: ImagegateError, route: Route) -> ImagegateError:
    """An upstream's "no such model" (an adapter's ModelNotFound, or a 400/404/503 naming the wire id
    sent in MODEL_MISSING words) as the one text that says which id was sent and how to override it."""
    said = error.upstream_message or ""
    named = route.upstream.lower() in said.lower() and MODEL_MISSING.search(said) is not None
    if not isinstance(error, ModelNotFound) and not (
        type(error) is UpstreamError and error.status in MODEL_MISSING_STATUSES and named
    ):
        return error
    status = error.status if isinstance(error, UpstreamError) else None
    text = model_id_text(
        route.provider, route.model, route.upstream, route.unconfirmed.get("upstream"), status, said or None
    )
    return ModelNotFound(text, status=status, provider=route.provider, upstream_message=said or None)


def _internal(provider: str, what: str) -> UpstreamError:
    """An unexpected exception, logged with a reference and reported by it (never by its text)."""
    ref = uuid.uuid4().hex[:8]
    log.exception("internal error in %s of a %s call (ref %s)", what, provider, ref)
    return UpstreamError(
        f"internal error while handling its reply (ref {ref}); the server log on stderr has details",
        provider=provider,
    )


async def _say(progress: Progress, message: str) -> None:
    """Report progress; a client that can no longer hear it never costs the call."""
    try:
        await progress(message)
    except Exception:
        log.debug("progress not delivered", exc_info=True)


def _probe(data: Source) -> ImageInfo:
    try:
        return probe(data)
    except NotAnImage as e:
        raise UpstreamError(f"returned data that is not a usable image (it {e})") from None


def _appender(incoming: Incoming) -> Callable[[bytes], Awaitable[None]]:
    async def append(chunk: bytes) -> None:
        incoming.append(chunk)

    return append


async def _fetch(client: ProviderClient, url: str, limit: int, address: str | None) -> bytes:
    buffer = bytearray()

    async def sink(chunk: bytes) -> None:
        buffer.extend(chunk)

    await client.download(
        url, sink, limit, follow_redirects=False, connect_to=address
    )  # the checked host, and no other
    return bytes(buffer)


def _sidecar(request: ImageRequest, image: SavedImage, index: int, usage: Any, cost: Cost) -> Sidecar:
    route = request.route
    return Sidecar(
        tool=f"{request.tool}_image",
        prompt=request.prompt,
        model=route.model,
        provider=route.provider,
        upstream_model=route.upstream,
        size_requested=request.size.label(),
        n=request.n,
        index=index,
        options=dict(request.knobs),
        extra=dict(request.extra),
        inputs=list(request.images),
        mask=request.mask,
        width=image.width,
        height=image.height,
        mime_type=image.mime,
        bytes=image.bytes,
        revised_prompt=image.revised_prompt,
        seed=image.seed,
        usage=usage,
        cost=cost.record(),
    )
