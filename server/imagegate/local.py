"""Local GPU servers (ComfyUI, Stable Diffusion WebUI / Forge): found at start-up, made into routes.

A local server is ready when its URL is set (its variable or the config file) or when it answers on its
default port at start-up: a probe of at most PROBE_SECONDS, skipped with IMAGEGATE_NO_LOCAL_PROBE=1.
Its checkpoint list (the adapter's CHECKPOINTS_PATH, read by its `parse_checkpoints`) becomes the values of
the route's `checkpoint` knob and the model's label (list_models shows it); one model per server keeps
tools/list small however many checkpoints there are. ComfyUI's workflows (the shipped ones, or the config
file's) become the route's wire data and decide its capabilities. Runs once, in build_service, before the
router exists: one GET per local server, in a short-lived thread, so it works inside a running event loop.
"""

from __future__ import annotations

import importlib
import json
import logging
import socket
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from .catalog import Catalog, CatalogAdditions, KnobRule, ModelSpec, Offering, ProviderSpec
from .catalog.spec import KnobValue, WireOptions
from .errors import ConfigError, ImagegateError
from .providers import PROTOCOLS
from .providers.http import ProviderClient, ProviderProfile, Transport
from .settings import Credentials, Settings, WorkflowFile

__all__ = ["Found", "discover", "prepare"]

log = logging.getLogger("imagegate")
PROBE_SECONDS = 0.5
"""How long a server that nobody named may take to answer on its default port."""
ASK_SECONDS = 3.0
"""How long a server whose URL is set may take to list its checkpoints (it is configured either way)."""
SHOWN_CHECKPOINTS = 6
ROLES = ("generate", "edit", "inpaint")


@dataclass(frozen=True)
class Found:
    """What one local server said at start-up: that it answered, and its checkpoints (None: unknown)."""

    answered: bool
    checkpoints: tuple[str, ...] | None = None


