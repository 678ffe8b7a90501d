"""The answers of list_models and get_supported_sizes, as typed data and as compact text.

Both read only the router (catalog + configuration); the MCP layer and the CLI render
the same answers, so what a person and an agent see cannot differ.
"""

from __future__ import annotations

from pydantic import BaseModel

from .catalog import Route
from .catalog.sizes import SizeOption, allowed_text, describe_rule, rule_options, rule_tiers
from .catalog.spec import CAPABILITIES
from .errors import InvalidRequest, shown
from .router import Router

__all__ = ["ModelsAnswer", "SizesAnswer", "list_models", "supported_sizes"]


class ProviderEntry(BaseModel):
    id: str
    upstream: str
    configured: bool
    env: str | None


class ModelEntry(BaseModel):
    id: str
    label: str
    aliases: list[str]
    capabilities: list[str]
    max_n: int
    formats: list[str]
    available: bool
    providers: list[ProviderEntry]


class ModelsAnswer(BaseModel):
    models: list[ModelEntry]
    configured_providers: list[str]
    hint: str | None = None

    def text(self) -> str:
        """One line per model: what it does and who serves it (✓ = configured)."""
        lines = [_model_line(m) for m in self.models]
        configured = ", ".join(self.configured_providers) or "none"
        head = f"{len(self.models)} models; configured providers: {configured}"
        return "\n".join([head, *lines, *([self.hint] if self.hint else [])])


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

    def text(self) -> str:
        """A compact statement of the sizes, for agents and people."""
        missing = "" if self.configured else " [provider not configured]"
        head = f"{self.model} via {self.provider} ({self.rule} rule){missing}"
        lines = [head, f"accepts: {self.accepts}", f"default: {self.default or 'chosen by the upstream'}"]
        if self.resolutions:
            lines.append(f"resolutions: {', '.join(self.resolutions)}")
        lines += [f"  {s.size}  {s.ratio}{'  ' + s.tier if s.tier else ''}" for s in self.sizes]
        if self.sizes_with_references is not None:
            lines.append("with reference images:")
            lines += [
                f"  {s.size}  {s.ratio}{'  ' + s.tier if s.tier else ''}" for s in self.sizes_with_references
            ]
        return "\n".join(lines)


def _model_line(m: ModelEntry) -> str:
    via = ", ".join(f"{p.id}{' ✓' if p.configured else ''}" for p in m.providers)
    also = f" (also: {', '.join(m.aliases)})" if m.aliases else ""
    return (
        f"{m.id}{also} — {m.label}; {', '.join(m.capabilities)}; n≤{m.max_n}; "
        f"{'/'.join(m.formats)}; via {via}"
    )


def _entry(router: Router, model_id: str, routes: list[Route]) -> ModelEntry:
    spec = router.catalog.models[model_id]
    best = next((r for r in routes if router.configured(r.provider)), routes[0])
    return ModelEntry(
        id=model_id,
        label=spec.label,
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
            )
            for r in routes
        ],
    )


def list_models(router: Router, provider: str | None = None, capability: str | None = None) -> ModelsAnswer:
    """Every enabled model (optionally one provider's, or those with a capability)."""
    by_model: dict[str, list[Route]] = {}
    for route in router.routes:
        if provider is None or route.provider == provider:
            by_model.setdefault(route.model, []).append(route)
    entries = [_entry(router, mid, routes) for mid, routes in by_model.items()]
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
    router: Router, model: str, provider: str | None = None, resolution: str | None = None
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
    return SizesAnswer(
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
    )
