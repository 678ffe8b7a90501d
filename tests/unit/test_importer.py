"""The importer's schema -> catalog mapping, on Replicate's recorded SDXL model object and a fal OpenAPI
document (tests/fixtures/replicate/): limits from what the schema states, `unconfirmed` for what it leaves
open, the rest listed for `extra`; the TOML it writes loads as a config file and is enforced."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from imagegate.catalog import load_catalog
from imagegate.errors import ConfigError
from imagegate.importer import from_fal, from_replicate, to_toml
from imagegate.providers import protocol_rules
from imagegate.settings import load_settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "replicate"
CATALOG = load_catalog()


def sdxl() -> dict:
    return json.loads((FIXTURES / "models-get-sdxl.json").read_text())


def test_replicate_schema_becomes_a_new_model_pinned_to_the_version_it_was_read_from():
    addition = from_replicate("stability-ai/sdxl", sdxl(), CATALOG)
    model, offering = addition.model, addition.offering
    assert addition.model_id == "sdxl" and model is not None
    assert (
        offering["upstream"]
        == "stability-ai/sdxl:39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
    )
    assert model["per_call"] == 4  # num_outputs maximum
    assert model["capabilities"] == ["generate", "edit", "mask"]
    assert model["knobs"]["guidance_scale"] == {"min": 1, "max": 50}
    assert (
        model["knobs"]["watermark"] is True and offering["wire"]["fields"]["watermark"] == "apply_watermark"
    )
    assert (
        offering["wire"]["fields"].items()
        >= {"images": "image", "mask": "mask", "count": "num_outputs"}.items()
    )
    assert "sizes" in model["unconfirmed"] and "output_formats" in model["unconfirmed"]  # no bounds, no enum
    assert "scheduler" in addition.unmapped and "refine" in model["notes"]


def test_a_model_the_catalog_knows_gets_an_offering_only_with_the_knobs_it_lacks_switched_off():
    body = sdxl()
    body["latest_version"]["openapi_schema"]["components"]["schemas"]["Input"]["properties"].pop("seed")
    addition = from_replicate("google/nano-banana", body, CATALOG)  # an alias of gemini-2.5-flash-image
    assert addition.model is None and addition.model_id == "gemini-2.5-flash-image"
    assert addition.offering["knobs"]["seed"] is False


def test_fal_openapi_maps_image_size_num_images_and_formats():
    document = json.loads((FIXTURES / "fal-openapi-flux-dev.json").read_text())
    addition = from_fal("fal-ai/flux/dev", document, CATALOG)
    model = addition.model
    assert model is not None and addition.provider == "fal"
    assert model["sizes"] == {"kind": "range", "max_width": 14142, "max_height": 14142}
    assert model["per_call"] == 4 and model["output_formats"] == ["jpeg", "png"]
    assert model["knobs"]["guidance_scale"] == {"min": 1, "max": 20}
    assert addition.offering["wire"] == {"path": "/fal-ai/flux/dev"}
    assert {"num_inference_steps", "enable_safety_checker", "acceleration"} <= set(addition.unmapped)


def test_a_schema_without_input_is_refused():
    with pytest.raises(ConfigError, match="Input"):
        from_replicate(
            "a/b", {"latest_version": {"openapi_schema": {"components": {"schemas": {}}}}}, CATALOG
        )


def test_the_written_toml_loads_as_a_config_with_the_imported_limits(tmp_path):
    addition = from_replicate("stability-ai/sdxl", sdxl(), CATALOG)
    addition.check(CATALOG)
    config = tmp_path / "config.toml"
    config.write_text(to_toml(addition))
    tomllib.loads(config.read_text())
    settings = load_settings({"IMAGEGATE_CONFIG": str(config), "IMAGEGATE_OUTPUT_DIR": str(tmp_path)})
    catalog = load_catalog(settings.additions, protocol_rules())
    (imported,) = [r for r in catalog.routes_for("sdxl") if r.provider == "replicate"]
    assert imported.per_call == 4 and imported.knobs["guidance_scale"].max == 50
