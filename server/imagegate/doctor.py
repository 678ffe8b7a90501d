"""`imagegate doctor`: which providers are configured, whether each configured one works with its key
and base URL, where images go and which config file was read. Plain Python over settings and catalog.

Its network use is one cheap authenticated GET per configured provider where the provider documents one
(CHECKS: a model list, the credit balance, a lookup of a made-up task id), else one keyless GET of the base
URL's origin (reachability only). Never a generation: that costs money. It never shows a key.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from pydantic import BaseModel

from . import __version__
from .catalog import Catalog, ProviderSpec
from .errors import AuthFailed, ImagegateError, UpstreamError, UpstreamTimeout
from .providers import PROTOCOLS
from .providers.http import Classifier, HttpReply, ProviderClient, ProviderProfile, Transport, default_error
from .settings import CONFIG_ENV, Credentials, Settings

__all__ = ["CHECKS", "DEFAULT_PROBE_TIMEOUT", "DoctorReport", "ModelListDiff", "ProviderStatus", "diagnose"]

DEFAULT_PROBE_TIMEOUT = 5.0
MADE_UP_TASK = "imagegate-doctor-check"
SHOWN_MODELS = 5
"""How many ids of each model-list difference the text report shows (--json has them all)."""
IMAGE_MODEL = re.compile(
    r"(?<![a-z])(image|dall-e|gpt-image|imagen|flux|seedream|seededit|qwen-image|wan|kolors|ideogram"
    r"|recraft|midjourney|stable-diffusion|sd3|hidream)",
    re.IGNORECASE,
)
"""Ids a gateway lists that look like image models: the families imagegate's documents name, plus the
other well-known image families. Not a word inside another (`swan` is no Wan); chat models pass."""
NO_CHECK = "no cheap check documented; reachability only"
Problem = Literal["key", "base_url", "network", "timeout", "upstream"]
PROBLEMS: dict[str, tuple[str, str]] = {
    "key": ("KEY REJECTED", "the key was rejected"),
    "base_url": ("BASE URL WRONG", "the base URL is wrong"),
    "network": ("UNREACHABLE", "the host could not be reached"),
    "timeout": ("NO ANSWER", "no answer in time"),
    "upstream": ("CHECK FAILED", "the check failed"),
}
"""Problem -> (its label in a provider's line, its words in the verdict)."""


@dataclass(frozen=True)
class Check:
    """One cheap authenticated GET a provider offers, and where that is written down."""

    path: str
    """Relative to the base URL."""
    source: str
    model_list: bool = False
    """An OpenAI-style list (`{"data": [{"id": …}]}`) to compare with the catalog's wire ids."""
    known_path: str | None = None
    """A documented POST path: after a 404 on `path` (which that gateway's document does not list), a GET
    of it tells a wrong base URL (404 again) from a gateway that has no model list (405, 401, …)."""
    checkpoints: bool = False
    """A local server's checkpoint list, read by its adapter's `parse_checkpoints` and named in the report."""


OPENAI_COMPATIBLE = "tried because the gateway is OpenAI-compatible"
CHECKS: dict[str, Check] = {
    "openai_images": Check(
        "models",
        "OpenAI API reference, List models (GET /v1/models); not in shared/providers/openai.md, nor in "
        f"the ZhaoTou and ModelMax documents (seeds/002, 003): {OPENAI_COMPATIBLE}",
        model_list=True,
        known_path="images/generations",
    ),
    "mixroute": Check(
        "models",
        f"not in the MixRoute document (seeds/001): {OPENAI_COMPATIBLE}",
        model_list=True,
        known_path="images/generations",
    ),
    "gemini": Check(
        "models",
        "Gemini API reference, models.list (GET /v1beta/models, ai.google.dev/api/rest/v1beta/models/list)",
    ),
    "bfl": Check("credits", "shared/providers/bfl-flux.md §1: GET /v1/credits answers {credits}"),
    "replicate": Check("account", "replicate.com/docs/reference/http#account.get: GET /v1/account"),
    "openrouter": Check(
        "key", "OpenRouterTeam/docs openapi.yaml: GET /api/v1/key (getCurrentKey) answers {data}"
    ),
    # Local GPU servers: their checkpoint list (local.py reads the same at start-up) says what they have.
    "comfyui": Check(
        "object_info/CheckpointLoaderSimple",
        "ComfyUI server.py: GET /object_info/{node_class}",
        checkpoints=True,
    ),
    "sdwebui": Check(
        "sdapi/v1/sd-models", "WebUI modules/api/api.py: GET /sdapi/v1/sd-models", checkpoints=True
    ),
    "dashscope": Check(
        f"tasks/{MADE_UP_TASK}",
        "shared/providers/dashscope-qwen.md §1, §4: GET /tasks/{task_id}; an unknown id answers UNKNOWN",
    ),
}
"""Protocol -> its check. Without one (ark: ark-seedream.md; modelgate: seeds/000; atalk: seeds/004, whose
model list is a web page) the document offers no free call: doctor only sees whether the host answers."""


class ModelListDiff(BaseModel):
    listed: int
    """How many models the gateway's list holds."""
    catalog_unlisted: list[str]
    """The catalog's wire ids (route `upstream`) for this provider that the gateway does not list."""
    gateway_extra: list[str]
    """Image-looking ids (IMAGE_MODEL) the gateway lists that no catalog route of this provider sends."""


class ProviderStatus(BaseModel):
    id: str
    label: str
    configured: bool
    set_variable: str | None = None
    """What to set when the provider is not configured (never the key itself)."""
    base_url: str
    reachable: bool | None = None
    """Whether the host answered at all; None: not checked."""
    works: bool | None = None
    """True: the authenticated check passed; False: it failed (see `problem`); None: not checked."""
    problem: Problem | None = None
    variable: str | None = None
    """The variable (or config entry) to fix for `problem`: the key's or the base URL's."""
    check: str | None = None
    """What was asked: method and URL, without user info or query."""
    check_source: str | None = None
    not_checked: str | None = None
    """Why no authenticated check ran (not configured, --offline, no documented check, …)."""
    detail: str | None = None
    models: ModelListDiff | None = None


class DoctorReport(BaseModel):
    version: str
    config_file: str | None
    config_searched: str
    output_dir: str
    output_writable: bool
    output_detail: str
    offline: bool
    providers: list[ProviderStatus]

    @property
    def unreachable(self) -> list[str]:
        return [p.id for p in self.providers if p.reachable is False]

    @property
    def failed(self) -> list[ProviderStatus]:
        """Configured providers whose check failed or whose host did not answer."""
        return [p for p in self.providers if p.works is False or p.reachable is False]

    @property
    def ok(self) -> bool:
        """No check failed, and images can be written."""
        return not self.failed and self.output_writable

    def text(self) -> str:
        """The report for a person: a line per provider (and its model-list differences), then the verdict."""
        width = max(len(p.id) for p in self.providers)
        rows = [
            f"{p.id.ljust(width)}  {_status_text(p)}" + _models_text(p.models, width) for p in self.providers
        ]
        lines = [
            f"imagegate {self.version}",
            f"config file: {self.config_file or 'none (' + self.config_searched + ')'}",
            f"output dir:  {self.output_dir} ({self.output_detail})",
            "",
            *rows,
            "",
            *self._verdict(),
        ]
        return "\n".join(lines)

    def _verdict(self) -> list[str]:
        problems = [f"{p.id}: {_problem_text(p)}" for p in self.failed]
        problems += [] if self.output_writable else ["the output dir is not writable"]
        passed = [p.id for p in self.providers if p.works]
        if problems:
            first = "Problems: " + "; ".join(problems) + "."
        elif passed:
            first = f"{len(passed)} checked ({', '.join(passed)}): every one checked works."
        elif not any(p.configured and p.not_checked != "uses no network" for p in self.providers):
            first = "No provider that uses the network is configured: set one of the variables above."
        else:
            first = "Nothing was checked with a key."
        return [first, *self._not_checked()]

    def _not_checked(self) -> list[str]:
        reasons: dict[str, list[str]] = {}
        for p in self.providers:
            if p.not_checked:
                reasons.setdefault(p.not_checked, []).append(p.id)
        if not reasons:
            return []
        total = sum(len(ids) for ids in reasons.values())
        parts = [
            f"{len(ids)} {why}" if why == "not configured" else f"{', '.join(ids)} ({why})"
            for why, ids in reasons.items()
        ]
        return [f"Not checked ({total}): {', '.join(parts)}."]


def _status_text(p: ProviderStatus) -> str:
    if not p.configured:
        return f"not configured: set {p.set_variable}" if p.set_variable else "not configured"
    failed = p.works is False or p.reachable is False
    if failed:
        state = PROBLEMS[p.problem or "network"][0]
    else:
        state = "reachable and works" if p.works else "reachable" if p.reachable else "not checked"
    detail = "; ".join(text for text in (p.detail, p.not_checked) if text)
    return f"configured, {state}{': ' if failed else ' ('}{detail}{'' if failed else ')'}  {p.base_url}"


def _problem_text(p: ProviderStatus) -> str:
    return PROBLEMS[p.problem or "network"][1] + (f" (check {p.variable})" if p.variable else "")


def _models_text(diff: ModelListDiff | None, width: int) -> str:
    """The model-list differences under a provider's line, at most SHOWN_MODELS ids of each."""
    if diff is None:
        return ""
    pad, text = "\n" + " " * (width + 4), ""
    for what, ids in (
        ("catalog ids it does not list", diff.catalog_unlisted),
        ("image models it lists that the catalog lacks", diff.gateway_extra),
    ):
        more = f" (+{len(ids) - SHOWN_MODELS} more, see --json)" if len(ids) > SHOWN_MODELS else ""
        text += f"{pad}{what}: {', '.join(ids[:SHOWN_MODELS])}{more}" if ids else ""
    return text


def _origin(url: str) -> str:
    """scheme://host[:port] without user info (where someone might have put a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _shown_url(url: str) -> str:
    """A URL without user info, query or fragment."""
    return _origin(url) + urlsplit(url).path


def _variables(spec: ProviderSpec) -> str | None:
    names = [n for n in (spec.key_env, *spec.key_env_aliases) if n]
    if not names:
        return None
    return names[0] + (f" (or {', '.join(names[1:])})" if names[1:] else "")


def _any_status(status: int, body: object, provider: str) -> UpstreamError:
    """Any HTTP answer at all proves the host is reachable; keep only the status."""
    return UpstreamError(f"HTTP {status}", status=status, provider=provider)


def _classifier(protocol: str) -> Classifier:
    """The adapter's own reading of an error (Gemini's wrong key is a 400 API_KEY_INVALID), kept to the
    two outcomes doctor tells apart: the key was refused, or some other HTTP status."""
    module = PROTOCOLS.get(protocol)
    adapter: Classifier = (
        getattr(importlib.import_module(module), "classify_error", default_error) if module else default_error
    )

    def classify(status: int, body: Any, provider: str) -> ImagegateError:
        error = adapter(status, body, provider)
        said = error.upstream_message
        if isinstance(error, AuthFailed) or status in (401, 403):
            return AuthFailed(f"HTTP {status}", provider=provider, upstream_message=said)
        return UpstreamError(f"HTTP {status}", status=status, provider=provider, upstream_message=said)

    return classify


@dataclass(frozen=True)
class _Target:
    """One configured provider to check: its id, spec, credentials and the catalog's wire ids for it."""

    id: str
    spec: ProviderSpec
    creds: Credentials
    wire_ids: frozenset[str]

    def client(self, timeout: float, transport: Transport | None, keyless: bool = False) -> ProviderClient:
        spec, creds = self.spec, self.creds
        profile = ProviderProfile(
            self.id, creds.base_url, None if keyless else creds.key, "none" if keyless else spec.auth,
            spec.envelope, tuple(spec.trusted_hosts), creds.base_url_from,
        )  # fmt: skip
        return ProviderClient(profile, timeout=timeout, max_retries=0, transport=transport)

    @property
    def key_variable(self) -> str:
        return _variables(self.spec) or f"providers.{self.id}.api_key in the config file"

    @property
    def url_variable(self) -> str:
        return self.creds.base_url_from or "the base URL"

    def url_hint(self) -> str:
        """What the base URL is, its documented form and, when visible, the segment it lacks."""
        asked, documented = _shown_url(self.creds.base_url), self.spec.default_base_url
        segment = urlsplit(documented).path.rstrip("/")
        lacks = segment and not urlsplit(asked).path.rstrip("/").endswith(segment)
        return f"{self.url_variable} is {asked}; the documented form is {documented}" + (
            f", so it probably lacks {segment}" if lacks else ""
        )


