"""The shared HTTP layer on httpx2.MockTransport with a recording `sleep`: retries and backoff,
Retry-After in its three spellings, classification, redaction, where the key may go, downloads
and polling. No network, no real waiting except in the two polling tests that need a clock."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from pydantic import SecretStr

from imagegate.errors import (
    AuthFailed,
    ImagegateError,
    InsufficientBalance,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from imagegate.providers.http import ProviderClient, ProviderProfile, default_error

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-http"
BASE = "https://api.acme.test/v1"
Step = httpx2.Response | type[Exception]


class Upstream:
    """A scripted upstream: each request takes the next step (the last one repeats) and is recorded."""

    def __init__(self, *script: Step) -> None:
        self.script = list(script)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, type):
            raise step("scripted failure", request=request)  # type: ignore[call-arg]
        return step


class Sleeps(list[float]):
    """The injected sleep: records each delay, waits for none."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


class Sink(list[bytes]):
    """A download sink keeping every chunk it is given."""

    async def __call__(self, chunk: bytes) -> None:
        self.append(chunk)


@asynccontextmanager
async def provider(
    handler: Callable[[httpx2.Request], Any],
    *,
    max_retries: int = 3,
    timeout: float = 30.0,
    auth: str = "bearer",
    trusted: tuple[str, ...] = (),
    sleep: Callable[[float], Any] | None = None,
) -> AsyncIterator[tuple[ProviderClient, Sleeps]]:
    sleeps = Sleeps()
    profile = ProviderProfile(
        id="acme", base_url=BASE, key=SecretStr(KEY), auth=auth, trusted_suffixes=trusted
    )
    client = ProviderClient(
        profile,
        timeout=timeout,
        max_retries=max_retries,
        transport=httpx2.MockTransport(handler),
        sleep=sleep or sleeps,
    )
    try:
        yield client, sleeps
    finally:
        await client.aclose()


def reply(status: int, body: Any = None, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json=body if body is not None else {"ok": status < 400}, headers=headers)


OK = reply(200, {"data": "fine"})


def in_backoff_window(delay: float, attempt: int) -> bool:
    ceiling = min(8.0, 0.5 * 2**attempt)
    return ceiling * 0.5 <= delay <= ceiling


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_transient_status_is_retried_with_jittered_backoff(status):
    upstream = Upstream(reply(status), OK)
    async with provider(upstream) as (client, sleeps):
        assert await client.post_json("/images/generations", {"x": 1}, default_error) == {"data": "fine"}
    assert len(upstream.requests) == 2 and len(sleeps) == 1 and in_backoff_window(sleeps[0], 0)


@pytest.mark.parametrize(
    "failure", [httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.ConnectTimeout]
)
async def test_a_connection_failure_is_retried(failure):
    upstream = Upstream(failure, OK)
    async with provider(upstream) as (client, sleeps):
        assert await client.get_json("/tasks/1", default_error) == {"data": "fine"}
    assert len(upstream.requests) == 2 and len(sleeps) == 1


async def test_backoff_doubles_per_attempt_and_the_last_error_is_raised():
    upstream = Upstream(reply(503, {"error": {"message": "overloaded"}}))
    async with provider(upstream, max_retries=3) as (client, sleeps):
        with pytest.raises(UpstreamError) as caught:
            await client.post_json("/images/generations", {}, default_error)
    assert len(upstream.requests) == 4 and len(sleeps) == 3
    assert all(in_backoff_window(delay, attempt) for attempt, delay in enumerate(sleeps))
    error = caught.value
    assert (error.status, error.retryable, error.upstream_message) == (503, True, "overloaded")


@pytest.mark.parametrize(
    ("failure", "error"),
    [(httpx2.ConnectError, UpstreamError), (httpx2.ConnectTimeout, UpstreamTimeout)],
)
async def test_a_connection_failure_that_persists_becomes_a_classified_error(failure, error):
    upstream = Upstream(failure)
    async with provider(upstream, max_retries=2) as (client, sleeps):
        with pytest.raises(error) as caught:
            await client.get_json("/x", default_error)
    assert len(upstream.requests) == 3 and len(sleeps) == 2 and caught.value.provider == "acme"
    # The foreign exception's own text never reaches the agent.
    assert "scripted failure" not in caught.value.agent_text()


