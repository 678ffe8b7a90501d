"""Settings: the environment and the optional TOML config file, read once at start-up.

This is the only module that reads environment variables. Environment wins over the file;
a value that is empty or still reads `${user_config.…}` (an MCPB bundle's unset option)
counts as unset. Keys are held as SecretStr and never printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

from . import codec
from .catalog import Catalog, CatalogAdditions, ModelSpec, Offering, ProviderSpec
from .catalog.loader import shipped_provider_ids, validation_message
from .catalog.spec import Price, Throttle, WorkflowInputs
from .errors import ConfigError
from .team.users import Users

__all__ = [
    "CLIENT_WAIT_BUDGETS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_PREVIEW_MAX_BYTES",
    "DEFAULT_PREVIEW_MAX_EDGE",
    "DEFAULT_TIMEOUT",
    "Credentials",
    "Settings",
    "is_unset",
    "load_settings",
]

DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_PREVIEW_MAX_EDGE = 768
DEFAULT_PREVIEW_MAX_BYTES = 64 * 1024
DEFAULT_CONFIRM_TIMEOUT = 120.0
LEDGER_FILE = "ledger.sqlite3"
CONFIG_ENV = "IMAGEGATE_CONFIG"
MIN_STATE_KEY_BYTES = 32
N = TypeVar("N", int, float)
WireId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
T = TypeVar("T")
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def is_unset(value: str | None) -> bool:
    """Empty, missing, or an MCPB placeholder the user never filled in."""
    return value is None or not value.strip() or value.strip().startswith("${user_config.")


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreviewConfig(_File):
    max_edge: int | None = None
    max_bytes: int | None = None


class WorkflowFile(WorkflowInputs):
    """A ComfyUI workflow in API format and which node input takes what, each as "node id.input name"
    (`[providers.comfyui.workflows.generate]` `file = "~/flux_api.json"` `prompt = "6.text"` …)."""

    file: str


class UserProvider(_File):
    """A provider in the config file: a new OpenAI-compatible endpoint, or additions to a known one."""

    label: str | None = None
    kind: Literal["gateway", "local"] = "gateway"
    protocol: str = "openai_images"
    base_url: str | None = None
    key_env: str | None = None
    api_key: SecretStr | None = None
    auth: Literal["bearer", "raw", "x-key", "x-goog-api-key", "none"] = "bearer"
    envelope: Literal["code_msg_data"] | None = None
    priority: int | None = None
    offerings: list[Offering] = []
    upstream: dict[str, WireId] = {}
    """Model id (or alias) -> the id to send this provider for it, replacing the catalog's (and its
    UNCONFIRMED mark): `[providers.zhaotou.upstream]` `"seedream-4.0" = "doubao-seedream-4-0-250828"`."""
    workflows: dict[Literal["generate", "edit", "inpaint"], WorkflowFile] = {}
    """ComfyUI only: your own API-format workflow per role, replacing the shipped one (local.py)."""
    limits: Throttle | None = None
    """A new provider's own limit (`limits = { concurrent = 8, per_minute = 60 }`), held across workers."""
    prices: dict[str, Price] = {}
    """Model id (or alias) -> this provider's price for it, replacing the catalog's (and its UNCONFIRMED
    mark): `[providers.zhaotou.prices."seedream-4.0"]` `currency = "CNY"` `per_image = 0.2` `source = "…"`."""


class SpendConfig(_File):
    """`[spend]`: budgets in USD, the confirmation threshold, unknown prices, the CNY rate, the ledger."""

    daily_budget: float | None = Field(default=None, ge=0)
    call_budget: float | None = Field(default=None, ge=0)
    confirm_above: float | None = Field(default=None, ge=0)
    unknown_price: Literal["allow", "refuse"] | None = None
    cny_per_usd: float | None = Field(default=None, gt=0)
    ledger: str | None = None
    confirm_timeout: float | None = Field(default=None, gt=0)


class UserEntry(_File):
    """`[users.alice]` `token = "sha256:<hex>"`: a user of a shared HTTP server, by the hash of their
    token (`imagegate hash-token` makes it; the token itself is never written down)."""

    token: str