async def _ask(client: ProviderClient, path: str, classify: Classifier) -> HttpReply | ImagegateError:
    """GET `path`: the 2xx reply, or the error it became."""
    try:
        return await client.request("GET", path, classify)
    except ImagegateError as e:
        return e


async def _probe(
    status: ProviderStatus, target: _Target, timeout: float, transport: Transport | None
) -> None:
    """Run the provider's check (CHECKS), or without one see whether its host answers at all."""
    check = CHECKS.get(target.spec.protocol)
    client = target.client(timeout, transport, keyless=check is None)
    try:
        await (_run_check(status, target, check, client) if check else _reachability(status, target, client))
    finally:
        await client.aclose()


async def _reachability(status: ProviderStatus, target: _Target, client: ProviderClient) -> None:
    """Keyless GET of the origin: any HTTP answer proves only that the host is there."""
    origin = _origin(target.creds.base_url) + "/"
    status.check, status.not_checked = f"GET {origin} without the key", NO_CHECK
    start, answer = time.monotonic(), await _ask(client, origin, _any_status)
    code = answer.status if isinstance(answer, (HttpReply, UpstreamError)) else None
    if code is None and isinstance(answer, ImagegateError):
        await _failed(status, target, None, client, answer)
    else:
        status.reachable, status.detail = True, f"HTTP {code} in {time.monotonic() - start:.2f} s"


