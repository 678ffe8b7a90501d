"""Quotes from the catalog's prices, costs read from the upstreams' usage shapes, and the budget rules."""

from __future__ import annotations

import pytest

from imagegate.catalog import ResolvedSize
from imagegate.catalog.spec import Price
from imagegate.pricing import Budgets, Pricing, judge, money

PIXELS = ResolvedSize(1024, 1024)


def route(catalog, model: str, provider: str):
    return next(r for r in catalog.routes_for(model) if r.provider == provider)


@pytest.mark.parametrize(
    ("knobs", "size", "per_image", "bound"),
    [
        ({"quality": "high"}, PIXELS, 0.167, False),
        ({"quality": "low"}, ResolvedSize(1536, 1024), 0.016, False),
        ({}, PIXELS, 0.167, True),  # quality left to the upstream: the highest it could be
        ({"quality": "auto"}, ResolvedSize(auto=True), 0.25, True),
    ],
)
def test_a_quote_reads_the_table_by_quality_and_pixels(catalog, knobs, size, per_image, bound):
    quote = Pricing().quote(route(catalog, "gpt-image-1", "openai"), 4, size, knobs)
    assert (quote.per_image, quote.upper_bound, quote.currency) == (per_image, bound, "USD")
    assert quote.total == pytest.approx(4 * per_image)
    assert quote.words().startswith("up to $" if bound else "about $")


def test_the_brief_example_reads_as_a_person_would_say_it(catalog):
    quote = Pricing().quote(route(catalog, "gpt-image-1", "openai"), 4, PIXELS, {"quality": "high"})
    assert quote.label == "4 images on gpt-image-1 high 1024x1024"
    assert quote.words() == "about $0.67 (price UNCONFIRMED)"


def test_tiers_price_a_gemini_image(catalog):
    pro = route(catalog, "gemini-3-pro-image", "gemini")
    assert Pricing().quote(pro, 1, ResolvedSize(4096, 4096, "1:1", "4K"), {}).per_image == 0.24
    assert Pricing().by_tier(pro, ["1K", "2K", "4K"]) == {"1K": "$0.134", "2K": "$0.134", "4K": "$0.24"}


def test_no_price_is_invented_for_a_gateway_or_an_unpriced_route(catalog):
    assert route(catalog, "gpt-image-1", "mixroute").price is None
    assert "price" not in route(catalog, "gpt-image-1", "mixroute").unconfirmed
    quote = Pricing().quote(route(catalog, "gpt-image-1", "mixroute"), 2, PIXELS, {})
    assert (quote.total, quote.usd, quote.words()) == (None, None, "of unknown price")


def test_a_confirmed_price_carries_no_mark_and_a_config_override_replaces_the_catalogs(catalog):
    mini = route(catalog, "gpt-image-1-mini", "openai")
    assert "price" not in mini.unconfirmed and Pricing().listing(mini) == "$0.005–0.052"
    mine = Price(currency="USD", source="my contract", per_image=0.01)
    overridden = Pricing({("gpt-image-1", "mixroute"): mine})
    assert overridden.quote(route(catalog, "gpt-image-1", "mixroute"), 3, PIXELS, {}).total == pytest.approx(
        0.03
    )


def test_cny_is_compared_in_usd_only_at_the_configured_rate(catalog):
    ark = route(catalog, "seedream-4.0", "ark")
    size = ResolvedSize(2048, 2048)
    assert Pricing().quote(ark, 2, size, {}).usd is None
    quote = Pricing(cny_per_usd=8.0).quote(ark, 2, size, {})
    assert quote.usd == pytest.approx(0.05) and "(≈ $0.05 at 8 CNY per USD)" in quote.words()


def test_reported_costs_from_each_usage_shape(catalog):
    pricing = Pricing(cny_per_usd=8.0)
    gpt = route(catalog, "gpt-image-1", "openai")
    quote = pricing.quote(gpt, 1, PIXELS, {"quality": "medium"})
    tokens = {
        "input_tokens": 50,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        "output_tokens": 1056,
    }
    assert pricing.reported(gpt, [tokens], quote) == (pytest.approx((50 * 5 + 1056 * 40) / 1e6), "USD")
    flux = route(catalog, "flux-2-pro", "bfl")
    assert pricing.reported(flux, [{"cost": 3.0, "output_mp": 1.05}], quote) == (pytest.approx(0.03), "USD")
    atalk = route(catalog, "flux-2-pro", "atalk")
    assert pricing.reported(atalk, [{"cost": 0.04, "currency": "CNY"}], quote) == (0.04, "CNY")
    ark = route(catalog, "seedream-4.0", "ark")
    ark_quote = pricing.quote(ark, 2, PIXELS, {})
    assert pricing.reported(ark, [{"generated_images": 2, "output_tokens": 8000}], ark_quote) == (0.4, "CNY")
    gemini = route(catalog, "gemini-2.5-flash-image", "gemini")
    meta = {
        "promptTokenCount": 10,
        "candidatesTokenCount": 1290,
        "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
    }
    amount, currency = pricing.reported(gemini, [meta], quote) or (0, "")
    assert amount == pytest.approx((10 * 0.3 + 1290 * 30) / 1e6) and currency == "USD"
    assert pricing.reported(gpt, [{"total_tokens": 0}], quote) is None


def test_modelgate_usage_lists_each_image_priced_by_the_table():
    price = Price(currency="USD", source="x", by={"1024x1024": 0.02, "2048x2048": 0.05})
    from imagegate.pricing import _listed

    usage = {
        "usage": [{"quality": "default", "size": "1024x1024"}, {"quality": "default", "size": "2048x2048"}]
    }
    assert _listed(price, usage) == (pytest.approx(0.07), "USD")


@pytest.mark.parametrize(
    ("budgets", "spent", "action", "said"),
    [
        (Budgets(), 0.0, "go", ""),
        (Budgets(daily=1.0), 0.5, "refuse", "only $0.50 is left of today's budget of $1.00 ($0.50 spent)"),
        (Budgets(daily=1.0), 0.2, "go", ""),
        (Budgets(call=0.5), 0.0, "refuse", "over the per-call budget of $0.50"),
        (Budgets(confirm_above=0.5), 0.0, "confirm", "4 images on gpt-image-1 high 1024x1024, about $0.67"),
    ],
)
def test_the_budget_rules(catalog, budgets, spent, action, said):
    quote = Pricing().quote(route(catalog, "gpt-image-1", "openai"), 4, PIXELS, {"quality": "high"})
    verdict = judge(quote, spent, budgets)
    assert verdict.action == action and said in verdict.text


@pytest.mark.parametrize(("unknown", "action"), [("allow", "go"), ("refuse", "refuse")])
def test_an_unknown_price_follows_the_setting(catalog, unknown, action):
    quote = Pricing().quote(route(catalog, "gpt-image-1", "mixroute"), 1, PIXELS, {})
    verdict = judge(quote, 0.0, Budgets(daily=5.0, unknown=unknown))
    assert verdict.action == action and f"IMAGEGATE_UNKNOWN_PRICE={unknown}" in verdict.text


@pytest.mark.parametrize(
    ("amount", "rounded", "text"),
    [(0.167, False, "$0.167"), (0.668, True, "$0.67"), (0.04, False, "$0.04"), (0.011, True, "$0.011")],
)
def test_money(amount, rounded, text):
    assert money(amount, "USD", rounded) == text