async def test_a_read_timeout_is_not_retried():
    upstream = Upstream(httpx2.ReadTimeout)
    async with provider(upstream, timeout=7) as (client, sleeps):
        with pytest.raises(UpstreamTimeout, match="did not answer within 7 s"):
            await client.post_json("/images/generations", {}, default_error)
    assert len(upstream.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, RateLimited, "rate_limited"),
        (502, UpstreamError, "upstream_error"),
        (503, UpstreamError, "upstream_error"),
        (504, UpstreamTimeout, "timeout"),
    ],
)
async def test_a_transient_status_that_outlasts_the_retries_is_classified(status, error, kind):
    upstream = Upstream(reply(status))
    async with provider(upstream, max_retries=1) as (client, sleeps):
        with pytest.raises(error) as caught:
            await client.post_json("/images/generations", {}, default_error)
    assert len(upstream.requests) == 2 and len(sleeps) == 1
    assert (type(caught.value), caught.value.kind, caught.value.retryable) == (error, kind, True)


def http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


# fmt: off
@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        pytest.param(lambda: {"retry-after": "2"}, 2.0, 2.0, id="seconds"),
        pytest.param(lambda: {"retry-after": "0"}, 0.0, 0.0, id="zero"),
        pytest.param(lambda: {"retry-after": http_date(30)}, 28.0, 30.5, id="http-date"),
        pytest.param(lambda: {"retry-after": http_date(-30)}, 0.0, 0.0, id="http-date-in-the-past"),
        pytest.param(lambda: {"retry-after-ms": "250"}, 0.25, 0.25, id="milliseconds"),
        pytest.param(
            lambda: {"retry-after-ms": "250", "retry-after": "9"}, 0.25, 0.25, id="milliseconds-win"
        ),
        pytest.param(lambda: {"retry-after": "soon"}, 0.25, 0.5, id="unparsable-falls-back-to-backoff"),
    ],
)
# fmt: on
async def test_retry_after_is_honoured_in_each_spelling(headers, low, high):
    # headers made now: an HTTP-date is relative to the clock
    upstream = Upstream(reply(429, **headers()), OK)
    async with provider(upstream) as (client, sleeps):
        await client.post_json("/images/generations", {}, default_error)
    assert len(sleeps) == 1 and low <= sleeps[0] <= high


@pytest.mark.parametrize(("status", "error"), [(429, RateLimited), (503, UpstreamError)])
async def test_a_retry_after_beyond_a_minute_is_not_waited_for(status, error):
    upstream = Upstream(reply(status, **{"retry-after": "120"}), OK)
    async with provider(upstream) as (client, sleeps):
        with pytest.raises(error) as caught:
            await client.post_json("/images/generations", {}, default_error)
    assert len(upstream.requests) == 1 and sleeps == []
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 120


def answer(status: int, body: Any) -> httpx2.Response:
    """An error reply with a JSON body, or a text one when `body` is a string."""
    return httpx2.Response(status, text=body) if isinstance(body, str) else httpx2.Response(status, json=body)


# fmt: off
@pytest.mark.parametrize(
    ("status", "body", "error", "kind", "upstream_message"),
    [
        (400, {"error": {"message": "bad size", "code": "x"}}, UpstreamError, "upstream_error", "bad size"),
        (401, {"error": {"message": "Incorrect API key."}}, AuthFailed, "auth_failed", "Incorrect API key."),
        (403, {"message": "forbidden region"}, AuthFailed, "auth_failed", "forbidden region"),
        (402, {"msg": "Insufficient balance."}, InsufficientBalance, "insufficient_balance",
         "Insufficient balance."),
        (404, {"detail": "no such route"}, UpstreamError, "upstream_error", "no such route"),
        (408, "request timeout", UpstreamTimeout, "timeout", "request timeout"),
        (500, {"error": "boom"}, UpstreamError, "upstream_error", "boom"),
        (418, "", UpstreamError, "upstream_error", None),
    ],
)
# fmt: on
async def test_other_statuses_are_classified_without_retry(status, body, error, kind, upstream_message):
    upstream = Upstream(answer(status, body), OK)
    async with provider(upstream) as (client, sleeps):
        with pytest.raises(error) as caught:
            await client.post_json("/images/generations", {}, default_error)
    assert len(upstream.requests) == 1 and sleeps == []
    assert (type(caught.value), caught.value.kind, caught.value.provider) == (error, kind, "acme")
    assert caught.value.upstream_message == upstream_message
    assert f"HTTP {status}" in caught.value.agent_text()


