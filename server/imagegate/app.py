"""The MCP surface: four tools on the SDK's low-level server, thin handlers over the service.

The MCP tool surface (with transports.py, the only modules that import `mcp`). It attaches
the catalog-derived schemas, dispatches calls, and is the error boundary: an ImagegateError
becomes an `isError` result with its agent text; anything else becomes "internal error (ref …)"
and is logged to stderr only.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from . import __version__, codec, gallery
from .errors import ImagegateError, InvalidRequest, shown
from .generation import Outcome
from .jobs import Job
from .listing import ModelsAnswer, SizesAnswer
from .results import ImageResult, metadata, previews, summary
from .service import Service, build_service

__all__ = ["TOOL_DESCRIPTIONS", "create_server"]

log = logging.getLogger("imagegate")
READ_ONLY_TOOLS = ("list_models", "get_supported_sizes", "get_image_job")
ERROR_META = "io.imagegate/error"
METADATA_FRAGMENT = "#metadata"

TOOL_DESCRIPTIONS = {
    "generate_image": (
        "Generate images from a prompt, checked against the model's limits first; "
        "each is saved, and returned as a preview with its path."
    ),
    "edit_image": (
        "Edit or combine images with a prompt and optional mask; "
        "checks, saving and results as generate_image."
    ),
    "list_models": (
        "Image models: capabilities, max n, providers (configured or not). Use it to choose a model."
    ),
    "get_supported_sizes": (
        "Every size a model supports via a provider (pixels, ratio, tier, or its pixel rule) and the default."
    ),
    "get_image_job": "Collect an image call that was still running when it answered with a job id.",
}
TITLES = {
    "generate_image": "Generate image",
    "edit_image": "Edit image",
    "list_models": "List image models",
    "get_supported_sizes": "Supported sizes",
    "get_image_job": "Collect image job",
}
INSTRUCTIONS = (
    "imagegate generates and edits images through many models. Pick a model with list_models "
    "(or use one named in the model enum), check its sizes with get_supported_sizes, then call "
    "generate_image or edit_image; size takes pixels like 1024x1024 or a ratio like 16:9 (with "
    "resolution 1K/2K/4K where the model has tiers). Images are saved to disk; results give their paths."
)


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON schema made client-safe and small: `$defs` inlined, no `title`s,
    defaults or `required` lists (the types say what an answer holds; answers omit None values),
    and an optional field as its plain type (a nullable `anyOf` breaks some connectors, research §2)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if "$ref" in node:
            return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return inline(next(v for v in node["anyOf"] if v.get("type") != "null"))
        out = {k: v for k, v in node.items() if k == "type"}
        if "items" in node:
            out["items"] = inline(node["items"])
        if "properties" in node:
            out["properties"] = {name: inline(prop) for name, prop in node["properties"].items()}
        return out

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _tools(service: Service, client: str | None = None) -> list[types.Tool]:
    """The tools as this client should see them: every byte here is context an agent pays for on
    every turn, so what a client cannot use is left out."""
    # Only hints that differ from the spec's defaults (readOnly false, destructive true, idempotent
    # false, openWorld true) are sent: the same meaning in fewer bytes of every agent's context.
    image = types.ToolAnnotations(destructive_hint=False)
    listing = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
    outputs = {"list_models": output_schema(ModelsAnswer), "get_supported_sizes": output_schema(SizesAnswer)}
    if (
        service.settings.structured_output
    ):  # off by default: Claude Code then drops the previews (research §3)
        outputs |= {
            name: output_schema(ImageResult) for name in ("generate_image", "edit_image", "get_image_job")
        }
    # Only a client with a wait budget is ever handed a job id to collect.
    names = [
        n
        for n in TOOL_DESCRIPTIONS
        if n != "get_image_job" or service.settings.wait_budget_for(client) is not None
    ]
    return [
        types.Tool(
            name=name,
            title=TITLES[name],
            description=TOOL_DESCRIPTIONS[name],
            input_schema=service.schemas[name],
            output_schema=outputs.get(name),
            annotations=listing if name in READ_ONLY_TOOLS else image,
        )
        for name in names
    ]


def _text(text: str, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


def _error_result(error: ImagegateError) -> types.CallToolResult:
    """The agent text, plus the error's class in `_meta` for programs (clients do not show
    `_meta` to models)."""
    detail: dict[str, Any] = {"kind": error.kind}
    if isinstance(error, InvalidRequest):
        detail["argument"] = error.argument
    if error.provider:
        detail["provider"] = error.provider
    result = _text(error.agent_text(), is_error=True)
    result.meta = {ERROR_META: detail}
    return result


def _answer(answer: ModelsAnswer | SizesAnswer) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=answer.text())],
        structured_content=answer.model_dump(mode="json", exclude_none=True),
    )


def _image_result(service: Service, outcome: Outcome) -> types.CallToolResult:
    """Text (summary + the metadata as compact JSON), one preview per image, a link per file."""
    settings = service.settings
    shown, notes = previews(outcome)
    meta = metadata(outcome, notes)
    text = summary(outcome, notes) + "\n" + json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    content: list[types.ContentBlock] = [types.TextContent(type="text", text=text)]
    content += [
        types.ImageContent(type="image", data=codec.b64encode(p.data), mime_type=p.mime) for p in shown
    ]
    if settings.resource_links:
        # imagegate:// so clients that cannot open local paths can read the file; file:// for a fallback save.
        uris = [gallery.image_uri(settings.output_dir, i.path) or i.path.as_uri() for i in outcome.images]
        content += [
            types.ResourceLink(
                type="resource_link", uri=uri, name=i.path.name, mime_type=i.mime, size=i.bytes
            )
            for uri, i in zip(uris, outcome.images, strict=True)
        ]
    structured = meta if settings.structured_output else None
    return types.CallToolResult(content=content, structured_content=structured)


def _resource(image: gallery.GalleryImage) -> types.Resource:
    return types.Resource(
        uri=image.uri,
        name=image.name,
        mime_type=image.mime,
        size=image.bytes,
        description=image.description(),
    )


def _resource_contents(image: gallery.GalleryImage, data: bytes) -> types.ReadResourceResult:
    """The file itself, then its sidecar as JSON under the same URI with a `#metadata` fragment."""
    sidecar = json.dumps(image.sidecar, indent=2, ensure_ascii=False)
    return types.ReadResourceResult(
        contents=[
            types.BlobResourceContents(uri=image.uri, mime_type=image.mime, blob=codec.b64encode(data)),
            types.TextResourceContents(
                uri=image.uri + METADATA_FRAGMENT, mime_type="application/json", text=sidecar
            ),
        ]
    )


def _progress(ctx: ServerRequestContext[Service]) -> Callable[[str], Awaitable[None]]:
    """Progress notifications (when the client sent a token): a counter that only goes up, and the phase."""
    step = 0

    async def report(message: str) -> None:
        nonlocal step
        step += 1
        await ctx.session.report_progress(step, None, message)

    return report


def _client(ctx: ServerRequestContext[Service]) -> str | None:
    params = ctx.session.client_params
    return params.client_info.name if params is not None else None


async def _job_answer(
    service: Service, job: Job, finished: bool, budget: float | None
) -> types.CallToolResult:
    """The job's result once it has ended; until then, its id and how to collect it."""
    if not finished:
        waited = f" after {budget:g} s" if budget else ""
        pending = _text(
            f"Still working{waited} ({job.progress}). Nothing is lost: the call goes on and saves "
            "every image "
            f'under {service.settings.output_dir}. Collect it with get_image_job {{"job": "{job.id}"}}.'
        )
        if service.settings.structured_output:  # a declared output schema wants structured content
            pending.structured_content = {"job": job.id, "images": [], "warnings": [], "calls": 0}
        return pending
    if job.error is not None:
        raise job.error
    if job.outcome is None:
        return _text(
            f"job {job.id} was cancelled; images it had received are saved under "
            f"{service.settings.output_dir}",
            is_error=True,
        )
    return _image_result(service, job.outcome)