async def _run_check(status: ProviderStatus, target: _Target, check: Check, client: ProviderClient) -> None:
    """Ask `check.path` with the key and say what the answer means for key and base URL."""
    status.check, status.check_source = f"GET {_shown_url(client.url(check.path))}", check.source
    start, answer = time.monotonic(), await _ask(client, check.path, _classifier(target.spec.protocol))
    if isinstance(answer, ImagegateError):
        await _failed(status, target, check, client, answer)
        return
    took = time.monotonic() - start
    status.reachable, status.works = True, True
    status.detail = f"HTTP {answer.status} in {took:.2f} s; key and base URL work"
    if check.model_list:
        _read_models(status, target, await answer.parsed())
    if check.checkpoints:
        _read_checkpoints(status, target, await answer.parsed())


def _read_checkpoints(status: ProviderStatus, target: _Target, body: Any) -> None:
    """Name what a local server has: its checkpoints become the `checkpoint` knob's values."""
    module = importlib.import_module(PROTOCOLS[target.spec.protocol])
    names = module.parse_checkpoints(body)
    shown = ", ".join(names[:SHOWN_MODELS]) + (
        f" (+{len(names) - SHOWN_MODELS} more)" if names[SHOWN_MODELS:] else ""
    )
    status.detail = f"{status.detail}; {len(names)} checkpoints" + (f": {shown}" if names else "")


