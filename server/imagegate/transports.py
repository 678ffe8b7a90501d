"""How the MCP server meets the world: stdio (our own transport, for JSON-RPC framing errors)
and stateless Streamable HTTP (uvicorn, the short-error and bearer-token wrappers), in one process
or in N worker processes sharing one listening socket (uvicorn's supervisor, which restarts a worker
that dies).

Stateless HTTP means any worker, on any host behind any load balancer, serves any request: a
2026-07-28 request carries its own protocol version and capabilities, and nothing a later request
needs stays in a worker (tasks and upstream limits live in Redis, team/). What the workers must agree
on is read once, from the same environment and config file: the users' token hashes, the Redis URL,
the deployment's name and the key request state is sealed with (IMAGEGATE_STATE_KEY).

Beside app.py the only module that imports `mcp` (and the only one that imports uvicorn). It knows
framing, sockets and file descriptors, never tools: app.create_server builds the server it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from functools import partial
from typing import Any, BinaryIO, Literal

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from . import framing
from .app import USER_SCOPE, create_server
from .framing import Refusal
from .service import Service, build_service
from .settings import Settings
from .team import workers as workers_module
from .team.users import Users

__all__ = [
    "LOOPBACK_HOSTS",
    "http_app",
    "require_bearer",
    "require_event_stream",
    "require_user",
    "serve_http",
    "serve_stdio",
]

log = logging.getLogger("imagegate")


async def serve_stdio(service: Service) -> None:
    """Serve MCP over stdin/stdout until the client closes the stream."""
    server = create_server(lambda: service)
    async with _stdio_transport() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


# Our own stdio transport, modelled on the SDK's `mcp.server.stdio.stdio_server`, rather than a
# wrapper around its read stream: that reader turns a line it cannot validate into a bare
# exception, which the server drops with a debug log, so the raw line and its id are gone before
# a wrapper sees anything; and a request with a malformed id passes pydantic as a notification.
# Owning the reader and the writer also lets a batch's answers go back as one array. Valid lines
# still cost one parse, the SDK's own `validate_json`: only a line it refuses, or a notification
# (small), is parsed a second time to find out what is wrong with it.
class _Wire:
    """One stdio connection's framing: the negotiated protocol version, batches in flight."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.initialize_id: types.RequestId | None = None
        self.batches = framing.Batches()

    def incoming(self, line: bytes) -> list[SessionMessage | bytes]:
        """A line from the client as messages for the server and frames to write straight back."""
        if not line.strip():
            return []  # a blank line between messages carries none
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValueError:
            return self._refused(line)
        if isinstance(message, types.JSONRPCNotification):
            return self._refused(line)  # it may be a request whose id pydantic ignored
        return self._forward(message)

    def outgoing(self, item: SessionMessage) -> bytes | None:
        """A message from the server as the frame to write (None while its batch is incomplete)."""
        message = item.message
        frame = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
        if isinstance(message, types.JSONRPCResponse) and message.id == self.initialize_id:
            version = message.result.get("protocolVersion")
            self.version = version if isinstance(version, str) else None
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError) and message.id in self.batches:
            return self.batches.settle(message.id, frame)
        return frame

    def _refused(self, line: bytes) -> list[SessionMessage | bytes]:
        value = framing.parse(line)
        if isinstance(value, Refusal):
            return [value.encode()]
        if isinstance(value, list):
            return self._batch(value)
        checked = self._check(value, framing.problem)
        return [checked.encode()] if isinstance(checked, Refusal) else self._forward(checked)

    def _check(self, value: Any, problem: Callable[[Any], Refusal | None]) -> types.JSONRPCMessage | Refusal:
        refusal = problem(value)
        if refusal is not None:
            return refusal
        try:
            return types.jsonrpc_message_adapter.validate_python(value, by_name=False)
        except ValueError:  # a shape framing.problem lets pass and the SDK's models do not
            return framing.invalid("not a valid JSON-RPC message", framing.readable_id(value))

    def _batch(self, batch: list[Any]) -> list[SessionMessage | bytes]:
        """Serve each member where the negotiated version allows batches (2025-03-26), else refuse all."""
        refusal = framing.batch_refusal(batch, self.version)
        if refusal is not None:
            return [refusal.encode()]
        answers: list[bytes] = []
        waiting: list[types.RequestId] = []
        out: list[SessionMessage | bytes] = []
        for value in batch:
            checked = self._check(value, framing.element_problem)
            rid = checked.id if isinstance(checked, types.JSONRPCRequest) else None
            if rid is not None and (rid in waiting or rid in self.batches):
                checked = framing.invalid("duplicate id in a batch", rid)
            if isinstance(checked, Refusal):
                answers.append(checked.encode())
                continue
            if isinstance(checked, types.JSONRPCRequest):
                waiting.append(checked.id)
            out += self._forward(checked)
        array = self.batches.open(waiting, answers)
        return out if array is None else [*out, array]

    def _forward(self, message: types.JSONRPCMessage) -> list[SessionMessage | bytes]:
        out: list[SessionMessage | bytes] = [SessionMessage(message)]
        if isinstance(message, types.JSONRPCRequest):
            meta = (message.params or {}).get("_meta")
            if message.method == "initialize":
                self.initialize_id = message.id
            elif isinstance(meta, dict) and isinstance(meta.get(types.PROTOCOL_VERSION_META_KEY), str):
                self.version = meta[types.PROTOCOL_VERSION_META_KEY]  # the 2026-07-28 per-request envelope
        elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
            cancelled = (message.params or {}).get("requestId")
            array = self.batches.settle(cancelled, None) if cancelled in self.batches else None
            out += [array] if array is not None else []  # a cancelled request is owed no answer
        return out


