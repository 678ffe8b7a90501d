"""The contract between the core and the adapters.

The core hands an adapter one `Batch` (one upstream call: size resolved, count within the
route's per-call maximum, inputs already loaded) and a `ProviderClient`; the adapter maps it
to its wire format and the reply back to an `AdapterReply`. Adapters never loop over n,
retry, sleep, poll by hand, touch files or read settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .. import codec
from ..catalog import ResolvedSize, Route
from ..catalog.spec import KnobValue
from ..errors import UpstreamError

if TYPE_CHECKING:
    from .http import ProviderClient

__all__ = ["Adapter", "AdapterReply", "Artifact", "Batch", "InputImage", "RouteWarning"]

Usage = Mapping[str, Any]
"""The upstream's own usage/cost object, passed through to sidecar and metadata as-is."""


@dataclass(frozen=True, slots=True)
class InputImage:
    """An input image, loaded and checked: its bytes (or, for URL-taking routes, its URL)."""

    name: str
    mime: str
    width: int
    height: int
    data: bytes | None = None
    url: str | None = None

    def data_url(self) -> str:
        """The image as a `data:` URL (lowercase format token, as Ark and others require)."""
        return f"data:{self.mime.lower()};base64,{self.base64()}"

    def base64(self) -> str:
        assert self.data is not None, "a URL-only input has no bytes"
        return codec.b64encode(self.data)


@dataclass(frozen=True, slots=True)
class Batch:
    """One upstream call of a tool call: size resolved, count within the route's per-call maximum,
    inputs loaded (a call of n images is ⌈n / per_call⌉ batches)."""

    tool: Literal["generate", "edit"]
    route: Route
    prompt: str
    count: int
    size: ResolvedSize
    knobs: Mapping[str, KnobValue]
    extra: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None


@dataclass(frozen=True, slots=True)
class Artifact:
    """One image in a reply: its bytes, its base64 as the upstream sent it, or a URL to download at once.

    Adapters hand base64 over undecoded (`encoded`): the core decodes each image on its own, so one
    corrupt payload costs that image, never its siblings.
    """

    data: bytes | bytearray | None = None
    url: str | None = None
    mime: str | None = None
    revised_prompt: str | None = None
    seed: int | None = None
    encoded: str | None = None

    def decoded(self) -> bytes | bytearray | None:
        """The image's bytes (None for a URL); raises UpstreamError for base64 that does not decode."""
        return self.data if self.encoded is None else decode_base64(self.encoded)


@dataclass(frozen=True, slots=True)
class RouteWarning:
    """A setting the route ignored or changed, said out loud (never silently)."""

    feature: str
    detail: str
    use_instead: str | None = None

    def text(self) -> str:
        return f"{self.feature}: {self.detail}" + (f" (use {self.use_instead})" if self.use_instead else "")


@dataclass(frozen=True, slots=True)
class AdapterReply:
    """What one upstream call produced. `failures` counts images the upstream said it could not make."""

    artifacts: tuple[Artifact, ...]
    warnings: tuple[RouteWarning, ...] = ()
    usage: Usage | None = None
    note: str | None = None
    failures: tuple[str, ...] = ()


def decode_base64(text: str) -> bytes | bytearray:
    """Image bytes from an upstream's base64: strict (a corrupt payload is an error, not garbage),
    and already decoded when the reply was parsed inside `codec.large_payloads()`."""
    try:
        return codec.b64decode(text)
    except ValueError:
        raise UpstreamError("returned base64 image data that does not decode") from None


class Adapter(Protocol):
    """An adapter module exposes one coroutine with this signature."""

    def __call__(self, job: Batch, client: ProviderClient) -> Awaitable[AdapterReply]: ...
