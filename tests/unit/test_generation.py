"""What the generator guarantees whatever the adapter: texts from a 200 body (errors, per-image
failures, warnings, notes, revised prompts, usage) never carry the key, since they did not pass the
HTTP client's scrubbing; they are clipped; and a reply never yields more images than were asked."""

from __future__ import annotations

from pydantic import SecretStr

from imagegate import codec
from imagegate.errors import UPSTREAM_TEXT_CHARS
from imagegate.intake import bounded
from imagegate.providers.base import AdapterReply, Artifact, RouteWarning
from imagegate.providers.http import ProviderClient, ProviderProfile

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


def test_texts_from_a_reply_are_clipped_and_never_a_payload_token():
    long_base64 = codec.b64encode(b"\x01" * (codec.LARGE_STRING))
    with codec.large_payloads():
        item = codec.loads(f'{{"revised_prompt": "{long_base64}"}}'.encode())["revised_prompt"]
        assert item.startswith("\x00")  # the parser took it for a payload
        reply = AdapterReply(artifacts=(Artifact(data=b"x", revised_prompt=item),), note="n" * 10**6)
        clean = bounded(reply, 1, client(), [])
    revised = clean.artifacts[0].revised_prompt or ""
    assert revised.startswith(long_base64[:100]) and "\x00" not in revised
    assert len(revised) < UPSTREAM_TEXT_CHARS + 40 and len(clean.note or "") < UPSTREAM_TEXT_CHARS + 40


def test_never_more_images_than_asked():
    reply = AdapterReply(artifacts=tuple(Artifact(data=bytes([i])) for i in range(10)))
    warnings: list[str] = []
    clean = bounded(reply, 2, client(), warnings)
    assert [a.data for a in clean.artifacts] == [b"\x00", b"\x01"]
    assert warnings and "10 images for 2" in warnings[0]
