"""The service every front end calls: validate -> route -> (plan -> call -> store).

Plain Python with no MCP in it; the MCP app, the CLI and the tests all use it. Built once
at start-up from the environment; everything it holds is immutable.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from . import local
from .catalog import Catalog, load_catalog
from .catalog.schema import Schema, conditional_chain, flat_schema, listing_schemas
from .generation import Generator, Outcome, Progress
from .imaging import PreviewPolicy
from .inputs import InputPolicy
from .jobs import Job, Jobs
from .listing import ModelsAnswer, SizesAnswer, list_models, supported_sizes
from .providers import Registry, protocol_rules
from .providers.base import Adapter
from .providers.http import Transport
from .router import Router
from .settings import Settings, load_settings
from .storage import Store
from .validation import ImageRequest, Validator, check_object

__all__ = ["Service", "build_service"]

IMAGE_TOOLS = {"generate_image": "generate", "edit_image": "edit"}


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

    def validate(self, tool_name: str, arguments: Mapping[str, Any] | None) -> ImageRequest:
        """Check a generate_image / edit_image call completely; raise InvalidRequest or NotConfigured."""
        return self.validator.validate(IMAGE_TOOLS[tool_name], arguments)

    async def run_image_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None, progress: Progress
    ) -> Outcome:
        """Validate, then generate or edit, waiting for the end (the CLI); every image is saved
        before this returns. No previews: a person has the files."""
        return await self.generator.run(self.validate(tool_name, arguments), progress)

    def start_image_tool(
        self, tool_name: str, arguments: Mapping[str, Any] | None, progress: Progress
    ) -> Job:
        """Validate at once (raising InvalidRequest or NotConfigured), then run the call as a job that
        can outlive its request (the MCP tools), with previews as the settings size them."""
        request = self.validate(tool_name, arguments)
        previews = PreviewPolicy(self.settings.preview_max_edge, self.settings.preview_max_bytes)

        async def work(job: Job) -> Outcome:
            async def report(message: str) -> None:
                job.progress = message
                await progress(message)

            return await self.generator.run(request, report, previews)

        return self.jobs.start(tool_name, work)

    async def aclose(self) -> None:
        """Close the providers' connection pools."""
        await self.registry.aclose()

    def job_arguments(self, arguments: Mapping[str, Any] | None) -> tuple[str, float | None]:
        """The job id and optional wait of a get_image_job call, checked like any other call."""
        args = _present(arguments)
        check_object(self.schemas["get_image_job"], args, "get_image_job")
        return args["job"], args.get("wait")

    def list_models(self, arguments: Mapping[str, Any] | None = None) -> ModelsAnswer:
        args = _present(arguments)
        check_object(self.schemas["list_models"], args, "list_models")
        return list_models(self.router, args.get("provider"), args.get("capability"))

    def supported_sizes(self, arguments: Mapping[str, Any] | None) -> SizesAnswer:
        args = _present(arguments)
        check_object(self.schemas["get_supported_sizes"], args, "get_supported_sizes")
        return supported_sizes(self.router, args["model"], args.get("provider"), args.get("resolution"))


def _present(arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Clients send null for an omitted optional argument; treat it as absent."""
    return {k: v for k, v in (arguments or {}).items() if v is not None}


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
    validator = Validator(router, catalog.knobs, schemas)
    registry = Registry(
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
    )
    return Service(settings, catalog, router, schemas, validator, registry, generator, Jobs())
