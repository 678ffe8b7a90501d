"""A stand-in adapter for the generator: `build_service(env, adapters={"openai_images": fake})`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.images import image_bytes

from imagegate.providers.base import AdapterReply, Artifact, Batch
from imagegate.providers.http import ProviderClient

Answer = AdapterReply | BaseException | Callable[[Batch], Awaitable[AdapterReply]]
"""What one call gets: a reply, an exception to raise, or a coroutine function of the batch."""


class FakeAdapter:
    """Records every batch it is called with and answers from its queue, one entry per call in the
    order the calls begin; with the queue empty, each call gets `count` images of `size`."""

    def __init__(self, size: tuple[int, int] = (64, 48)) -> None:
        self.size = size
        self.batches: list[Batch] = []
        self._queue: list[Answer] = []

    def enqueue(self, *answers: Answer) -> FakeAdapter:
        self._queue.extend(answers)
        return self

    async def __call__(self, batch: Batch, client: ProviderClient) -> AdapterReply:
        self.batches.append(batch)
        answer: Any = self._queue.pop(0) if self._queue else images(batch.count, self.size)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return await answer(batch)
        return answer


def images(count: int, size: tuple[int, int] = (64, 48), **reply: Any) -> AdapterReply:
    """A reply of `count` real PNGs of `size`, as base64 the way most upstreams send them."""
    png = image_bytes(size, "teal")
    return AdapterReply(artifacts=tuple(Artifact(data=png) for _ in range(count)), **reply)
