"""A route's UNCONFIRMED marks are those of the values it has: a model's mark on a fact its offering
replaces (its own sizes, max_n, output formats, capabilities) is dropped, and the offering's own mark,
if any, stays; what the route still takes from the model keeps the model's mark. Checked on two small
additions from a config file: a model that marks its facts, and a gateway offering it."""

from __future__ import annotations

from pathlib import Path

from tests.support import base_env

from imagegate.catalog import load_catalog
from imagegate.settings import load_settings

ADDITIONS = """
[models."marked-1"]
label = "Marked 1"
maker = "Example"
family = "marked"
capabilities = ["generate"]
max_n = 4
sizes = { kind = "list", sizes = ["1024x1024"] }
unconfirmed = { sizes = "one demo shows 1024x1024", max_n = "3p: up to 4", knobs = "3p: seed only" }

[providers.gw]
base_url = "http://127.0.0.1:9/v1"
key_env = "GW_API_KEY"

[[providers.gw.offerings]]
model = "marked-1"
upstream = "marked-1"
sizes = { kind = "list", sizes = ["1024x1024", "1536x1024"] }
max_n = 2
unconfirmed = { max_n = "the gateway's FAQ, not its reference" }
"""


def test_a_models_mark_on_a_value_its_offering_replaces_is_dropped(tmp_path: Path):
    (tmp_path / "c.toml").write_text(ADDITIONS)
    settings = load_settings(base_env(tmp_path, IMAGEGATE_CONFIG=str(tmp_path / "c.toml")))
    catalog = load_catalog(settings.additions)
    [route] = [r for r in catalog.routes if r.where == "marked-1 via gw"]

    assert route.max_n == 2 and len(route.sizes.sizes) == 2  # the offering's values
    assert dict(route.unconfirmed) == {
        "max_n": "the gateway's FAQ, not its reference",  # the offering's own mark
        "knobs": "3p: seed only",  # still the model's knobs, still its mark
    }
    assert "sizes" in catalog.models["marked-1"].unconfirmed  # the model's own line keeps it
