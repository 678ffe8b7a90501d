"""The one HTTP layer: a pooled client per provider, timeouts, retries with backoff and
Retry-After, polling of task APIs, downloads, and the translation of transport failures
into the error tree. The only module that imports httpx2.

Credentials: auth headers are set here only, and only for the provider's own origin (or a
host its profile trusts); result URLs elsewhere are fetched without them, and redirects
are never followed with them. Every upstream message is scrubbed of the key.

Every byte from an upstream crosses this boundary under three limits: a wall-clock deadline per
request and per download (the timeout, whatever the drip rate), a cap on the body (decompressed
bytes: a client's `limited()` view sets it from what the route can return), and parsing that is
bounded in depth. Whatever an upstream sends, what leaves here is a reply or an error of the tree.
"""

from __future__ import annotations

import copy
import email.utils
import functools
import logging
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload
from urllib.parse import urljoin, urlsplit

import anyio
import httpx2
from pydantic import SecretStr

from .. import codec
from ..errors import ImagegateError, RateLimited, UpstreamError, UpstreamTimeout

__all__ = ["Classifier", "HttpReply", "ProviderClient", "ProviderProfile", "Transport", "default_error"]

log = logging.getLogger("imagegate.http")
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD"})
"""Requests that cost nothing twice (polls, downloads): retried after any connection failure."""
MAX_RETRY_AFTER = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
CONNECT_TIMEOUT = 15.0
LARGE_BODY = 1024 * 1024
DEFAULT_MAX_BODY = 512 * 1024 * 1024
"""The body cap of a client no route has limited (listings, doctor); a call's is derived from its route."""
ERROR_BODY_BYTES = 64 * 1024
"""How much of an error reply is read: its message is all that is used, and that is clipped anyway."""
MAX_REDIRECTS = 5
POOL = httpx2.Limits(max_connections=32, max_keepalive_connections=8)
AUTH_HEADERS = {
    "bearer": "Authorization",
    "raw": "Authorization",
    "x-key": "x-key",
    "x-goog-api-key": "x-goog-api-key",
    "key": "Authorization",  # fal: `Authorization: Key <FAL_KEY>`
}
Transport = httpx2.AsyncBaseTransport
"""What tests inject instead of the network (httpx2.MockTransport, or none for real sockets)."""
Classifier = Callable[[int, Any, str], ImagegateError]
"""An adapter's mapping of (HTTP status, parsed body or text, provider id) to an error of the tree."""
CheckUrl = Callable[[str], Awaitable["str | None"]]
"""A result URL (or a redirect's target) -> the address to connect to (None: as the URL says);
raises UpstreamError for a URL that must not be fetched."""


class BodyTooLarge(Exception):
    """Raised inside the HTTP layer when a body passes its cap; becomes an UpstreamError here."""


@dataclass(frozen=True)
class ProviderProfile:
    """How to reach one provider: base URL, key and how it is sent, hosts trusted with the key."""

    id: str
    base_url: str
    key: SecretStr | None
    auth: str = "bearer"
    envelope: str | None = None
    trusted_suffixes: tuple[str, ...] = ()
    base_url_from: str | None = None
    """The variable (or config entry) that set the base URL, for hints when a path is not found."""
    idempotency_header: str | None = None
    """Where the provider reads an idempotency key (the catalog's `idempotency_header`)."""

    def auth_headers(self) -> dict[str, str]:
        if self.key is None or self.auth == "none":
            return {}
        secret = self.key.get_secret_value()
        scheme = {"bearer": "Bearer ", "key": "Key "}.get(self.auth, "")
        return {AUTH_HEADERS[self.auth]: f"{scheme}{secret}"}

    def trusts(self, url: str) -> bool:
        """Same origin as the base URL, or a host the provider documents (BFL: *.bfl.ai)."""
        target, base = urlsplit(url), urlsplit(self.base_url)
        if (target.scheme, target.netloc) == (base.scheme, base.netloc):
            return True
        host = target.hostname or ""
        domains = [s.lstrip(".") for s in self.trusted_suffixes]  # "bfl.ai" must not match "evilbfl.ai"
        return target.scheme == "https" and any(host == d or host.endswith("." + d) for d in domains)


