"""The hostile proxy: a loopback HTTP/1.1 server on raw asyncio sockets that forwards every request to
the emulator and, when a request matches an armed rule, sends the rule's fault instead of (or made
from) the emulator's reply.

Owns the accept loop, rule matching, forwarding, and rewriting the emulator's absolute URLs to the
proxy's own, so poll and result URLs come back through it. It knows no wire protocol: faults aim by
request path and by JSON path.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tools.emulator import EmulatorClient
from tools.hostile.faults import Delivery, Fault
from tools.hostile.wire import MAX_HEAD, Reply, Request, WireError, fetch, read_request, reply_head

__all__ = ["Exchange", "HostileProxy", "Rule", "start_hostile"]

STARTUP_TIMEOUT = 15.0
IDLE_TIMEOUT = 120.0  # a keep-alive connection with no next request is closed after this
MAX_REQUESTS_PER_CONNECTION = 10_000
LOG_SIZE = 200
LOG_BODY = 8 * 1024 * 1024  # replies kept in the log whole up to this size (property tests sample them)


@dataclass
class Rule:
    """A fault for the next `count` requests whose target matches: under /<provider>/ (None: any
    path) and `path` (a regex searched in path and query)."""

    fault: Fault
    provider: str | None = None
    path: str = ""
    count: int = 1
    method: str | None = None

    def matches(self, request: Request) -> bool:
        if self.provider is not None and not request.path.startswith(f"/{self.provider}/"):
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        return re.search(self.path, request.target) is not None


@dataclass(frozen=True)
class Exchange:
    """One request as the proxy saw it: what was asked, the upstream's status and body, the fault sent."""

    method: str
    target: str
    upstream_status: int | None
    upstream_body: bytes | None = field(repr=False)
    fault: str | None


