"""The answers of list_models and get_supported_sizes, as typed data and as compact text.

Both read only the router (catalog + configuration); the MCP layer and the CLI render
the same answers, so what a person and an agent see cannot differ.

UNCONFIRMED facts (`Route.unconfirmed`: no primary document states them) are marked compactly in
list_models (which fact, and the wire id where it is the id) and stated with their reasons, with
the route's notes, in get_supported_sizes. Fields added for them are left out of the output
schemas (`SkipJsonSchema`): the schemas travel in tools/list on every turn, the answers only when asked.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, PrivateAttr
from pydantic.json_schema import SkipJsonSchema

from .catalog import Route
from .catalog.sizes import SizeOption, allowed_text, describe_rule, rule_options, rule_tiers
from .catalog.spec import CAPABILITIES, Unconfirmable
from .errors import InvalidRequest, shown
from .pricing import Pricing
from .router import Router

__all__ = ["ModelsAnswer", "SizesAnswer", "list_models", "supported_sizes"]


UNCONFIRMED_LEGEND = (
    "UNCONFIRMED: no primary document states it; get_supported_sizes MODEL PROVIDER says why, and "
    "a config file can set a provider's model id ([providers.ID.upstream])."
)


class ProviderEntry(BaseModel):
    id: str
    upstream: str
    configured: bool
    env: str | None
    unconfirmed: SkipJsonSchema[list[str] | None] = None
    """The route's UNCONFIRMED facts beyond its model's ("upstream": the wire id)."""
    price: SkipJsonSchema[str | None] = None
    """Price per image, compactly ("$0.011–0.25"; "?": UNCONFIRMED); None: unknown."""

    def text(self, configured_mark: str) -> str:
        """`zhaotou ✓ ¥0.20? (UNCONFIRMED: id "seedream-4.0", sizes)`."""
        # A price's own "?" marks it UNCONFIRMED.
        facts = [
            f'id "{self.upstream}"' if f == "upstream" else f for f in self.unconfirmed or () if f != "price"
        ]
        price = f" {self.price}" if self.price else ""
        return self.id + (configured_mark if self.configured else "") + price + _unconfirmed(facts)


class ModelEntry(BaseModel):
    id: str
    label: str
    aliases: list[str]
    capabilities: list[str]
    max_n: int
    formats: list[str]
    available: bool
    providers: list[ProviderEntry]
    unconfirmed: SkipJsonSchema[list[str] | None] = None
    """The model's own UNCONFIRMED facts (its providers' entries add theirs)."""


class ModelsAnswer(BaseModel):
    models: list[ModelEntry]
    configured_providers: list[str]
    hint: str | None = None

    def text(self) -> str:
        """One line per model: what it does and who serves it (✓ = configured)."""
        lines = [_model_line(m) for m in self.models]
        configured = ", ".join(self.configured_providers) or "none"
        head = f"{len(self.models)} models; configured providers: {configured}"
        return "\n".join([head, *lines, *self.footer()])

    def footer(self) -> list[str]:
        """The hint, and the UNCONFIRMED legend when any entry is marked."""
        marked = any(m.unconfirmed or any(p.unconfirmed for p in m.providers) for m in self.models)
        return [*([self.hint] if self.hint else []), *([UNCONFIRMED_LEGEND] if marked else [])]


class SizeEntry(BaseModel):
    size: str
    width: int
    height: int
    ratio: str
    tier: str | None


class SizesAnswer(BaseModel):
    model: str
    provider: str
    configured: bool
    rule: str
    summary: str
    default: str | None
    resolutions: list[str]
    sizes: list[SizeEntry]
    sizes_with_references: list[SizeEntry] | None = None
    accepts: str
    references_from: SkipJsonSchema[int | None] = None
    """How many input images switch to `sizes_with_references` (set with it)."""
    default_with_references: SkipJsonSchema[str | None] = None
    """The default size with that many references, where it differs from `default`."""
    unconfirmed: SkipJsonSchema[dict[str, str] | None] = None
    """Every UNCONFIRMED fact of the route -> why it is believed."""
    notes: SkipJsonSchema[list[str] | None] = None
    prices: SkipJsonSchema[dict[str, str] | None] = None
    """Price per image by tier (or by the price table's own keys); None: no known price."""
    _upstream_default_with_references: bool = PrivateAttr(default=False)
    """With references the upstream picks the size though `default` is set (said in the text only)."""

    def text(self) -> str:
        """A compact statement of the sizes, for agents and people."""
        missing = "" if self.configured else " [provider not configured]"
        head = f"{self.model} via {self.provider} ({self.rule} rule){missing}"
        lines = [head, f"accepts: {self.accepts}", f"default: {self.default or 'chosen by the upstream'}"]
        if self.resolutions:
            lines.append(f"resolutions: {', '.join(self.resolutions)}")
        prices = ", ".join(f"{key} {amount}" for key, amount in (self.prices or {}).items())
        lines.append(f"price per image: {prices or 'unknown'}")
        lines += [f"UNCONFIRMED {fact}: {why}" for fact, why in (self.unconfirmed or {}).items()]
        lines += [f"note: {note}" for note in self.notes or ()]
        lines += [_size_line(s) for s in self.sizes]
        if self.sizes_with_references is not None:
            lines.append(f"{self.references_label()}{self._references_default()}:")
            lines += [_size_line(s) for s in self.sizes_with_references]
        return "\n".join(lines)

    def references_label(self) -> str:
        """ "with reference images", or "with 2 or more reference images" where the rule starts at 2."""
        start = self.references_from or 1
        return "with reference images" if start == 1 else f"with {start} or more reference images"

    def _references_default(self) -> str:
        if self.default_with_references is not None:
            return f" (default {self.default_with_references})"
        if self._upstream_default_with_references:
            return " (default chosen by the upstream)"
        return ""


def _size_line(s: SizeEntry) -> str:
    return f"  {s.size}  {s.ratio}{'  ' + s.tier if s.tier else ''}"


def _unconfirmed(facts: list[str]) -> str:
    return f" (UNCONFIRMED: {', '.join(facts)})" if facts else ""


def _model_line(m: ModelEntry) -> str:
    via = ", ".join(p.text(" ✓") for p in m.providers)
    also = f" (also: {', '.join(m.aliases)})" if m.aliases else ""
    return (
        f"{m.id}{also} — {m.label}{_unconfirmed(m.unconfirmed or [])}; {', '.join(m.capabilities)}; "
        f"n≤{m.max_n}; {'/'.join(m.formats)}; via {via}"
    )


def _model_facts(facts: Mapping[Unconfirmable, str]) -> list[str] | None:
    """A model's own UNCONFIRMED facts; an `upstream` one is shown on each provider, with its id."""
    return [f for f in facts if f not in ("upstream", "price")] or None  # a price is a route's: its "?"


def _route_facts(route: Route, model_facts: Mapping[str, str]) -> list[str] | None:
    """The route's UNCONFIRMED facts its model line does not already carry with the same reason."""
    facts = [f for f, why in route.unconfirmed.items() if f == "upstream" or model_facts.get(f) != why]
    return facts or None


def _entry(router: Router, model_id: str, routes: list[Route], pricing: Pricing) -> ModelEntry:
    spec = router.catalog.models[model_id]
    best = next((r for r in routes if router.configured(r.provider)), routes[0])
    reasons: dict[str, str] = {str(fact): why for fact, why in spec.unconfirmed.items()}
    return ModelEntry(
        id=model_id,
        label=spec.label,
        unconfirmed=_model_facts(spec.unconfirmed),
        aliases=list(spec.aliases),
        capabilities=[c for c in CAPABILITIES if c in best.capabilities],
        max_n=best.max_n,
        formats=list(best.output_formats),
        available=any(router.configured(r.provider) for r in routes),
        providers=[
            ProviderEntry(
                id=r.provider,
                upstream=r.upstream,
                configured=router.configured(r.provider),
                env=router.credentials[r.provider].key_env,
                unconfirmed=_route_facts(r, reasons),
                price=pricing.listing(r),
            )
            for r in routes
        ],
    )


def list_models(
    router: Router, provider: str | None = None, capability: str | None = None, pricing: Pricing | None = None
) -> ModelsAnswer:
    """Every enabled model (optionally one provider's, or those with a capability)."""
    by_model: dict[str, list[Route]] = {}
    for route in router.routes:
        if provider is None or route.provider == provider:
            by_model.setdefault(route.model, []).append(route)
    entries = [_entry(router, mid, routes, pricing or Pricing()) for mid, routes in by_model.items()]
    if capability is not None:
        entries = [e for e in entries if capability in e.capabilities]
    entries.sort(key=lambda e: (not e.available, e.id))
    configured = router.configured_providers()
    hint = None
    if not router.has_real_provider():
        names = [v for p in router.provider_order if (v := router.credentials[p].key_env)]
        hint = (
            "No provider key is set, so only the offline placeholder model is offered "
            "(test images, no upstream); "
            f"set one of {', '.join(names)} for real models."
        )
    return ModelsAnswer(models=entries, configured_providers=configured, hint=hint)


def _sizes(options: list[SizeOption], tier: str | None) -> list[SizeEntry]:
    return [
        SizeEntry(size=o.pixels, width=o.width, height=o.height, ratio=o.ratio, tier=o.tier)
        for o in options
        if tier is None or o.tier == tier
    ]


def _route(router: Router, model: str, provider: str | None) -> Route:
    model_id = router.resolve_model(model)
    routes = router.catalog.routes_for(model_id)
    if provider is None:
        return next((r for r in routes if router.configured(r.provider)), routes[0])
    route = next((r for r in routes if r.provider == provider), None)
    if route is None:
        offering = [r.provider for r in routes]
        raise InvalidRequest(
            "provider",
            shown(provider),
            offering,
            f'provider "{shown(provider)}" does not offer {model_id}; it is offered by {", ".join(offering)}',
        )
    return route


def supported_sizes(
    router: Router,
    model: str,
    provider: str | None = None,
    resolution: str | None = None,
    pricing: Pricing | None = None,
) -> SizesAnswer:
    """Every size a route supports (or its rule), its default and its resolution tiers."""
    route = _route(router, model, provider)
    tiers = rule_tiers(route.sizes)
    if resolution is not None and resolution not in tiers:
        allowed = ", ".join(tiers) or "none (no tiers)"
        raise InvalidRequest(
            "resolution",
            shown(resolution),
            tiers,
            f'resolution "{shown(resolution)}" is not offered by {route.where}; use {allowed}',
        )
    refs = route.sizes_with_references
    differs = refs is not None and (refs.default, refs.default_tier) != (
        route.sizes.default,
        route.sizes.default_tier,
    )
    answer = SizesAnswer(
        model=route.model,
        provider=route.provider,
        configured=router.configured(route.provider),
        rule=route.sizes.kind,
        summary=describe_rule(route.sizes),
        default=route.sizes.default,
        resolutions=tiers,
        sizes=_sizes(rule_options(route.sizes), resolution),
        sizes_with_references=_sizes(rule_options(refs), resolution) if refs else None,
        accepts=allowed_text(route.sizes, resolution),
        references_from=route.references_from if refs else None,
        default_with_references=refs.default if refs and differs else None,
        unconfirmed=dict(route.unconfirmed) or None,
        notes=list(route.notes) or None,
        prices=(pricing or Pricing()).by_tier(route, [resolution] if resolution else tiers) or None,
    )
    answer._upstream_default_with_references = differs and refs is not None and refs.default is None
    return answer