class ConfigFile(_File):
    """The whole config file; unknown keys are errors so that typos do not pass silently."""

    output_dir: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    default_model: str | None = None
    enabled_models: list[str] = []
    priority: list[str] = []
    resource_links: bool | None = None
    structured_output: bool | None = None
    schema_conditionals: bool | None = None
    input_roots: list[str] = []
    allow_private_urls: bool | None = None
    max_reply_mb: float | None = Field(default=None, ge=1)
    wait_budget: float | None = None
    preview: PreviewConfig = PreviewConfig()
    spend: SpendConfig = SpendConfig()
    models: dict[str, ModelSpec] = {}
    providers: dict[str, UserProvider] = {}
    users: dict[str, UserEntry] = {}
    deployment: str | None = None
    task_lease: float | None = Field(default=None, gt=0)


@dataclass(frozen=True)
class Credentials:
    """Where a provider is reached and with which key (None: not configured)."""

    base_url: str
    key: SecretStr | None
    key_env: str | None
    base_url_from: str | None = None
    """Where the base URL was set: its variable, or the config file entry (error hints name it)."""
    ready: bool | None = None
    """A local server's state (None for the others): its URL was set, or it answered at start-up."""

    @property
    def configured(self) -> bool:
        return self.ready if self.ready is not None else self.key is not None


CLIENT_WAIT_BUDGETS = {"claude-ai": 50.0, "claude desktop": 50.0, "codex": 50.0}
"""Hosts that abandon a tool call at about 60 s (Claude Desktop; Codex's default tool_timeout_sec),
matched in the name a client announces; past the budget a call hands back a job id instead."""