@dataclass(frozen=True)
class HttpReply:
    """A successful (2xx) reply."""

    status: int
    headers: Mapping[str, str]
    content: bytes | bytearray = field(repr=False)

    def json(self) -> Any:
        """The parsed body (see codec.loads for how image payloads skip the big string)."""
        try:
            return codec.loads(self.content)
        except ValueError as e:
            raise UpstreamError(
                f"answered with malformed JSON (HTTP {self.status}: {e})", status=self.status
            ) from None

    async def parsed(self) -> Any:
        """`json()`, in a worker thread when the body is large enough to hold up other calls."""
        if len(self.content) < LARGE_BODY:
            return self.json()
        return await anyio.to_thread.run_sync(self.json)


def _message_of(body: Any) -> str | None:
    """The upstream's own message from the common error shapes."""
    if isinstance(body, dict):
        for key in ("error", "message", "msg", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                inner = _message_of(value)
                if inner:
                    return inner
    return body[:300] if isinstance(body, str) and body.strip() else None


def default_error(
    status: int, body: Any, provider: str, upstream_message: str | None = None
) -> ImagegateError:
    """The status-based classification adapters fall back on (`upstream_message`: the message the
    adapter's own reader found, else the common error shapes are searched)."""
    from ..errors import AuthFailed, InsufficientBalance

    message = upstream_message or _message_of(body)
    kw: dict[str, Any] = {"provider": provider, "upstream_message": message}
    if status in (401, 403):
        return AuthFailed(
            f"{provider} rejected the API key (HTTP {status}); check the key and its access", **kw
        )
    if status == 402:
        return InsufficientBalance(
            f"{provider} says the account balance is insufficient (HTTP 402); top it up", **kw
        )
    if status == 429:
        return RateLimited(
            f"{provider} is rate limiting (HTTP 429) and still was after retries; try again later", **kw
        )
    if status in (408, 504):
        timeout = UpstreamTimeout(f"{provider} timed out (HTTP {status})", **kw)
        timeout.retryable = (
            status in RETRY_STATUSES
        )  # a gateway's 504, not a 408 (the upstream gave up on us)
        return timeout
    return UpstreamError(
        f"{provider} failed (HTTP {status})", status=status, retryable=status in RETRY_STATUSES, **kw
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    if ms := headers.get("retry-after-ms"):
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _where(url: str) -> str:
    """A URL as messages show it: scheme, host and path (a query can carry a signature or a key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _host(url: str) -> str:
    """Where a URL points, without its path and query (signed URLs carry tokens there)."""
    return urlsplit(url).netloc or "the server"


async def _body(response: httpx2.Response, max_bytes: int) -> bytearray:
    """The whole body in one growing buffer: no list of chunks joined into a second copy at the end
    (at hundreds of megabytes of base64 that copy was the peak of the process's memory). Inside
    codec.large_payloads(), image payloads are decoded as they arrive. The cap counts decompressed
    bytes: a small gzip body that inflates without end stops at it. An error reply is cut off there
    instead (only its message is wanted)."""
    body = bytearray()
    watcher = codec.watcher() if response.is_success else None
    try:
        async for chunk in response.aiter_bytes():
            if len(body) + len(chunk) > max_bytes:
                if not response.is_success:
                    body += chunk[: max_bytes - len(body)]
                    break
                raise BodyTooLarge
            body += chunk
            if watcher is not None:
                watcher.feed(body)
    except BaseException:
        if watcher is not None:
            watcher.fail()
        raise
    if watcher is not None:
        watcher.done(body)
    return body


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`url` with its host replaced by `address`, the Host header it had, and the TLS server name
    (SNI and certificate check) of its host for https."""
    parts = urlsplit(url)
    netloc = (f"[{address}]" if ":" in address else address) + (
        f":{parts.port}" if parts.port is not None else ""
    )
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" and parts.hostname else {}
    return parts._replace(netloc=netloc).geturl(), {"Host": parts.netloc}, extensions


async def _as_is(reply: HttpReply) -> HttpReply:
    return reply


def _parsed_by(read: Callable[[Any], T] | None) -> Callable[[HttpReply], Awaitable[Any]]:
    async def parse(reply: HttpReply) -> Any:
        body = await reply.parsed()
        return body if read is None else read(body)

    return parse


def _parse_body(content: bytes | bytearray) -> Any:
    try:
        return codec.loads(content, payloads=False)
    except ValueError:
        return content[:2000].decode("utf-8", "replace")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate store, loaded once per process: loading it takes ~25 ms, and every provider's
    client (and every service a test builds) would otherwise load its own copy. httpx2 builds it the same
    way (SSL_CERT_FILE / SSL_CERT_DIR, else the system store); contexts are safe to share."""
    return httpx2.create_ssl_context()


class ProviderClient:
    """One pooled client for one provider; opened at start-up, closed on shutdown."""

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        timeout: float,
        max_retries: int,
        transport: Transport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.profile = profile
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_body = DEFAULT_MAX_BODY
        self._sleep = sleep
        self._clock = clock
        self._http = httpx2.AsyncClient(
            verify=tls_context(),
            timeout=httpx2.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            limits=POOL,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def limited(self, max_body: int) -> ProviderClient:
        """This client (the same pool) with its bodies capped at `max_body` bytes: one call's view."""
        view = copy.copy(self)
        view.max_body = max_body
        return view

    def _too_large(self, what: str) -> UpstreamError:
        mb = self.max_body / 1024 / 1024
        return UpstreamError(
            f"{what} larger than {mb:.0f} MB, more than this call's images can take; it was not read "
            "(IMAGEGATE_MAX_REPLY_MB raises the cap)",
            provider=self.profile.id,
        )

    def url(self, path: str) -> str:
        """A documented path under the base URL, or an absolute URL the upstream handed back."""
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.profile.base_url.rstrip("/") + "/", path.lstrip("/"))

    def redact(self, text: str | None) -> str | None:
        """Remove the key from any text an upstream sent (some echo it in error messages)."""
        key = self.profile.key.get_secret_value() if self.profile.key else None
        return text.replace(key, "***") if text and key and len(key) >= 4 else text

    async def request(
        self,
        method: str,
        path: str,
        classify: Classifier,
        *,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        files: Sequence[tuple[str, tuple[str, bytes, str]]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """Send, retrying what `call` retries; the 2xx reply, or its classified error."""
        return await self.call(
            method, path, classify, _as_is, json_body=json_body, data=data, files=files, headers=headers
        )

    async def call(
        self,
        method: str,
        path: str,
        classify: Classifier,
        read: Callable[[HttpReply], Awaitable[T]],
        *,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        files: Sequence[tuple[str, tuple[str, bytes, str]]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        """Send, and read a 2xx reply with `read`; retry on a retryable error, whether the status
        said it (classified by `classify`) or `read` found it in a 200 body (ModelGate's `is_retry`).

        An error is classified first, then retried on its `retryable` flag and Retry-After (header,
        or the classifier's hint from the body), with jittered backoff, up to `max_retries` times.
        Never paying twice: a connection that failed before the request went out is retried; one
        that broke after it was sent is retried only for GET (a POST may be generating, and billing,
        already), and a read timeout never is; nor anything the classifier did not mark retryable.
        Where the provider takes an idempotency key, one key goes with the request and its retries.
        """
        url = self.url(path)
        send_headers = {
            **(self.profile.auth_headers() if self.profile.trusts(url) else {}),
            **(headers or {}),
        }
        if self.profile.idempotency_header and method not in SAFE_METHODS:
            send_headers.setdefault(self.profile.idempotency_header, f"imagegate-{uuid.uuid4().hex}")
        for attempt in range(self.max_retries + 1):
            wait: float | None = (
                None  # the reply's Retry-After; a hint in its body is for the agent's message
            )
            try:
                status, reply_headers, content = await self._exchange(
                    method, url, send_headers, json_body, data, files
                )
                wait = _retry_after(reply_headers)
                if not 200 <= status < 300:
                    raise self._error(url, status, content, wait, classify)
                return await read(HttpReply(status, reply_headers, content))
            except ImagegateError as error:
                if (
                    attempt == self.max_retries
                    or not error.retryable
                    or (wait is not None and wait > MAX_RETRY_AFTER)
                ):
                    raise
                await self._backoff(attempt, wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json_body: Any,
        data: Mapping[str, str] | None,
        files: Sequence[tuple[str, tuple[str, bytes, str]]] | None,
    ) -> tuple[int, Mapping[str, str], bytearray]:
        """One request within the deadline: status, headers and the body (capped); transport
        failures as errors of the tree, retryable where nothing can have reached the upstream's work."""
        provider = self.profile.id
        try:
            with anyio.fail_after(self.timeout):  # the whole exchange, however slowly the bytes drip
                async with self._http.stream(
                    method, url, json=json_body, data=data, files=files, headers=headers
                ) as response:
                    limit = self.max_body if response.is_success else ERROR_BODY_BYTES
                    return response.status_code, response.headers, await _body(response, limit)
        except BodyTooLarge:
            raise self._too_large("answered with a body") from None
        except (httpx2.TimeoutException, TimeoutError) as e:
            error = UpstreamTimeout(f"{provider} did not answer within {self.timeout:g} s", provider=provider)
            error.retryable = isinstance(e, httpx2.ConnectTimeout)  # never connected: nothing was sent
            raise error from None
        except httpx2.TransportError as e:
            message = f"could not reach {provider} at {_host(url)} ({type(e).__name__})"
            # Not connected: nothing was sent. Sent (a dropped reply): a POST may have been billed.
            unsent = isinstance(e, httpx2.ConnectError) or method in SAFE_METHODS
            raise UpstreamError(message, provider=provider, retryable=unsent) from None
        except (httpx2.HTTPError, httpx2.InvalidURL) as e:  # an undecodable body (DecodingError), a bad URL
            raise UpstreamError(
                f"sent a reply that cannot be read ({type(e).__name__})", provider=provider
            ) from None

    def _base_url_hint(self) -> str:
        source = f"; {self.profile.base_url_from} sets it" if self.profile.base_url_from else ""
        return (
            f"if the base URL {self.profile.base_url} is wrong{source}: it must end where the provider's "
            "documented paths begin, often with /v1"
        )

    def _error(
        self,
        url: str,
        status: int,
        content: bytes | bytearray,
        retry_after: float | None,
        classify: Classifier,
    ) -> ImagegateError:
        error = classify(status, _parse_body(content), self.profile.id)
        if status == 404:  # most often a base URL without its version segment, or a wrong one
            error.message += f"; {_where(url)} was not found ({self._base_url_hint()})"
        error.message = self.redact(error.message) or error.message
        error.upstream_message = self.redact(error.upstream_message)
        error.provider = error.provider or self.profile.id
        if retry_after is not None:  # else keep the classifier's hint from the body (Gemini RetryInfo)
            error.retry_after = retry_after
        if status in RETRY_STATUSES and isinstance(error, (UpstreamError, UpstreamTimeout)):
            error.retryable = True  # a gateway's 502/503/504 is transient whatever code its body carries
        return error

    async def _backoff(self, attempt: int, retry_after: float | None) -> None:
        delay = (
            retry_after
            if retry_after is not None
            else min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
        )
        log.info("%s: retrying in %.2f s (attempt %d)", self.profile.id, delay, attempt + 1)
        await self._sleep(delay)

    @overload
    async def post_json(
        self,
        path: str,
        body: Any,
        classify: Classifier,
        headers: Mapping[str, str] | None = None,
        *,
        read: Callable[[Any], T],
    ) -> T: ...

    @overload
    async def post_json(
        self,
        path: str,
        body: Any,
        classify: Classifier,
        headers: Mapping[str, str] | None = None,
        read: None = None,
    ) -> Any: ...

    async def post_json(
        self,
        path: str,
        body: Any,
        classify: Classifier,
        headers: Mapping[str, str] | None = None,
        read: Callable[[Any], T] | None = None,
    ) -> Any:
        """POST a JSON body; the parsed reply, or what `read` makes of it (`read` may raise a
        retryable error found in a 200 body, and the POST is retried)."""
        return await self.call("POST", path, classify, _parsed_by(read), json_body=body, headers=headers)

    async def get_json(self, path: str, classify: Classifier) -> Any:
        return await (await self.request("GET", path, classify)).parsed()

    async def download(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        max_bytes: int,
        follow_redirects: bool = True,
        connect_to: str | None = None,
        check: CheckUrl | None = None,
    ) -> str | None:
        """Stream a URL into `sink` within the timeout; send the key only if the provider trusts the host.

        `check` (for result URLs) vets the URL and each redirect's target and says which address
        to connect to; `connect_to` pins the connection to an address checked before (an agent's
        input URL), while Host, TLS name and certificate check stay the URL's. Redirects are
        followed up to MAX_REDIRECTS hops, never with the key, and only when `follow_redirects`
        (an input URL's redirect could lead anywhere, so it is refused instead). Returns the
        Content-Type given. Raises UpstreamError when the URL has expired (404/403/410), is
        refused, redirects when it may not or too often, or the body exceeds `max_bytes`;
        UpstreamTimeout past the timeout, however slowly the body drips.
        """
        try:
            with anyio.fail_after(self.timeout):
                for hop in range(MAX_REDIRECTS + 1):
                    if check is not None:
                        connect_to = await check(url)
                    headers = self.profile.auth_headers() if hop == 0 and self.profile.trusts(url) else {}
                    location, content_type = await self._get(url, sink, max_bytes, headers, connect_to)
                    if location is None:
                        return content_type
                    if not follow_redirects:
                        raise UpstreamError(
                            f"{_host(url)} redirects to {_host(location)}; give the final image URL",
                            provider=self.profile.id,
                        )
                    url, connect_to = urljoin(url, location), None
                raise UpstreamError(
                    f"the image at {_host(url)} redirects more than {MAX_REDIRECTS} times",
                    provider=self.profile.id,
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"downloading the image from {_host(url)} took more than {self.timeout:g} s",
                provider=self.profile.id,
            ) from None
        except httpx2.TimeoutException:
            raise UpstreamTimeout(
                f"downloading the image from {_host(url)} timed out", provider=self.profile.id
            ) from None
        except (httpx2.HTTPError, httpx2.InvalidURL) as e:
            raise UpstreamError(
                f"could not download the image from {_host(url)} ({type(e).__name__})",
                provider=self.profile.id,
            ) from None

    async def _get(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        max_bytes: int,
        headers: dict[str, str],
        connect_to: str | None,
    ) -> tuple[str | None, str | None]:
        """One GET of a download: (a redirect's Location, None), or (None, Content-Type) once
        the body is in `sink`."""
        target, extensions = url, dict[str, Any]()
        if connect_to is not None:
            target, pinned, extensions = _pinned(url, connect_to)
            headers = {**headers, **pinned}
        async with self._http.stream("GET", target, headers=headers, extensions=extensions) as response:
            if response.is_redirect:
                return response.headers.get("location", ""), None
            if not response.is_success:
                raise UpstreamError(
                    f"{_host(url)} answered HTTP {response.status_code} for the image (expired?)",
                    provider=self.profile.id,
                    status=response.status_code,
                )
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise UpstreamError(
                        f"the image at {_host(url)} is larger than {max_bytes} bytes",
                        provider=self.profile.id,
                    )
                await sink(chunk)
            return None, response.headers.get("content-type")

    async def poll(
        self,
        fetch: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        *,
        interval: float = 1.0,
        max_interval: float = 5.0,
        on_wait: Callable[[float], Awaitable[None]] | None = None,
    ) -> T:
        """Call `fetch` until `done`, backing off between calls, within the request timeout.

        Cancellation (the caller's scope) stops it between or during calls.
        """
        start = self._clock()
        while True:
            value = await fetch()
            if done(value):
                return value
            elapsed = self._clock() - start
            if elapsed + interval > self.timeout:
                raise UpstreamTimeout(
                    f"{self.profile.id} did not finish the task within {self.timeout:g} s",
                    provider=self.profile.id,
                )
            if on_wait is not None:
                await on_wait(elapsed)
            await self._sleep(interval)
            interval = min(max_interval, interval * 1.5)