async def _failed(
    status: ProviderStatus,
    target: _Target,
    check: Check | None,
    client: ProviderClient,
    error: ImagegateError,
) -> None:
    """Say which of key, base URL or network the error points at, and what to set."""
    url, said = _shown_url(client.url(check.path if check else "")), error.upstream_message
    status.reachable, status.works = True, False if check else None
    if isinstance(error, UpstreamTimeout):
        status.reachable, status.problem, status.variable = False, "timeout", target.url_variable
        status.detail = f"no answer from {_host(url)} within {client.timeout:g} s"
    elif isinstance(error, AuthFailed):
        status.problem, status.variable = "key", target.key_variable
        status.detail = f"{error.message} for {status.check}: {status.variable} is refused" + (
            f"; it said: {said}" if said else ""
        )
    elif isinstance(error, UpstreamError) and error.status is None:
        status.reachable, status.problem, status.variable = False, "network", target.url_variable
        status.detail = _connection_text(error, target.creds.base_url) + f"; is {status.variable} right?"
    elif isinstance(error, UpstreamError) and error.status == 404 and check is not None:
        await _not_found(status, target, check, client, url)
    else:
        status.problem = "upstream"
        status.detail = f"{error.message} for {status.check}" + (f"; it said: {said}" if said else "")


async def _not_found(
    status: ProviderStatus, target: _Target, check: Check, client: ProviderClient, url: str
) -> None:
    """A 404: the base URL is wrong, unless the check's path is one this gateway may simply not offer."""
    if check.known_path is not None:
        reply = await _ask(client, check.known_path, _any_status)
        answer = reply.status if isinstance(reply, (HttpReply, UpstreamError)) else None
        if answer not in (404, None):  # the documented path exists, so the base URL is right
            status.works, status.not_checked = None, f"{url} was not found: the gateway offers no model list"
            known = _shown_url(client.url(check.known_path))
            status.detail = f"{known} exists (HTTP {answer} to a GET); key not checked"
            return
    status.problem, status.variable = "base_url", target.url_variable
    status.detail = f"{url} was not found (HTTP 404); {target.url_hint()}"


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def _connection_text(error: UpstreamError, url: str) -> str:
    """The host and the error class, from the HTTP layer's "could not reach … (ConnectError)"; that
    message is not shown itself, as its host part can carry user info."""
    kind = re.search(r"\((\w+)\)$", error.message)
    return f"could not connect to {_host(url)} ({kind.group(1) if kind else 'connection failed'})"


