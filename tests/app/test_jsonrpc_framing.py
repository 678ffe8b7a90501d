"""Malformed JSON-RPC gets an answer: over stdio (raw lines to the real server) -32700 for a line that
is not JSON, -32600 for anything else that is no message, with its id when one can be read;
batches are served where the negotiated version allows them (2025-03-26) and refused elsewhere;
over HTTP the same errors come back short. The server keeps serving after each."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.app.test_http_transport import ACCEPT, LIST, PROTOCOL, serving
from tests.support import base_env

from imagegate import framing

ANSWER_WITHIN = 5.0  # seconds, for every line the server owes an answer
SHORT = 300  # bytes: an error frame, never a validation dump or an echo of the input
PARSE, INVALID = -32700, -32600
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def request(request_id: Any, method: str = "ping", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def initialize(version: str, request_id: int = 100) -> dict[str, Any]:
    info = {"name": "framing-test", "version": "1"}
    return request(request_id, "initialize", protocolVersion=version, capabilities={}, clientInfo=info)


class StdioWire:
    """The real server as a subprocess, spoken to in raw lines; every stdout line must be JSON."""

    def __init__(self, tmp: Path) -> None:
        self.log = (tmp / "stderr.log").open("wb")
        command = [sys.executable, "-m", "imagegate"]
        self.process = subprocess.Popen(
            command, env=base_env(tmp), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def send(self, raw: bytes | dict[str, Any] | list[Any]) -> None:
        data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
        assert self.process.stdin is not None
        self.process.stdin.write(data + b"\n")
        self.process.stdin.flush()

    def answer(self) -> bytes:
        try:
            return self.lines.get(timeout=ANSWER_WITHIN)
        except queue.Empty:
            pytest.fail(f"no answer within {ANSWER_WITHIN} s")

    def ask(self, raw: bytes | dict[str, Any] | list[Any]) -> Any:
        self.send(raw)
        return json.loads(self.answer())

    def open_session(self, version: str) -> None:
        assert self.ask(initialize(version))["result"]["protocolVersion"] == version
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=10) == 0
        self.log.close()


@pytest.fixture(scope="module")
def wire(tmp_path_factory) -> Iterator[StdioWire]:
    server = StdioWire(tmp_path_factory.mktemp("framing"))
    yield server
    server.close()


@pytest.fixture
def fresh(tmp_path) -> Iterator[StdioWire]:
    server = StdioWire(tmp_path)
    yield server
    server.close()


BATCH_OF_TWO = json.dumps([request(1), request(2, "tools/list")]).encode()
MALFORMED = [
    pytest.param(b"this is not json", PARSE, None, id="not-json"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 3, "method": "ping"', PARSE, None, id="truncated"),
    pytest.param(b"\xff\xfe{}", PARSE, None, id="bad-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, PARSE, None, id="deep-nesting"),
    pytest.param(b"x" * 1_000_000, PARSE, None, id="1MB-garbage"),
    pytest.param(b"[]", INVALID, None, id="empty-batch"),
    pytest.param(b"[1]", INVALID, None, id="batch-of-junk"),
    pytest.param(BATCH_OF_TWO, INVALID, None, id="batch-before-initialize"),
    pytest.param(b"42", INVALID, None, id="a-number"),
    pytest.param(b'{"id": 1, "method": "tools/list"}', INVALID, 1, id="no-jsonrpc"),
    pytest.param(b'{"jsonrpc": "1.0", "id": "a", "method": "ping"}', INVALID, "a", id="wrong-jsonrpc"),
    pytest.param(b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "x"}', INVALID, None, id="object-id"),
    pytest.param(b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', INVALID, None, id="null-id"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', INVALID, None, id="float-id"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 4, "method": 5}', INVALID, 4, id="method-not-a-string"),
    pytest.param(
        b'{"jsonrpc": "2.0", "id": 5, "method": "ping", "params": [1]}', INVALID, 5, id="array-params"
    ),
    pytest.param(b'{"jsonrpc": "2.0", "id": 6}', INVALID, 6, id="neither-method-nor-result"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 7, "result": 3}', INVALID, 7, id="result-not-an-object"),
    pytest.param(
        b'{"jsonrpc": "2.0", "method": "notifications/x", "params": "p"}', INVALID, None, id="bad-note"
    ),
]


@pytest.mark.parametrize(("line", "code", "request_id"), MALFORMED)
@pytest.mark.slow
def test_a_malformed_line_gets_a_short_error_with_the_id_it_can_read(wire, line, code, request_id):
    wire.send(line)
    raw = wire.answer()
    answer = json.loads(raw)
    assert answer == {"jsonrpc": "2.0", "id": request_id, "error": answer["error"]}
    assert answer["error"]["code"] == code and len(raw) < SHORT, raw
    assert wire.process.poll() is None


@pytest.mark.slow
def test_after_malformed_lines_initialize_and_tools_list_still_work(wire):
    wire.send(b"not json either")
    wire.send(b"[]")
    codes = [json.loads(wire.answer())["error"]["code"] for _ in range(2)]
    assert codes == [PARSE, INVALID]  # in the order the lines came
    wire.open_session("2025-06-18")
    tools = wire.ask(request(2, "tools/list"))["result"]["tools"]
    assert {t["name"] for t in tools} >= {"generate_image", "edit_image", "list_models"}
    assert wire.process.poll() is None


@pytest.mark.slow
def test_a_batch_is_refused_in_a_version_without_batches(fresh):
    fresh.open_session("2025-06-18")
    answer = fresh.ask(BATCH_OF_TWO)
    assert answer["id"] is None and answer["error"]["code"] == INVALID
    assert "not supported in protocol version 2025-06-18" in answer["error"]["message"]
    assert fresh.ask(request(3))["result"] == {}


@pytest.mark.slow
def test_a_batch_is_refused_on_a_2026_connection(fresh):
    assert "result" in fresh.ask(request(1, "tools/list", _meta=META))
    answer = fresh.ask([request(2, "tools/list", _meta=META)])
    assert "not supported in protocol version 2026-07-28" in answer["error"]["message"]


@pytest.mark.slow
def test_a_2025_03_26_batch_gets_one_array_with_an_answer_per_request(fresh):
    fresh.open_session("2025-03-26")
    junk = {"id": 9, "method": "ping"}
    note = {"jsonrpc": "2.0", "method": "notifications/anything"}
    answers = fresh.ask(
        [request(1), request("b", "tools/list"), junk, note, request(1), initialize("2025-03-26", 8)]
    )
    by_id = {a["id"]: a for a in answers}
    assert len(answers) == 5 and by_id[1]["result"] == {} and "tools" in by_id["b"]["result"]
    errors = sorted((a["id"], a["error"]["message"]) for a in answers if "error" in a)
    assert errors == [
        (1, "Invalid Request: duplicate id in a batch"),
        (8, "Invalid Request: initialize must not be part of a batch"),
        (9, 'Invalid Request: jsonrpc must be "2.0" (missing)'),
    ]
    fresh.send([note])  # notifications only: JSON-RPC owes no answer at all
    assert fresh.ask(request(2))["id"] == 2


def test_gathering_a_batch_lets_a_cancelled_request_go_unanswered():
    batches = framing.Batches()
    assert batches.open([1, 2], [b"refused"]) is None
    assert batches.settle(1, None) is None  # cancelled: owed no answer
    assert batches.settle(2, b"two") == b"[refused,two]"
    assert 2 not in batches and batches.open([], []) is None


@pytest.mark.parametrize(
    "value", ["x" * 100_000, 10**4000, {"a": "x" * 100_000}], ids=["str", "int", "object"]
)
def test_nothing_from_the_input_is_quoted_beyond_a_few_dozen_characters(value):
    refusal = framing.problem({"jsonrpc": value, "id": 1, "method": "ping"})
    assert refusal is not None and refusal.id == 1
    assert len(refusal.message) <= len('Invalid Request: jsonrpc must be "2.0", got ') + framing.QUOTE_MAX


@pytest.fixture(scope="module")
def http_url(tmp_path_factory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("framing-http")) as url:
        yield url


HTTP_BODIES = [
    pytest.param(json.dumps([LIST, LIST]), PROTOCOL, INVALID, None, id="batch"),
    pytest.param(json.dumps([LIST]), {}, INVALID, None, id="batch-without-version"),
    pytest.param("[]", PROTOCOL, INVALID, None, id="empty-batch"),
    pytest.param("not json", PROTOCOL, PARSE, None, id="not-json"),
    pytest.param("x" * 1_000_000, PROTOCOL, PARSE, None, id="1MB-garbage"),
    pytest.param('{"id": 1, "method": "tools/list"}', PROTOCOL, INVALID, 1, id="no-jsonrpc"),
    pytest.param(
        '{"jsonrpc": "2.0", "id": {"x": 1}, "method": "x"}', PROTOCOL, INVALID, None, id="object-id"
    ),
    pytest.param(json.dumps([LIST]), {"MCP-Protocol-Version": "2026-07-28"}, INVALID, None, id="batch-2026"),
]


@pytest.mark.parametrize(("body", "headers", "code", "request_id"), HTTP_BODIES)
@pytest.mark.slow
def test_http_answers_a_malformed_body_with_a_short_error(http_url, body, headers, code, request_id):
    answer = httpx2.post(http_url, content=body, headers={**ACCEPT, **headers}, timeout=ANSWER_WITHIN)
    assert answer.status_code == 400 and len(answer.content) < SHORT, answer.text[:SHORT]
    error = answer.json()
    assert error["id"] == request_id and error["error"]["code"] == code
    served = httpx2.post(http_url, json=LIST, headers={**ACCEPT, **PROTOCOL}, timeout=ANSWER_WITHIN)
    assert served.status_code == 200 and "generate_image" in served.text


@pytest.mark.slow
def test_http_keeps_the_sdk_checks_that_run_before_the_body(http_url):
    foreign = httpx2.post(http_url, content="[]", headers={**ACCEPT, **PROTOCOL, "Host": "evil.example:80"})
    plain = httpx2.post(http_url, content="[]", headers={**ACCEPT, **PROTOCOL, "Content-Type": "text/plain"})
    assert foreign.status_code == 421 and plain.status_code == 400 and "Content-Type" in plain.text
