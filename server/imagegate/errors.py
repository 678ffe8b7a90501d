"""The one exception tree of imagegate.

Every failure an agent can act on is an `ImagegateError`; the MCP layer turns it into an
`isError` result carrying `agent_text()`. Anything else is a bug and is reported as an
internal error with a reference, never with its own text (which may hold URLs or keys).

    ImagegateError
     ├── ConfigError          a catalog or config file is malformed (start-up)
     ├── InvalidRequest       an argument breaks the route's rules (before any upstream call)
     ├── NotConfigured        the model exists but no provider serving it has a key
     ├── AuthFailed           the upstream refused the key
     ├── InsufficientBalance  the account is out of credit
     ├── RateLimited          still rate limited after retries
     ├── ContentRefused       the upstream's content policy blocked the prompt or result
     ├── UpstreamError        the upstream failed or answered something we cannot use
     │    ├── NoImagesReturned  it answered, but without a single image
     │    └── ModelNotFound     it has no model (or no channel) by the wire id it was sent
     ├── UpstreamTimeout      the upstream did not answer within the timeout
     ├── StorageError         an image could not be written
     └── NotImplementedYet    a tool whose pipeline is not built yet (validated calls only)
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "SHOWN_CHARS",
    "AuthFailed",
    "ConfigError",
    "ContentRefused",
    "ImagegateError",
    "InsufficientBalance",
    "InvalidRequest",
    "ModelNotFound",
    "NoImagesReturned",
    "NotConfigured",
    "NotImplementedYet",
    "RateLimited",
    "StorageError",
    "UpstreamError",
    "UpstreamTimeout",
    "clip",
    "model_id_text",
    "shown",
]

SHOWN_CHARS = 60
UPSTREAM_TEXT_CHARS = 2000
"""The most of an upstream's own words any message carries (a 10 MB error body is not a tool result)."""


def shown(value: object) -> str:
    """A value as messages quote it: whole when short, else its start and its length
    (an agent's 300 KB argument must not come back as a 300 KB error)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + f"… ({len(text)} chars)"


def clip(text: str | None, limit: int = UPSTREAM_TEXT_CHARS) -> str | None:
    """Text from an upstream, cut to `limit` characters with a note of how long it was."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text)} chars)"


class ImagegateError(Exception):
    """Base of every error an agent or a person can act on."""

    kind = "error"
    retryable = False
    retry_after: float | None = None
    """Seconds the upstream asked to wait before trying again (Retry-After, or its body's hint)."""

    def __init__(self, message: str, *, provider: str | None = None, upstream_message: str | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.upstream_message = upstream_message

    # Both texts can carry an upstream's words, so both are clipped however they are set.
    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message = clip(text, 2 * UPSTREAM_TEXT_CHARS) or ""

    @property
    def upstream_message(self) -> str | None:
        return self._upstream_message

    @upstream_message.setter
    def upstream_message(self, text: str | None) -> None:
        self._upstream_message = clip(text)

    def agent_text(self) -> str:
        """The text shown to the agent: who failed, what happened and, where known, what to do."""
        text = self.message
        if self.provider and self.provider not in text:  # parse-step errors do not know who answered
            text = f"{self.provider}: {text}"
        if self.upstream_message and self.upstream_message not in text:
            text += f" (upstream said: {self.upstream_message})"
        return text


class ConfigError(ImagegateError):
    """Raised at start-up when a catalog or config file is malformed; names file, entry and field."""

    kind = "config_error"


class InvalidRequest(ImagegateError):
    """Raised when an argument breaks the rules of the route that would serve it."""

    kind = "invalid_argument"

    def __init__(self, argument: str, value: object, allowed: str | Sequence[str] | None, message: str):
        super().__init__(message)
        self.argument = argument
        self.value = value
        self.allowed = allowed if isinstance(allowed, str) or allowed is None else list(allowed)


class NotConfigured(ImagegateError):
    """Raised when a model is known but no provider serving it has credentials."""

    kind = "not_configured"

    def __init__(self, message: str, *, env_vars: Sequence[str]):
        super().__init__(message)
        self.env_vars = list(env_vars)


class AuthFailed(ImagegateError):
    """Raised when the upstream rejects the API key (401/403)."""

    kind = "auth_failed"


class InsufficientBalance(ImagegateError):
    """Raised when the upstream account has no credit left (402 and equivalents)."""

    kind = "insufficient_balance"


class RateLimited(ImagegateError):
    """Raised when the upstream still rate-limits after every retry."""

    kind = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ContentRefused(ImagegateError):
    """Raised when the upstream's content policy blocked the prompt, an input or the output."""

    kind = "content_refused"


class UpstreamError(ImagegateError):
    """Raised when the upstream failed or answered in a shape we cannot use."""

    kind = "upstream_error"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False, **kw: str | None):
        super().__init__(message, **kw)
        self.status = status
        self.retryable = retryable


class NoImagesReturned(UpstreamError):
    """Raised when the upstream answered successfully but returned no image at all."""

    kind = "no_images"


class ModelNotFound(UpstreamError):
    """Raised when the upstream says the model id it was sent does not exist, or has no channel.

    Adapters raise it only for wordings their documents give (Ark's `InvalidEndpointOrModel.NotFound`);
    the generator also recognises a reply that names the wire id it sent, and rewrites either into
    `model_id_text` (which id was sent, whether it is UNCONFIRMED, how to override it)."""

    kind = "model_not_found"


def model_id_text(
    provider: str,
    model: str,
    upstream: str,
    unconfirmed: str | None,
    status: int | None = None,
    said: str | None = None,
) -> str:
    """What to tell an agent when `provider` does not know the id `upstream` that was sent for `model`:
    the id, whether the catalog marks it UNCONFIRMED (and why), and the config entry that overrides it.
    `said` (the upstream's words) goes before the config snippet, which stays last to be copied."""
    answer = f"HTTP {status}" if status else ""
    quoted = f"{answer}: {said}" if answer and said else answer or said
    head = f'{provider} has no model "{upstream}"' + (f" ({quoted})" if quoted else "")
    trust = (
        f"UNCONFIRMED ({unconfirmed.rstrip('.')})"
        if unconfirmed
        else "not marked UNCONFIRMED in the catalog, so the model may not be enabled for this key"
    )
    return (
        f"{head}. That is the id imagegate sent for {model}; it is {trust}. If {provider} names {model} "
        f"differently, set its id in imagegate's config file:\n"
        f'[providers.{provider}.upstream]\n"{model}" = "<{provider}\'s id for it>"'
    )


class UpstreamTimeout(ImagegateError):
    """Raised when the upstream did not answer within the configured timeout."""

    kind = "timeout"
    retryable = True


class StorageError(ImagegateError):
    """Raised when an image could not be written to the output directory."""

    kind = "storage_error"


class NotImplementedYet(ImagegateError):
    """Raised for a valid call to a capability whose pipeline is not built yet."""

    kind = "not_implemented"
