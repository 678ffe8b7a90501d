"""What a call costs: a quote before anything is sent, the cost an upstream reports after, and
the budget rules that judge a quote. Pure: it reads a route's `Price` (catalog data, or the
config file's override) and the numbers it is given; the ledger keeps the money spent.

A price is matched against what the call asks (quality, pixels, tier, ratio). Where the call
leaves one of those to the upstream (no quality, size "auto"), every price it could come to is
possible and the quote is the highest of them, said as "up to". Nothing is guessed: a route with
no price quotes "unknown", and a CNY price compares with a USD budget only through the rate the
config file sets (`spend.cny_per_usd`), which every answer states.

Reported costs read the shapes upstreams use (openai.md §6.1 token `usage`, gemini.md §4
`usageMetadata`, seeds/004 AtalkAI `usage.cost` in CNY, bfl-flux.md §4.1 `cost` in credits,
seeds/000 ModelGate's per-image `usage` list, Ark's `generated_images`, DashScope's `image_count`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .catalog.routes import Route
from .catalog.sizes import ResolvedSize
from .catalog.spec import KnobValue, Price
from .errors import ImagegateError

__all__ = [
    "Budgets",
    "ConfirmationNeeded",
    "Cost",
    "Pricing",
    "Quote",
    "SpendRefused",
    "Verdict",
    "judge",
    "money",
]

PIXELS = re.compile(r"^\d+x\d+$")
TIER = re.compile(r"^\d+(?:\.\d+)?K$")
RATIO = re.compile(r"^\d+:\d+$")
SYMBOLS = {"USD": "$", "CNY": "¥"}
IMAGE_COUNTS = ("generated_images", "image_count", "images_generated")
"""Usage fields that count the images billed (Ark, DashScope, AtalkAI)."""
Unknown = Literal["allow", "refuse"]


class SpendRefused(ImagegateError):
    """A call refused before anything was sent: over a budget, or an unknown price under `refuse`."""

    kind = "over_budget"


class ConfirmationNeeded(ImagegateError):
    """A call above the confirmation threshold: its quote, and the one-time token that lets it through."""

    kind = "confirmation_required"

    def __init__(self, message: str, quote: Quote, token: str, question: str):
        super().__init__(message)
        self.quote = quote
        self.token = token
        self.question = question


def money(amount: float, currency: str, rounded: bool = False) -> str:
    """A price as written ($0.167, $0.04, ¥0.259), or `rounded` as a total is said ($0.67, $0.011)."""
    if rounded and amount >= 0.1:
        text = f"{amount:.2f}"
    else:
        text = f"{amount:.3f}".rstrip("0")
        text += "0" * max(0, 2 - len(text.partition(".")[2]))
    return f"{SYMBOLS.get(currency, currency + ' ')}{text}"


@dataclass(frozen=True)
class Quote:
    """The price of a planned call: per image (None: unknown) and for all `n` images."""

    model: str
    provider: str
    n: int
    label: str
    """What is priced, in words: "4 images on gpt-image-1 high"."""
    currency: str | None = None
    per_image: float | None = None
    upper_bound: bool = False
    """True when the call leaves quality or size to the upstream: the highest price it could be."""
    usd_rate: float | None = None
    """USD per unit of `currency` (1 for USD; from spend.cny_per_usd for CNY; None: no rate)."""
    unconfirmed: str | None = None
    source: str | None = None

    @property
    def total(self) -> float | None:
        return None if self.per_image is None else self.per_image * self.n

    @property
    def usd(self) -> float | None:
        """The quote in USD, the budgets' currency (None: unknown price, or no rate for its currency)."""
        return None if self.total is None or self.usd_rate is None else self.total * self.usd_rate

    def words(self) -> str:
        """ "about $0.67", "up to $1.00", "about ¥0.80 (≈ $0.11 at 7.2 CNY per USD)", "unknown"."""
        if self.total is None or self.currency is None:
            return "of unknown price"
        text = ("up to " if self.upper_bound else "about ") + money(self.total, self.currency, rounded=True)
        if self.currency != "USD" and self.usd is not None and self.usd_rate:
            usd = money(self.usd, "USD", rounded=True)
            text += f" (≈ {usd} at {1 / self.usd_rate:g} {self.currency} per USD)"
        if self.unconfirmed:
            text += " (price UNCONFIRMED)"
        return text