@dataclass(frozen=True)
class Settings:
    """Everything tunable, resolved from environment, config file and defaults."""

    output_dir: Path
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    preview_max_edge: int = DEFAULT_PREVIEW_MAX_EDGE
    preview_max_bytes: int = DEFAULT_PREVIEW_MAX_BYTES
    resource_links: bool = True
    structured_output: bool = False
    schema_conditionals: bool = False
    enabled_models: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    default_model: str | None = None
    input_roots: tuple[Path, ...] = ()
    allow_private_urls: bool = False
    max_reply_mb: float | None = None
    """IMAGEGATE_MAX_REPLY_MB: the cap on one upstream reply body (decompressed); None: derived per call
    from what the route can return (its per-call images at their largest, as base64)."""
    wait_budget: float | None = None
    """IMAGEGATE_WAIT_BUDGET: seconds a call waits before handing back a job id (0: always wait);
    None: the default for the client (see CLIENT_WAIT_BUDGETS)."""
    http_token: SecretStr | None = None
    """IMAGEGATE_HTTP_TOKEN: the bearer token the HTTP transport requires (environment only:
    no secret in files)."""
    users: Users = field(default_factory=Users)
    """The config file's `[users]` (token hashes) and the shared token: who may call over HTTP."""
    redis_url: SecretStr | None = None
    """IMAGEGATE_REDIS_URL (environment only: it may hold a password): the Redis every worker of a
    deployment shares tasks and upstream limits through; None: this process alone."""
    deployment: str = "imagegate"
    """IMAGEGATE_DEPLOYMENT (or `deployment`): the name every worker of one deployment shares: its
    Redis key prefix and the audience of its request state."""
    state_key: SecretStr | None = None
    """IMAGEGATE_STATE_KEY (environment only): the key request state is sealed with, the same on every
    worker; None: a key of this process's own."""
    task_lease: float = 15.0
    """IMAGEGATE_TASK_LEASE (or `task_lease`): seconds a task or an upstream slot outlives its worker's
    last heartbeat before it is failed or given back."""
    config_path: Path | None = None
    additions: CatalogAdditions = field(default_factory=lambda: CatalogAdditions(source="(none)"))
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    file_providers: Mapping[str, UserProvider] = field(default_factory=dict, repr=False)
    local_probe: bool = True
    """Whether local servers are looked for on their default ports at start-up
    (IMAGEGATE_NO_LOCAL_PROBE=1: no)."""
    local_found: frozenset[str] = frozenset()
    """Local servers that answered at start-up (local.py fills it in)."""
    daily_budget: float | None = None
    """IMAGEGATE_DAILY_BUDGET (or spend.daily_budget): USD a day's calls may cost, per the ledger."""
    call_budget: float | None = None
    """IMAGEGATE_CALL_BUDGET (or spend.call_budget): USD one call may cost."""
    confirm_above: float | None = None
    """IMAGEGATE_CONFIRM_ABOVE (or spend.confirm_above): USD above which a call is confirmed first."""
    unknown_price: Literal["allow", "refuse"] = "allow"
    """IMAGEGATE_UNKNOWN_PRICE: what the budgets do with a call whose price is unknown."""
    cny_per_usd: float | None = None
    """spend.cny_per_usd (or IMAGEGATE_CNY_PER_USD): the rate CNY prices are compared with budgets at."""
    ledger_path: Path = field(default_factory=lambda: Path("ledger.sqlite3"))
    """IMAGEGATE_LEDGER (or spend.ledger): the SQLite ledger; default: the platformdirs data dir's."""
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT
    """IMAGEGATE_CONFIRM_TIMEOUT: seconds a confirmation form waits for its answer."""

    def wait_budget_for(self, client: str | None) -> float | None:
        """Seconds a call may wait for its images before returning a job id; None: no limit."""
        if self.wait_budget is not None:
            return self.wait_budget or None
        name = (client or "").lower()
        return next((seconds for key, seconds in CLIENT_WAIT_BUDGETS.items() if key in name), None)

    def credentials(self, catalog: Catalog) -> dict[str, Credentials]:
        """Base URL and key for every provider in the catalog; environment wins over the file."""
        return {pid: self._credentials(pid, spec) for pid, spec in catalog.providers.items()}

    def _credentials(self, pid: str, spec: ProviderSpec) -> Credentials:
        from_file = self.file_providers.get(pid)
        env_names = [n for n in (spec.key_env, *spec.key_env_aliases) if n]
        key = next((self.env[n] for n in env_names if not is_unset(self.env.get(n))), None)
        if key is None and from_file is not None and from_file.api_key is not None:
            key = from_file.api_key.get_secret_value()
        if spec.auth == "none":
            key = key or "unused"
        base = self.env.get(spec.base_url_env or "") if spec.base_url_env else None
        source = spec.base_url_env
        if is_unset(base):
            base = (from_file.base_url if from_file else None) or spec.default_base_url
            if from_file is not None and from_file.base_url:
                source = f"providers.{pid}.base_url in {self.config_path}"
        assert base is not None
        secret = SecretStr(key) if key else None
        creds = Credentials(base_url=base.rstrip("/"), key=secret, key_env=spec.key_env, base_url_from=source)
        return self._local(pid, spec, creds) if spec.kind == "local" and spec.base_url_env else creds

    # --- Local GPU servers (ComfyUI, SD WebUI): no key; ready when their URL is set or they answered ---

    def local_url_set(self, pid: str, spec: ProviderSpec) -> bool:
        """Whether a local server's URL is set (its variable, or the config file), not defaulted."""
        from_file = self.file_providers.get(pid)
        return not is_unset(self.env.get(spec.base_url_env or "")) or bool(from_file and from_file.base_url)

    def _local(self, pid: str, spec: ProviderSpec, creds: Credentials) -> Credentials:
        """A shipped local server: ready by URL or answer; its "key" only a Basic login (SDWEBUI_AUTH
        "user:pass", sent as `Authorization: Basic …` by the raw auth form)."""
        key = creds.key.get_secret_value() if creds.key else ""
        if spec.auth == "raw" and key and ":" in key and not key.startswith("Basic "):
            key = "Basic " + codec.b64encode(key.encode())
        ready = self.local_url_set(pid, spec) or pid in self.local_found
        secret = SecretStr(key) if key and spec.auth != "none" else None
        return replace(creds, key=secret, key_env=spec.base_url_env, ready=ready)


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if is_unset(value) else value.strip()  # type: ignore[union-attr]


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    value = _env(env, name)
    if value is None:
        return None
    if value.lower() in TRUE | FALSE:
        return value.lower() in TRUE
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def _env_number(env: Mapping[str, str], name: str, kind: type[N], minimum: N) -> N | None:
    value = _env(env, name)
    if value is None:
        return None
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a {kind.__name__}") from None
    if number < minimum:
        raise ConfigError(f"{name}={value!r} must be at least {minimum}")
    return number


def _config_path(env: Mapping[str, str]) -> Path | None:
    explicit = _env(env, CONFIG_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={explicit}: no such file")
        return path
    import platformdirs

    default = Path(platformdirs.user_config_dir("imagegate")) / "config.toml"
    return default if default.is_file() else None


def _read_config(path: Path | None) -> ConfigFile:
    if path is None:
        return ConfigFile()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_message(str(path), "config", e)) from None


