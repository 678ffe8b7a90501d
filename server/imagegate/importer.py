"""Import an aggregator's model into the catalog: read its published input schema (Replicate's
`latest_version.openapi_schema.components.schemas.Input`, or a fal endpoint's OpenAPI document) and
write the catalog addition it implies, as config-file TOML for the user to review.

Pure: the CLI fetches the documents (through the HTTP layer) and writes the file. What the schema
states becomes a limit; what it leaves open is left to the upstream and named in `unconfirmed`;
fields with no place in the vocabulary are listed in the notes (they still work through `extra`).
The result is validated with the catalog's own models before anyone sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .catalog import Catalog, ModelSpec, Offering
from .catalog.loader import validation_message
from .catalog.spec import RATIO, TIER
from .errors import ConfigError

__all__ = [
    "Addition",
    "SchemaFields",
    "from_fal",
    "from_replicate",
    "replicate_input",
    "fal_input",
    "to_toml",
]

Schema = dict[str, Any]
UNBOUNDED_EDGE = 16384
"""The bound a pixel range gets when the schema states none (the upstream judges; marked unconfirmed)."""
KNOB_FIELDS = {
    "seed": "seed",
    "negative_prompt": "negative_prompt",
    "guidance_scale": "guidance_scale",
    "guidance": "guidance_scale",
    "cfg_scale": "guidance_scale",
    "safety_tolerance": "safety_tolerance",
    "prompt_upsampling": "prompt_extend",
    "enhance_prompt": "prompt_extend",
    "prompt_extend": "prompt_extend",
    "output_quality": "output_compression",
    "apply_watermark": "watermark",
    "watermark": "watermark",
}
"""A schema field -> the knob of the unified vocabulary it is (models.toml [knobs])."""
COUNT_FIELDS = ("num_outputs", "num_images")
TIER_FIELDS = ("resolution", "size")
MASK_FIELDS = ("mask", "mask_image", "mask_url")
FORMAT_NAMES = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "webp": "webp"}
MULTIPLE = re.compile(r"multiple of (\d+)", re.IGNORECASE)
MAX_ITEMS = re.compile(
    r"(?:up to|maximum(?: of)?|max\.?|1-)\s*(\d+)\s*(?:images|input images|references)?", re.I
)


@dataclass(frozen=True)
class SchemaFields:
    """An input schema's properties with `$ref`/`allOf` resolved, in the schema's own order."""

    properties: dict[str, Schema]
    required: tuple[str, ...] = ()

    def enum(self, name: str) -> list[Any]:
        return list(self.properties.get(name, {}).get("enum") or [])

    def kind(self, name: str) -> str | None:
        return self.properties.get(name, {}).get("type")


@dataclass
class Addition:
    """What an import adds: a model record (None when the catalog already has the model) and an offering."""

    source: str
    provider: str
    model_id: str
    model: dict[str, Any] | None
    offering: dict[str, Any]
    unmapped: list[str] = field(default_factory=list)

    def check(self, catalog: Catalog) -> None:
        """Validate with the catalog's own models (ConfigError naming the entry, as a config file would)."""
        try:
            if self.model is not None:
                ModelSpec.model_validate(self.model)
            Offering.model_validate(self.offering)
        except ValidationError as e:
            raise ConfigError(validation_message(self.source, f"import {self.model_id}", e)) from None
        knobs = {*self.offering.get("knobs", {}), *((self.model or {}).get("knobs", {}))}
        if unknown := sorted(k for k in knobs if k not in catalog.knobs):
            raise ConfigError(f"{self.source}: import {self.model_id}: unknown knobs {unknown}")


# --- Reading the schemas -----------------------------------------------------------------------------


def _resolve(node: Any, components: Mapping[str, Any], depth: int = 0) -> Any:
    """A schema node with `$ref`, `allOf` and `anyOf` folded in: Cog writes enums as `allOf: [{$ref}]`;
    fal writes optional fields as `anyOf: [X, {type: null}]` and sizes as `anyOf: [ImageSize, enum]`
    (the object is kept under `object`, the enums are gathered)."""
    if not isinstance(node, dict) or depth > 8:
        return node
    if isinstance(ref := node.get("$ref"), str):
        target = components.get(ref.rsplit("/", 1)[-1], {})
        return _resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}}, components, depth + 1)
    merged = {k: v for k, v in node.items() if k not in ("allOf", "anyOf")}
    for key in ("allOf", "anyOf"):
        for option in node.get(key) or []:
            resolved = _resolve(option, components, depth + 1)
            if not isinstance(resolved, dict) or resolved.get("type") == "null":
                continue
            if resolved.get("properties"):
                merged.setdefault("object", resolved)
            elif "enum" in resolved and "enum" in merged:
                merged["enum"] = [*merged["enum"], *resolved["enum"]]
            else:
                merged = {**resolved, **merged}
    return merged


