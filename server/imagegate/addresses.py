"""Which URLs this server may fetch itself: the private-address guard shared by input URLs (an
agent's) and result URLs (an upstream's). A URL passes only if every address its host resolves to
is public, unless private ones are allowed; the address checked is the one connected to, so a
name that resolves elsewhere a moment later (DNS rebinding) cannot lead anywhere else.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import anyio

from .errors import InvalidRequest, UpstreamError, shown

__all__ = ["AddressPolicy", "check_result_url", "checked_url", "is_public_address", "refusal", "resolve_host"]

RESOLVE_TIMEOUT = 10.0
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
ALLOW_PRIVATE = "set IMAGEGATE_ALLOW_PRIVATE_URLS=true (config file: allow_private_urls = true) to allow it"
Resolve = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> every address the host resolves to."""


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, from the system resolver the HTTP client's connect uses too."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class AddressPolicy:
    """Whether URLs on non-public addresses may be fetched, and how names are resolved."""

    allow_private_urls: bool = False
    resolve: Resolve = resolve_host


def refusal(name: str, ref: str, allowed: object, why: str) -> InvalidRequest:
    """The InvalidRequest for argument `name` whose value `ref` is refused `why` (quoted short)."""
    return InvalidRequest(
        name,
        shown(ref),
        allowed if isinstance(allowed, (str, list)) else None,
        f'{name} "{shown(ref)}" {why}',
    )


def is_public_address(address: str) -> bool:
    """False for loopback, private (RFC 1918, fc00::/7), link-local, unspecified, multicast,
    reserved and shared addresses, including IPv4 ones carried inside IPv6 (::ffff:, 6to4, NAT64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None
        embedded = ip.ipv4_mapped or ip.sixtofour or nat64
        if embedded is not None:
            return is_public_address(str(embedded))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def _split_url(name: str, ref: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, its host and its port; refused if any is malformed."""
    try:
        parts = urlsplit(ref)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise refusal(name, ref, "a valid http(s) URL", "is not a valid URL") from None
    if not host:
        raise refusal(name, ref, "a valid http(s) URL", "names no host")
    return parts, host, port or (443 if parts.scheme.lower() == "https" else 80)


async def checked_url(name: str, ref: str, policy: AddressPolicy) -> tuple[str, str | None]:
    """The URL to download and the address to connect to, refused unless every address its host
    resolves to is public.

    The URL is rebuilt from the parts that were checked, so the HTTP client cannot read another
    host out of it (user@host tricks, backslashes) than the one resolved here; and the download
    connects to an address checked here, so a name that resolves differently a moment later
    (DNS rebinding) cannot lead it to a private one.
    """
    if policy.allow_private_urls:
        return ref, None
    parts, host, port = _split_url(name, ref)
    try:
        with anyio.fail_after(RESOLVE_TIMEOUT):
            addresses = await policy.resolve(host, port)
    except (OSError, UnicodeError, ValueError, TimeoutError):  # IDNA rejects some names with ValueErrors
        addresses = []
    if not addresses:
        why = f"could not be downloaded: its host {shown(host)} does not resolve"
        raise refusal(name, ref, "a reachable http(s) image URL", why)
    private = next((a for a in addresses if not is_public_address(a)), None)
    if private is not None:
        why = (
            f"points at {private}, which is not a public address; {ALLOW_PRIVATE}, "
            "or pass the image as a file"
        )
        raise refusal(name, ref, "an http(s) URL on a public host", why)
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port is not None else ""
    return parts._replace(netloc=netloc, fragment="").geturl(), addresses[0]


async def check_result_url(
    url: str, policy: AddressPolicy, provider_host: str | None
) -> tuple[str, str | None]:
    """A result URL an upstream handed back (or a redirect's target), vetted like an input URL:
    the URL to fetch and the address to connect to. The provider's own host is exempt (a local
    gateway such as ModelGate's client hands back localhost URLs). Raises UpstreamError."""
    try:
        parts, host, _ = _split_url("result URL", url)
        if parts.scheme.lower() not in ("http", "https"):
            raise refusal("result URL", url, "http(s)", f"uses the {shown(parts.scheme)}: scheme")
        if host == provider_host:
            return url, None
        return await checked_url("result URL", url, policy)
    except InvalidRequest as e:
        raise UpstreamError(f"handed back an image URL that is not fetched: {e.message}") from None