@dataclass(frozen=True)
class Cost:
    """What a result says a call (or one image) cost: the table's estimate and what the upstream reported."""

    estimated: float | None
    currency: str | None
    reported: float | None
    upper_bound: bool = False
    """The estimate is the most the call can cost (the upstream picks quality or size): "up to"."""

    def record(self) -> dict[str, Any]:
        return {
            "estimated": _round(self.estimated),
            "currency": self.currency,
            "reported": _round(self.reported),
        }


def _round(amount: float | None) -> float | None:
    return None if amount is None else round(amount, 6)


def _features(size: ResolvedSize, knobs: Mapping[str, KnobValue]) -> dict[str, str | None]:
    """What a price key can name, as this call has it (None: left to the upstream)."""
    quality = knobs.get("quality")
    return {
        "quality": None if quality in (None, "auto") else str(quality),
        "pixels": size.pixels,
        "tier": size.tier,
        "ratio": size.ratio,
    }


def _token_kind(token: str) -> str:
    if PIXELS.match(token):
        return "pixels"
    if TIER.match(token):
        return "tier"
    if RATIO.match(token):
        return "ratio"
    return "quality"


def _matches(key: str, features: Mapping[str, str | None]) -> tuple[bool, bool]:
    """(whether a `by` key can apply to the call, whether it applies for sure)."""
    sure = True
    for token in key.split():
        have = features[_token_kind(token)]
        if have is None:
            sure = False
        elif have.lower() != token.lower():
            return False, False
    return True, sure


def per_image(price: Price, features: Mapping[str, str | None]) -> tuple[float | None, bool]:
    """The price of one image with these features, and whether it is an upper bound."""
    fits = [
        (amount, sure) for key, amount in price.by.items() for ok, sure in [_matches(key, features)] if ok
    ]
    certain = [amount for amount, sure in fits if sure]
    if certain:
        return max(certain), False
    if fits:
        return max(amount for amount, _ in fits), True
    return price.per_image, False