def _listening(url: str) -> bool:
    """Whether anything accepts a connection at the URL's host and port: on a machine without the
    server the probe costs one refused connect, not an HTTP client and a thread."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


def _servers(providers: Mapping[str, ProviderSpec]) -> dict[str, ProviderSpec]:
    """Of these local providers, the ones whose adapter lists checkpoints (imported only now: a
    start-up with no local server imports neither adapter)."""
    found = {}
    for pid, spec in providers.items():
        module = PROTOCOLS.get(spec.protocol)
        if module and hasattr(importlib.import_module(module), "CHECKPOINTS_PATH"):
            found[pid] = spec
    return found


async def _ask(
    pid: str, spec: ProviderSpec, creds: Credentials, timeout: float, transport: Transport | None
) -> Found:
    module = importlib.import_module(PROTOCOLS[spec.protocol])
    profile = ProviderProfile(pid, creds.base_url, creds.key, spec.auth, None, (), creds.base_url_from)
    client = ProviderClient(profile, timeout=timeout, max_retries=0, transport=transport)
    try:
        with anyio.fail_after(timeout):
            body = await client.get_json(module.CHECKPOINTS_PATH, module.classify_error)
        return Found(True, tuple(module.parse_checkpoints(body)))
    except ImagegateError as e:
        answered = getattr(e, "status", None) is not None or e.kind == "auth_failed"
        return Found(answered)  # a 401 (a login needed) is a server all the same
    except TimeoutError:
        return Found(False)
    finally:
        await client.aclose()


async def _ask_all(
    settings: Settings,
    servers: Mapping[str, ProviderSpec],
    creds: Mapping[str, Credentials],
    transport: Transport | None,
) -> dict[str, Found]:
    results: dict[str, Found] = {}

    async def one(pid: str, spec: ProviderSpec) -> None:
        named = settings.local_url_set(pid, spec)
        results[pid] = await _ask(pid, spec, creds[pid], ASK_SECONDS if named else PROBE_SECONDS, transport)

    async with anyio.create_task_group() as group:
        for pid, spec in servers.items():
            if settings.local_probe or settings.local_url_set(pid, spec):
                group.start_soon(one, pid, spec)
    return results


def discover(
    settings: Settings,
    servers: Mapping[str, ProviderSpec],
    creds: Mapping[str, Credentials],
    transport: Transport | None = None,
) -> dict[str, Found]:
    """Ask each local server that is named, or probed for, what it has: in a thread of its own, whose
    event loop cannot be the caller's (build_service runs inside the MCP server's loop)."""
    box: dict[str, dict[str, Found]] = {}

    def work() -> None:
        try:
            box["found"] = anyio.run(_ask_all, settings, servers, creds, transport)
        except Exception:  # a bug here must not stop the server: the servers stay unknown
            log.exception("looking for local image servers failed")

    thread = threading.Thread(target=work, name="imagegate-local-servers", daemon=True)
    thread.start()
    thread.join(ASK_SECONDS + 1.0)
    return box.get("found", {})


# --- Workflows (ComfyUI) --------------------------------------------------------------------------


def _graph(text: str, source: str) -> dict[str, Any]:
    try:
        graph = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{source}: not JSON: {e}") from None
    nodes_ok = isinstance(graph, dict) and all(
        isinstance(n, dict) and "class_type" in n for n in graph.values()
    )
    if not nodes_ok:
        raise ConfigError(f"{source}: not an API-format workflow (use ComfyUI's Export (API))")
    return dict(graph)


def _checked(entry: WorkflowFile, graph: dict[str, Any], source: str, role: str) -> dict[str, Any]:
    mapping = entry.model_dump(exclude={"file"}, exclude_none=True)
    for name, path in mapping.items():
        node = path if name == "output" else path.partition(".")[0]
        if node not in graph or (name != "output" and "." not in path):
            raise ConfigError(
                f"{source}: workflows.{role}.{name}: {path!r} names no node input of the workflow"
            )
    return {"graph": graph, **mapping}


def _shipped_workflows(name: str) -> dict[str, dict[str, Any]]:
    folder = resources.files("imagegate.catalog").joinpath("data", "workflows")
    table = tomllib.loads(folder.joinpath(name).read_text(encoding="utf-8"))
    flows = {}
    for role, raw in table.items():
        entry = WorkflowFile.model_validate(raw)
        source = f"catalog/data/workflows/{entry.file}"
        flows[role] = _checked(
            entry, _graph(folder.joinpath(entry.file).read_text(encoding="utf-8"), source), source, role
        )
    return flows


def _user_workflows(settings: Settings, pid: str) -> dict[str, dict[str, Any]]:
    user = settings.file_providers.get(pid)
    flows: dict[str, dict[str, Any]] = {}
    for role, entry in (user.workflows if user else {}).items():
        path = Path(entry.file).expanduser()
        source = f"{settings.config_path}: providers.{pid}.workflows.{role}.file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read it ({type(e).__name__})") from None
        flows[role] = _checked(entry, _graph(text, source), source, role)
    return flows


def _workflows(settings: Settings, pid: str, spec: ProviderSpec) -> dict[str, dict[str, Any]]:
    shipped = getattr(importlib.import_module(PROTOCOLS[spec.protocol]), "DEFAULT_WORKFLOWS", None)
    flows = _shipped_workflows(shipped) if shipped else {}
    return flows | _user_workflows(settings, pid)


def _capabilities(flows: Mapping[str, Mapping[str, Any]], model: ModelSpec) -> list[str]:
    edit = [f for role, f in flows.items() if role in ("edit", "inpaint") and "image" in f]
    able = {
        "generate": "generate" in flows,
        "edit": bool(edit),
        "mask": any("mask" in f for f in edit),
    }
    return [c for c in model.capabilities if able.get(c, False)]


# --- Routes -------------------------------------------------------------------------------------------


def _offering(
    base: Offering, model: ModelSpec, found: Found | None, flows: dict[str, dict[str, Any]]
) -> Offering:
    checkpoints = list(found.checkpoints or ()) if found else []
    changes: dict[str, Any] = {}
    if checkpoints:
        changes["upstream"] = checkpoints[0]
        changes["knobs"] = {
            **base.knobs,
            "checkpoint": KnobRule(values=list[KnobValue](checkpoints), default=checkpoints[0]),
        }
    if flows:
        changes["wire"] = WireOptions(**{**base.wire.model_dump(exclude_unset=True), "workflows": flows})
        changes["capabilities"] = _capabilities(flows, model)
        if any("batch_size" not in f for f in flows.values()):
            changes["per_call"] = 1  # a workflow without a batch input makes one image a call
    return base.model_copy(update=changes)


def _label(model: ModelSpec, spec: ProviderSpec, found: Found | None) -> str:
    names = list(found.checkpoints or ()) if found else []
    if not names:
        return model.label
    more = f" (+{len(names) - SHOWN_CHECKPOINTS} more)" if len(names) > SHOWN_CHECKPOINTS else ""
    return f"{spec.label}, checkpoints: {', '.join(names[:SHOWN_CHECKPOINTS])}{more}"


def prepare(settings: Settings, catalog: Catalog, transport: Transport | None = None) -> Settings:
    """The settings with the local servers found and their routes added to the catalog additions;
    the same settings when no local server is named or answers (probing off: nothing is asked)."""
    creds = settings.credentials(catalog)
    named_or_answering = {
        pid: spec
        for pid, spec in catalog.providers.items()
        if spec.kind == "local"
        and spec.base_url_env
        and (
            settings.local_url_set(pid, spec)
            or (settings.local_probe and (transport is not None or _listening(creds[pid].base_url)))
        )
    }
    servers = _servers(named_or_answering)
    if not servers:
        return settings
    found = discover(settings, servers, creds, transport)
    ready = {
        pid
        for pid, spec in servers.items()
        if settings.local_url_set(pid, spec) or found.get(pid, Found(False)).answered
    }
    if not ready:
        return settings
    models = dict(settings.additions.models)
    offerings = {pid: list(extra) for pid, extra in settings.additions.offerings.items()}
    for pid in sorted(ready):
        spec, flows = servers[pid], _workflows(settings, pid, servers[pid])
        for base in spec.offerings:
            model = models.get(base.model) or catalog.models[base.model]
            mine = _offering(base, model, found.get(pid), flows)
            offerings[pid] = [o for o in offerings.get(pid, []) if o.model != base.model] + [mine]
            models[base.model] = model.model_copy(update={"label": _label(model, spec, found.get(pid))})
    additions = CatalogAdditions(settings.additions.source, models, settings.additions.providers, offerings)
    answered = frozenset(pid for pid, f in found.items() if f.answered)
    return replace(settings, additions=additions, local_found=answered)
