"""Provider adapters, one module per wire protocol, and the registry that hands the core
an adapter by protocol id and a pooled client by provider id.

Adapters are imported on first use (start-up stays fast); clients are opened on first use
and closed together when the server stops.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

import anyio

from ..catalog import ProviderSpec
from ..catalog.spec import ProtocolRules
from ..errors import NotImplementedYet
from ..settings import Credentials
from .base import Adapter
from .http import ProviderClient, ProviderProfile, Transport

__all__ = ["PROTOCOLS", "Registry", "protocol_rules"]

PROTOCOLS = {
    "openai_images": "imagegate.providers.openai_images",
    "placeholder": "imagegate.providers.placeholder",
    "comfyui": "imagegate.providers.comfyui",
    "sdwebui": "imagegate.providers.sdwebui",
    "mixroute": "imagegate.providers.mixroute",
    "gemini": "imagegate.providers.gemini",
    "atalk": "imagegate.providers.atalk",
    "ark": "imagegate.providers.ark",
    "dashscope": "imagegate.providers.dashscope",
    "modelgate": "imagegate.providers.modelgate",
    "bfl": "imagegate.providers.bfl",
    "openrouter": "imagegate.providers.openrouter",
    "fal": "imagegate.providers.fal",
    "replicate": "imagegate.providers.replicate",
}
"""Protocol id (a provider's `protocol` in the catalog) -> the adapter module that speaks it."""


class _Rules(Mapping[str, ProtocolRules]):
    """Every protocol id, its adapter module imported only when its rules are asked for."""

    def __getitem__(self, protocol: str) -> ProtocolRules:
        module = importlib.import_module(PROTOCOLS[protocol])
        return ProtocolRules(tuple(module.DIALECTS), bool(getattr(module, "DIALECT_REQUIRED", False)))

    def __contains__(self, protocol: object) -> bool:
        return protocol in PROTOCOLS

    def __iter__(self) -> Iterator[str]:
        return iter(PROTOCOLS)

    def __len__(self) -> int:
        return len(PROTOCOLS)


def protocol_rules() -> Mapping[str, ProtocolRules]:
    """What each protocol's adapter takes as route data (its module's `DIALECTS`, `DIALECT_REQUIRED`),
    for the catalog to check when it loads. An adapter is imported when its rules are first read."""
    return _Rules()


@dataclass
class Registry:
    """Adapters by protocol, clients by provider; owns the clients' lifetime."""

    credentials: Mapping[str, Credentials]
    providers: Mapping[str, ProviderSpec]
    timeout: float
    max_retries: int
    transport: Transport | None = None
    """Replaces the network (tests: httpx2.MockTransport)."""
    adapters: Mapping[str, Adapter] = field(default_factory=dict)
    """Adapters by protocol id that replace the shipped ones (tests: a fake adapter for the core)."""
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    clock: Callable[[], float] = time.monotonic
    """How the clients wait and tell time (retry backoff, polling): injectable, so tests need not wait."""
    _clients: dict[str, ProviderClient] = field(default_factory=dict)

    def adapter(self, protocol: str) -> Adapter:
        """The `run` coroutine of the module speaking `protocol`."""
        if protocol in self.adapters:
            return self.adapters[protocol]
        module = PROTOCOLS.get(protocol)
        if module is None:
            raise NotImplementedYet(f"the {protocol} protocol has no adapter in this version yet")
        return importlib.import_module(module).run  # type: ignore[no-any-return]

    def client(self, provider: str) -> ProviderClient:
        """The pooled client of a provider, opened on first use."""
        if provider not in self._clients:
            creds, spec = self.credentials[provider], self.providers[provider]
            profile = ProviderProfile(
                id=provider,
                base_url=creds.base_url,
                key=creds.key,
                auth=spec.auth,
                envelope=spec.envelope,
                trusted_suffixes=tuple(spec.trusted_hosts),
                base_url_from=creds.base_url_from,
                idempotency_header=spec.idempotency_header,
            )
            self._clients[provider] = ProviderClient(
                profile,
                timeout=self.timeout,
                max_retries=self.max_retries,
                transport=self.transport,
                sleep=self.sleep,
                clock=self.clock,
            )
        return self._clients[provider]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
