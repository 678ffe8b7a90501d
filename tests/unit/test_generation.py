"""What the generator guarantees whatever the adapter: texts from a 200 body (errors, per-image
failures, warnings, notes, revised prompts, usage) never carry the key, since they did not pass the
HTTP client's scrubbing; they are clipped; and a reply never yields more images than were asked."""

from __future__ import annotations

import json
from dataclasses import replace

from pydantic import SecretStr

from imagegate import codec
from imagegate.errors import UPSTREAM_TEXT_CHARS
from imagegate.intake import bounded
from imagegate.providers.base import AdapterReply, Artifact, RouteWarning
from imagegate.providers.http import ProviderClient, ProviderProfile
from imagegate.providers.openai_images import parse_reply

KEY = "test-sentinel-key-generation"


def client() -> ProviderClient:
    return ProviderClient(
        ProviderProfile("p", "https://p.example/v1", SecretStr(KEY)), timeout=5, max_retries=0
    )


def test_replies_are_scrubbed_of_the_key_before_they_become_warnings():
    reply = AdapterReply(
        artifacts=(Artifact(data=b"x", revised_prompt=f"a cat, {KEY}"),),
        warnings=(RouteWarning("size", f"echo {KEY}"),),
        failures=(f"image 2 blocked for {KEY}",),
        note=f"the model said {KEY}",
        usage={"total": 3, "detail": [{"echo": KEY}], KEY: "as a key"},
    )
    clean = bounded(reply, 1, client(), [])
    assert KEY not in repr(clean)
    assert clean.failures == ("image 2 blocked for ***",) and clean.note == "the model said ***"
    assert clean.artifacts[0].revised_prompt == "a cat, ***" and clean.usage == {
        "total": 3,
        "detail": [{"echo": "***"}],
        "***": "as a key",
    }


def test_a_base64_like_revised_prompt_comes_back_as_text_and_everything_is_clipped():
    long_base64 = codec.b64encode(b"\x01" * codec.LARGE_STRING)  # the parser takes it for an image payload
    body = json.dumps({"data": [{"b64_json": codec.b64encode(b"png"), "revised_prompt": long_base64}]})
    with codec.large_payloads():
        reply = parse_reply(codec.loads(body.encode()), "openai")
        reply = replace(reply, note="n" * 10**6)
        clean = bounded(reply, 1, client(), [])
    revised = clean.artifacts[0].revised_prompt
    assert isinstance(revised, str) and revised.startswith(long_base64[:100])
    assert len(revised) < UPSTREAM_TEXT_CHARS + 40 and len(clean.note or "") < UPSTREAM_TEXT_CHARS + 40


def test_never_more_images_than_asked():
    reply = AdapterReply(artifacts=tuple(Artifact(data=bytes([i])) for i in range(10)))
    warnings: list[str] = []
    clean = bounded(reply, 2, client(), warnings)
    assert [a.data for a in clean.artifacts] == [b"\x00", b"\x01"]
    assert warnings and "10 images for 2" in warnings[0]