class HostileProxy:
    """A running proxy in front of one emulator: its URL, the armed rules, the log."""

    def __init__(self, upstream: EmulatorClient, url: str) -> None:
        self.upstream = upstream
        self.url = url
        self._upstream_host, self._upstream_port = _host_port(upstream.url)
        self._port = _host_port(url)[1]
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._log: deque[Exchange] = deque(maxlen=LOG_SIZE)
        self._open: set[asyncio.StreamWriter] = set()
        self.errors: list[str] = []  # the proxy's own failures (a bad fault, the emulator gone)

    # --- the test-facing API ---------------------------------------------------------------------

    def base_url(self, provider: str) -> str:
        """The base URL that routes `provider` through the proxy, e.g. http://127.0.0.1:P/openai/v1."""
        return self.url + self.upstream.base_url(provider).removeprefix(self.upstream.url)

    def arm(
        self,
        fault: Fault,
        provider: str | None = None,
        path: str = "",
        count: int = 1,
        method: str | None = None,
    ) -> None:
        """Send `fault` for the next `count` requests matching `provider` and `path` (see Rule)."""
        with self._lock:
            self._rules.append(Rule(fault, provider, path, count, method))

    def disarm(self) -> None:
        """Drop every armed rule."""
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """No rules, an empty log, and the emulator reset too."""
        with self._lock:
            self._rules.clear()
            self._log.clear()
        self.upstream.reset()

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._log)

    @property
    def fired(self) -> list[str]:
        """Names of the faults sent so far (since the last reset), oldest first."""
        return [e.fault for e in self.exchanges if e.fault]

    @property
    def armed(self) -> int:
        """Uses left across all rules."""
        with self._lock:
            return sum(rule.count for rule in self._rules)

    # --- serving ---------------------------------------------------------------------------------

    def abort_all(self) -> None:
        """Close every client connection now (held and dripping ones included)."""
        for writer in list(self._open):
            writer.transport.abort()

    def _take(self, request: Request) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.count > 0 and rule.matches(request):
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                    return rule.fault
        return None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: requests in turn until it closes, a fault closes it, or it idles."""
        self._open.add(writer)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                request = await asyncio.wait_for(read_request(reader), IDLE_TIMEOUT)
                if request is None or not await self._answer(request, reader, writer):
                    break
        except (TimeoutError, WireError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except Exception as error:  # noqa: BLE001 - the proxy must outlive any fault's bug
            self.errors.append(f"{type(error).__name__}: {error}")
        finally:
            self._open.discard(writer)
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; True to keep the connection for the next one."""
        fault = self._take(request)
        reply = None
        if fault is None or fault.needs_upstream:
            reply = self._rewrite(await fetch(self._upstream_host, self._upstream_port, request))
        outcome: Reply | Delivery = reply if fault is None else fault.apply(request, reply or Reply(502))
        self._record(request, reply, fault)
        if isinstance(outcome, Reply):
            keep = request.keep_alive
            headers = outcome.headers if keep else (*outcome.headers, ("connection", "close"))
            writer.write(reply_head(outcome.status, headers, len(outcome.body)) + outcome.body)
            await writer.drain()
            return keep
        return await _deliver(outcome, reader, writer)

    def _rewrite(self, reply: Reply) -> Reply:
        """The emulator's absolute URLs (bodies and Location) made to point at the proxy."""
        # The emulator names itself by 127.0.0.1, and by "localhost" where it stands in for a second host
        # (BFL's delivery CDN): both keep their host name and get the proxy's port.
        port = f":{self._upstream_port}"
        pairs = [
            (f"http://{host}{port}", f"http://{host}:{self._port}") for host in ("127.0.0.1", "localhost")
        ]
        body, headers = reply.body, reply.headers
        for old, new in pairs:
            body = body.replace(old.encode(), new.encode())
            headers = tuple((k, v.replace(old, new)) for k, v in headers)
        return Reply(reply.status, headers, body)

    def _record(self, request: Request, reply: Reply | None, fault: Fault | None) -> None:
        body = None if reply is None or len(reply.body) > LOG_BODY else reply.body
        status = None if reply is None else reply.status
        exchange = Exchange(request.method, request.target, status, body, fault and type(fault).__name__)
        with self._lock:
            self._log.append(exchange)


async def _deliver(delivery: Delivery, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Write a byte-level fault; stop as soon as the client is gone. True to keep the connection."""
    writer.write(reply_head(delivery.status, delivery.headers, delivery.length))
    async for chunk in delivery.chunks():
        if writer.is_closing():
            return False
        writer.write(chunk)
        await writer.drain()
    if delivery.hold > 0:
        with suppress(TimeoutError):  # held open until the client gives up (EOF) or the hold ends
            await asyncio.wait_for(reader.read(), delivery.hold)
    return not delivery.close


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


@contextmanager
def start_hostile(upstream: EmulatorClient, host: str = "127.0.0.1", port: int = 0) -> Iterator[HostileProxy]:
    """Serve a hostile proxy in front of `upstream` from a background thread until the block ends."""
    if not host.startswith("127."):
        raise ValueError("the hostile proxy listens on loopback only")
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        holder: list[HostileProxy] = []
        server = await asyncio.start_server(
            lambda r, w: holder[0].serve(r, w), host, port, limit=MAX_HEAD * 2
        )
        bound = server.sockets[0].getsockname()
        holder.append(HostileProxy(upstream, f"http://{bound[0]}:{bound[1]}"))
        stop = asyncio.Event()
        state.update(proxy=holder[0], stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        await stop.wait()
        server.close()
        holder[0].abort_all()  # else wait_closed would wait out every held connection
        await server.wait_closed()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="hostile", daemon=True)
    thread.start()
    if not ready.wait(STARTUP_TIMEOUT):
        raise RuntimeError("the hostile proxy did not start")
    try:
        proxy = state["proxy"]
        assert isinstance(proxy, HostileProxy)
        yield proxy
    finally:
        loop, stop = state["loop"], state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