def echoing(status: int, parsed: Any, provider_id: str) -> ImagegateError:
    """A careless classifier that quotes the whole body in its own message."""
    error = default_error(status, parsed, provider_id)
    error.message += f" ({parsed})"
    return error


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": {"message": f"Incorrect API key provided: {KEY}."}}),
        (500, {"message": f"upstream choked on Authorization: Bearer {KEY}"}),
        (429, f"too many requests for {KEY}"),
    ],
)
async def test_the_key_is_redacted_from_every_upstream_message(status, body):
    async with provider(Upstream(answer(status, body)), max_retries=0) as (client, _):
        with pytest.raises(ImagegateError) as caught:
            await client.post_json("/images/generations", {}, echoing)
    error = caught.value
    assert KEY not in error.agent_text() and KEY not in f"{error.message} {error.upstream_message}"
    assert "***" in error.agent_text()


async def test_malformed_json_in_a_success_is_an_upstream_error():
    async with provider(Upstream(httpx2.Response(200, text='{"data": ['))) as (client, _):
        with pytest.raises(UpstreamError, match="malformed JSON"):
            await client.post_json("/images/generations", {}, default_error)


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ("bearer", "authorization", f"Bearer {KEY}"),
        ("raw", "authorization", KEY),
        ("x-key", "x-key", KEY),
        ("x-goog-api-key", "x-goog-api-key", KEY),
    ],
)
async def test_the_key_goes_in_the_profiles_header_form(auth, header, value):
    upstream = Upstream(OK)
    async with provider(upstream, auth=auth) as (client, _):
        await client.post_json("/images/generations", {}, default_error)
    sent = upstream.requests[0]
    assert sent.headers[header] == value and str(sent.url) == f"{BASE}/images/generations"
    assert [h for h in ("authorization", "x-key", "x-goog-api-key") if h in sent.headers] == [header]


# fmt: off
@pytest.mark.parametrize(
    ("url", "trusted", "sends_key"),
    [
        pytest.param(f"{BASE}/tasks/1", (), True, id="same-origin"),
        pytest.param("https://api.acme.test/other/path", (), True, id="same-origin-other-path"),
        pytest.param("https://api.acme.test:8443/v1/x", (), False, id="other-port"),
        pytest.param("http://api.acme.test/v1/x", (), False, id="other-scheme"),
        pytest.param("https://evil.test/v1/x", (), False, id="foreign-host"),
        pytest.param("https://api.acme.test@evil.test/v1/x", (), False, id="userinfo-trick"),
        pytest.param("https://eu1.delivery.acme.ai/r/1", (".acme.ai",), True, id="trusted-subdomain"),
        pytest.param("https://acme.ai/r/1", (".acme.ai",), True, id="trusted-apex"),
        pytest.param(
            "http://eu1.delivery.acme.ai/r/1", (".acme.ai",), False, id="trusted-host-but-plain-http"
        ),
        pytest.param("https://evilacme.ai/r/1", (".acme.ai",), False, id="lookalike-of-dotted-suffix"),
        pytest.param("https://evilacme.ai/r/1", ("acme.ai",), False, id="lookalike-of-undotted-suffix"),
    ],
)
# fmt: on
async def test_auth_goes_only_to_the_same_origin_or_a_trusted_host(url, trusted, sends_key):
    upstream = Upstream(OK)
    async with provider(upstream, trusted=trusted) as (client, _):
        assert client.profile.trusts(url) is sends_key
        await client.get_json(url, default_error)
        await client.download(url, Sink(), 1024)
    for request in upstream.requests:
        assert (request.headers.get("authorization") == f"Bearer {KEY}") is sends_key
        assert sends_key or KEY.encode() not in b"".join(name + value for name, value in request.headers.raw)


async def test_an_api_redirect_is_not_followed():
    upstream = Upstream(httpx2.Response(302, headers={"location": "https://evil.test/steal"}))
    async with provider(upstream) as (client, _):
        with pytest.raises(UpstreamError):
            await client.post_json("/images/generations", {}, default_error)
    assert [r.url.host for r in upstream.requests] == ["api.acme.test"]


