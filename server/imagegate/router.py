"""Routing: which providers are configured, which models they offer, and which route
serves a call. Built once at start-up from the catalog and settings; never reads the
environment itself and never branches on a provider's name.
"""

from __future__ import annotations

from collections.abc import Mapping

from .catalog import Catalog, Route
from .catalog.spec import Capability
from .errors import ConfigError, InvalidRequest, NotConfigured, shown
from .settings import Credentials, Settings

__all__ = ["Router", "TOOL_CAPABILITY"]

TOOL_CAPABILITY: dict[str, Capability] = {"generate": "generate", "edit": "edit"}


class Router:
    """The catalog seen through the configuration: what is offered, and who serves a call."""

    def __init__(self, catalog: Catalog, settings: Settings):
        self.catalog = catalog
        self.credentials: Mapping[str, Credentials] = settings.credentials(catalog)
        self.provider_order = self._order(settings)
        self.enabled = self._enabled(settings)
        self.explicit_models = bool(settings.enabled_models)
        rank = {pid: i for i, pid in enumerate(self.provider_order)}
        self.routes: tuple[Route, ...] = tuple(
            sorted((r for r in catalog.routes if r.model in self.enabled), key=lambda r: rank[r.provider])
        )

    def _order(self, settings: Settings) -> tuple[str, ...]:
        unknown = [p for p in settings.priority if p not in self.catalog.providers]
        if unknown:
            raise ConfigError(
                f"config: priority: unknown provider {unknown[0]!r}; "
                f"known: {', '.join(self.catalog.providers)}"
            )
        rest = sorted(
            (p for p in self.catalog.providers if p not in settings.priority),
            key=lambda p: (self._file_priority(settings, p), p),
        )
        return (*settings.priority, *rest)

    def _file_priority(self, settings: Settings, pid: str) -> int:
        user = settings.file_providers.get(pid)
        if user is not None and user.priority is not None:
            return user.priority
        return self.catalog.providers[pid].priority

    def _enabled(self, settings: Settings) -> frozenset[str]:
        if not settings.enabled_models:
            return frozenset(self.catalog.models)
        chosen = set()
        for name in settings.enabled_models:
            model_id = self.catalog.resolve_model(name)
            if model_id is None:
                near = ", ".join(self.catalog.closest_models(name)) or "see `imagegate models`"
                raise ConfigError(f"IMAGEGATE_MODELS: unknown model {name!r}; did you mean {near}?")
            chosen.add(model_id)
        return frozenset(chosen)

    def configured(self, provider: str) -> bool:
        """Whether a provider has credentials."""
        return self.credentials[provider].configured

    def configured_providers(self) -> list[str]:
        return [p for p in self.provider_order if self.configured(p)]

    def has_real_provider(self) -> bool:
        """Whether any provider that makes real images (not the offline placeholder) has a key."""
        return any(self.catalog.providers[p].kind != "offline" for p in self.configured_providers())

    def offered_routes(self, tool: str | None = None, configured_only: bool = True) -> list[Route]:
        """Routes (of configured providers only, by default) able to serve a tool, best first."""
        cap = TOOL_CAPABILITY.get(tool) if tool else None
        hidden = self._hidden_offline()
        return [
            r
            for r in self.routes
            if (self.configured(r.provider) or not configured_only)
            and (cap is None or r.can(cap))
            and r.provider not in hidden
        ]

    def _hidden_offline(self) -> set[str]:
        """The placeholder is advertised only while no real provider has a key (it stays callable)."""
        if not self.has_real_provider() or self.explicit_models:
            return set()
        return {p for p, spec in self.catalog.providers.items() if spec.kind == "offline"}

    def default_routes(self, tool: str | None = None, configured_only: bool = True) -> list[Route]:
        """One route per model: the one a call without `provider` would take."""
        seen: dict[str, Route] = {}
        for route in self.offered_routes(tool, configured_only):
            seen.setdefault(route.model, route)
        return list(seen.values())

    def resolve_model(self, name: str) -> str:
        """The canonical id of an offered model, or an InvalidRequest suggesting the nearest."""
        model_id = self.catalog.resolve_model(name)
        if model_id is None:
            near = self.catalog.closest_models(name)
            hint = f"did you mean {', '.join(near)}?" if near else "call list_models for the ids"
            raise InvalidRequest("model", shown(name), near, f'model "{shown(name)}" is unknown; {hint}')
        if model_id not in self.enabled:
            allowed = sorted(self.enabled)
            raise InvalidRequest(
                "model",
                shown(name),
                allowed,
                f'model "{shown(name)}" is not enabled here (IMAGEGATE_MODELS); '
                f"use one of {', '.join(allowed)}",
            )
        return model_id

    def choose(self, model: str, provider: str | None, tool: str) -> Route:
        """The route serving `model` for `tool`, via `provider` if given, else the best configured."""
        model_id = self.resolve_model(model)
        routes = [r for r in self.routes if r.model == model_id]
        if provider is not None:
            return self._chosen_provider(model_id, provider, routes, tool)
        capable = [r for r in routes if r.can(TOOL_CAPABILITY[tool])]
        if not capable:
            raise InvalidRequest(
                "model",
                model,
                self._models_for(tool),
                f"{model_id} cannot {tool} images; models that can: {', '.join(self._models_for(tool))}",
            )
        ready = [r for r in capable if self.configured(r.provider)]
        if ready:
            return ready[0]
        raise self._not_configured(model_id, capable)

    def _chosen_provider(self, model_id: str, provider: str, routes: list[Route], tool: str) -> Route:
        offering = [r.provider for r in routes]
        route = next((r for r in routes if r.provider == provider), None)
        if route is None:
            what = (
                "unknown provider"
                if provider not in self.catalog.providers
                else f"{shown(provider)} does not offer {model_id}"
            )
            raise InvalidRequest(
                "provider",
                shown(provider),
                offering,
                f'provider "{shown(provider)}": {what}; {model_id} is offered by {", ".join(offering)}',
            )
        if not route.can(TOOL_CAPABILITY[tool]):
            able = [r.provider for r in routes if r.can(TOOL_CAPABILITY[tool])]
            others = ", ".join(able) if able else "none"
            raise InvalidRequest(
                "provider",
                provider,
                able,
                f"{route.where} cannot {tool} images; providers that can {tool} {model_id}: {others}",
            )
        if not self.configured(provider):
            raise self._not_configured(model_id, [route])
        return route

    def _models_for(self, tool: str) -> list[str]:
        return sorted({r.model for r in self.routes if r.can(TOOL_CAPABILITY[tool])})

    def _not_configured(self, model_id: str, routes: list[Route]) -> NotConfigured:
        env_vars = list(dict.fromkeys(v for r in routes if (v := self.credentials[r.provider].key_env)))
        names = ", ".join(f"{r.provider} ({self.credentials[r.provider].key_env})" for r in routes)
        return NotConfigured(
            f"{model_id} is offered by {names}, but none is configured; set {' or '.join(env_vars)}",
            env_vars=env_vars,
        )