ReadStream = MemoryObjectReceiveStream[SessionMessage | Exception]
WriteStream = MemoryObjectSendStream[SessionMessage | bytes]


@asynccontextmanager
async def _stdio_transport() -> AsyncIterator[tuple[ReadStream, WriteStream]]:
    """The server's stream pair over stdin/stdout, one JSON-RPC message per line (logs go to stderr)."""
    wire = _Wire()
    to_server, from_client = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_client, outbox = anyio.create_memory_object_stream[SessionMessage | bytes](0)
    refusals = to_client.clone()  # frames the reader answers itself, in line with the server's

    async def read(source: BinaryIO) -> None:
        async with to_server, refusals:
            async for line in anyio.wrap_file(source):
                for item in wire.incoming(line):
                    try:
                        if isinstance(item, bytes):
                            await refusals.send(item)
                        else:
                            await to_server.send(item)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the server has stopped reading

    async def write(sink: BinaryIO) -> None:
        async with outbox:
            async for item in outbox:
                frame = item if isinstance(item, bytes) else wire.outgoing(item)
                if frame is not None:
                    await anyio.to_thread.run_sync(_write_line, sink, frame)

    with _claim_std(0, "rb") as stdin, _claim_std(1, "wb") as stdout:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, stdin)
            tg.start_soon(write, stdout)
            yield from_client, to_client


def _write_line(sink: BinaryIO, frame: bytes) -> None:
    sink.write(frame + b"\n")
    sink.flush()


@contextmanager
def _claim_std(fd: int, mode: Literal["rb", "wb"]) -> Iterator[BinaryIO]:
    """The wire on fd 0 or 1 as a private file, while fd itself points at the null device (stdin) or
    stderr (stdout), so a stray read or print in a library misses the protocol; as the SDK's
    stdio_server does (its helper is private). Restored on exit. Without a real fd: the sys stream."""
    stream = sys.stdin if fd == 0 else sys.stdout
    private = _private_copy(fd, stream)
    if private is None:
        yield stream.buffer
        return
    _point(fd, _diversion(fd))
    try:
        # closefd=False: a worker thread may still block on it after the transport exits (SDK note).
        yield os.fdopen(private, mode, closefd=False)
    finally:
        if fd == 1:
            with suppress(Exception):
                sys.stdout.flush()  # buffered stray prints go to stderr, not to the restored wire
        _point(fd, private, close=False)


def _private_copy(fd: int, stream: Any) -> int | None:
    """A copy of fd above the standard range, or None where there is no fd to claim."""
    try:
        if stream.buffer.fileno() != fd:
            return None
        if sys.platform == "win32":
            copy = os.dup(fd)
        else:
            import fcntl

            copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    except (AttributeError, OSError, ValueError):
        return None
    if copy <= 2:
        os.close(copy)
        return None
    return copy


def _diversion(fd: int) -> int:
    try:
        return os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_RDWR)


def _point(fd: int, target: int, close: bool = True) -> None:
    os.dup2(target, fd)
    if close:
        os.close(target)
    if sys.platform == "win32":  # subprocesses inherit the Win32 handle slot, not the CRT fd
        from mcp.os.win32.utilities import rebind_std_handle_to_fd

        with suppress(OSError):
            rebind_std_handle_to_fd(fd)