async def _run_image_tool(
    ctx: ServerRequestContext[Service], name: str, arguments: dict[str, Any] | None
) -> types.CallToolResult:
    """Validate at once; run the call as a job; wait for it up to this client's budget."""
    service = ctx.lifespan_context
    report, live = _progress(ctx), [True]

    async def progress(message: str) -> None:
        if live[0]:  # a token is void once the call has answered
            await report(message)

    job = service.start_image_tool(name, arguments, progress)
    budget = service.settings.wait_budget_for(_client(ctx))
    try:
        finished = await service.jobs.wait(job, budget)
    except BaseException:  # the caller cancelled: so is the work (received images stay saved)
        job.scope.cancel()
        raise
    finally:
        live[0] = False
    return await _job_answer(service, job, finished, budget)


async def _collect_job(
    ctx: ServerRequestContext[Service], arguments: dict[str, Any] | None
) -> types.CallToolResult:
    service = ctx.lifespan_context
    job_id, wait = service.job_arguments(arguments)
    job = service.jobs.get(job_id)
    budget = service.settings.wait_budget_for(_client(ctx))
    limit = min(x for x in (wait, budget) if x is not None) if (wait, budget) != (None, None) else None
    return await _job_answer(service, job, await service.jobs.wait(job, limit), limit)


