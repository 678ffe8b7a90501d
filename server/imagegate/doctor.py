"""`imagegate doctor`: which providers are configured, whether each configured one answers,
where images go and which config file was read. Plain Python over settings and catalog.

It never sends a key and never shows one (only whether it is set); its only network use is
one keyless GET per configured provider to its base URL's origin, through the HTTP layer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from pydantic import BaseModel

from . import __version__
from .catalog import Catalog, ProviderSpec
from .errors import UpstreamError, UpstreamTimeout
from .providers.http import ProviderClient, ProviderProfile, Transport
from .settings import CONFIG_ENV, Credentials, Settings

__all__ = ["DEFAULT_PROBE_TIMEOUT", "DoctorReport", "ProviderStatus", "diagnose"]

DEFAULT_PROBE_TIMEOUT = 5.0


class ProviderStatus(BaseModel):
    id: str
    label: str
    configured: bool
    set_variable: str | None = None
    """What to set when the provider is not configured (never the key itself)."""
    base_url: str
    reachable: bool | None = None
    """None: not checked (not configured, --offline, or a provider that uses no network)."""
    detail: str | None = None


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
    def ok(self) -> bool:
        """Every configured provider answered, and images can be written."""
        return not self.unreachable and self.output_writable

    def text(self) -> str:
        """The report for a person: one line per provider, then the verdict."""
        width = max(len(p.id) for p in self.providers)
        lines = [
            f"imagegate {self.version}",
            f"config file: {self.config_file or 'none (' + self.config_searched + ')'}",
            f"output dir:  {self.output_dir} ({self.output_detail})",
            "",
            *(f"{p.id.ljust(width)}  {_status_text(p)}" for p in self.providers),
            "",
            self._verdict(),
        ]
        return "\n".join(lines)

    def _verdict(self) -> str:
        configured = [p.id for p in self.providers if p.configured]
        if not configured:
            return "No provider is configured: set one of the variables above."
        problems = [f"unreachable: {', '.join(self.unreachable)}"] if self.unreachable else []
        problems += [] if self.output_writable else ["the output dir is not writable"]
        if problems:
            return "Problems: " + "; ".join(problems) + "."
        checked = "reachability not checked (--offline)" if self.offline else "every one checked is reachable"
        return f"{len(configured)} configured ({', '.join(configured)}); {checked}."


def _status_text(p: ProviderStatus) -> str:
    if not p.configured:
        return f"not configured: set {p.set_variable}" if p.set_variable else "not configured"
    state = {True: "reachable", False: "UNREACHABLE", None: "not checked"}[p.reachable]
    return f"configured, {state}{f' ({p.detail})' if p.detail else ''}  {p.base_url}"


def _origin(url: str) -> str:
    """scheme://host[:port] without user info (where someone might have put a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _shown_url(url: str) -> str:
    """A base URL without user info, query or fragment."""
    return _origin(url) + urlsplit(url).path


def _variables(spec: ProviderSpec) -> str | None:
    names = [n for n in (spec.key_env, *spec.key_env_aliases) if n]
    if not names:
        return None
    return names[0] + (f" (or {', '.join(names[1:])})" if names[1:] else "")


def _any_status(status: int, body: object, provider: str) -> UpstreamError:
    """Any HTTP answer at all proves the host is reachable; keep only the status."""
    return UpstreamError(f"HTTP {status}", status=status, provider=provider)


async def check_reachable(
    provider: str, base_url: str, timeout: float, transport: Transport | None = None
) -> tuple[bool, str]:
    """GET the origin of `base_url` without credentials: (reachable, what happened)."""
    profile = ProviderProfile(id=provider, base_url=base_url, key=None, auth="none")
    client = ProviderClient(profile, timeout=timeout, max_retries=0, transport=transport)
    start = time.monotonic()
    try:
        reply = await client.request("GET", _origin(base_url) + "/", _any_status)
        status: int | None = reply.status
    except UpstreamTimeout:
        return False, f"no answer within {timeout:g} s"
    except UpstreamError as e:
        if e.status is None:
            return False, e.message
        status = e.status
    finally:
        await client.aclose()
    return True, f"HTTP {status} in {time.monotonic() - start:.2f} s"


def _uses_network(spec: ProviderSpec) -> bool:
    return spec.kind != "offline"


def _status(pid: str, spec: ProviderSpec, creds: Credentials) -> ProviderStatus:
    shown = _shown_url(creds.base_url)
    status = ProviderStatus(id=pid, label=spec.label, configured=creds.configured, base_url=shown)
    if not creds.configured:
        status.set_variable = _variables(spec)
    elif not _uses_network(spec):
        status.detail = "offline, uses no network"
    return status


async def _check_all(
    statuses: list[ProviderStatus], urls: Mapping[str, str], timeout: float, transport: Transport | None
) -> None:
    async def check(status: ProviderStatus) -> None:
        status.reachable, status.detail = await check_reachable(status.id, urls[status.id], timeout, transport)

    async with anyio.create_task_group() as group:
        for status in statuses:
            group.start_soon(check, status)


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
    """Check the configuration; probe every configured provider that uses the network unless `offline`."""
    credentials = settings.credentials(catalog)
    statuses = [_status(pid, spec, credentials[pid]) for pid, spec in catalog.providers.items()]
    to_probe = [s for s in statuses if s.configured and _uses_network(catalog.providers[s.id])]
    if not offline:
        await _check_all(to_probe, {pid: c.base_url for pid, c in credentials.items()}, timeout, transport)
    writable, detail = _writable(settings.output_dir)
    return DoctorReport(
        version=__version__,
        config_file=str(settings.config_path) if settings.config_path else None,
        config_searched=_config_searched(),
        output_dir=str(settings.output_dir),
        output_writable=writable,
        output_detail=detail,
        offline=offline,
        providers=statuses,
    )