def _additions(path: Path | None, config: ConfigFile, known: set[str]) -> CatalogAdditions:
    """New providers become ProviderSpecs; entries naming a known provider only add offerings; either
    may set wire ids (`upstream`)."""
    source = str(path) if path else "(config)"
    providers: dict[str, ProviderSpec] = {}
    offerings: dict[str, list[Offering]] = {}
    upstreams = {pid: dict(user.upstream) for pid, user in config.providers.items() if user.upstream}
    for pid, user in config.providers.items():
        if pid in known:
            if user.limits is not None:
                raise ConfigError(
                    f"{source}: providers.{pid}.limits: a shipped provider's limits are catalog data; "
                    "limits can be set on a provider the config file adds"
                )
            offerings[pid] = list(user.offerings)
            continue
        if user.base_url is None:
            raise ConfigError(f"{source}: providers.{pid}: base_url: a new provider needs base_url")
        providers[pid] = ProviderSpec(
            label=user.label or pid,
            kind=user.kind,
            protocol=user.protocol,
            key_env=user.key_env,
            default_base_url=user.base_url,
            auth=user.auth,
            envelope=user.envelope,
            priority=user.priority if user.priority is not None else 60,
            offerings=list(user.offerings),
            limits=user.limits,
        )
    return CatalogAdditions(
        source=source,
        models=dict(config.models),
        providers=providers,
        offerings=offerings,
        upstreams=upstreams,
    )


def _output_dir(env: Mapping[str, str], config: ConfigFile) -> Path:
    chosen = _env(env, "IMAGEGATE_OUTPUT_DIR") or config.output_dir
    if chosen:
        return Path(chosen).expanduser().resolve()
    import platformdirs

    pictures = Path(platformdirs.user_pictures_dir())
    base = (
        pictures if pictures.is_dir() else Path(platformdirs.user_data_dir())
    )  # ~/.local/share, not …/imagegate
    return base / "imagegate"


def _models_list(env: Mapping[str, str], config: ConfigFile) -> tuple[str, ...]:
    raw = _env(env, "IMAGEGATE_MODELS")
    names = [m.strip() for m in raw.split(",")] if raw else config.enabled_models
    return tuple(m for m in names if m)


def _input_roots(env: Mapping[str, str], config: ConfigFile) -> tuple[Path, ...]:
    """The folders local input images must lie in (empty: anywhere), symlinks resolved as inputs' are."""
    raw = _env(env, "IMAGEGATE_INPUT_ROOTS")
    names = raw.split(os.pathsep) if raw else config.input_roots
    source = "IMAGEGATE_INPUT_ROOTS" if raw else "config: input_roots"
    roots = []
    for name in filter(None, (n.strip() for n in names)):
        try:
            root = Path(name).expanduser().resolve()
        except (OSError, RuntimeError):
            root = None
        if root is None or not root.is_dir():
            raise ConfigError(f"{source}: {name!r} is not a folder")
        roots.append(root)
    return tuple(roots)


def _ledger_path(env: Mapping[str, str], config: ConfigFile) -> Path:
    """IMAGEGATE_LEDGER, else spend.ledger, else the user data dir's: one ledger for every output
    folder, so a day's budget counts every call the user makes."""
    chosen = _env(env, "IMAGEGATE_LEDGER") or config.spend.ledger
    if chosen:
        return Path(chosen).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("imagegate")) / LEDGER_FILE


def _unknown_price(env: Mapping[str, str], config: ConfigFile) -> Literal["allow", "refuse"]:
    value = _env(env, "IMAGEGATE_UNKNOWN_PRICE")
    if value is None:
        return config.spend.unknown_price or "allow"
    if value.lower() not in ("allow", "refuse"):
        raise ConfigError(f"IMAGEGATE_UNKNOWN_PRICE={value!r} is not allow or refuse")
    return "refuse" if value.lower() == "refuse" else "allow"


def _state_key(env: Mapping[str, str]) -> SecretStr | None:
    key = _env(env, "IMAGEGATE_STATE_KEY")
    if key is not None and len(key.encode()) < MIN_STATE_KEY_BYTES:
        raise ConfigError(
            f"IMAGEGATE_STATE_KEY must be at least {MIN_STATE_KEY_BYTES} bytes of secret randomness "
            "(e.g. `openssl rand -hex 32`)"
        )
    return SecretStr(key) if key else None


