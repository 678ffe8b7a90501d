"""JSON-RPC 2.0 framing: what a frame that is not one valid message is answered with, on stdio and HTTP.

Pure and SDK-free (only `app` imports `mcp`): it parses a frame the SDK refused, names what is
wrong in one short sentence, reads the id when it can (JSON-RPC 2.0 §5: else null), gathers the
answers a batch is owed into one array (§6), and wraps the HTTP app so its framing errors are short.
It never quotes more than QUOTE_MAX characters of the input.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BATCH_PROTOCOL_VERSIONS",
    "INVALID_REQUEST",
    "PARSE_ERROR",
    "Batches",
    "Refusal",
    "batch_refusal",
    "http_refusal",
    "invalid",
    "element_problem",
    "parse",
    "problem",
    "readable_id",
    "short_errors",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
QUOTE_MAX = 60
# MCP took JSON-RPC batches in 2025-03-26 only: 2024-11-05 had none, 2025-06-18 removed them
# (its changelog, PR #416), and 2025-11-25 and the 2026-07-28 per-request era kept them out.
BATCH_PROTOCOL_VERSIONS = frozenset({"2025-03-26"})
HTTP_DEFAULT_VERSION = "2025-03-26"  # streamable HTTP: no MCP-Protocol-Version header means this one

RequestId = str | int
Frame = dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A JSON-RPC error answer to a frame that is not a valid message."""

    code: int
    message: str
    id: RequestId | None = None

    def frame(self) -> Frame:
        return {"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": self.message}}

    def encode(self) -> bytes:
        return json.dumps(self.frame(), separators=(",", ":")).encode()


def invalid(reason: str, request_id: RequestId | None = None) -> Refusal:
    """A -32600 Invalid Request refusal for the given reason."""
    return Refusal(INVALID_REQUEST, f"Invalid Request: {reason}", request_id)


def quote(value: Any) -> str:
    """A value as JSON, cut to QUOTE_MAX characters: enough to recognise it, never a dump."""
    if isinstance(value, dict | list):
        return _kind(value)
    text = json.dumps(value[:QUOTE_MAX] if isinstance(value, str) else value, ensure_ascii=False)
    return text if len(text) <= QUOTE_MAX else text[: QUOTE_MAX - 1] + "…"


def parse(raw: bytes | str) -> Any:
    """The frame's JSON value, or a -32700 Refusal. Bad UTF-8 is replaced, as the SDK's reader does."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except RecursionError:
        return Refusal(PARSE_ERROR, "Parse error: nested too deeply")
    except ValueError:  # a huge integer literal raises a bare ValueError
        return Refusal(PARSE_ERROR, "Parse error: not valid JSON")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def readable_id(message: Any) -> RequestId | None:
    """The frame's id if it is one MCP allows (a string or an integer), else None (null on the wire)."""
    value = message.get("id") if isinstance(message, dict) else None
    return value if _is_id(value) else None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else quote(value)


def _request_problem(message: Frame) -> str | None:
    if not isinstance(message["method"], str):
        return f"method must be a string, not {_kind(message['method'])}"
    if "params" in message and not isinstance(message["params"], dict | None):
        return f"params must be an object, not {_kind(message['params'])}"
    return None


def _reply_problem(message: Frame) -> str | None:
    if "result" in message:
        if not _is_id(message.get("id")):
            return "a result needs a string or integer id"
        return None if isinstance(message["result"], dict) else "result must be an object"
    error = message["error"]
    if "id" not in message:
        return "an error needs an id (null if unknown)"
    code = error.get("code") if isinstance(error, dict) else None
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(error.get("message"), str):
        return "error must be an object with an integer code and a string message"
    return None


def problem(message: Any) -> Refusal | None:
    """Why one parsed frame (not a batch) is no JSON-RPC request, notification or response; None if fine."""
    if not isinstance(message, dict):
        return invalid(f"expected a JSON-RPC object, got {_kind(message)}")
    reason: str | None
    if message.get("jsonrpc") != "2.0":
        got = f", got {quote(message['jsonrpc'])}" if "jsonrpc" in message else " (missing)"
        reason = f'jsonrpc must be "2.0"{got}'
    elif "id" in message and not _is_id(message["id"]) and not ("error" in message and message["id"] is None):
        reason = f"id must be a string or an integer, not {_kind(message['id'])}"
    elif "method" in message:
        reason = _request_problem(message)
    elif "result" in message or "error" in message:
        reason = _reply_problem(message)
    else:
        reason = "a message needs a method, a result or an error"
    return None if reason is None else invalid(reason, readable_id(message))


def element_problem(message: Any) -> Refusal | None:
    """`problem`, plus the rule 2025-03-26 adds for a batch member: initialize must travel alone."""
    found = problem(message)
    if found is None and message.get("method") == "initialize":
        return invalid("initialize must not be part of a batch", readable_id(message))
    return found


