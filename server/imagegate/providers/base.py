"""The contract between the core and the adapters, and what every adapter shares.

The core hands an adapter one `Batch` (one upstream call: size resolved, count within the
route's per-call maximum, inputs already loaded) and a `ProviderClient`; the adapter maps it
to a `WireRequest` and the reply back to an `AdapterReply`. Adapters never loop over n,
retry, sleep, poll by hand, touch files or read settings.

Shared here so that no adapter writes its own: the lenient base of wire reply models (`WireModel`,
whose image fields take a `codec.Payload` and whose text fields never do), the `{code, msg, data}`
envelope a profile may name, and the declarative error reader (`ErrorShape`, a code table, one
content-refusal vocabulary) that each adapter's `classify_error` feeds with its own tables.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .. import codec
from ..catalog import ResolvedSize, Route
from ..catalog.spec import KnobValue
from ..codec import Payload
from ..errors import ContentRefused, ImagegateError, NoImagesReturned, UpstreamError
from .http import Classifier, default_error

if TYPE_CHECKING:
    from .http import ProviderClient

T = TypeVar("T")

__all__ = [
    "FORMAT_MIME",
    "REFUSAL_WORDS",
    "Adapter",
    "AdapterReply",
    "Artifact",
    "Batch",
    "CodeTable",
    "WordTable",
    "Encoded",
    "ErrorShape",
    "InputImage",
    "RouteWarning",
    "WireModel",
    "WireRequest",
    "classify",
    "from_table",
    "reading",
    "refusal_said",
    "unwrap",
    "with_warnings",
]

Usage = Mapping[str, Any]
"""The upstream's own usage/cost object, passed through to sidecar and metadata as-is."""
Encoded = str | Payload
"""An image field of a wire model: base64 text (or a data URL), or the Payload the codec made of it."""
FORMAT_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
"""The `output_format` vocabulary (and file extensions) -> media type."""
REFUSAL_WORDS = re.compile(
    r"content[ _.-]?polic|moderat|nsfw|flagged|inappropriate"
    r"|(?:may |contains? )sensitive|sensitive (?:content|word|information|image|material)"
    r"|safety (?:system|filter|check|polic)|violat\w*\W+(?:\w+\W+){0,6}?(?:polic|guideline|responsible ai)"
    r"|审核|敏感|违规|違規|违禁",
    re.IGNORECASE,
)
"""Words that mark an upstream's free-text message as a content-policy refusal, for every protocol:
the gateways relay OpenAI's, Ark's, DashScope's and Google's refusals in English and Chinese
(openai.md §7, ark-seedream.md §5, imagen.md §5, seeds/000, 001, 004); none documents all its wordings."""
SUCCESS_CODES = frozenset({"0", "200"})
"""An envelope `code` that means success (MixRoute's 200, seeds/001; the one-api family's 0)."""


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

    def ref(self) -> str:
        """The image as most JSON APIs take a reference: its URL if it has one, else a data URL."""
        return self.url or self.data_url()


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
    report: Callable[[str], Awaitable[None]] | None = None
    """Where an adapter says how far an upstream that reports it has got ("step 5/20"), relayed to the
    agent as progress; never raises. None: nobody listens."""


