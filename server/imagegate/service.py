"""The service every front end calls: validate -> route -> (plan -> call -> store).

Plain Python with no MCP in it; the MCP app, the CLI and the tests all use it. Built once
at start-up from the environment; everything it holds is immutable.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from . import local
from .catalog import Catalog, load_catalog
from .catalog.schema import Schema, conditional_chain, flat_schema, listing_schemas
from .errors import ConfigError
from .generation import Generator, Outcome, Progress
from .imaging import PreviewPolicy
from .inputs import InputPolicy
from .jobs import Job, Jobs
from .ledger import Ledger
from .listing import ModelsAnswer, SizesAnswer, list_models, supported_sizes
from .pricing import Budgets, Pricing
from .providers import Registry, protocol_rules
from .providers.base import Adapter, AdapterReply, Batch
from .providers.http import ProviderClient, Transport
from .router import Router
from .settings import Settings, load_settings
from .spend import Admission, Spend
from .storage import Store
from .team import backend
from .team.limits import Limits, MemoryLimits, RedisLimits, limits_of
from .team.tasks import MemoryTasks, RedisTasks, TaskStore
from .validation import ImageRequest, Validator, check_object

__all__ = ["Service", "build_service"]

IMAGE_TOOLS = {"generate_image": "generate", "edit_image": "edit"}
CONFIRM_ARGUMENT = {"type": "string"}
"""The one-time token a call above IMAGEGATE_CONFIRM_ABOVE answered with; no description: that answer
says how to use it, and tools/list is paid for on every turn."""


@dataclass(frozen=True)
class Service:
    settings: Settings
    catalog: Catalog
    router: Router
    schemas: Mapping[str, Schema]
    validator: Validator
    registry: Registry
    generator: Generator
    jobs: Jobs
    redis: Any = None
    """The deployment's Redis client (IMAGEGATE_REDIS_URL), shared by the task store and the limits."""
    _generators: dict[str, Generator] = field(default_factory=dict, repr=False)
    spend: Spend = field(default_factory=Spend)
    """Prices, budgets and the ledger: the gate every image call passes before anything is sent."""

    def output_root(self, user: str | None) -> Path:
        """Where a user's images go (and all they may list and read): their own subfolder of the
        output folder; the folder itself for the single shared token, stdio and the CLI."""
        return self.settings.output_dir / user if user else self.settings.output_dir

    def generator_for(self, user: str | None) -> Generator:
        """The generator saving into `user`'s folder: the same providers, limits and previews, its own
        store."""
        if not user:
            return self.generator
        if user not in self._generators:
            mine = copy.copy(self.generator)
            mine.store = Store(self.output_root(user))
            self._generators[user] = mine
        return self._generators[user]

    def validate(self, tool_name: str, arguments: Mapping[str, Any] | None) -> ImageRequest:
        """Check a generate_image / edit_image call completely; raise InvalidRequest or NotConfigured."""
        return self.validator.validate(IMAGE_TOOLS[tool_name], arguments)

    async def run_image_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None, progress: Progress
    ) -> Outcome:
        """Validate and pass the spend gate, then generate or edit, waiting for the end (the CLI); every
        image is saved before this returns. No previews: a person has the files."""
        admission = await self.admit(tool_name, arguments)
        return await self.spend.run(admission, lambda: self.generator.run(admission.request, progress))

    async def admit(
        self, tool_name: str, arguments: Mapping[str, Any] | None, user: str | None = None
    ) -> Admission:
        """Validate, quote and apply the spend rules (spend.py) before anything is sent; raises
        InvalidRequest, NotConfigured, SpendRefused or ConfirmationNeeded."""
        return await self.spend.admit(tool_name, self.validate(tool_name, arguments), arguments, user)

    async def decline(
        self, tool_name: str, arguments: Mapping[str, Any] | None, why: str, user: str | None = None
    ) -> str:
        """Record a call whose confirmation was declined or went unanswered (nothing sent); its answer."""
        return await self.spend.decline(tool_name, self.validate(tool_name, arguments), why, user)

    def start_image_tool(
        self,
        tool_name: str,
        arguments: Mapping[str, Any] | None,
        progress: Progress,
        user: str | None = None,
        *,
        admission: Admission | None = None,
    ) -> Job:
        """Validate at once (raising InvalidRequest or NotConfigured), then run the call as a job that
        can outlive its request (the MCP tools), with previews as the settings size them. Without an
        `admission` (admit) the spend gate runs in the job, still before anything is sent."""
        request = admission.request if admission else self.validate(tool_name, arguments)
        previews = PreviewPolicy(self.settings.preview_max_edge, self.settings.preview_max_bytes)

        async def work(job: Job) -> Outcome:
            async def report(message: str) -> None:
                job.progress = message
                await progress(message)

            admitted = admission or await self.admit(tool_name, arguments, user)
            return await self.spend.run(
                admitted, lambda: self.generator_for(user).run(request, report, previews)
            )

        return self.jobs.start(tool_name, work, user)

    async def aclose(self) -> None:
        """Close the providers' connection pools (and the Redis client's)."""
        await self.registry.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    def job_arguments(self, arguments: Mapping[str, Any] | None) -> tuple[str, float | None]:
        """The job id and optional wait of a get_image_job call, checked like any other call."""
        args = _present(arguments)
        check_object(self.schemas["get_image_job"], args, "get_image_job")
        return args["job"], args.get("wait")

    def list_models(self, arguments: Mapping[str, Any] | None = None) -> ModelsAnswer:
        args = _present(arguments)
        check_object(self.schemas["list_models"], args, "list_models")
        return list_models(self.router, args.get("provider"), args.get("capability"), self.spend.pricing)

    def supported_sizes(self, arguments: Mapping[str, Any] | None) -> SizesAnswer:
        args = _present(arguments)
        check_object(self.schemas["get_supported_sizes"], args, "get_supported_sizes")
        return supported_sizes(
            self.router, args["model"], args.get("provider"), args.get("resolution"), self.spend.pricing
        )


