"""Validation of tool arguments, before anything is sent anywhere.

Two passes read the schemas derived from the catalog, so what is advertised and what is
enforced cannot drift: the flat tool schema (names, types, global bounds), then the exact
schema of the route that will serve the call, then what JSON Schema cannot say (size
arithmetic, input-image forms). Every failure is an InvalidRequest naming the argument,
the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalog import ResolvedSize, Route, resolve_size
from .catalog.schema import TOOL_ARGUMENTS, Schema, route_schema
from .catalog.spec import KnobDef, KnobValue
from .errors import InvalidRequest, shown
from .router import Router

__all__ = ["ImageRequest", "Validator", "check_object", "input_form", "takes_form"]

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


@dataclass(frozen=True)
class ImageRequest:
    """A call that passed validation: everything later stages need, already resolved."""

    tool: str
    route: Route
    prompt: str
    n: int
    size: ResolvedSize
    knobs: Mapping[str, KnobValue]
    extra: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    mask: str | None = None
    size_asked: str | None = None
    """The size argument as the call gave it (pixels, a ratio, "auto"), None when it gave none."""


def _type_ok(value: object, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, JSON_TYPES[kind])


def _check_number(name: str, value: float, prop: Schema, where: str) -> None:
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = (
            f"{lo} to {hi}"
            if lo is not None and hi is not None
            else (f"at least {lo}" if lo is not None else f"at most {hi}")
        )
        raise InvalidRequest(
            name, value, span, f"{name} {shown(value)} is out of range for {where}; use {span}"
        )


def _check_string(name: str, value: str, prop: Schema, where: str) -> None:
    if len(value) < prop.get("minLength", 0):
        raise InvalidRequest(name, value, "a non-empty string", f"{name} is empty; give a non-empty string")
    if "maxLength" in prop and len(value) > prop["maxLength"]:
        limit = prop["maxLength"]
        raise InvalidRequest(
            name,
            shown(value),
            f"at most {limit} characters",
            f"{name} is {len(value)} characters; {where} takes at most {limit}",
        )
    if "pattern" in prop and not re.match(prop["pattern"], value):
        raise InvalidRequest(
            name,
            value,
            'WxH pixels, a W:H ratio or "auto"',
            f'{name} "{shown(value)}" is neither "WxH" pixels, a "W:H" ratio nor "auto"',
        )


def _check_array(name: str, value: list[Any], prop: Schema, where: str) -> None:
    lo, hi = prop.get("minItems", 0), prop.get("maxItems")
    if len(value) < lo or (hi is not None and len(value) > hi):
        span = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        raise InvalidRequest(name, len(value), span, f"{name} has {len(value)} items; {where} takes {span}")
    for i, item in enumerate(value):
        check_value(f"{name}[{i}]", item, prop.get("items", {}), where)


def check_value(name: str, value: object, prop: Schema | bool, where: str) -> None:
    """Check one argument against one property schema; raise InvalidRequest on the first problem."""
    if prop is False:
        raise InvalidRequest(name, shown(value), None, f"{name} is not supported by {where}")
    if not isinstance(prop, dict):
        return
    kind = prop.get("type")
    if kind and not _type_ok(value, kind):
        got = f'the string "{shown(value)}"' if isinstance(value, str) else shown(value)
        raise InvalidRequest(
            name, shown(value), TYPE_NAMES[kind], f"{name} must be {TYPE_NAMES[kind]}; got {got}"
        )
    if "enum" in prop and value not in prop["enum"]:
        allowed = [str(v) for v in prop["enum"]]
        raise InvalidRequest(
            name,
            value,
            allowed,
            f'{name} "{shown(value)}" is not offered by {where}; use one of {", ".join(allowed)}',
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(name, value, prop, where)
    elif isinstance(value, str):
        _check_string(name, value, prop, where)
    elif isinstance(value, list):
        _check_array(name, value, prop, where)


def check_object(schema: Schema, args: Mapping[str, Any], where: str) -> None:
    """Check arguments against an object schema: unknown names, required ones, each value."""
    props: Mapping[str, Any] = schema["properties"]
    if schema.get("additionalProperties") is False:
        for name in args:
            if name not in props:
                near = difflib.get_close_matches(name, list(props), n=1)
                hint = f' (did you mean "{near[0]}"?)' if near else ""
                raise InvalidRequest(
                    shown(name),
                    shown(args[name]),
                    list(props),
                    f'unknown argument "{shown(name)}"{hint}; {where} takes {", ".join(props)}',
                )
    for name in schema.get("required", ()):
        if name not in args:
            raise InvalidRequest(name, None, "required", f"{name} is required")
    for name, value in args.items():
        if name in props:
            check_value(name, value, props[name], where)


def input_form(ref: str) -> str:
    """How an input image was given: "url" (http/https), "base64" (data: URL) or "file" (a local path)."""
    lowered = ref[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return "url"
    if lowered.startswith("data:"):
        return "base64"
    return "file"


def takes_form(forms: Sequence[str] | None, form: str) -> bool:
    """Whether a route whose inputs come in `forms` (None: any) accepts an input given in `form`.

    Bytes convert between inline base64 and an upload, and a URL can be downloaded into either:
    only a route that takes nothing but URLs refuses an input form (a local file or inline data).
    """
    return not forms or form in forms or bool({"base64", "file"} & set(forms))


STRUCTURAL = {"type", "items", "minLength"}


def _structure_only(schema: Schema) -> Schema:
    props = {
        name: {k: v for k, v in prop.items() if k in STRUCTURAL}
        for name, prop in schema["properties"].items()
    }
    return {**schema, "properties": props}


class Validator:
    """Turns raw tool arguments into an ImageRequest, or raises InvalidRequest / NotConfigured."""

    def __init__(self, router: Router, knob_defs: Mapping[str, KnobDef], tool_schemas: Mapping[str, Schema]):
        self.router = router
        self.knob_defs = knob_defs
        self.tool_schemas = tool_schemas
        # The first pass checks only names, types and presence: values are judged against the
        # route that serves the call, whose messages name it (and aliases are resolved there).
        self.structure = {name: _structure_only(schema) for name, schema in tool_schemas.items()}
        if edit := self.structure.get("edit_image"):  # `_check_prompt` judges an edit's prompt by its route
            required = [name for name in edit.get("required", ()) if name != "prompt"]
            props = {**edit["properties"], "prompt": {"type": "string"}}
            self.structure["edit_image"] = {**edit, "required": required, "properties": props}

    def _takers(self, knob: str, tool: str, route: Route) -> str:
        """Where a knob this route lacks would work: this model's other providers, else other models."""
        takers = [r for r in self.router.offered_routes(tool) if knob in r.knobs_for(tool)]
        same_model = [r.provider for r in takers if r.model == route.model]
        if same_model:
            return f"; {route.model} takes it via {', '.join(dict.fromkeys(same_model))} (provider argument)"
        models = list(dict.fromkeys(r.model for r in takers))
        if not models:
            return "; no configured model takes it"
        more = f" and {len(models) - 6} more" if len(models) > 6 else ""
        return f"; models that take it: {', '.join(models[:6])}{more}"

    def validate(self, tool: str, raw: Mapping[str, Any] | None) -> ImageRequest:
        """Check a generate/edit call fully and resolve its size; nothing is sent anywhere."""
        args = {k: v for k, v in (raw or {}).items() if v is not None}
        check_object(self.structure[f"{tool}_image"], args, f"{tool}_image")
        route = self.router.choose(args["model"], args.get("provider"), tool)
        images = tuple(args.get("images", ()))
        self._check_prompt(route, tool, args, images)
        exact = route_schema(route, tool, self.knob_defs, references=len(images))
        del exact["properties"]["size"]  # resolve_size reads the same rule and says more (ratios, tiers)
        try:
            check_object(exact, args, route.where)
        except InvalidRequest as e:
            if e.argument in self.knob_defs and e.argument not in route.knobs_for(tool):
                e.message += self._takers(e.argument, tool, route)
            raise
        self._check_forms(route, tool, images, args.get("mask"))
        self._check_extra(args.get("extra", {}))
        size = resolve_size(
            route.size_rule(len(images)), args.get("size"), args.get("resolution"), route.where
        )
        knobs = {k: args[k] for k in route.knobs_for(tool) if k in args}
        return ImageRequest(
            tool=tool,
            route=route,
            prompt=args.get("prompt", ""),
            n=int(args.get("n", 1)),
            size=size,
            knobs=knobs,
            extra=dict(args.get("extra", {})),
            images=images,
            mask=args.get("mask"),
            size_asked=args.get("size"),
        )

    def _check_prompt(
        self, route: Route, tool: str, args: Mapping[str, Any], images: tuple[str, ...]
    ) -> None:
        """An edit without a prompt (none, or "") asks for variations of its one image: only where the
        route makes them (the `variations` capability), and without a mask."""
        if tool != "edit" or args.get("prompt"):
            return
        if not route.can("variations"):
            said = "is empty" if "prompt" in args else "is required"
            varying = [r for r in self.router.offered_routes(tool) if r.can("variations")]
            same = list(dict.fromkeys(r.provider for r in varying if r.model == route.model))
            models = list(dict.fromkeys(r.model for r in varying))
            hint = (
                f"; without one, {route.model} makes variations via {', '.join(same)} (provider argument)"
                if same
                else (f"; models that make variations without one: {', '.join(models[:6])}" if models else "")
            )
            message = f"prompt {said}; {route.where} edits only with a prompt{hint}"
            raise InvalidRequest("prompt", args.get("prompt"), "a non-empty string", message)
        if "mask" in args:
            message = f"mask needs a prompt: without one, {route.where} makes variations, which take no mask"
            raise InvalidRequest("mask", shown(args["mask"]), "no mask, or a prompt", message)
        if len(images) != 1:
            message = f"images has {len(images)} items; variations (no prompt) take exactly 1"
            raise InvalidRequest("images", len(images), "1", message)

    def _check_forms(self, route: Route, tool: str, images: tuple[str, ...], mask: str | None) -> None:
        named = [(f"images[{i}]", ref) for i, ref in enumerate(images)] + ([("mask", mask)] if mask else [])
        for name, ref in named:
            form = input_form(ref)
            if not takes_form(route.inputs.forms, form):
                message = self._form_message(route, tool, name, ref, form)
                raise InvalidRequest(name, shown(ref), list(route.inputs.forms or ()), message)

    def _form_message(self, route: Route, tool: str, name: str, ref: str, form: str) -> str:
        what = {"file": "a local file", "base64": "inline data", "url": "a URL"}[form]
        takes = " or ".join(
            {"url": "http(s) URLs", "base64": "inline base64", "file": "uploaded files"}[f]
            for f in route.inputs.forms or ()
        )
        # The same test the call just failed, so every provider named would pass it; configured or
        # not (the agent can ask for a key), but only those able to do this tool (and a mask).
        others = [
            r.provider
            for r in self.router.offered_routes(tool, configured_only=False)
            if r.model == route.model
            and r.provider != route.provider
            and (name != "mask" or r.can("mask"))
            and takes_form(r.inputs.forms, form)
        ]
        hint = f"; providers of {route.model} that take it: {', '.join(others)}" if others else ""
        return f'{name} "{shown(ref)}" is {what}, but {route.where} takes only {takes}{hint}'

    def _check_extra(self, extra: Mapping[str, Any]) -> None:
        named = {*TOOL_ARGUMENTS["edit"], *self.knob_defs}
        for key in extra:
            if key in named:
                raise InvalidRequest(
                    "extra",
                    key,
                    None,
                    f'extra.{key} duplicates the argument "{key}"; pass it as {key} instead',
                )
