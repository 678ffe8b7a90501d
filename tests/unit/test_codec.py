"""codec.loads inside a large_payloads() scope must mean exactly what json.loads means: the same
document, with each long base64 string (or base64 data: URL) standing as a typed `Payload` that holds
the very bytes and gives back the very text; anything else (escapes, non-base64 text, short strings)
untouched."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegate import codec

BLOB = os.urandom(codec.LARGE_STRING)  # encodes to more than LARGE_STRING characters
B64 = base64.b64encode(BLOB).decode()


def resolved(value: Any) -> Any:
    """The document with every Payload replaced by its prefix and the base64 of its bytes (what
    json.loads gives); a token left as text anywhere fails the comparison."""
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v) for v in value]
    if isinstance(value, codec.Payload):
        return value.prefix + base64.b64encode(value.data()).decode()
    assert not (isinstance(value, str) and "imagegate-payload" in value), value
    return value


def parsed(document: Any, **dump: Any) -> Any:
    with codec.large_payloads():
        return resolved(codec.loads(bytearray(json.dumps(document, **dump).encode())))


def test_a_long_base64_string_becomes_a_payload_of_its_decoded_bytes():
    with codec.large_payloads():
        body = codec.loads(json.dumps({"data": [{"b64_json": B64, "revised_prompt": "a cat"}]}).encode())
        payload = body["data"][0]["b64_json"]
        assert isinstance(payload, codec.Payload) and body["data"][0]["revised_prompt"] == "a cat"
        assert payload.data() == BLOB and payload.prefix == "" and payload.mime is None
        assert payload.text() == B64  # where it was text after all, the very text comes back


def test_a_payload_owns_no_bytes_once_its_scope_has_ended():
    with codec.large_payloads():
        payload = codec.loads(json.dumps({"b64_json": B64}).encode())["b64_json"]
    with pytest.raises(ValueError):
        payload.data()


def test_a_data_url_keeps_its_prefix_and_media_type_on_the_payload():
    with codec.large_payloads():
        url = codec.loads(json.dumps({"url": "data:image/png;base64," + B64}).encode())["url"]
        assert url.prefix == "data:image/png;base64," and url.mime == "image/png" and url.data() == BLOB


def test_php_escaped_slashes_are_read_as_slashes():
    body = json.dumps({"b64_json": B64}).replace("/", "\\/").encode()
    with codec.large_payloads():
        assert codec.loads(body)["b64_json"].data() == BLOB


def test_an_upstream_cannot_forge_a_payload_by_sending_token_text():
    forged = "\x00imagegate-payload-0000000000000000-0"
    body = json.dumps({"b64_json": B64, "revised_prompt": forged}).encode()
    with codec.large_payloads():
        parsed_body = codec.loads(body)
    assert parsed_body["revised_prompt"] == forged and isinstance(parsed_body["b64_json"], codec.Payload)


def test_textual_gives_every_payload_back_as_its_text_and_a_base64_key_stays_text():
    body = json.dumps({"usage": {"echo": [B64]}, B64: 1}).encode()
    with codec.large_payloads():
        assert codec.textual(codec.loads(body)) == json.loads(body)


@pytest.mark.parametrize(
    "text",
    [
        "![image](data:image/png;base64," + B64 + ")",  # markdown around a data URL: not bare base64
        B64[:-8] + "\\n" + B64[-8:],  # an escape other than \/
        B64[:1000] + " not base64 " + B64[1000:],
        "data:text/plain," + B64,  # a data: URL that is not base64
    ],
)
def test_long_strings_that_are_not_bare_base64_parse_as_usual(text):
    body = ('{"content": "' + text + '"}').encode()
    with codec.large_payloads():
        assert codec.loads(body) == json.loads(body)


def test_outside_a_scope_loads_is_json_loads():
    body = json.dumps({"b64_json": B64}).encode()
    assert codec.loads(body) == json.loads(body)
    with pytest.raises(ValueError):
        codec.b64decode("\x00imagegate-payload-0")


def test_b64decode_is_strict_but_tolerates_line_breaks():
    assert codec.b64decode("aGVs\nbG8=") == b"hello"
    for bad in ("aGVsbG8", "aGVs*G8=", "héllo"):
        with pytest.raises(ValueError):
            codec.b64decode(bad)


strings = st.one_of(
    st.text(max_size=20),
    st.just(B64),
    st.just("data:image/webp;base64," + B64),
    st.builds(lambda a, b: a + b, st.just(B64), st.text(alphabet='"\\/ \n\u00e9', max_size=3)),
)
documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), strings),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(alphabet='ab"\\', max_size=4), inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # examples hold 170 KB strings
@settings(max_examples=60, deadline=None)
@given(documents, st.booleans())
def test_any_document_means_what_json_loads_says(document, ascii_only):
    assert parsed(document, ensure_ascii=ascii_only) == document


def arrive(body: bytes, cuts: list[int], on_stream: Any) -> Any:
    """Feed `body` to a watcher in pieces cut at `cuts`, as an HTTP body arrives; then parse it."""
    buffer = bytearray()
    with codec.large_payloads(on_stream=on_stream):
        watcher = codec.watcher()
        assert watcher is not None
        for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
            buffer += body[start:end]
            watcher.feed(buffer)
        watcher.done(buffer)
        return resolved(codec.loads(buffer))


def test_a_streamed_payload_is_decoded_while_it_arrives_and_loads_takes_it():
    body = json.dumps(
        {"data": [{"b64_json": B64}, {"b64_json": B64[::-1].replace("=", "A")}], "note": "x"}
    ).encode()
    streams = []
    cuts = list(range(1000, len(body), 7919))  # pieces that split base64 groups and the quotes
    assert arrive(body, cuts, streams.append) == json.loads(body)
    assert len(streams) == 2 and bytes(streams[0].buffer) == BLOB
    assert [s.reader().read() for s in streams][1] == base64.b64decode(B64[::-1].replace("=", "A"))


def test_strings_with_escapes_or_prefixes_or_bad_characters_are_not_streamed_but_still_parse():
    texts = [
        B64[:70000] + "\\/" + B64[70000:],
        "data:image/png;base64," + B64,
        B64[:200000] + "*" + B64[200000:],
    ]
    body = ('{"a": "' + '", "b": "'.join(texts) + '"}').encode()
    streams = []
    assert arrive(body, list(range(5, len(body), 65536)), streams.append) == json.loads(
        body.replace(b"\\/", b"/")
    )
    assert len(streams) == 1  # the third streamed until its bad character, then ended as failed
    with pytest.raises(OSError):
        streams[0].reader().read()


def test_a_broken_transfer_fails_the_stream_its_readers_wait_on():
    body = json.dumps({"b64_json": B64}).encode()
    streams = []
    with codec.large_payloads(on_stream=streams.append):
        watcher = codec.watcher()
        assert watcher is not None
        watcher.feed(bytearray(body[: len(body) * 9 // 10]))
        watcher.fail()
    with pytest.raises(OSError):
        streams[0].reader().read()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=40, deadline=None)
@given(documents, st.lists(st.integers(min_value=1, max_value=400_000), max_size=12))
def test_any_document_arriving_in_any_pieces_means_what_json_loads_says(document, cuts):
    body = json.dumps(document).encode()
    assert arrive(body, sorted({c for c in cuts if c < len(body)}), None) == document