def _read_models(status: ProviderStatus, target: _Target, body: Any) -> None:
    """Compare an OpenAI-style model list with the catalog's wire ids for this provider."""
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(
        entries, list
    ):  # an error in a 200 envelope (MixRoute's {code, msg}), or another server
        error = _classifier(target.spec.protocol)(200, body, target.id)
        key = isinstance(error, AuthFailed)
        status.works, status.problem = False, "key" if key else "base_url"
        status.variable = target.key_variable if key else target.url_variable
        said = f"; it said: {error.upstream_message}" if error.upstream_message else ""
        status.detail = f"{status.check} answered, but not with a model list{said}; {target.url_hint()}"
        return
    listed = {str(e["id"]) for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)}
    status.models = ModelListDiff(
        listed=len(listed),
        catalog_unlisted=sorted(target.wire_ids - listed),
        gateway_extra=sorted(i for i in listed - target.wire_ids if IMAGE_MODEL.search(i)),
    )
    status.detail = f"{status.detail}; {len(listed)} models listed"


def _uses_network(spec: ProviderSpec) -> bool:
    return spec.kind != "offline"


def _status(pid: str, spec: ProviderSpec, creds: Credentials, offline: bool) -> ProviderStatus:
    shown = _shown_url(creds.base_url)
    status = ProviderStatus(id=pid, label=spec.label, configured=creds.configured, base_url=shown)
    if not creds.configured:
        status.set_variable, status.not_checked = _variables(spec), "not configured"
        if spec.kind == "local" and spec.base_url_env:  # a local server needs its URL, or to be running
            status.set_variable = f"{spec.base_url_env}, or start it at {spec.default_base_url}"
    elif not _uses_network(spec):
        status.not_checked = "uses no network"
    elif offline:
        status.not_checked = "--offline"
    return status


async def _check_all(
    statuses: list[ProviderStatus],
    targets: Mapping[str, _Target],
    timeout: float,
    transport: Transport | None,
) -> None:
    async with anyio.create_task_group() as group:
        for status in statuses:
            group.start_soon(_probe, status, targets[status.id], timeout, transport)


def _redacted(status: ProviderStatus, creds: Credentials) -> ProviderStatus:
    """The status with the key cut out of every text, whatever an upstream echoed where."""
    key = creds.key.get_secret_value() if creds.key else None
    if not key or len(key) < 4:
        return status
    return ProviderStatus.model_validate_json(status.model_dump_json().replace(key, "***"))


def _writable(path: Path) -> tuple[bool, str]:
    """Whether images could be saved there; the folder itself may not exist yet."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return False, f"not writable: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return False, f"not writable: no write permission on {existing}"
    return True, "writable" if existing == path else f"writable; will be created under {existing}"


def _config_searched() -> str:
    import platformdirs

    default = Path(platformdirs.user_config_dir("imagegate")) / "config.toml"
    return f"{CONFIG_ENV} is not set and {default} does not exist"


async def diagnose(
    settings: Settings,
    catalog: Catalog,
    *,
    offline: bool = False,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
    transport: Transport | None = None,
) -> DoctorReport:
    """Check the configuration; check every configured provider that uses the network unless `offline`."""
    credentials = settings.credentials(catalog)
    statuses = [_status(pid, spec, credentials[pid], offline) for pid, spec in catalog.providers.items()]
    to_check = [s for s in statuses if s.configured and s.not_checked is None]
    targets = {
        s.id: _Target(
            s.id,
            catalog.providers[s.id],
            credentials[s.id],
            frozenset(r.upstream for r in catalog.routes if r.provider == s.id),
        )
        for s in to_check
    }
    await _check_all(to_check, targets, timeout, transport)
    writable, detail = _writable(settings.output_dir)
    return DoctorReport(
        version=__version__,
        config_file=str(settings.config_path) if settings.config_path else None,
        config_searched=_config_searched(),
        output_dir=str(settings.output_dir),
        output_writable=writable,
        output_detail=detail,
        offline=offline,
        providers=[_redacted(s, credentials[s.id]) for s in statuses],
    )
