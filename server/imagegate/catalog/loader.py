"""Loading the catalog: the data files shipped in the package plus a user's additions,
validated as a whole (schema, cross-references, aliases, defaults) into one frozen
`Catalog`. A malformed entry fails here, at start-up, naming file, entry and field.
"""

from __future__ import annotations

import difflib
import functools
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, InvalidRequest
from .routes import Route, merge_route
from .sizes import resolve_size
from .spec import KnobDef, ModelSpec, Offering, ProtocolRules, ProviderSpec, SizeRule

__all__ = ["Catalog", "CatalogAdditions", "load_catalog", "shipped_provider_ids", "validation_message"]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class CatalogAdditions:
    """What a user's config file adds: new models, new providers, offerings for known providers, and
    wire ids (`upstreams`: provider -> model id or alias -> the id to send) that replace an offering's."""

    source: str
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    providers: Mapping[str, ProviderSpec] = field(default_factory=dict)
    offerings: Mapping[str, list[Offering]] = field(default_factory=dict)
    upstreams: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """Every model, provider and route imagegate knows, whether configured or not."""

    knobs: Mapping[str, KnobDef]
    models: Mapping[str, ModelSpec]
    providers: Mapping[str, ProviderSpec]
    routes: tuple[Route, ...]
    names: Mapping[str, str]
    """Lower-cased id or alias -> canonical model id."""

    def resolve_model(self, name: str) -> str | None:
        """The canonical id for an id or alias (case-insensitive), or None."""
        return self.names.get(name.strip().lower())

    def closest_models(self, name: str, limit: int = 3) -> list[str]:
        """Canonical ids whose id or alias is nearest to `name`, for "did you mean"."""
        hits = difflib.get_close_matches(name.lower(), list(self.names), n=limit * 3, cutoff=0.5)
        return list(dict.fromkeys(self.names[h] for h in hits))[:limit]

    def routes_for(self, model_id: str) -> list[Route]:
        """Every route serving a model, natives first (the data's priority order)."""
        return [r for r in self.routes if r.model == model_id]


def validation_message(source: str, entry: str, error: ValidationError) -> str:
    """Turn a pydantic error into 'file: entry: field: problem' lines."""
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(entry)"
        lines.append(f"{source}: {entry}: {where}: {e['msg']}")
    return "\n".join(lines)


def _parse(kind: type[T], data: Any, source: str, entry: str) -> T:
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(source, entry, e)) from None


def _read_toml(name: str) -> dict[str, Any]:
    data = resources.files("imagegate.catalog").joinpath("data", name)
    try:
        return tomllib.loads(data.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"catalog/data/{name}: not valid TOML: {e}") from None


