"""What the generator guarantees whatever the adapter: texts from a 200 body (errors, per-image
failures, warnings, notes) never carry the key, since they did not pass the HTTP client's scrubbing."""

from __future__ import annotations

from pydantic import SecretStr

from imagegate.generation import _scrubbed
from imagegate.providers.base import AdapterReply, Artifact, Warning
from imagegate.providers.http import ProviderClient, ProviderProfile

KEY = "test-sentinel-key-generation"


def test_replies_are_scrubbed_of_the_key_before_they_become_warnings():
    client = ProviderClient(ProviderProfile("p", "https://p.example/v1", SecretStr(KEY)), timeout=5, max_retries=0)
    reply = AdapterReply(
        artifacts=(Artifact(data=b"x"),),
        warnings=(Warning("size", f"echo {KEY}"),),
        failures=(f"image 2 blocked for {KEY}",),
        note=f"the model said {KEY}",
    )
    clean = _scrubbed(reply, client)
    assert KEY not in repr(clean)
    assert clean.failures == ("image 2 blocked for ***",) and clean.note == "the model said ***"