def _present(arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Clients send null for an omitted optional argument; treat it as absent."""
    return {k: v for k, v in (arguments or {}).items() if v is not None}


def _pricing(settings: Settings, catalog: Catalog) -> Pricing:
    """The config file's per-route prices (`[providers.ID.prices]`, by model id or alias); the CNY rate."""
    overrides = {}
    for pid, user in settings.file_providers.items():
        for name, price in user.prices.items():
            model = catalog.resolve_model(name)
            if model is None or pid not in catalog.providers:
                raise ConfigError(f"{settings.config_path}: providers.{pid}.prices: unknown model {name!r}")
            overrides[(model, pid)] = price
    return Pricing(overrides, settings.cny_per_usd)


def _image_schemas(router: Router, catalog: Catalog, conditionals: bool) -> dict[str, Schema]:
    schemas: dict[str, Schema] = {}
    for tool_name, tool in IMAGE_TOOLS.items():
        # With no provider configured, advertise every model: a call then says which key to set.
        routes = router.default_routes(tool) or router.default_routes(tool, configured_only=False)
        providers = list(dict.fromkeys(r.provider for r in router.offered_routes(tool))) or list(
            router.provider_order
        )
        schema = flat_schema(tool, routes, catalog.knobs, providers)
        if conditionals:
            schema |= conditional_chain(tool, routes, catalog.knobs)
        schemas[tool_name] = schema
    return schemas


def build_service(
    env: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    *,
    adapters: Mapping[str, Adapter] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Callable[[], float] | None = None,
) -> Service:
    """Read settings and catalog, and wire the service. Raises ConfigError on bad input files.

    For tests: `transport` replaces the network (httpx2.MockTransport), `adapters` replace the
    adapters of those protocols, `sleep` and `clock` how retries and polls wait and tell time.
    Nothing is opened here.
    """
    settings = load_settings(env)
    # The shipped catalog's protocols and dialects are checked by the tests; a user's additions here.
    catalog = load_catalog(settings.additions, protocols=protocol_rules(), check_shipped=False)
    with_local = local.prepare(settings, catalog, transport)  # local GPU servers named or answering
    if with_local is not settings:
        settings = with_local
        catalog = load_catalog(settings.additions, protocols=protocol_rules(), check_shipped=False)
    router = Router(catalog, settings)
    schemas = _image_schemas(router, catalog, settings.schema_conditionals) | listing_schemas(
        router.provider_order
    )
    if settings.confirm_above is not None:  # only then can a call need the token: no bytes otherwise
        for tool in IMAGE_TOOLS:
            schemas[tool]["properties"]["confirm"] = dict(CONFIRM_ARGUMENT)
    validator = Validator(router, catalog.knobs, schemas)
    pricing = _pricing(settings, catalog)
    redis = backend.connect(settings.redis_url.get_secret_value()) if settings.redis_url else None
    keys = backend.Keys(settings.deployment)
    limits: Limits = RedisLimits(redis, keys, settings.task_lease) if redis is not None else MemoryLimits()
    registry = _Throttled(
        catalog=catalog,
        limits=limits,
        credentials=router.credentials,
        providers=catalog.providers,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        transport=transport,
        adapters=adapters or {},
        sleep=sleep or anyio.sleep,
        clock=clock or time.monotonic,
    )
    generator = Generator(
        registry,
        Store(settings.output_dir),
        inputs=InputPolicy(roots=settings.input_roots, allow_private_urls=settings.allow_private_urls),
        max_reply_bytes=int(settings.max_reply_mb * 1024 * 1024) if settings.max_reply_mb else None,
        pricing=pricing,
    )
    budgets = Budgets(
        settings.daily_budget, settings.call_budget, settings.confirm_above, settings.unknown_price
    )
    spend = Spend(pricing, budgets, Ledger(settings.ledger_path))
    lease = settings.task_lease
    store: TaskStore = RedisTasks(redis, keys, lease) if redis is not None else MemoryTasks(lease)
    return Service(
        settings, catalog, router, schemas, validator, registry, generator, Jobs(store), redis, spend=spend
    )


@dataclass
class _Throttled(Registry):
    """The registry whose adapters first take a slot of every limit their call is under (the catalog's
    `limits`, shared by every worker through Redis): a call past a limit waits, and says why."""

    catalog: Catalog | None = None
    limits: Limits | None = None

    def adapter(self, protocol: str) -> Adapter:
        inner = super().adapter(protocol)
        catalog, limits = self.catalog, self.limits
        if catalog is None or limits is None:
            return inner

        async def throttled(job: Batch, client: ProviderClient) -> AdapterReply:
            applying = limits_of(catalog, job.route.provider, job.route.model)
            if not applying:
                return await inner(job, client)
            async with limits.slot(applying, job.report):
                return await inner(job, client)

        return throttled
