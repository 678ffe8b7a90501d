"""Mutable emulator state: per-provider settings, the fault queue, the request log and served files.

Plain Python, no HTTP: the control API (control.py) edits this state and the request path (core.py) reads it.
Everything runs on the server's event loop thread, so no locking is needed.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["FAULT_KINDS", "EmulatorState", "Fault", "ProviderSettings", "SettingsError", "StoredFile"]

DEFAULT_KEY_PREFIX = "test-"
DEFAULT_URL_TTL = 3600.0  # OpenAI DALL·E URLs live 60 minutes (openai.md §6.1)
LOG_LIMIT = 5000  # keep memory flat during long benchmarks; tests look at the latest requests

# kind → (allowed parameters, required parameters); control.py's docstring says what each kind does.
FAULT_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "status": (frozenset({"status", "retry_after", "message", "type", "code"}), frozenset({"status"})),
    "error_in_200": (frozenset({"status", "message", "type", "code"}), frozenset()),
    "slow": (frozenset({"seconds"}), frozenset({"seconds"})),
    "drop_connection": (frozenset(), frozenset()),
    "malformed_json": (frozenset(), frozenset()),
    "bad_base64": (frozenset(), frozenset()),
    "truncated_base64": (frozenset(), frozenset()),
    "wrong_mime": (frozenset(), frozenset()),
    "expired_url": (frozenset(), frozenset()),
    "partial": (frozenset({"keep"}), frozenset()),
}
# Parameter → (test, what it must be); the others (retry_after, message, type, code) are free.
FAULT_PARAMS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "status": (lambda value: type(value) is int and 100 <= value <= 599, "an HTTP status code"),
    "seconds": (lambda value: type(value) in (int, float) and value >= 0, "a number >= 0"),
    "keep": (lambda value: type(value) is int and value >= 0, "an integer >= 0"),
}


class SettingsError(ValueError):
    """Raised when a control-API payload names an unknown provider, kind or setting."""


@dataclass(frozen=True)
class ProviderSettings:
    """What one provider accepts and how fast it answers."""

    keys: tuple[str, ...] = ()  # accepted keys; empty → any key starting with "test-"
    latency: float = 0.0  # seconds added to every answer, on top of the global latency
    models: tuple[str, ...] | None = None  # extra accepted (and GET /models-listed) ids; None → the default
    url_ttl: float = DEFAULT_URL_TTL

    def accepts(self, key: str | None) -> bool:
        """Whether `key` may call this provider."""
        if not key:
            return False
        return key in self.keys if self.keys else key.startswith(DEFAULT_KEY_PREFIX)

    def updated(self, changes: Mapping[str, Any]) -> ProviderSettings:
        """A copy with `changes` applied, each checked for type."""
        unknown = set(changes) - {"keys", "latency", "models", "url_ttl"}
        if unknown:
            raise SettingsError(f"unknown provider settings: {sorted(unknown)}")
        values = dict(changes)
        if "keys" in values:
            values["keys"] = tuple(_strings("keys", values["keys"]))
        if values.get("models") is not None:
            values["models"] = tuple(_strings("models", values["models"]))
        for name in ("latency", "url_ttl"):
            if name in values:
                values[name] = _seconds(name, values[name])
        return replace(self, **values)

    def public(self) -> dict[str, Any]:
        """Settings as JSON, with keys counted rather than shown."""
        shown = asdict(self)
        shown["keys"] = len(self.keys)
        return shown


@dataclass
class Fault:
    """One queued misbehaviour, consumed by the next `count` matching requests."""

    provider: str
    endpoint: str  # an endpoint name of the provider, or "*"
    kind: str
    count: int = 1
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, provider: str, endpoint: str) -> bool:
        return self.provider == provider and self.endpoint in ("*", endpoint)

    def check(self) -> None:
        """Raise SettingsError unless the kind, its parameters and the count make sense."""
        if self.kind not in FAULT_KINDS:
            raise SettingsError(f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}")
        allowed, required = FAULT_KINDS[self.kind]
        if set(self.params) - allowed or required - set(self.params):
            raise SettingsError(f"{self.kind} takes {sorted(allowed)}, needs {sorted(required)}")
        for name, value in self.params.items():
            test, meaning = FAULT_PARAMS.get(name, (lambda _: True, ""))
            if not test(value):
                raise SettingsError(f"{name} must be {meaning}")
        if type(self.count) is not int or self.count < 1:
            raise SettingsError("count must be an integer >= 1")


@dataclass(frozen=True)
class StoredFile:
    """An image served under /files/ until `expires` (epoch seconds)."""

    data: bytes
    mime: str
    expires: float


class EmulatorState:
    """Everything the control API can change or read back."""

    def __init__(self, providers: Iterable[str]) -> None:
        self.endpoints: dict[str, set[str]] = {name: set() for name in providers}
        self.reset()

    def reset(self) -> None:
        """Back to defaults: no faults, empty log, no files, default settings."""
        self.latency = 0.0
        self.settings = {name: ProviderSettings() for name in self.endpoints}
        self.faults: list[Fault] = []
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self.files: dict[str, StoredFile] = {}
        self.downloads = 0
        self.not_found = 0

    def configure(self, provider: str | None, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply global (`provider` None: only `latency`) or per-provider settings; return the result."""
        if provider is None:
            if set(changes) - {"latency"}:
                raise SettingsError("global settings: only 'latency'; name a provider for the rest")
            self.latency = _seconds("latency", changes.get("latency", self.latency))
            return {"latency": self.latency}
        self.settings[self._known(provider)] = self.settings[provider].updated(changes)
        return self.settings[provider].public()

    def add_fault(self, fault: Fault) -> int:
        """Queue `fault` after checking it; return how many faults are queued."""
        self._known(fault.provider)
        if fault.endpoint != "*" and fault.endpoint not in self.endpoints[fault.provider]:
            raise SettingsError(f"{fault.provider} has no endpoint {fault.endpoint!r}")
        fault.check()
        self.faults.append(fault)
        return len(self.faults)

    def take_fault(self, provider: str, endpoint: str) -> Fault | None:
        """Consume one use of the oldest fault matching this request."""
        for fault in self.faults:
            if fault.matches(provider, endpoint):
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def store_file(self, data: bytes, mime: str, ttl: float) -> str:
        """Keep `data` for `ttl` seconds; return its id."""
        file_id = uuid.uuid4().hex
        self.files[file_id] = StoredFile(data, mime, time.time() + ttl)
        return file_id

    def fetch_file(self, file_id: str) -> StoredFile | None:
        """The live file with this id (counted as a download), or None (counted as not found)."""
        stored = self.files.get(file_id)
        if stored is None or stored.expires < time.time():
            self.not_found += 1
            return None
        self.downloads += 1
        return stored

    def _known(self, provider: str) -> str:
        if provider not in self.endpoints:
            raise SettingsError(f"unknown provider {provider!r}; known: {sorted(self.endpoints)}")
        return provider


def _strings(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SettingsError(f"{name} must be a list of strings")
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SettingsError(f"{name} must be a number of seconds >= 0")
    return float(value)