@dataclass(frozen=True)
class Pricing:
    """The price of every route (catalog data, with the config file's overrides) and the CNY rate."""

    overrides: Mapping[tuple[str, str], Price] = field(default_factory=dict)
    """(model id, provider) -> the price the config file sets for that route."""
    cny_per_usd: float | None = None

    def price(self, route: Route) -> Price | None:
        return self.overrides.get((route.model, route.provider), route.price)

    def usd_rate(self, currency: str | None) -> float | None:
        if currency == "USD":
            return 1.0
        if currency == "CNY" and self.cny_per_usd:
            return 1 / self.cny_per_usd
        return None

    def quote(self, route: Route, n: int, size: ResolvedSize, knobs: Mapping[str, KnobValue]) -> Quote:
        """The price of `n` images on `route` with this size and these knobs, before anything is sent."""
        features = _features(size, knobs)
        described = [features["quality"], size.label() if size.label() != "upstream default" else None]
        label = f"{n} image{'s' if n != 1 else ''} on {' '.join(x for x in (route.model, *described) if x)}"
        price = self.price(route)
        if price is None:
            return Quote(route.model, route.provider, n, label)
        amount, bound = per_image(price, features)
        unconfirmed = (
            route.unconfirmed.get("price") if (route.model, route.provider) not in self.overrides else None
        )
        return Quote(
            route.model,
            route.provider,
            n,
            label,
            currency=price.currency,
            per_image=amount,
            upper_bound=bound,
            usd_rate=self.usd_rate(price.currency),
            unconfirmed=unconfirmed,
            source=price.source,
        )

    def reported(self, route: Route, usages: Sequence[Any], quote: Quote) -> tuple[float, str] | None:
        """What the upstream's usage objects (one per call made) say was charged, in one currency;
        None when none of them says (or they cannot be priced)."""
        price = self.price(route)
        found = [r for usage in usages if (r := self._one(price, usage, quote)) is not None]
        if not found:
            return None
        currency = found[0][1]
        amounts = [self.convert(a, c, currency) for a, c in found]
        if any(a is None for a in amounts):
            return None
        return sum(a for a in amounts if a is not None), currency

    def convert(self, amount: float, currency: str, to: str) -> float | None:
        """An amount in another currency at the configured rate (None: no rate)."""
        if currency == to:
            return amount
        rate, back = self.usd_rate(currency), self.usd_rate(to)
        return None if rate is None or back is None else amount * rate / back

    def _one(self, price: Price | None, usage: Any, quote: Quote) -> tuple[float, str] | None:
        if not isinstance(usage, Mapping):
            return None
        cost = usage.get("cost")
        if isinstance(cost, (int, float)) and _number(cost):
            if isinstance(usage.get("currency"), str):
                return float(cost), str(usage["currency"])
            if price is not None and price.credit is not None:
                return float(cost) * price.credit, price.currency
            return None
        if price is None:
            return None
        return _tokens(price, usage) or _listed(price, usage) or _counted(usage, quote)

    def listing(self, route: Route) -> str | None:
        """One route's price per image, compactly: "$0.011–0.25", "¥0.20", "$0.039?" (? UNCONFIRMED)."""
        price = self.price(route)
        if price is None:
            return None
        amounts = [*price.by.values(), *([price.per_image] if price.per_image is not None else [])]
        if not amounts:
            return None
        low, high = min(amounts), max(amounts)
        text = money(low, price.currency) + (f"–{money(high, price.currency)[1:]}" if high != low else "")
        marked = "price" in route.unconfirmed and (route.model, route.provider) not in self.overrides
        return text + ("?" if marked else "")

    def by_tier(self, route: Route, tiers: Sequence[str]) -> dict[str, str]:
        """The price per image at each tier (or, for a tierless route, per quality and size key)."""
        price = self.price(route)
        if price is None:
            return {}
        if tiers:
            shown = {}
            for tier in tiers:
                amount, bound = per_image(
                    price, {"quality": None, "pixels": None, "tier": tier, "ratio": None}
                )
                if amount is not None:
                    shown[tier] = ("up to " if bound else "") + money(amount, price.currency)
            return shown
        table = {key: money(amount, price.currency) for key, amount in price.by.items()}
        if price.per_image is not None:
            table["per image" if not table else "otherwise"] = money(price.per_image, price.currency)
        return table


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _tokens(price: Price, usage: Mapping[str, Any]) -> tuple[float, str] | None:
    """Token usage priced by the table's rates per million: OpenAI's `input_tokens_details` /
    `output_tokens`, Gemini's `usageMetadata` with per-modality details."""
    rates = price.tokens
    if not rates:
        return None
    if _number(usage.get("output_tokens")):
        details = usage.get("input_tokens_details") or {}
        text = details.get("text_tokens", usage.get("input_tokens", 0)) if isinstance(details, Mapping) else 0
        image = details.get("image_tokens", 0) if isinstance(details, Mapping) else 0
        parts = {"text_input": text, "image_input": image, "image_output": usage["output_tokens"]}
    elif _number(usage.get("candidatesTokenCount")):
        prompt = _modalities(usage.get("promptTokensDetails"))
        out = _modalities(usage.get("candidatesTokensDetails"))
        parts = {
            "text_input": prompt.get("TEXT", usage.get("promptTokenCount", 0) if not prompt else 0),
            "image_input": prompt.get("IMAGE", 0),
            "image_output": out.get("IMAGE", usage["candidatesTokenCount"] if not out else 0),
        }
    else:
        return None
    total = sum(float(n) * rates.get(kind, 0.0) for kind, n in parts.items() if _number(n)) / 1_000_000  # type: ignore[call-overload]
    return total, price.currency


