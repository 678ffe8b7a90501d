"""A route is one model served by one provider: the model's native limits with the
offering's differences applied. Everything downstream (validation, schemas, listings,
adapters) reads a Route, so the merge rule lives here and only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .sizes import largest_pixels
from .spec import (
    Capability,
    InputLimits,
    KnobRule,
    ModelSpec,
    Offering,
    Price,
    ProviderSpec,
    SizeRule,
    WireOptions,
)

__all__ = ["UNSTATED_PIXELS", "Route", "merge_route"]

UNSTATED_PIXELS = 4096 * 4096
"""The largest image assumed where a route's size rule leaves the pixels to the upstream (ratio-only,
input-following): as large as any catalogued model makes."""


@dataclass(frozen=True, slots=True)
class Route:
    """The effective limits of `model` via `provider`."""

    model: str
    provider: str
    protocol: str
    upstream: str
    label: str
    family: str
    capabilities: frozenset[Capability]
    sizes: SizeRule
    sizes_with_references: SizeRule | None
    references_from: int
    max_n: int
    per_call: int
    output_formats: tuple[str, ...]
    knobs: Mapping[str, KnobRule]
    inputs: InputLimits
    prompt_max_length: int | None
    wire: WireOptions
    notes: tuple[str, ...] = field(default=())
    unconfirmed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Fact -> why it is believed, for facts no primary document states (model's, then offering's)."""
    price: Price | None = None
    """What images cost here (the offering's, else the model's on its maker's own API); None: unknown."""

    @property
    def where(self) -> str:
        """How messages name this route: "gpt-image-1 via openai"."""
        return f"{self.model} via {self.provider}"

    @property
    def largest_image(self) -> int:
        """The most pixels one image from this route can have (bounds what a reply may legitimately hold)."""
        rules = (self.sizes, self.sizes_with_references)
        return max((p for r in rules if r is not None and (p := largest_pixels(r))), default=UNSTATED_PIXELS)

    def knobs_for(self, tool: str) -> dict[str, KnobRule]:
        """The knobs this route accepts in `tool` ("generate" or "edit")."""
        return {k: r for k, r in self.knobs.items() if r.tools is None or tool in r.tools}

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def size_rule(self, references: int) -> SizeRule:
        """The size rule for a call with this many input images."""
        if self.sizes_with_references is not None and references >= self.references_from:
            return self.sizes_with_references
        return self.sizes


def _merge_inputs(base: InputLimits, over: InputLimits) -> InputLimits:
    changes = {k: v for k, v in over.model_dump(exclude_unset=True).items() if v is not None}
    return base.model_copy(update=changes)


def _merge_knobs(model: ModelSpec, offering: Offering) -> dict[str, KnobRule]:
    knobs: dict[str, KnobRule] = dict(model.knobs)
    for name, rule in offering.knobs.items():
        if rule is False:
            knobs.pop(name, None)
        else:
            knobs[name] = rule
    return knobs


def merge_route(
    model_id: str, model: ModelSpec, provider_id: str, provider: ProviderSpec, offering: Offering
) -> Route:
    """Apply one offering's differences to its model's native limits."""
    notes = tuple(n for n in (model.notes, offering.notes) if n)
    price = _price(model, provider, offering)
    return Route(
        model=model_id,
        provider=provider_id,
        protocol=provider.protocol,
        upstream=offering.upstream,
        label=model.label,
        family=model.family,
        capabilities=frozenset(offering.capabilities or model.capabilities),
        sizes=offering.sizes or model.sizes,
        sizes_with_references=offering.sizes_with_references or model.sizes_with_references,
        references_from=offering.sizes_with_references_from or model.sizes_with_references_from or 1,
        max_n=offering.max_n or model.max_n,
        per_call=offering.per_call or model.per_call,
        output_formats=tuple(offering.output_formats or model.output_formats),
        knobs=MappingProxyType(_merge_knobs(model, offering)),
        inputs=_merge_inputs(model.inputs, offering.inputs),
        prompt_max_length=offering.prompt_max_length or model.prompt_max_length,
        wire=offering.wire,
        notes=notes,
        unconfirmed=MappingProxyType(_unconfirmed(model, offering, price)),
        price=price,
    )


def _price(model: ModelSpec, provider: ProviderSpec, offering: Offering) -> Price | None:
    """The offering's own price; else the model's list price, but only on a native provider (its
    maker's API): a gateway charges its own, which is unknown until its offering states it."""
    return offering.price or (model.price if provider.kind == "native" else None)


def _unconfirmed(model: ModelSpec, offering: Offering, price: Price | None) -> dict[str, str]:
    """The model's facts, then the offering's; a price mark only for the price the route has. A model's
    mark on a value the offering replaces is dropped: the route no longer has that value."""
    replaced = _replaced(offering)
    facts: dict[str, str] = {
        k: v
        for k, v in model.unconfirmed.items()
        if k not in replaced and (k != "price" or price is model.price)
    }
    facts.update((k, v) for k, v in offering.unconfirmed.items() if k != "price" or price is offering.price)
    if price is None:
        facts.pop("price", None)
    return facts


def _replaced(offering: Offering) -> set[str]:
    """The facts an offering states whole in place of its model's, as `merge_route` takes them. Inputs
    and knobs merge entry by entry, so a model's mark on them may still hold and is kept."""
    stated = {
        "sizes": offering.sizes,
        "max_n": offering.max_n,
        "per_call": offering.per_call,
        "output_formats": offering.output_formats,
        "capabilities": offering.capabilities,
    }
    return {fact for fact, value in stated.items() if value}
