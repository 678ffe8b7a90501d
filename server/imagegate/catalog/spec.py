"""The shape of catalog data: models, providers, their offerings, size rules and knobs.

These pydantic models validate the shipped data files and a user's config additions
(`extra="forbid"`, so a typo is an error naming the field). They hold data only: merging
a model with an offering lives in `routes`, size arithmetic in `sizes`.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CAPABILITIES",
    "UNCONFIRMABLE",
    "TOOL_NAMES",
    "Capability",
    "InputForm",
    "InputLimits",
    "KnobDef",
    "KnobRule",
    "KnobValue",
    "ModelSpec",
    "Offering",
    "Price",
    "ProtocolRules",
    "ProviderSpec",
    "SizeRule",
    "Throttle",
    "WireOptions",
    "WorkflowInputs",
]

Capability = Literal["generate", "edit", "multi_reference", "mask", "variations"]
CAPABILITIES: tuple[Capability, ...] = ("generate", "edit", "multi_reference", "mask", "variations")
"""`variations`: edit_image without a prompt makes variations of its one image (/images/variations)."""
TOOL_NAMES = ("generate", "edit")
InputForm = Literal["url", "base64", "file"]
"""How a route takes an input image: an http(s) URL it fetches, inline base64/data URL, or a multipart
file."""
KnobValue = str | int | float | bool
Unconfirmable = Literal[
    "model",
    "upstream",
    "sizes",
    "max_n",
    "per_call",
    "output_formats",
    "inputs",
    "knobs",
    "capabilities",
    "price",
]
UNCONFIRMABLE: tuple[str, ...] = typing.get_args(Unconfirmable)
"""The facts a model or an offering may mark UNCONFIRMED: inferred, or only from secondary sources."""

PIXELS = re.compile(r"^(\d{2,5})x(\d{2,5})$")
RATIO = re.compile(r"^(\d{1,2}):(\d{1,2})$")
TIER = re.compile(r"^(\d{3}|\d{1,2}K)$")


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_pixels(value: str) -> str:
    if not PIXELS.match(value):
        raise ValueError(f"{value!r} is not a pixel size like 1024x1024")
    return value


def _check_ratio(value: str) -> str:
    if not RATIO.match(value):
        raise ValueError(f"{value!r} is not an aspect ratio like 16:9")
    return value


class SizeRule(_Data):
    """What sizes a route accepts. Four shapes:

    - `list`: explicit pixel sizes (`sizes`), optionally grouped by tier (`tiered`);
    - `table`: aspect ratio x tier, each cell the pixel size produced (`table[tier][ratio]`);
    - `range`: any WxH within bounds and a multiple, plus optional `presets` (tier -> ratio -> WxH)
      and `tiers` the upstream accepts on their own (it then picks the pixels);
    - `ratio`: aspect ratios only (`ratios`, or a `min_ratio`..`max_ratio` span), no pixel control;
    - `input`: not settable: the output follows the input image (only no size, or "auto").

    `auto` admits the literal size "auto"; `default` is the size used when none is given
    (omit it to let the upstream decide).
    """

    kind: Literal["list", "table", "range", "ratio", "input"]
    sizes: list[str] = []
    tiered: dict[str, list[str]] = {}
    table: dict[str, dict[str, str]] = {}
    presets: dict[str, dict[str, str]] = {}
    tiers: list[str] = []
    ratios: list[str] = []
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    multiple_of: int = 1
    min_ratio: str | None = None
    max_ratio: str | None = None
    auto: bool = False
    default: str | None = None
    default_tier: str | None = None

    @field_validator("sizes")
    @classmethod
    def _sizes_are_pixels(cls, v: list[str]) -> list[str]:
        return [_check_pixels(s) for s in v]

    @field_validator("tiered")
    @classmethod
    def _tiered_are_pixels(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {tier: [_check_pixels(s) for s in sizes] for tier, sizes in v.items()}

    @field_validator("table", "presets")
    @classmethod
    def _cells_are_pixels(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {t: {_check_ratio(r): _check_pixels(s) for r, s in row.items()} for t, row in v.items()}

    @field_validator("ratios")
    @classmethod
    def _ratios_are_ratios(cls, v: list[str]) -> list[str]:
        return [_check_ratio(r) for r in v]

    @field_validator("min_ratio", "max_ratio")
    @classmethod
    def _bound_is_ratio(cls, v: str | None) -> str | None:
        return None if v is None else _check_ratio(v)

    @model_validator(mode="after")
    def _shape_has_its_fields(self) -> SizeRule:
        needs = {
            "list": bool(self.sizes or self.tiered),
            "table": bool(self.table),
            "range": self.max_pixels is not None or self.max_width is not None,
            "ratio": bool(self.ratios) or (self.min_ratio is not None and self.max_ratio is not None),
            "input": True,
        }
        if not needs[self.kind]:
            hint = {
                "list": "sizes or tiered",
                "table": "table",
                "range": "max_pixels or max_width/max_height",
                "ratio": "ratios or min_ratio/max_ratio",
            }
            raise ValueError(f"a {self.kind!r} size rule needs {hint[self.kind]}")
        if self.multiple_of < 1:
            raise ValueError("multiple_of must be at least 1")
        return self


class KnobDef(_Data):
    """A knob of the unified vocabulary: its JSON type and what it means (shown in the schema)."""

    type: Literal["string", "integer", "number", "boolean"]
    description: str
    tools: list[Literal["generate", "edit"]] = ["generate", "edit"]


class KnobRule(_Data):
    """What one route allows for one knob: an enum of `values`, or a `min`..`max` / `max_length` bound."""

    values: list[KnobValue] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    default: KnobValue | None = None
    tools: list[Literal["generate", "edit"]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        # `quality = ["low", "high"]` is an enum; `watermark = true` means "any value of the knob's type".
        if isinstance(data, list):
            return {"values": data}
        if data is True:
            return {}
        return data


class InputLimits(_Data):
    """Limits on input images (edit references and mask) for a model or a route."""

    max_images: int | None = None
    min_images: int | None = None
    max_bytes: int | None = None
    max_pixels: int | None = None
    min_edge: int | None = None
    max_edge: int | None = None
    min_ratio: str | None = None
    """Narrowest width:height an input may have ("1:3"); `max_ratio` the widest ("3:1")."""
    max_ratio: str | None = None
    max_total_bytes: int | None = None
    """All input images and the mask of one request together (an API's whole-request cap)."""
    formats: list[str] | None = None
    forms: list[InputForm] | None = None
    mask_formats: list[str] | None = None
    mask_same_size: bool | None = None
    mask_max_bytes: int | None = None

    @field_validator("min_ratio", "max_ratio")
    @classmethod
    def _ratio(cls, v: str | None) -> str | None:
        return v if v is None else _check_ratio(v)


class WorkflowInputs(_Data):
    """Which node input ("node id.input name") of a ComfyUI API-format workflow takes what: shared by
    a workflow as routes carry it (providers/comfyui.py) and as a config file names it (settings.py)."""

    prompt: str
    negative_prompt: str | None = None
    width: str | None = None
    height: str | None = None
    batch_size: str | None = None
    seed: str | None = None
    guidance_scale: str | None = None
    checkpoint: str | None = None
    image: str | None = None
    mask: str | None = None
    output: str | None = None
    """The node whose images are the result (default: every SaveImage node's)."""


class WireOptions(_Data):
    """How a route's adapter speaks: fields only adapters read. A wire difference is data here,
    never an `if model == ...` in code."""

    dialect: str | None = None
    path: str | None = None
    edit_path: str | None = None
    mode: Literal["sync", "async"] | None = None
    response_format: Literal["url", "b64_json", "base64"] | None = None
    sequential: bool | None = None
    retry_statuses: list[int] = []
    """HTTP statuses the provider's docs say to retry, besides the HTTP layer's own (ZhaoTou: 500)."""
    fields: dict[str, str] = {}
    """Where a per-model input schema (Replicate, fal) puts each thing: role or knob -> the model's own
    field name (`images = "image_input[]"`, `ratio = "aspect_ratio"`, `prompt_extend = "enhance_prompt"`);
    the adapter module documents the roles it reads."""
    workflows: dict[str, dict[str, Any]] = {}
    """ComfyUI: role ("generate", "edit", "inpaint") -> an API-format workflow (`graph`) and which node
    input takes what; filled in at start-up from the shipped or configured files (local.py)."""


PriceKey = Literal["text_input", "image_input", "image_output"]
PRICE_TOKEN = re.compile(r"^[A-Za-z0-9:._-]+$")


class Price(_Data):
    """What images cost on a route, as its source states it: a flat `per_image`, and/or `by` (a
    price per image for a combination of the call's quality, pixels "WxH", tier "2K" or ratio "16:9",
    written as space-separated tokens: `"high 1024x1536" = 0.25`), and the `tokens` rates (per
    million) the upstream's reported token usage is priced by. `credit`: what one unit of a `cost`
    the upstream reports is worth in `currency` (BFL: 1 credit = $0.01). Pricing lives in pricing.py."""

    currency: Literal["USD", "CNY"]
    source: str
    per_image: Annotated[float, Field(ge=0)] | None = None
    by: dict[str, Annotated[float, Field(ge=0)]] = {}
    tokens: dict[PriceKey, Annotated[float, Field(ge=0)]] = {}
    credit: Annotated[float, Field(gt=0)] | None = None

    @field_validator("by")
    @classmethod
    def _keys_are_tokens(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            if not key.split() or not all(PRICE_TOKEN.match(t) for t in key.split()):
                raise ValueError(f'{key!r} is not space-separated tokens like "high 1024x1536" or "2K"')
        return v

    @model_validator(mode="after")
    def _states_a_price(self) -> Price:
        if self.per_image is None and not self.by and not self.tokens and self.credit is None:
            raise ValueError("a price needs per_image, by, tokens or credit")
        return self


class Throttle(_Data):
    """How much of an upstream may run at once and how often calls may start (a provider's, or one
    model's there): `concurrent` upstream calls in flight (an async task counts until it ends), and
    `per_minute` calls begun in any 60 s. Shared by every worker of a deployment (team/limits.py);
    absent: no limit of ours, the upstream's 429s are retried. `unconfirmed`: why a number no primary
    document states is believed."""

    concurrent: Annotated[int, Field(ge=1)] | None = None
    per_minute: Annotated[int, Field(ge=1)] | None = None
    unconfirmed: str | None = None


class _Limits(_Data):
    """Fields a model declares and an offering may override."""

    capabilities: list[Capability] | None = None
    sizes: SizeRule | None = None
    sizes_with_references: SizeRule | None = None
    sizes_with_references_from: Annotated[int, Field(ge=1)] | None = None
    """How many input images switch to `sizes_with_references` (default 1)."""
    max_n: Annotated[int, Field(ge=1, le=100)] | None = None
    per_call: Annotated[int, Field(ge=1, le=100)] | None = None
    output_formats: list[str] | None = None
    knobs: dict[str, KnobRule | Literal[False]] = {}
    inputs: InputLimits = InputLimits()
    prompt_max_length: int | None = None
    price: Price | None = None
    """A model's: its maker's list price (used by routes of native providers); an offering's: that
    provider's own, which replaces it. None: no known price (never a guessed one)."""
    unconfirmed: dict[Unconfirmable, str] = {}
    """Facts no primary document states, each with why it is believed (shown to the agent):
    `upstream = "the doc's display name, lower-cased"`. Data the user can override, never a hard rule."""


class ModelSpec(_Limits):
    """A model as its maker defines it: the native limits every offering starts from."""

    label: str
    maker: str
    family: str
    aliases: list[str] = []
    notes: str | None = None
    capabilities: list[Capability]
    sizes: SizeRule
    max_n: Annotated[int, Field(ge=1, le=100)] = 10
    per_call: Annotated[int, Field(ge=1, le=100)] = 1
    output_formats: list[str] = ["png"]
    knobs: dict[str, KnobRule] = {}  # type: ignore[assignment]  # a model cannot remove knobs


class Offering(_Limits):
    """One provider's offering of one model: the upstream name and only what differs."""

    model: str
    upstream: str
    notes: str | None = None
    wire: WireOptions = WireOptions()
    limits: Throttle | None = None
    """This model's own limit at the provider, within the provider's (BFL: 6 for Kontext max)."""


class ProviderSpec(_Data):
    """A provider: who it is, how to reach it, which protocol it speaks, and what it offers."""

    label: str
    kind: Literal["native", "gateway", "local", "offline"]
    """`offline`: imagegate's own placeholder, which calls no upstream and makes test images."""
    protocol: str
    key_env: str | None = None
    key_env_aliases: list[str] = []
    base_url_env: str | None = None
    default_base_url: str
    auth: Literal["bearer", "raw", "x-key", "x-goog-api-key", "key", "none"] = "bearer"
    envelope: Literal["code_msg_data"] | None = None
    trusted_hosts: list[str] = []
    """Host suffixes besides the base URL's own that may receive the key (BFL: ".bfl.ai")."""
    priority: int = 50
    idempotency_header: str | None = None
    """The header a provider reads an idempotency key from; one key is sent per request, the same on
    each of our retries of it (providers/http.py)."""
    docs: str | None = None
    privacy_policy: str | None = None
    limits: Throttle | None = None
    """The provider's limit over all its models (BFL: 24 active tasks)."""
    offerings: list[Offering] = []


@dataclass(frozen=True)
class ProtocolRules:
    """What a protocol's adapter takes as route data, declared by the adapter module itself: its
    `wire.dialect` values (`DIALECTS`), and whether a route must name one (`DIALECT_REQUIRED`)."""

    dialects: tuple[str, ...] = ()
    dialect_required: bool = False
