"""The offline `placeholder` protocol: no wire at all. It makes deterministic test images that
show the prompt and the size asked for, so a set-up can be checked before any key is added.
Every reply says what it is; the provider offers only its own model (catalog data).
"""

from __future__ import annotations

import hashlib

import anyio

from ..imaging import draw_placeholder
from .base import AdapterReply, Artifact, Batch
from .http import ProviderClient

__all__ = ["DIALECTS", "LABEL", "run"]

DIALECTS: tuple[str, ...] = ()
LABEL = "PLACEHOLDER - offline test image"
NOTE = (
    "placeholder images from imagegate's offline test provider, not from a real model; "
    "set a provider key for real images"
)
DEFAULT_EDGE = 1024


def _seed(job: Batch, index: int) -> int:
    given = job.knobs.get("seed")
    if isinstance(given, int):
        return given + index
    digest = hashlib.sha256(f"{job.prompt}|{job.size.label()}|{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _dimensions(job: Batch) -> tuple[int, int]:
    if job.size.width and job.size.height:
        return job.size.width, job.size.height
    return DEFAULT_EDGE, DEFAULT_EDGE


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """Draw `job.count` images in a worker thread (Pillow is CPU work); `client` is never used."""
    del client
    width, height = _dimensions(job)
    inputs = tuple(image.data for image in job.images if image.data is not None)
    artifacts = []
    for index in range(job.count):
        seed = _seed(job, index)
        data = await anyio.to_thread.run_sync(
            draw_placeholder, width, height, job.prompt, LABEL, seed, inputs
        )
        artifacts.append(Artifact(data=data, mime="image/png", seed=seed))
    return AdapterReply(artifacts=tuple(artifacts), note=NOTE)