@dataclass(frozen=True, slots=True)
class RouteWarning:
    """A setting the route ignored or changed, said out loud (never silently)."""

    feature: str
    detail: str
    use_instead: str | None = None

    def text(self) -> str:
        return f"{self.feature}: {self.detail}" + (f" (use {self.use_instead})" if self.use_instead else "")


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request of an adapter: a path under the base URL (or a URL), a JSON body or form
    fields and files (multipart), extra headers, and the warnings for what the wire could not say."""

    path: str
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    warnings: tuple[RouteWarning, ...] = ()


@dataclass(frozen=True, slots=True)
class Artifact:
    """One image in a reply: its bytes, its base64 as the upstream sent it, or a URL to download at once.

    Adapters hand base64 over undecoded (`encoded`: text, or the codec's Payload): the core decodes
    each image on its own, so one corrupt payload costs that image, never its siblings.
    """

    data: bytes | bytearray | None = None
    url: str | None = None
    mime: str | None = None
    revised_prompt: str | None = None
    seed: int | None = None
    encoded: Encoded | None = None

    def decoded(self) -> bytes | bytearray | None:
        """The image's bytes (None for a URL); raises UpstreamError for base64 that does not decode."""
        if isinstance(self.encoded, Payload):
            try:
                return self.encoded.data()  # decoded while the body arrived, or when it was parsed
            except ValueError:
                raise UpstreamError("returned an image that was read after its reply was freed") from None
        return self.data if self.encoded is None else decode_base64(self.encoded)


@dataclass(frozen=True, slots=True)
class AdapterReply:
    """What one upstream call produced. `failures` counts images the upstream said it could not make;
    `request_id` is the upstream's id for the call, where its reply names one (to trace it with them)."""

    artifacts: tuple[Artifact, ...]
    warnings: tuple[RouteWarning, ...] = ()
    usage: Usage | None = None
    note: str | None = None
    failures: tuple[str, ...] = ()
    request_id: str | None = None


def decode_base64(text: str) -> bytes | bytearray:
    """Image bytes from an upstream's base64: strict (a corrupt payload is an error, not garbage)."""
    try:
        return codec.b64decode(text)
    except ValueError:
        raise UpstreamError("returned base64 image data that does not decode") from None


def _takes_payloads(annotation: Any) -> bool:
    """Whether a field's type holds a Payload or a model of its own (which then sorts its fields)."""
    if isinstance(annotation, type) and (issubclass(annotation, (Payload, BaseModel))):
        return True
    return any(_takes_payloads(arg) for arg in typing.get_args(annotation))


class WireModel(BaseModel):
    """The base of every wire reply model: lenient (`extra="ignore"`: declare only the fields read),
    and typed about payloads: a field declared `Encoded` gets the codec's Payload, any other field
    gets text (a long base64 revised prompt is a revised prompt), so no adapter sees a token."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)
    _text_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        keys: set[str] = set()
        for name, info in cls.model_fields.items():
            if _takes_payloads(info.annotation):
                continue
            keys |= {name, *([info.alias] if info.alias else [])}
            choices = getattr(info.validation_alias, "choices", None) or [info.validation_alias]
            keys |= {c for c in choices if isinstance(c, str)}
        cls._text_keys = frozenset(keys)

    @model_validator(mode="before")
    @classmethod
    def _texts_are_text(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(key in cls._text_keys for key in data):
            return data
        return {key: codec.textual(value) if key in cls._text_keys else value for key, value in data.items()}


# --- Errors: where a protocol's body says what went wrong, and what it means -------------------------

WordTable = tuple[tuple[re.Pattern[str], type[ImagegateError], str], ...]
"""Patterns a protocol's free-text messages are matched with (first match wins) -> error class and text."""
CodeTable = Mapping[str, tuple[type[ImagegateError], str]]
"""An upstream error code (any case; a dotted code also matches by its first segment) -> the error
class and its agent-facing text ("{provider}" and "{code}" are filled in)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What an error body says: its code (as text, "" if none), message, and the HTTP-like
    status some gateways put in `code` (None unless it is one)."""

    code: str
    message: str | None
    status: int | None


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """Where a protocol's error body keeps its message and code: dotted paths, tried in order."""

    messages: tuple[str, ...] = ("error.message", "error", "message", "msg", "detail")
    codes: tuple[str, ...] = ("error.code", "error.type", "code")

    def read(self, body: Any) -> Fault:
        """The fault a body (parsed JSON, or the text of a non-JSON body) describes."""
        if not isinstance(body, dict):
            text = codec.plain(body) if isinstance(body, (str, Payload)) else None
            return Fault("", text[:300] if text and text.strip() else None, None)
        message = next((m for path in self.messages if (m := _text_at(body, path))), None)
        raw = next((c for path in self.codes if (c := _code_at(body, path)) is not None), None)
        code = "" if raw is None else str(raw)
        status = int(code) if code.isdigit() and 100 <= int(code) <= 599 else None
        return Fault(code, message, status)


def _at(body: Any, path: str) -> Any:
    for key in path.split("."):
        body = body.get(key) if isinstance(body, dict) else None
    return body


def _text_at(body: Any, path: str) -> str | None:
    value = codec.plain(found) if isinstance(found := _at(body, path), (str, Payload)) else None
    return value if value and value.strip() else None


def _code_at(body: Any, path: str) -> str | int | None:
    value = _at(body, path)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return value


def refusal_said(message: str | None, status: int) -> bool:
    """Whether a message words a content-policy refusal; only below 500 ("moderation service
    unavailable" is an outage, not a refusal)."""
    return status < 500 and bool(message) and REFUSAL_WORDS.search(message or "") is not None


def from_table(table: CodeTable, code: str, provider: str, message: str | None) -> ImagegateError | None:
    """The error a code table names for `code` (whole, then its first dotted segment), or None."""
    lowered = {key.lower(): value for key, value in table.items()}
    known = lowered.get(code.lower()) or lowered.get(code.split(".")[0].lower())
    if known is None:
        return None
    kind, text = known
    return kind(text.format(provider=provider, code=code), provider=provider, upstream_message=message)


def classify(
    status: int,
    body: Any,
    provider: str,
    *,
    shape: ErrorShape = ErrorShape(),
    codes: CodeTable | None = None,
    words: WordTable = (),
    status_in_code: bool = False,
) -> ImagegateError:
    """The common error mapping: the protocol's code table, then the refusal vocabulary and the
    protocol's own words, then the HTTP status (`status_in_code`: a 200 body's HTTP-like `code`
    counts as the status)."""
    fault = shape.read(body)
    effective = fault.status if status == 200 and status_in_code and fault.status else status
    if codes and (known := from_table(codes, fault.code, provider, fault.message)):
        return known
    if refusal_said(fault.message, effective):
        text = f"{provider}'s content policy refused this request; rephrase the prompt"
        return ContentRefused(text, provider=provider, upstream_message=fault.message)
    for pattern, kind, text in words:
        if fault.message and pattern.search(fault.message):
            return kind(text.format(provider=provider), provider=provider, upstream_message=fault.message)
    if effective == 200:
        return UpstreamError(
            f"{provider} answered with an error", provider=provider, upstream_message=fault.message
        )
    error = default_error(effective, body, provider, upstream_message=fault.message)
    if effective != status:  # a code read from a 200 body: the reply's HTTP status was 200, never it
        error.message = error.message.replace(
            f"(HTTP {effective})", f"(code {effective} in an HTTP 200 reply)"
        )
    return error


# --- Envelopes ---------------------------------------------------------------------------------------


class _Envelope(WireModel):
    code: int | str
    msg: str | None = None
    data: Any = None


def unwrap(body: Any, envelope: str | None, provider: str, classify_error: Classifier) -> Any:
    """The reply inside the envelope a provider's profile names (`code_msg_data`: `{code, msg, data}`,
    seeds/001); a bare reply passes as it is. A code other than success is raised as the error it is."""
    if envelope != "code_msg_data" or not isinstance(body, dict) or "code" not in body or "error" in body:
        return body
    if isinstance(body.get("data"), list):
        return body  # a bare Images reply that happens to carry a `code`
    try:
        wrapped = _Envelope.model_validate(body)
    except ValidationError:
        raise UpstreamError(
            f"{provider} answered an envelope that cannot be read", provider=provider
        ) from None
    if str(wrapped.code) not in SUCCESS_CODES:
        raise classify_error(200, body, provider)
    if wrapped.data is None:
        raise NoImagesReturned(
            f"{provider} answered without any image", provider=provider, upstream_message=wrapped.msg
        )
    return {"data": wrapped.data} if isinstance(wrapped.data, list) else wrapped.data


def reading(
    parse: Callable[[Any, str], T], client: ProviderClient, classify_error: Classifier
) -> Callable[[Any], T]:
    """`parse(body, provider)` for one client's replies, read inside the envelope its profile names."""
    profile = client.profile

    def read(body: Any) -> T:
        return parse(unwrap(body, profile.envelope, profile.id, classify_error), profile.id)

    return read


def with_warnings(reply: AdapterReply, request: WireRequest) -> AdapterReply:
    """The reply with the warnings of the request that asked for it (what the wire could not say)."""
    return replace(reply, warnings=request.warnings + reply.warnings) if request.warnings else reply


class Adapter(Protocol):
    """An adapter module exposes one coroutine with this signature."""

    def __call__(self, job: Batch, client: ProviderClient) -> Awaitable[AdapterReply]: ...