def _modalities(details: Any) -> dict[str, float]:
    if not isinstance(details, list):
        return {}
    counts: dict[str, float] = {}
    for item in details:
        if isinstance(item, Mapping) and _number(item.get("tokenCount")):
            key = str(item.get("modality", "TEXT"))
            counts[key] = counts.get(key, 0) + float(item["tokenCount"])
    return counts


def _listed(price: Price, usage: Mapping[str, Any]) -> tuple[float, str] | None:
    """ModelGate's `usage`: one `{quality, size}` entry per image made, each priced by the table."""
    entries = usage.get("usage")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, Mapping) for e in entries):
        return None
    total = 0.0
    for entry in entries:
        size = str(entry.get("size") or "")
        quality = str(entry.get("quality") or "")
        features = {
            "quality": None if quality in ("", "auto", "default") else quality,
            "pixels": size if PIXELS.match(size) else None,
            "tier": None,
            "ratio": None,
        }
        amount, _ = per_image(price, features)
        if amount is None:
            return None
        total += amount
    return total, price.currency


def _counted(usage: Mapping[str, Any], quote: Quote) -> tuple[float, str] | None:
    """A count of the images billed, times the quoted price of one."""
    count = next((usage[k] for k in IMAGE_COUNTS if _number(usage.get(k))), None)
    if count is None or quote.per_image is None or quote.currency is None:
        return None
    return float(count) * quote.per_image, quote.currency


# --- Budgets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budgets:
    """The spend rules (USD): per day, per call, the confirmation threshold, and unknown prices."""

    daily: float | None = None
    call: float | None = None
    confirm_above: float | None = None
    unknown: Unknown = "allow"

    @property
    def active(self) -> bool:
        return (self.daily, self.call, self.confirm_above) != (None, None, None)


@dataclass(frozen=True)
class Verdict:
    """What the rules say of a quote: go (with a note to show), refuse (why), or ask first."""

    action: Literal["go", "refuse", "confirm"]
    text: str = ""


RAISE_DAILY = "raise IMAGEGATE_DAILY_BUDGET (or spend.daily_budget in the config file), or wait for tomorrow"
RAISE_CALL = (
    "raise IMAGEGATE_CALL_BUDGET (or spend.call_budget in the config file), "
    "or ask for fewer or cheaper images"
)


def judge(quote: Quote, spent: float, budgets: Budgets, confirmed: bool = False) -> Verdict:
    """Apply the budgets to a quote, with `spent` USD already counted today (reservations included)."""
    if not budgets.active:
        return Verdict("go")
    usd = quote.usd
    if usd is None:
        why = (
            f"no price is known for {quote.model} via {quote.provider}"
            if quote.total is None
            else f"its price is in {quote.currency} and no rate is set (spend.cny_per_usd in the config file)"
        )
        if budgets.unknown == "refuse":
            return Verdict(
                "refuse",
                f"refused before sending: {why}, and IMAGEGATE_UNKNOWN_PRICE=refuse; set it to allow, "
                f"or choose a route with a price (list_models shows them)",
            )
        return Verdict("go", f"cost unknown ({why}); sent because IMAGEGATE_UNKNOWN_PRICE=allow")
    estimate = money(usd, "USD", rounded=True)
    if budgets.call is not None and usd > budgets.call:
        limit = money(budgets.call, "USD", rounded=True)
        return Verdict(
            "refuse",
            f"refused before sending: {quote.label} is {quote.words()}, over the per-call budget of {limit}; "
            f"{RAISE_CALL}",
        )
    if budgets.daily is not None and spent + usd > budgets.daily:
        left = money(max(0.0, budgets.daily - spent), "USD", rounded=True)
        return Verdict(
            "refuse",
            f"refused before sending: {quote.label} is {quote.words()} ({estimate}), but only {left} is left "
            f"of today's budget of {money(budgets.daily, 'USD', rounded=True)} "
            f"({money(spent, 'USD', rounded=True)} spent); {RAISE_DAILY}",
        )
    if budgets.confirm_above is not None and usd > budgets.confirm_above and not confirmed:
        return Verdict("confirm", f"{quote.label}, {quote.words()} — go ahead?")
    return Verdict("go")