def _deployment(env: Mapping[str, str], config: ConfigFile) -> str:
    name = _env(env, "IMAGEGATE_DEPLOYMENT") or config.deployment or "imagegate"
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        raise ConfigError(f"IMAGEGATE_DEPLOYMENT={name!r}: use letters, digits, '-', '_' or '.'")
    return name


def pick(env: T | None, file: T | None, default: T) -> T:
    """The environment's value if set, else the config file's, else the default."""
    return env if env is not None else file if file is not None else default


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (default: os.environ) and the config file it points at."""
    env = dict(os.environ if env is None else env)
    path = _config_path(env)
    config = _read_config(path)
    return Settings(
        output_dir=_output_dir(env, config),
        timeout=pick(_env_number(env, "IMAGEGATE_TIMEOUT", float, 1.0), config.timeout, DEFAULT_TIMEOUT),
        max_retries=pick(
            _env_number(env, "IMAGEGATE_MAX_RETRIES", int, 0), config.max_retries, DEFAULT_MAX_RETRIES
        ),
        preview_max_edge=pick(
            _env_number(env, "IMAGEGATE_PREVIEW_MAX_EDGE", int, 64),
            config.preview.max_edge,
            DEFAULT_PREVIEW_MAX_EDGE,
        ),
        preview_max_bytes=pick(
            _env_number(env, "IMAGEGATE_PREVIEW_MAX_BYTES", int, 4096),
            config.preview.max_bytes,
            DEFAULT_PREVIEW_MAX_BYTES,
        ),
        resource_links=pick(_env_bool(env, "IMAGEGATE_RESOURCE_LINKS"), config.resource_links, True),
        structured_output=pick(
            _env_bool(env, "IMAGEGATE_STRUCTURED_OUTPUT"), config.structured_output, False
        ),
        schema_conditionals=pick(
            _env_bool(env, "IMAGEGATE_SCHEMA_CONDITIONALS"), config.schema_conditionals, False
        ),
        enabled_models=_models_list(env, config),
        priority=tuple(config.priority),
        default_model=config.default_model,
        input_roots=_input_roots(env, config),
        allow_private_urls=pick(
            _env_bool(env, "IMAGEGATE_ALLOW_PRIVATE_URLS"), config.allow_private_urls, False
        ),
        max_reply_mb=pick(_env_number(env, "IMAGEGATE_MAX_REPLY_MB", float, 1.0), config.max_reply_mb, None),
        wait_budget=pick(_env_number(env, "IMAGEGATE_WAIT_BUDGET", float, 0.0), config.wait_budget, None),
        http_token=SecretStr(token) if (token := _env(env, "IMAGEGATE_HTTP_TOKEN")) else None,
        users=Users.parse(
            {name: user.token for name, user in config.users.items()}, token, str(path or "config")
        ),
        redis_url=SecretStr(url) if (url := _env(env, "IMAGEGATE_REDIS_URL")) else None,
        deployment=_deployment(env, config),
        state_key=_state_key(env),
        task_lease=pick(_env_number(env, "IMAGEGATE_TASK_LEASE", float, 0.5), config.task_lease, 15.0),
        config_path=path,
        additions=_additions(path, config, shipped_provider_ids()),
        env=env,
        file_providers=dict(config.providers),
        local_probe=not _env_bool(env, "IMAGEGATE_NO_LOCAL_PROBE"),
        daily_budget=pick(
            _env_number(env, "IMAGEGATE_DAILY_BUDGET", float, 0.0), config.spend.daily_budget, None
        ),
        call_budget=pick(
            _env_number(env, "IMAGEGATE_CALL_BUDGET", float, 0.0), config.spend.call_budget, None
        ),
        confirm_above=pick(
            _env_number(env, "IMAGEGATE_CONFIRM_ABOVE", float, 0.0), config.spend.confirm_above, None
        ),
        unknown_price=_unknown_price(env, config),
        cny_per_usd=pick(
            _env_number(env, "IMAGEGATE_CNY_PER_USD", float, 0.01), config.spend.cny_per_usd, None
        ),
        ledger_path=_ledger_path(env, config),
        confirm_timeout=pick(
            _env_number(env, "IMAGEGATE_CONFIRM_TIMEOUT", float, 0.01),
            config.spend.confirm_timeout,
            DEFAULT_CONFIRM_TIMEOUT,
        ),
    )