def batch_refusal(batch: list[Any], version: str | None, transport: str = "stdio") -> Refusal | None:
    """The one error a batch gets instead of per-member answers, or None when it is to be served."""
    if not batch:
        return invalid("empty batch")
    if transport != "stdio" and (version or HTTP_DEFAULT_VERSION) in BATCH_PROTOCOL_VERSIONS:
        return invalid("batches are not supported over HTTP; send one message per POST")
    if version is None:
        return invalid("batches are not supported before initialize")
    if version not in BATCH_PROTOCOL_VERSIONS:
        return invalid(f"batches are not supported in protocol version {version[:QUOTE_MAX]}")
    return None


@dataclass
class _Batch:
    waiting: set[RequestId]
    answers: list[bytes] = field(default_factory=list)

    def array(self) -> bytes:
        return b"[" + b",".join(self.answers) + b"]"


class Batches:
    """The batches in flight, by the ids of their requests, so each gets its answers back as one array."""

    def __init__(self) -> None:
        self._by_id: dict[RequestId, _Batch] = {}

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def open(self, ids: Iterable[RequestId], answers: list[bytes]) -> bytes | None:
        """Await `ids`, with `answers` already known; the array at once if nothing is awaited
        (None for a batch of notifications and responses only, which gets no answer)."""
        batch = _Batch(set(ids), answers)
        if batch.waiting:
            self._by_id |= dict.fromkeys(batch.waiting, batch)
            return None
        return batch.array() if answers else None

    def settle(self, request_id: object, answer: bytes | None) -> bytes | None:
        """Record the answer to a batched request (None: it was cancelled and gets none);
        the batch's array once its last request has settled."""
        if not isinstance(request_id, str | int) or (batch := self._by_id.pop(request_id, None)) is None:
            return None
        batch.waiting.discard(request_id)
        if answer is not None:
            batch.answers.append(answer)
        return batch.array() if not batch.waiting and batch.answers else None


Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_FRAMING_CODES = (PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS)


def http_refusal(body: bytes, version: str | None) -> Refusal | None:
    """What a POST body gets when it is not one valid message, or None when it is one."""
    value = parse(body)
    if isinstance(value, Refusal):
        return value
    return batch_refusal(value, version, "http") if isinstance(value, list) else problem(value)


def _sdk_framing_error(body: bytes) -> bool:
    """Whether the SDK's error body answers a malformed frame (its parse or validation error)."""
    value = parse(body)
    error = value.get("error") if isinstance(value, dict) else None
    return isinstance(error, dict) and error.get("code") in _FRAMING_CODES and value.get("id") is None


def short_errors(app: ASGIApp) -> ASGIApp:
    """Wrap the SDK's HTTP app so a malformed POST body gets a short JSON-RPC error.

    The SDK answers a batch or an invalid envelope with a pydantic validation dump (~1.2 KB) as the
    message, and takes a notification-shaped body with a bad id as a notification (202). Its checks
    (Host, Origin, Accept, Content-Type, headers) all run first and stand; only when the SDK has
    refused the frame itself, or accepted it without an answer, is the body classified here, so
    valid traffic is never parsed twice.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            exchange = _Exchange(scope, receive, send)
            receive, send = exchange.receive, exchange.send
        await app(scope, receive, send)

    return wrapped


class _Exchange:
    """One POST through the SDK's app: the body is kept until the answer starts, so a framing
    error (or a 202 for a frame that is no notification) can be replaced by a short refusal."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = dict(scope.get("headers") or []).get(b"mcp-protocol-version")
        self._version = header.decode("latin-1") if header else None
        self._receive, self._send = receive, send
        self._chunks: list[bytes] = []
        self._held: Message | None = None  # the SDK's 400 start, until its body shows what it is
        self._replaced = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._chunks.append(message.get("body", b""))
        return message

    async def send(self, message: Message) -> None:
        if self._replaced:
            return  # the rest of the SDK's own answer
        if message["type"] == "http.response.start":
            if message["status"] == 400:
                self._held = message
                return
            if message["status"] == 202 and await self._refuse():
                return
            self._chunks.clear()
        elif self._held is not None and message["type"] == "http.response.body":
            whole = not message.get("more_body", False)
            if whole and _sdk_framing_error(message.get("body", b"")) and await self._refuse():
                return
            held, self._held = self._held, None
            await self._send(held)
        await self._send(message)

    async def _refuse(self) -> bool:
        refusal = http_refusal(b"".join(self._chunks), self._version)
        self._chunks.clear()
        if refusal is not None:
            self._replaced = True
            headers = [(b"content-type", b"application/json")]
            await self._send({"type": "http.response.start", "status": 400, "headers": headers})
            await self._send({"type": "http.response.body", "body": refusal.encode()})
        return self._replaced