async def _dispatch(
    ctx: ServerRequestContext[Service], name: str, arguments: dict[str, Any] | None
) -> types.CallToolResult:
    service = ctx.lifespan_context
    if name == "list_models":
        return _answer(service.list_models(arguments))
    if name == "get_supported_sizes":
        return _answer(service.supported_sizes(arguments))
    if name == "get_image_job":
        return await _collect_job(ctx, arguments)
    return await _run_image_tool(ctx, name, arguments)


def _icon() -> types.Icon:
    """The server's icon (64 px PNG shipped in the package), inline so no client has to fetch it."""
    from importlib import resources

    data = resources.files("imagegate").joinpath("icon.png").read_bytes()
    return types.Icon(
        src="data:image/png;base64," + codec.b64encode(data), mime_type="image/png", sizes=["64x64"]
    )


def create_server(service_factory: Callable[[], Service] = build_service) -> Server[Service]:
    """The MCP server; the service is built once, in the lifespan, so a bad config fails at start."""

    @asynccontextmanager
    async def lifespan(_: Server[Service]) -> AsyncIterator[Service]:
        service = service_factory()
        try:
            async with anyio.create_task_group() as jobs:  # image calls can outlive their requests
                service.jobs.attach(jobs)
                yield service
                jobs.cancel_scope.cancel()
        finally:
            await service.aclose()

    async def list_tools(
        ctx: ServerRequestContext[Service], _: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=_tools(ctx.lifespan_context, _client(ctx)))

    async def call_tool(
        ctx: ServerRequestContext[Service], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name not in TOOL_DESCRIPTIONS:
            offered = ", ".join(
                t.name for t in _tools(ctx.lifespan_context, _client(ctx))
            )  # only what this client saw
            raise MCPError(types.INVALID_PARAMS, f'unknown tool "{shown(params.name)}"; tools: {offered}')
        try:
            return await _dispatch(ctx, params.name, params.arguments)
        except ImagegateError as e:
            log.info("%s refused: %s", params.name, e.kind)
            return _error_result(e)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("internal error in %s (ref %s)", params.name, ref)
            return _text(f"internal error (ref {ref}); the server log on stderr has details", is_error=True)

    async def list_resources(
        ctx: ServerRequestContext[Service], _: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        images = await anyio.to_thread.run_sync(gallery.list_images, ctx.lifespan_context.settings.output_dir)
        return types.ListResourcesResult(resources=[_resource(i) for i in images])

    async def list_resource_templates(
        ctx: ServerRequestContext[Service], _: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=gallery.URI_TEMPLATE,
            name="saved-image",
            title="Saved image",
            description=(
                "An image imagegate saved (date YYYY-MM-DD, file name as in a result); "
                "read it for the file and its sidecar."
            ),
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(
        ctx: ServerRequestContext[Service], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        read = partial(gallery.read_image, ctx.lifespan_context.settings.output_dir, params.uri)
        try:
            image, data = await anyio.to_thread.run_sync(read)
        except ImagegateError as e:
            raise MCPError(types.INVALID_PARAMS, e.agent_text()) from None
        except Exception:  # never echo a foreign exception's text (STYLE 9)
            ref = uuid.uuid4().hex[:8]
            log.exception("internal error reading a resource (ref %s)", ref)
            raise MCPError(
                types.INTERNAL_ERROR, f"internal error (ref {ref}); the server log on stderr has details"
            ) from None
        return _resource_contents(image, data)

    return Server(
        "imagegate",
        version=__version__,
        title="imagegate",
        icons=[_icon()],
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
    )
