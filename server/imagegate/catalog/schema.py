"""Tool input schemas derived from routes: the flat schema advertised in `tools/list`
(the shape every major client accepts) and the exact schema of each route, which the
validator enforces on every call. Nothing here states a limit; it only reads routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .routes import Route
from .sizes import describe_rule, rule_options, rule_tiers
from .spec import CAPABILITIES, KnobDef, KnobRule, SizeRule

__all__ = ["TOOL_ARGUMENTS", "conditional_chain", "flat_schema", "listing_schemas", "route_schema"]

Schema = dict[str, Any]
TOOL_ARGUMENTS = {
    "generate": ("model", "prompt", "provider", "size", "resolution", "n"),
    "edit": ("model", "prompt", "images", "mask", "provider", "size", "resolution", "n"),
}
COMMON_MAX_N = 10
"""Most models allow n up to this; model lines mention n only where it differs."""
ENUMERABLE_SIZES = 24
"""A narrowed schema lists sizes as an enum only while the union stays this short."""

DESCRIPTIONS = {
    "provider": "Default: the first configured one offering the model.",
    "images": "Paths, http(s) URLs or data: URLs; the first is edited.",
    "mask": "PNG, transparent where to edit, size of the first image.",
    "extra": "Provider-specific fields, sent as-is.",
    "variations": 'Omit (or "") for variations of images[0] where the model says +variations.',
}


def _size_property(rules: Sequence[SizeRule], exact: bool) -> Schema:
    prop: Schema = {"type": "string"}
    enumerable = all(r.kind in ("list", "table", "input") for r in rules)
    sizes = list(dict.fromkeys(s for r in rules for s in _enum_sizes(r))) if enumerable else []
    if exact and sizes and len(sizes) <= ENUMERABLE_SIZES:
        prop["enum"] = sizes
    # No pattern otherwise: the route's own rule is checked on every call and names what it allows.
    prop["description"] = 'Pixels "WxH", ratio "W:H" (with resolution) or "auto"; see model.'
    return prop


def _enum_sizes(rule: SizeRule) -> list[str]:
    if rule.kind == "input":
        return ["auto"]
    options = rule_options(rule)
    sizes = [o.pixels for o in options] + [o.ratio for o in options]
    return sizes + (["auto"] if rule.auto else [])


def _knob_property(definition: KnobDef, rules: Sequence[KnobRule]) -> Schema:
    prop: Schema = {"type": definition.type}
    if rules and all(r.values is not None for r in rules):
        prop["enum"] = list(dict.fromkeys(v for r in rules for v in r.values or []))
    mins = [r.min for r in rules if r.min is not None]
    maxs = [r.max for r in rules if r.max is not None]
    if mins and len(mins) == len(rules):
        prop["minimum"] = _number(min(mins), definition.type)
    if maxs and len(maxs) == len(rules):
        prop["maximum"] = _number(max(maxs), definition.type)
    lengths = [r.max_length for r in rules if r.max_length is not None]
    if lengths and len(lengths) == len(rules):
        prop["maxLength"] = max(lengths)
    if "enum" not in prop:  # an enum says enough; every byte here is paid on every turn
        prop["description"] = definition.description
    return prop


def _number(value: float, kind: str) -> int | float:
    return int(value) if kind == "integer" or float(value).is_integer() else value


def _model_limits(route: Route, tool: str) -> str:
    if tool == "edit":
        # Sizes of models that also generate are listed under generate_image: not repeated here.
        parts = [f"≤{route.inputs.max_images or 1} images" + (" +mask" if route.can("mask") else "")]
        parts[0] += " +variations" if route.can("variations") else ""
        if not route.can("generate"):
            parts.insert(0, describe_rule(route.sizes_with_references or route.sizes))
    else:
        parts = [describe_rule(route.sizes)]
    if route.max_n != COMMON_MAX_N:
        parts.append(f"n≤{route.max_n}")
    return "; ".join(parts)


def _model_property(routes: Sequence[Route], tool: str) -> Schema:
    # Models with the same limits share a line: "gpt-image-1.5, gpt-image-1: 1024x1024|…".
    groups: dict[str, list[str]] = {}
    for route in routes:
        groups.setdefault(_model_limits(route, tool), []).append(route.model)
    lines = "\n".join(f"{', '.join(models)}: {limits}" for limits, models in groups.items())
    intro = f"Model id or alias (n≤{COMMON_MAX_N} unless noted). " + (
        "Sizes:\n" if tool == "generate" else "Sizes as for generate_image.\n"
    )
    return {"type": "string", "enum": [r.model for r in routes], "description": intro + lines}


def flat_schema(
    tool: str, routes: Sequence[Route], knob_defs: Mapping[str, KnobDef], providers: Sequence[str]
) -> Schema:
    """The advertised schema: one flat object, single-typed properties, enums where exact.

    `routes` are the default routes of the offered models (one per model); when they are few,
    the enums become exact for them.
    """
    exact = len(routes) <= 3
    props: Schema = {
        "model": _model_property(routes, tool),
        "prompt": {"type": "string", "minLength": 1},
    }
    varies = tool == "edit" and any(r.can("variations") for r in routes)
    if varies:  # an edit without a prompt asks for variations (validation checks the route has them)
        props["prompt"] = {"type": "string", "description": DESCRIPTIONS["variations"]}
    max_prompt = [r.prompt_max_length for r in routes]
    if max_prompt and all(max_prompt):
        props["prompt"]["maxLength"] = max(m for m in max_prompt if m)
    if tool == "edit":
        most = max((r.inputs.max_images or 1 for r in routes), default=1)
        props["images"] = {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": most,
            "description": DESCRIPTIONS["images"],
        }
        if any(r.can("mask") for r in routes):
            props["mask"] = {"type": "string", "description": DESCRIPTIONS["mask"]}
    props["provider"] = {"type": "string", "enum": list(providers)}
    if len(providers) > 1:  # one provider needs no word on which is chosen
        props["provider"]["description"] = DESCRIPTIONS["provider"]
    props["size"] = _size_property([r.sizes for r in routes], exact)
    tiers = list(dict.fromkeys(t for r in routes for t in rule_tiers(r.sizes)))
    if tiers:
        props["resolution"] = {"type": "string", "enum": tiers}
    # n needs no words: its bounds say it, and a model's lower maximum is on its model line.
    props["n"] = {"type": "integer", "minimum": 1, "maximum": max((r.max_n for r in routes), default=1)}
    for name, definition in knob_defs.items():
        rules = [k for r in routes if (k := r.knobs_for(tool).get(name)) is not None]
        if rules and tool in definition.tools:
            props[name] = _knob_property(definition, rules)
    props["extra"] = {"type": "object", "description": DESCRIPTIONS["extra"]}
    required = ["model", "prompt", "images"] if tool == "edit" else ["model", "prompt"]
    if varies:
        required.remove("prompt")
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def route_schema(route: Route, tool: str, knob_defs: Mapping[str, KnobDef], references: int = 0) -> Schema:
    """The exact schema of one route: every property it accepts, with its own limits.

    A knob the route does not take is the schema `false`; size arithmetic beyond an enum
    (ranges, multiples) is checked by `sizes.resolve_size`, which reads the same rule.
    """
    rule = route.size_rule(references)
    props: Schema = {
        "size": _size_property([rule], exact=True),
        "n": {"type": "integer", "minimum": 1, "maximum": route.max_n},
    }
    tiers = rule_tiers(rule)
    props["resolution"] = {"type": "string", "enum": tiers} if tiers else False
    if route.prompt_max_length:
        props["prompt"] = {"type": "string", "minLength": 1, "maxLength": route.prompt_max_length}
        if tool == "edit" and route.can("variations"):
            del props["prompt"]["minLength"]
    if tool == "edit":
        props["images"] = {
            "type": "array",
            "items": {"type": "string"},
            "minItems": route.inputs.min_images or 1,
            "maxItems": route.inputs.max_images or 1,
        }
        props["mask"] = {"type": "string"} if route.can("mask") else False
    knobs = route.knobs_for(tool)
    for name, definition in knob_defs.items():
        rule_ = knobs.get(name)
        props[name] = (
            _knob_property(definition, [rule_]) if rule_ is not None and tool in definition.tools else False
        )
    return {"type": "object", "properties": props}


def conditional_chain(tool: str, routes: Sequence[Route], knob_defs: Mapping[str, KnobDef]) -> Schema:
    """Per-model rules as one root if/then/else chain (never allOf), for clients that honour it."""
    chain: Schema = {}
    for route in reversed(routes):
        then = route_schema(route, tool, knob_defs)
        then["properties"] = {k: _strip_descriptions(v) for k, v in then["properties"].items()}
        branch: Schema = {
            "if": {"properties": {"model": {"enum": [route.model]}}, "required": ["model"]},
            "then": then,
        }
        if chain:
            branch["else"] = chain
        chain = branch
    return chain


def _strip_descriptions(prop: Any) -> Any:
    return {k: v for k, v in prop.items() if k != "description"} if isinstance(prop, dict) else prop


def listing_schemas(provider_order: Sequence[str]) -> dict[str, Schema]:
    """The input schemas of the listing tools and get_image_job (the image tools' come from routes)."""
    providers = list(provider_order)
    return {
        "list_models": {
            "type": "object",
            "properties": {
                "provider": {
                    "type": "string",
                    "enum": providers,
                    "description": "Only this provider's models.",
                },
                "capability": {
                    "type": "string",
                    "enum": list(CAPABILITIES),
                    "description": "Only models with this capability.",
                },
            },
            "additionalProperties": False,
        },
        "get_image_job": {
            "type": "object",
            "properties": {
                "job": {"type": "string", "description": "The id an image call handed back."},
                "wait": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Seconds to wait for it; default: as long as a call may.",
                },
            },
            "required": ["job"],
            "additionalProperties": False,
        },
        "get_supported_sizes": {
            "type": "object",
            "properties": {
                "model": {"type": "string", "description": "Model id or alias."},
                "provider": {
                    "type": "string",
                    "enum": providers,
                    "description": "Provider; default: the one a call would use.",
                },
                "resolution": {"type": "string", "description": "Only sizes of this tier (1K, 2K, 4K…)."},
            },
            "required": ["model"],
            "additionalProperties": False,
        },
    }
