"""A provider's `protocol` and an offering's `wire.dialect` are checked when the catalog and the
config file load, against what each adapter module declares (`DIALECTS`, `DIALECT_REQUIRED`): a
typo fails at start-up with a ConfigError naming the file, the value and the allowed ones, never
on the first call (or as an "internal error")."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegate.catalog import load_catalog
from imagegate.errors import ConfigError
from imagegate.providers import PROTOCOLS, protocol_rules
from imagegate.settings import load_settings

NEW_PROVIDER = """
[providers.mygate]
base_url = "https://gate.example/v1"
protocol = "{protocol}"

[[providers.mygate.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
{wire}
"""


def load(tmp_path: Path, config: str):
    path = tmp_path / "config.toml"
    path.write_text(config, encoding="utf-8")
    settings = load_settings({"IMAGEGATE_CONFIG": str(path), "IMAGEGATE_OUTPUT_DIR": str(tmp_path / "out")})
    return load_catalog(settings.additions, protocol_rules()), str(path)


def test_the_shipped_catalog_passes_the_checks():
    catalog = load_catalog(None, protocol_rules())
    assert {spec.protocol for spec in catalog.providers.values()} <= set(PROTOCOLS)


def test_every_adapter_declares_its_dialects():
    rules = protocol_rules()
    assert set(rules) == set(PROTOCOLS)
    assert rules["mixroute"].dialect_required and "seedream" in rules["mixroute"].dialects
    assert rules["gemini"].dialects == ("gemini", "imagen") and not rules["bfl"].dialects


def test_an_unknown_protocol_in_the_config_names_the_file_the_value_and_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, NEW_PROVIDER.format(protocol="openai_image", wire=""))
    message = caught.value.message
    assert str(tmp_path / "config.toml") in message and "providers.mygate: protocol" in message
    assert "'openai_image'" in message and "openai_images" in message and "mixroute" in message


def test_a_dialect_typo_in_the_config_names_the_offering_and_the_allowed_dialects(tmp_path):
    config = NEW_PROVIDER.format(protocol="mixroute", wire='wire = { dialect = "seedram" }')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config)
    message = caught.value.message
    assert (
        str(tmp_path / "config.toml") in message and "providers.mygate.offerings[0] (gpt-image-1)" in message
    )
    assert "'seedram'" in message and "gemini, seedream, gpt-image, qwen" in message


def test_a_protocol_that_needs_a_dialect_refuses_an_offering_without_one(tmp_path):
    with pytest.raises(ConfigError, match="the mixroute protocol needs one; allowed: gemini, seedream"):
        load(tmp_path, NEW_PROVIDER.format(protocol="mixroute", wire=""))


def test_a_dialect_on_a_protocol_that_takes_none_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'flux' is not a dialect of the bfl protocol; allowed: none"):
        load(tmp_path, NEW_PROVIDER.format(protocol="bfl", wire='wire = { dialect = "flux" }'))


def test_offerings_added_to_a_shipped_provider_are_checked_against_its_protocol(tmp_path):
    config = """
[[providers.modelgate.offerings]]
model = "seedream-4.0"
upstream = "doubao-seedream-4-0"
wire = { dialect = "doubau" }
"""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config)
    assert str(tmp_path / "config.toml") in caught.value.message
    assert (
        "'doubau' is not a dialect of the modelgate protocol; allowed: doubao, google" in caught.value.message
    )


@pytest.mark.parametrize(
    ("protocol", "wire"),
    [
        ("openai_images", ""),
        ("openai_images", 'wire = { dialect = "gpt-image" }'),
        ("mixroute", 'wire = { dialect = "gpt-image" }'),
    ],
)
def test_a_well_formed_config_provider_loads(tmp_path, protocol, wire):
    catalog, _ = load(tmp_path, NEW_PROVIDER.format(protocol=protocol, wire=wire))
    assert any(route.provider == "mygate" for route in catalog.routes)


def test_a_shipped_file_with_an_unknown_protocol_is_named(tmp_path):
    without_bfl = {k: v for k, v in protocol_rules().items() if k != "bfl"}
    with pytest.raises(
        ConfigError, match=r"catalog/data/providers/bfl.toml: providers.bfl: protocol: unknown protocol 'bfl'"
    ):
        load_catalog(None, without_bfl)