def serve_http(
    service: Service, host: str, port: int, allowed_hosts: Sequence[str] = (), workers: int = 1
) -> None:
    """Serve MCP over stateless Streamable HTTP at /mcp, in `workers` processes.

    Loopback by default, where the SDK checks Host and Origin against DNS rebinding; any other
    bind should name the hosts clients use (`allowed_hosts`). With users in the config file or
    IMAGEGATE_HTTP_TOKEN set, every request must carry one of their tokens as a bearer token.
    With more than one worker each builds its own service from the same environment and config,
    they share one listening socket, and one that dies is replaced.
    """
    import uvicorn

    if host not in LOOPBACK_HOSTS and not allowed_hosts:
        log.warning("serving on %s with no --allow-host: Host and Origin are not checked", host)
    if workers <= 1:
        uvicorn.run(http_app(service, host, allowed_hosts), host=host, port=port, log_level="warning")
        return
    if service.redis is None:
        log.warning(
            "%d workers without IMAGEGATE_REDIS_URL: tasks, job ids and upstream limits stay in the "
            "worker that made them",
            workers,
        )
    http_app(service, host, allowed_hosts)  # what would stop every worker stops here, once
    if workers_module.reuseport_available():
        workers_module.claim_port(host, port)  # nobody listens there yet, or this says why
        target = partial(_worker_main, host, port, tuple(allowed_hosts), os.getpid())
        code = workers_module.supervise(target, workers)
        if code:
            raise SystemExit(code)
        return
    from uvicorn.supervisors import Multiprocess  # no SO_REUSEPORT balancing: one socket, shared

    factory = partial(_worker_app, host, tuple(allowed_hosts))
    config = uvicorn.Config(factory, factory=True, host=host, port=port, workers=workers, log_level="warning")
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _worker_main(host: str, port: int, allowed_hosts: tuple[str, ...], parent: int, index: int) -> None:
    """One worker process (team/workers.py starts it): its own service and its own SO_REUSEPORT
    socket on the shared port, served by uvicorn until SIGTERM, or until its supervisor is gone."""
    import uvicorn

    workers_module.exit_with_parent(parent)
    app = _worker_app(host, allowed_hosts)
    sock = workers_module.reuseport_socket(host, port)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def _worker_app(host: str, allowed_hosts: tuple[str, ...]) -> Any:
    """A worker process's app (run by uvicorn in the child): logging as the CLI sets it, and a service
    of its own, built from the environment and config every worker reads alike."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="imagegate %(levelname)s %(message)s"
    )
    return http_app(build_service(), host, allowed_hosts)


def http_app(service: Service, host: str, allowed_hosts: Sequence[str] = ()) -> Any:
    """The ASGI app of one worker: the SDK's stateless Streamable HTTP app, request state sealed with
    the deployment's key, the short-error and event-stream guards, and the users' tokens."""
    from mcp.server.transport_security import TransportSecuritySettings

    security = None
    if allowed_hosts:
        origins = [f"{scheme}://{h}" for h in allowed_hosts for scheme in ("http", "https")]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=list(allowed_hosts), allowed_origins=origins
        )
    server = create_server(lambda: service)
    server.middleware.append(_request_state(service.settings))
    app: Any = server.streamable_http_app(stateless_http=True, host=host, transport_security=security)
    app = framing.short_errors(app)  # short JSON-RPC errors for malformed bodies, not validation dumps
    app = require_event_stream(app)
    if service.settings.users.required:
        app = require_user(app, service.settings.users)
    return app


def _request_state(settings: Settings) -> Any:
    """Request state (2026-07-28 multi round-trip) sealed with the key every worker shares, bound to
    the deployment's name; a key of this process's own when none is set (one worker)."""
    from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity

    if settings.state_key is None:
        security = RequestStateSecurity.ephemeral(audience=settings.deployment)
    else:
        key = settings.state_key.get_secret_value()
        security = RequestStateSecurity(keys=[key], audience=settings.deployment)
    return RequestStateBoundary(security, default_audience=settings.deployment)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def require_event_stream(app: Any) -> Any:
    """An ASGI wrapper answering 406 to a GET that does not accept an event stream: the GET of
    Streamable HTTP opens an SSE stream that stays open, so a browser or a bare curl would wait on
    it for ever. POST (which carries requests) is the SDK's to check."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET":
            accept = b",".join(value for name, value in scope.get("headers") or [] if name == b"accept")
            if b"text/event-stream" not in accept.lower():
                body = framing.invalid(
                    "GET opens an event stream: send Accept: text/event-stream, or POST a request", None
                )
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 406, "headers": headers})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await app(scope, receive, send)

    return guarded


def require_bearer(app: Any, token: str) -> Any:
    """An ASGI wrapper answering 401 to any HTTP request without `Authorization: Bearer <token>`."""
    return require_user(app, Users.parse({}, token, "IMAGEGATE_HTTP_TOKEN"))


async def _unauthorized(send: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"error": "a bearer token is required"}'})


def require_user(app: Any, users: Users) -> Any:
    """An ASGI wrapper answering 401 to any HTTP request whose `Authorization: Bearer <token>` is no
    user's; for one that is, the user's name (never the token) goes on in the scope under USER_SCOPE."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            caller = (
                users.identify(token.strip().decode("latin-1"))
                if scheme.lower() == b"bearer" and token.strip()
                else None
            )
            if caller is None:
                await _unauthorized(send)
                return
            scope = {**scope, USER_SCOPE: caller.user}
        await app(scope, receive, send)

    return guarded