def _fields(schema: Schema, components: Mapping[str, Any]) -> SchemaFields:
    props = {name: _resolve(node, components) for name, node in (schema.get("properties") or {}).items()}
    ordered = sorted(props, key=lambda n: (props[n].get("x-order", 1_000), list(props).index(n)))
    return SchemaFields({n: props[n] for n in ordered}, tuple(schema.get("required") or ()))


def replicate_input(model: Schema) -> tuple[SchemaFields, str | None]:
    """The Input schema of a Replicate model object (`GET /models/{owner}/{name}`) and its version id."""
    version = model.get("latest_version") or {}
    components = ((version.get("openapi_schema") or {}).get("components") or {}).get("schemas") or {}
    if "Input" not in components:
        raise ConfigError("the model's latest_version has no openapi_schema Input: nothing to import")
    return _fields(components["Input"], components), version.get("id")


def fal_input(document: Schema, endpoint: str) -> SchemaFields:
    """The input schema of a fal endpoint's OpenAPI document: the POST body of the endpoint's path."""
    components = (document.get("components") or {}).get("schemas") or {}
    for path, item in (document.get("paths") or {}).items():
        body = ((item.get("post") or {}).get("requestBody") or {}).get("content", {})
        schema = (body.get("application/json") or {}).get("schema")
        if schema and path.strip("/") == endpoint.strip("/"):
            return _fields(_resolve(schema, components), components)
    raise ConfigError(f"the OpenAPI document has no POST /{endpoint} with a JSON body: nothing to import")


# --- Mapping fields to limits ------------------------------------------------------------------------


@dataclass
class _Mapped:
    limits: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    unconfirmed: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=lambda: {"prompt"})


def _bound(node: Schema, key: str) -> float | None:
    value = node.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _knob_rule(node: Schema) -> Any:
    """A knob's rule from its field: its enum, its bounds, or `true` (any value of its type)."""
    if node.get("enum"):
        return list(node["enum"])
    rule = {
        k: v
        for k in ("min", "max")
        if (v := _bound(node, "minimum" if k == "min" else "maximum")) is not None
    }
    return rule or True


def _edges(fields: SchemaFields, out: _Mapped, width: str, height: str) -> dict[str, Any]:
    w, h = fields.properties[width], fields.properties[height]
    rule: dict[str, Any] = {"kind": "range"}
    for edge, node in (("width", w), ("height", h)):
        low, high = _bound(node, "minimum"), _bound(node, "maximum")
        rule[f"min_{edge}"] = int(low) if low else None
        rule[f"max_{edge}"] = int(high) if high else UNBOUNDED_EDGE
        if high is None:
            out.unconfirmed["sizes"] = f"the schema sets no maximum {edge}; the upstream judges"
    multiple = MULTIPLE.search(f"{w.get('description', '')} {h.get('description', '')}")
    if multiple:
        rule["multiple_of"] = int(multiple[1])
        out.unconfirmed.setdefault("sizes", f"multiple of {multiple[1]} read from the fields' descriptions")
    out.fields |= {"width": width, "height": height}
    out.used |= {width, height}
    return {k: v for k, v in rule.items() if v is not None}