def _provider_files() -> list[Any]:
    folder = resources.files("imagegate.catalog").joinpath("data", "providers")
    return sorted((p for p in folder.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)


def shipped_provider_ids() -> set[str]:
    """Ids of the providers the package ships, without parsing them."""
    return {p.name.removesuffix(".toml") for p in _provider_files()}


def _shipped() -> tuple[dict[str, KnobDef], dict[str, ModelSpec], dict[str, ProviderSpec]]:
    """The shipped catalog, as fresh dicts a load may extend (the specs themselves are never changed)."""
    knobs, models, providers = _parsed_shipped()
    return dict(knobs), dict(models), dict(providers)


@functools.cache
def _parsed_shipped() -> tuple[dict[str, KnobDef], dict[str, ModelSpec], dict[str, ProviderSpec]]:
    # Read and validated once per process: the files ship inside the package and do not change.
    raw = _read_toml("models.toml")
    src = "catalog/data/models.toml"
    knobs = {k: _parse(KnobDef, v, src, f"knobs.{k}") for k, v in raw.get("knobs", {}).items()}
    models = {k: _parse(ModelSpec, v, src, f"models.{k}") for k, v in raw.get("models", {}).items()}
    providers: dict[str, ProviderSpec] = {}
    for item in _provider_files():
        pid = item.name.removesuffix(".toml")
        providers[pid] = _parse(
            ProviderSpec, _read_toml(f"providers/{item.name}"), f"catalog/data/providers/{item.name}", pid
        )
    return knobs, models, providers


def _names(models: Mapping[str, ModelSpec]) -> dict[str, str]:
    names: dict[str, str] = {mid.lower(): mid for mid in models}
    for mid, spec in models.items():
        for alias in spec.aliases:
            owner = names.setdefault(alias.lower(), mid)
            if owner != mid:
                raise ConfigError(f"catalog: models.{mid}: aliases: {alias!r} already names {owner}")
    return names


def _check_rule(rule: SizeRule | None, entry: str) -> None:
    if rule is None or rule.default is None:
        return
    try:
        resolve_size(rule, rule.default, rule.default_tier, entry)
    except InvalidRequest as e:
        raise ConfigError(f"catalog: {entry}: sizes.default: {e.message}") from None


def _check_knobs(knobs: Iterable[str], defined: Mapping[str, KnobDef], entry: str) -> None:
    for name in knobs:
        if name not in defined:
            raise ConfigError(f"catalog: {entry}: knobs.{name}: unknown knob; defined: {', '.join(defined)}")


def _build_routes(
    models: Mapping[str, ModelSpec],
    providers: Mapping[str, ProviderSpec],
    names: Mapping[str, str],
    knobs: Mapping[str, KnobDef],
    confirmed: Collection[tuple[str, str | None]] = (),
) -> tuple[Route, ...]:
    """Every offering merged with its model; `confirmed` (provider, model) pairs lose any `upstream`
    UNCONFIRMED mark (the config file set their wire id)."""
    routes: list[Route] = []
    for pid, provider in sorted(providers.items(), key=lambda kv: (kv[1].priority, kv[0])):
        for i, offering in enumerate(provider.offerings):
            entry = f"providers.{pid}.offerings[{i}] ({offering.model})"
            model_id = names.get(offering.model.lower())
            if model_id is None:
                raise ConfigError(f"catalog: {entry}: model: unknown model {offering.model!r}")
            _check_knobs(offering.knobs, knobs, entry)
            route = merge_route(model_id, models[model_id], pid, provider, offering)
            _check_rule(route.sizes, entry)
            _check_rule(route.sizes_with_references, entry)
            if (pid, model_id) in confirmed and "upstream" in route.unconfirmed:
                kept = {k: v for k, v in route.unconfirmed.items() if k != "upstream"}
                route = replace(route, unconfirmed=MappingProxyType(kept))
            routes.append(route)
    return tuple(routes)


def _check_protocol(source: str, pid: str, protocol: str, protocols: Mapping[str, ProtocolRules]) -> None:
    if protocol not in protocols:
        known = ", ".join(sorted(protocols))
        raise ConfigError(
            f"{source}: providers.{pid}: protocol: unknown protocol {protocol!r}; known: {known}"
        )


def _check_dialects(
    source: str,
    pid: str,
    protocol: str,
    offerings: Iterable[Offering],
    protocols: Mapping[str, ProtocolRules],
) -> None:
    """Each offering's `wire.dialect` is one its protocol's adapter declares (or none, where it may be)."""
    rules = protocols.get(protocol, ProtocolRules())
    allowed = ", ".join(rules.dialects) or "none: it takes no wire.dialect"
    for i, offering in enumerate(offerings):
        dialect = offering.wire.dialect
        where = f"{source}: providers.{pid}.offerings[{i}] ({offering.model}): wire.dialect"
        if dialect is None and rules.dialect_required:
            raise ConfigError(f"{where}: the {protocol} protocol needs one; allowed: {allowed}")
        if dialect is not None and dialect not in rules.dialects:
            raise ConfigError(
                f"{where}: {dialect!r} is not a dialect of the {protocol} protocol; allowed: {allowed}"
            )


def _check_shipped(providers: Mapping[str, ProviderSpec], protocols: Mapping[str, ProtocolRules]) -> None:
    for pid, spec in providers.items():
        source = f"catalog/data/providers/{pid}.toml"
        _check_protocol(source, pid, spec.protocol, protocols)
        _check_dialects(source, pid, spec.protocol, spec.offerings, protocols)


def _check_additions(
    additions: CatalogAdditions, providers: Mapping[str, ProviderSpec], protocols: Mapping[str, ProtocolRules]
) -> None:
    for pid, spec in additions.providers.items():
        _check_protocol(additions.source, pid, spec.protocol, protocols)
        _check_dialects(additions.source, pid, spec.protocol, spec.offerings, protocols)
    for pid, extra in additions.offerings.items():
        if pid in providers:
            _check_dialects(additions.source, pid, providers[pid].protocol, extra, protocols)


def _apply(
    additions: CatalogAdditions, models: dict[str, ModelSpec], providers: dict[str, ProviderSpec]
) -> None:
    models.update(additions.models)
    providers.update(additions.providers)
    for pid, extra in additions.offerings.items():
        if pid not in providers:
            raise ConfigError(
                f"{additions.source}: providers.{pid}: unknown provider; known: {', '.join(providers)}"
            )
        kept = [o for o in providers[pid].offerings if o.model not in {e.model for e in extra}]
        providers[pid] = providers[pid].model_copy(update={"offerings": kept + list(extra)})


def _set_upstreams(
    additions: CatalogAdditions, providers: dict[str, ProviderSpec], names: Mapping[str, str]
) -> None:
    """Replace offerings' wire ids as the config file says; the user confirmed each, so its
    `upstream` UNCONFIRMED mark goes (a model-level one is dropped from the route in `_build_routes`)."""
    for pid, wire_ids in additions.upstreams.items():
        if pid not in providers:
            raise ConfigError(
                f"{additions.source}: providers.{pid}: unknown provider; known: {', '.join(providers)}"
            )
        offerings = list(providers[pid].offerings)
        offered = [names.get(o.model.lower(), o.model) for o in offerings]
        for name, wire in wire_ids.items():
            entry = f'{additions.source}: providers.{pid}.upstream."{name}"'
            model_id = names.get(name.strip().lower())
            if model_id is None or model_id not in offered:
                what = "unknown model" if model_id is None else f"{pid} does not offer {model_id}"
                raise ConfigError(f"{entry}: {what}; {pid} offers: {', '.join(offered)}")
            i = offered.index(model_id)
            unconfirmed = {k: v for k, v in offerings[i].unconfirmed.items() if k != "upstream"}
            offerings[i] = offerings[i].model_copy(update={"upstream": wire, "unconfirmed": unconfirmed})
        providers[pid] = providers[pid].model_copy(update={"offerings": offerings})


def load_catalog(
    additions: CatalogAdditions | None = None,
    protocols: Mapping[str, ProtocolRules] | None = None,
    *,
    check_shipped: bool = True,
) -> Catalog:
    """Load, merge and cross-check the shipped catalog and a user's additions.

    `protocols` (protocol id -> what its adapter takes; the providers' `protocol_rules()`) checks
    each provider's `protocol` and each offering's `wire.dialect`, naming the file that set them;
    without it they are not checked (tools that only read the catalog). `check_shipped=False` checks
    only the additions: the shipped files cannot change after the tests checked them, and checking
    them imports every adapter (the server's start-up skips it).
    """
    knobs, models, providers = _shipped()
    if protocols is not None:
        if check_shipped:
            _check_shipped(providers, protocols)
        if additions is not None:
            _check_additions(additions, providers, protocols)
    if additions is not None:
        _apply(additions, models, providers)
    names = _names(models)
    if additions is not None:
        _set_upstreams(additions, providers, names)
    for mid, spec in models.items():
        _check_knobs(spec.knobs, knobs, f"models.{mid}")
        _check_rule(spec.sizes, f"models.{mid}")
    upstreams = additions.upstreams if additions is not None else {}
    confirmed = {(pid, names.get(name.strip().lower())) for pid, ids in upstreams.items() for name in ids}
    routes = _build_routes(models, providers, names, knobs, confirmed)
    return Catalog(
        knobs=MappingProxyType(knobs),
        models=MappingProxyType(models),
        providers=MappingProxyType(providers),
        routes=routes,
        names=MappingProxyType(names),
    )