@pytest.mark.parametrize("start", [f"{BASE}/files/1.png", "https://cdn.acme-results.test/1.png"])
async def test_a_download_redirect_never_carries_the_key_to_another_host(start):
    def handler(request: httpx2.Request) -> httpx2.Response:
        handler.seen.append(request)  # type: ignore[attr-defined]
        if request.url.host != "elsewhere.test":
            return httpx2.Response(302, headers={"location": "https://elsewhere.test/1.png"})
        return httpx2.Response(200, content=b"\x89PNG")

    handler.seen = []  # type: ignore[attr-defined]
    async with provider(handler) as (client, _):
        try:
            await client.download(start, Sink(), 1024)
        except UpstreamError:
            pass  # refusing to follow is as safe as following without the key
    for request in handler.seen:  # type: ignore[attr-defined]
        if request.url.host == "elsewhere.test":
            assert "authorization" not in request.headers


async def test_a_download_streams_chunks_into_the_sink_and_returns_the_content_type():
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 500]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    upstream = Upstream(httpx2.Response(200, content=body(), headers={"content-type": "image/png"}))
    received = Sink()
    async with provider(upstream) as (client, _):
        assert await client.download("https://cdn.other.test/x.png", received, 10_000) == "image/png"
    assert b"".join(received) == b"".join(chunks) and len(received) == len(chunks)
    assert "authorization" not in upstream.requests[0].headers


@pytest.mark.parametrize(
    ("response", "limit", "message"),
    [
        (httpx2.Response(404, text="gone"), 10_000, "answered HTTP 404"),
        (httpx2.Response(410, text="gone"), 10_000, "answered HTTP 410"),
        (httpx2.Response(200, content=b"x" * 5000), 4096, "larger than 4096 bytes"),
    ],
)
async def test_a_download_that_is_gone_or_too_large_is_an_upstream_error(response, limit, message):
    received = Sink()
    async with provider(Upstream(response)) as (client, sleeps):
        with pytest.raises(UpstreamError, match=message):
            await client.download("https://cdn.other.test/x.png", received, limit)
    assert sum(map(len, received)) <= limit and sleeps == []


async def test_poll_stops_as_soon_as_the_task_is_done():
    states = iter(["queued", "running", "done", "never reached"])
    fetched: list[str] = []
    waits: list[float] = []

    async def fetch() -> str:
        fetched.append(next(states))
        return fetched[-1]

    async def on_wait(elapsed: float) -> None:
        waits.append(elapsed)

    async with provider(Upstream(OK)) as (client, sleeps):
        done = await client.poll(
            fetch, lambda s: s == "done", interval=1.0, max_interval=2.0, on_wait=on_wait
        )
    assert done == "done"
    assert fetched == ["queued", "running", "done"]
    assert sleeps == [1.0, 1.5] and len(waits) == 2


async def test_poll_raises_upstream_timeout_at_its_deadline():
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await anyio.sleep(delay)

    async def fetch() -> str:
        return "running"

    async with provider(Upstream(OK), timeout=0.5, sleep=sleep) as (client, _):
        began = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="did not finish the task within 0.5 s"):
            await client.poll(fetch, lambda s: s == "done", interval=0.1, max_interval=0.2)
    assert sum(slept) <= 0.5 and time.monotonic() - began < 1.0
    assert slept[:3] == pytest.approx([0.1, 0.15, 0.2])


async def test_poll_stops_when_the_caller_cancels():
    async def fetch() -> str:
        return "running"

    async with provider(Upstream(OK), timeout=60, sleep=anyio.sleep) as (client, _):
        began = time.monotonic()
        with anyio.move_on_after(0.2):
            await client.poll(fetch, lambda s: s == "done", interval=0.05, max_interval=0.05)
    assert time.monotonic() - began < 0.5


# --- pinned downloads (DNS rebinding) ----------------------------------------------------------------