def _sizes(fields: SchemaFields, out: _Mapped, ratio_field: str = "aspect_ratio") -> dict[str, Any]:
    """The size rule: width/height bounds (range), an aspect-ratio enum (ratio), resolution tiers."""
    props = fields.properties
    ratios = [r for r in fields.enum(ratio_field) if isinstance(r, str) and RATIO.match(r)]
    tier_field = next((t for t in TIER_FIELDS if any(TIER.match(str(v)) for v in fields.enum(t))), None)
    tiers = [str(v) for v in fields.enum(tier_field)] if tier_field else []
    rule: dict[str, Any] = {}
    if "width" in props and "height" in props and fields.kind("width") == "integer":
        rule = _edges(fields, out, "width", "height")
        for name in (ratio_field, tier_field):
            if name and "custom" in fields.enum(name):
                out.fields["custom"] = f"{name}=custom"
    elif ratios:
        rule = {"kind": "ratio"}
    if ratios:
        rule["ratios"] = ratios
        out.fields["ratio"] = ratio_field
        out.used.add(ratio_field)
    if tier_field and rule:
        rule["tiers"] = [t for t in tiers if TIER.match(t)]
        out.fields["tier"] = tier_field
        out.used.add(tier_field)
    if not rule:  # no size the vocabulary can send: only "auto" or none (models.toml's convention)
        out.unconfirmed["sizes"] = "the schema has no width/height or aspect-ratio enum imagegate can send"
        return {"kind": "range", "max_width": 1, "max_height": 1, "auto": True}
    if "match_input_image" in fields.enum(ratio_field):
        out.unconfirmed.setdefault("sizes", f"{ratio_field} also takes match_input_image (via extra)")
    return rule


def _images(fields: SchemaFields, out: _Mapped) -> tuple[list[str], dict[str, Any]]:
    """The first image input (a URI string or a list of them): the edit capability and its count."""
    for name, node in fields.properties.items():
        if "image" not in name or name in MASK_FIELDS or name in out.used:
            continue
        items = node.get("items") if node.get("type") == "array" else None
        is_uri = node.get("format") == "uri" or "url" in name or name.endswith("image")
        if items is not None and (items.get("format") == "uri" or items.get("type") == "string"):
            limit = node.get("maxItems") or _max_from(node.get("description", ""))
            if limit is None:
                out.unconfirmed["inputs"] = f"the schema sets no count limit on {name}"
            out.fields["images"], out.used = f"{name}[]", out.used | {name}
            caps = ["generate", "edit"] + (["multi_reference"] if (limit or 2) > 1 else [])
            return caps, {"max_images": int(limit)} if limit else {}
        if node.get("type") == "string" and is_uri:
            out.fields["images"], out.used = name, out.used | {name}
            return ["generate", "edit"], {"max_images": 1}
    return ["generate"], {}


def _max_from(text: str) -> int | None:
    match = MAX_ITEMS.search(text)
    return int(match[1]) if match else None


def _map(fields: SchemaFields, out: _Mapped, count_field: str | None) -> dict[str, Any]:
    """Every mappable field as a limit, a knob or a wire field name."""
    caps, inputs = _images(fields, out)
    limits: dict[str, Any] = {"capabilities": caps, "sizes": _sizes(fields, out)}
    if mask := next((m for m in MASK_FIELDS if m in fields.properties), None):
        limits["capabilities"] = [*caps, "mask"] if "edit" in caps else caps
        out.fields["mask"], out.used = mask, out.used | {mask}
    if count_field and (high := _bound(fields.properties[count_field], "maximum")):
        limits["per_call"] = int(high)
        limits["max_n"] = max(10, int(high))
        out.fields["count"], out.used = count_field, out.used | {count_field}
    formats = [FORMAT_NAMES[f] for f in fields.enum("output_format") if f in FORMAT_NAMES]
    knobs: dict[str, Any] = {}
    if formats:
        limits["output_formats"] = list(dict.fromkeys(formats))
        knobs["output_format"] = limits["output_formats"]
        if "jpeg" in fields.enum("output_format") and "jpg" not in fields.enum("output_format"):
            out.fields["jpeg"] = "jpeg"
        out.used.add("output_format")
    else:
        out.unconfirmed["output_formats"] = (
            "the schema has no output_format enum; the file type is the upstream's"
        )
    for name, node in fields.properties.items():
        knob = KNOB_FIELDS.get(name)
        if knob and name not in out.used and knob not in knobs:
            knobs[knob] = True if node.get("type") == "boolean" else _knob_rule(node)
            out.used.add(name)
            if knob != name:
                out.fields[knob] = name
    limits["knobs"] = knobs
    if inputs:
        limits["inputs"] = inputs
    return limits


def _unmapped(fields: SchemaFields, out: _Mapped) -> list[str]:
    return [name for name in fields.properties if name not in out.used]


def _notes(unmapped: list[str]) -> str | None:
    return f"Imported; also takes (pass in extra): {', '.join(unmapped)}." if unmapped else None