async def test_a_pinned_download_connects_to_the_checked_address_and_keeps_the_urls_host_name():
    """Over a real loopback socket: the name never resolves (.invalid), so the body can only have
    come through the pinned address; the server still sees the URL's own Host."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hosts: list[str | None] = []
    body = b"\x89PNG pinned"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ProviderClient(
        ProviderProfile("acme", BASE, SecretStr("test-pin-key")), timeout=5, max_retries=0
    )
    url = f"http://images.invalid:{server.server_port}/cat.png"
    received = bytearray()

    async def sink(chunk: bytes) -> None:
        received.extend(chunk)

    try:
        await client.download(url, sink, 1000, follow_redirects=False, connect_to="127.0.0.1")
        with pytest.raises(UpstreamError, match="could not download"):
            await client.download(url, sink, 1000, follow_redirects=False)  # unpinned: the name goes nowhere
    finally:
        await client.aclose()
        server.shutdown()
    assert bytes(received) == body and hosts == [f"images.invalid:{server.server_port}"]


# ---- retries follow the classified error, not the status alone


def flagged(retryable: bool) -> Callable[[int, Any, str], ImagegateError]:
    """A classifier whose errors carry the given retry flag, whatever the status."""

    def classify(status: int, body: Any, provider_id: str) -> ImagegateError:
        return UpstreamError(f"{provider_id} said no", status=status, retryable=retryable)

    return classify


async def test_an_error_the_classifier_marks_retryable_is_retried_whatever_its_status():
    upstream = Upstream(reply(500, {"error": "try later"}), OK)
    async with provider(upstream) as (client, sleeps):
        assert await client.post_json("/images/generations", {}, flagged(True)) == {"data": "fine"}
    assert len(upstream.requests) == 2 and len(sleeps) == 1


async def test_a_gateway_status_is_retried_even_when_the_classifier_does_not_say_so():
    upstream = Upstream(reply(503, {"error": {"code": "Weird"}}), OK)
    async with provider(upstream) as (client, sleeps):
        assert await client.post_json("/images/generations", {}, flagged(False)) == {"data": "fine"}
    assert len(upstream.requests) == 2


async def test_an_error_found_in_a_200_body_is_retried_when_it_is_retryable_and_only_then():
    def read(body: Any) -> Any:
        if body.get("status") == "error":
            raise UpstreamError("said error in a 200", retryable=body.get("retry", False))
        return body

    retried = Upstream(reply(200, {"status": "error", "retry": True}), reply(200, {"status": "ok"}))
    async with provider(retried) as (client, sleeps):
        assert await client.post_json("/images/generations", {}, default_error, read=read) == {"status": "ok"}
    assert len(retried.requests) == 2 and len(sleeps) == 1

    final = Upstream(reply(200, {"status": "error"}), reply(200, {"status": "ok"}))
    async with provider(final) as (client, sleeps):
        with pytest.raises(UpstreamError, match="said error in a 200"):
            await client.post_json("/images/generations", {}, default_error, read=read)
    assert len(final.requests) == 1 and sleeps == []


async def test_a_retry_hint_in_the_body_is_for_the_agent_and_the_wait_is_the_backoff():
    # Gemini's RetryInfo can say 41 s: the error carries it for the agent; only a header is waited for.
    def hinted(status: int, body: Any, provider_id: str) -> ImagegateError:
        return RateLimited("slow down", retry_after=body["wait"])

    upstream = Upstream(reply(429, {"wait": 41}))
    async with provider(upstream, max_retries=1) as (client, sleeps):
        with pytest.raises(RateLimited) as caught:
            await client.post_json("/images/generations", {}, hinted)
    assert len(sleeps) == 1 and in_backoff_window(sleeps[0], 0) and caught.value.retry_after == 41


# ---- a newcomer's set-up mistakes are named


async def test_a_404_names_the_url_asked_and_what_sets_the_base_url_never_the_key():
    upstream = Upstream(reply(404, {"detail": "Not Found"}))
    profile = ProviderProfile(
        id="acme", base_url="https://api.acme.test", key=SecretStr(KEY), base_url_from="ACME_BASE_URL"
    )
    client = ProviderClient(profile, timeout=5, max_retries=0, transport=httpx2.MockTransport(upstream))
    try:
        with pytest.raises(UpstreamError) as caught:
            await client.post_json("/images/generations?sig=secret", {}, default_error)
    finally:
        await client.aclose()
    text = caught.value.agent_text()
    assert "https://api.acme.test/images/generations was not found" in text and "ACME_BASE_URL" in text
    assert "sig=secret" not in text and KEY not in text


async def test_a_connection_failure_names_the_host():
    upstream = Upstream(httpx2.ConnectError)
    async with provider(upstream, max_retries=0) as (client, _):
        with pytest.raises(UpstreamError, match=r"could not reach acme at api\.acme\.test \(ConnectError\)"):
            await client.get_json("/models", default_error)