def _addition(
    source: str, provider: str, upstream_id: str, upstream: str, name: str, maker: str,
    fields: SchemaFields, out: _Mapped, limits: dict[str, Any], catalog: Catalog, wire: dict[str, Any],
) -> Addition:  # fmt: skip
    """An offering of the catalog's model where one is known by this id, else a new model and its offering."""
    unmapped = _unmapped(fields, out)
    unconfirmed = dict(out.unconfirmed)
    existing = catalog.resolve_model(upstream_id) or catalog.resolve_model(name)
    offering: dict[str, Any] = {"model": existing or name, "upstream": upstream}
    if existing:  # the schema's limits replace the model's; knobs it lacks are switched off
        model_knobs = catalog.models[existing].knobs
        limits["knobs"] = {**{k: False for k in model_knobs if k not in limits["knobs"]}, **limits["knobs"]}
        offering |= {k: v for k, v in limits.items() if v not in ({}, None)}
        if note := _notes(unmapped):
            offering["notes"] = note
        if unconfirmed:
            offering["unconfirmed"] = unconfirmed
        offering["wire"] = wire
        return Addition(source, provider, existing, None, offering, unmapped)
    model_id = name if catalog.resolve_model(name) is None else f"{maker}-{name}"
    model: dict[str, Any] = {"label": name, "maker": maker, "family": name, "aliases": [upstream_id]}
    model |= {k: v for k, v in limits.items() if v not in ({}, None)}
    if note := _notes(unmapped):
        model["notes"] = note
    model["unconfirmed"] = {"model": f"imported from {source}; review before use", **unconfirmed}
    offering |= {"model": model_id, "wire": wire}
    return Addition(source, provider, model_id, model, offering, unmapped)


def from_replicate(owner_name: str, model: Schema, catalog: Catalog) -> Addition:
    """The addition for a Replicate model from its `GET /models/{owner}/{name}` object, pinned to the
    version whose schema it read (`owner/name:version`)."""
    fields, version = replicate_input(model)
    owner, _, name = owner_name.partition("/")
    out = _Mapped()
    count = next((c for c in COUNT_FIELDS if c in fields.properties), None)
    limits = _map(fields, out, count)
    upstream = f"{owner_name}:{version}" if version else owner_name
    wire: dict[str, Any] = {"fields": dict(out.fields)}
    source = f"replicate:{owner_name}" + (f" (version {version[:8]})" if version else "")
    return _addition(
        source, "replicate", owner_name, upstream, name, owner, fields, out, limits, catalog, wire
    )


def from_fal(endpoint: str, document: Schema, catalog: Catalog) -> Addition:
    """The addition for a fal endpoint from its OpenAPI document; the fal adapter's dialects say where
    size and inputs go (image_size {width, height} and image_urls; aspect_ratio; one image_url)."""
    fields = fal_input(document, endpoint)
    out = _Mapped()
    props = fields.properties
    size_object = (props.get("image_size") or {}).get("object", {}).get("properties", {})
    if size_object:  # {width, height} beside the presets: a pixel range
        fields = SchemaFields(
            {**size_object, **{k: v for k, v in props.items() if k != "image_size"}}, fields.required
        )
        out.used.add("image_size")
    limits = _map(fields, out, "num_images" if "num_images" in props else None)
    dialect = (
        "aspect_ratio"
        if "ratio" in out.fields
        else "image_url"
        if out.fields.get("images") == "image_url"
        else None
    )
    wire: dict[str, Any] = {"path": f"/{endpoint}"} | ({"dialect": dialect} if dialect else {})
    if (images := out.fields.get("images")) and images not in ("image_url", "image_urls[]"):
        out.unconfirmed["inputs"] = (
            f"fal's adapter sends image_url(s); this endpoint names its input {images}"
        )
    owner, _, rest = endpoint.partition("/")
    name = rest.replace("/", "-") or owner
    source = f"fal:{endpoint}"
    return _addition(source, "fal", endpoint, endpoint, name, owner, fields, out, limits, catalog, wire)


# --- Writing TOML ------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(addition: Addition) -> str:
    """The addition as config-file TOML: a `[models."…"]` table (new models) and one offering."""
    lines = [f"# imported by `imagegate models --import` from {addition.source}: review before use"]
    if addition.model is not None:
        lines.append(f"[models.{_key(addition.model_id)}]")
        lines += [f"{_key(k)} = {_value(v)}" for k, v in addition.model.items()]
        lines.append("")
    lines.append(f"[[providers.{_key(addition.provider)}.offerings]]")
    lines += [f"{_key(k)} = {_value(v)}" for k, v in addition.offering.items()]
    return "\n".join(lines) + "\n"
