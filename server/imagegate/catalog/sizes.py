"""Size arithmetic for the four size-rule shapes: resolving what an agent asked for
(pixels, a ratio, a tier, "auto" or nothing) into the size a route produces, and
describing a rule compactly for schemas, errors and listings. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from ..errors import InvalidRequest, shown
from .spec import PIXELS, RATIO, SizeRule

__all__ = [
    "ResolvedSize",
    "SizeOption",
    "allowed_text",
    "describe_rule",
    "nominal_ratio",
    "ratio_value",
    "resolve_size",
    "rule_options",
    "rule_ratios",
    "rule_tiers",
]

STANDARD_RATIOS = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "9:21",
    "1:2", "2:1", "1:3", "3:1", "1:4", "4:1", "1:8", "8:1", "3:7", "7:3",
)  # fmt: skip
NOMINAL_TOLERANCE = 0.03
"""Vendors name 1344x768 "16:9" (1.75 vs 1.78): a size within 3 % of a standard ratio carries its name."""


@dataclass(frozen=True, slots=True)
class SizeOption:
    """One pixel size a route offers, with the ratio and tier it is listed under."""

    width: int
    height: int
    ratio: str
    tier: str | None = None

    @property
    def pixels(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class ResolvedSize:
    """The size a call will ask the upstream for. Unknown parts are None: a tier alone lets
    the upstream pick pixels, a ratio alone lets it pick the scale, nothing lets it decide."""

    width: int | None = None
    height: int | None = None
    ratio: str | None = None
    tier: str | None = None
    auto: bool = False

    @property
    def pixels(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None

    def label(self) -> str:
        if self.auto:
            return "auto"
        parts = [p for p in (self.pixels, self.ratio if not self.pixels else None, self.tier) if p]
        return " ".join(parts) or "upstream default"


@functools.cache
def ratio_value(ratio: str) -> Fraction:
    """ "16:9" as the number 16/9."""
    m = RATIO.match(ratio)
    assert m, ratio
    return Fraction(int(m[1]), int(m[2]))


@functools.cache
def nominal_ratio(width: int, height: int) -> str:
    """The ratio a size is known by: exact if standard, else the standard one within 3 %, else reduced."""
    exact = Fraction(width, height)
    best = min(STANDARD_RATIOS, key=lambda r: abs(math.log(ratio_value(r) / exact)))
    if abs(float(ratio_value(best) / exact) - 1) <= NOMINAL_TOLERANCE:
        return best
    return f"{exact.numerator}:{exact.denominator}"


def _same_ratio(a: str, b: str) -> bool:
    """'32:18' and '16:9' are the same request; compare values, not spellings."""
    return ratio_value(a) == ratio_value(b)


def _option(pixels: str, tier: str | None, ratio: str | None = None) -> SizeOption:
    m = PIXELS.match(pixels)
    assert m, pixels
    w, h = int(m[1]), int(m[2])
    return SizeOption(w, h, ratio or nominal_ratio(w, h), tier)


def rule_options(rule: SizeRule) -> list[SizeOption]:
    """Every explicit size of a rule (list entries, table cells, range presets), tier by tier."""
    if rule.kind == "list":
        opts = [_option(s, None) for s in rule.sizes]
        return opts + [_option(s, t) for t, sizes in rule.tiered.items() for s in sizes]
    cells = rule.table if rule.kind == "table" else rule.presets
    return [_option(s, t, r) for t, row in cells.items() for r, s in row.items()]


def largest_pixels(rule: SizeRule) -> int | None:
    """The most pixels an image under this rule can have, where the rule says (None: ratio-only or
    input-following rules, which leave the pixels to the upstream)."""
    sizes = [o.width * o.height for o in rule_options(rule)]
    if rule.kind == "range":
        sizes.append(rule.max_pixels or (rule.max_width or 0) * (rule.max_height or rule.max_width or 0))
    return max(sizes, default=None) or None


def rule_tiers(rule: SizeRule) -> list[str]:
    """The resolution tiers a rule knows, in the order the data lists them."""
    seen = list(rule.tiered) + list(rule.table) + list(rule.presets) + list(rule.tiers)
    return list(dict.fromkeys(seen))


def rule_ratios(rule: SizeRule) -> list[str]:
    """The aspect ratios a rule names explicitly (empty for a pure pixel range)."""
    return list(dict.fromkeys([o.ratio for o in rule_options(rule)] + list(rule.ratios)))


def _ratio_span(rule: SizeRule) -> tuple[Fraction, Fraction] | None:
    if rule.min_ratio and rule.max_ratio:
        return ratio_value(rule.min_ratio), ratio_value(rule.max_ratio)
    return None


def _fmt_px(n: int) -> str:
    return f"{n / 1_000_000:.1f} MP" if n >= 1_000_000 else f"{n} px"


def _bounds(name: str, lo: int | None, hi: int | None, fmt: Callable[[int], str] = str) -> str | None:
    if lo and hi:
        return f"{name} {fmt(lo)}–{fmt(hi)}"
    if hi:
        return f"{name} ≤{fmt(hi)}"
    return f"{name} ≥{fmt(lo)}" if lo else None


def _range_text(rule: SizeRule) -> str:
    parts = [
        _bounds("width", rule.min_width, rule.max_width),
        _bounds("height", rule.min_height, rule.max_height),
        _bounds("total", rule.min_pixels, rule.max_pixels, _fmt_px),
        f"multiples of {rule.multiple_of}" if rule.multiple_of > 1 else None,
        f"ratio {rule.min_ratio}..{rule.max_ratio}" if _ratio_span(rule) else None,
    ]
    return "WxH, " + ", ".join(p for p in parts if p)


def describe_rule(rule: SizeRule) -> str:
    """A compact one-line statement of a rule, for schemas and listings."""
    tiers = rule_tiers(rule)
    if rule.kind in ("list", "table"):
        sizes = [o.pixels for o in rule_options(rule)] + (["auto"] if rule.auto else [])
        if len(sizes) <= 8:
            return "|".join(dict.fromkeys(sizes))
        return f"ratios {','.join(rule_ratios(rule))} at {','.join(tiers) or 'one tier'}"
    if rule.kind == "input":
        return "size follows the input image"
    if rule.kind == "ratio":
        text = "ratios " + (",".join(rule.ratios) or f"{rule.min_ratio}..{rule.max_ratio}")
        return text + (f"; resolution {','.join(tiers)}" if tiers else "")
    text = _range_text(rule)
    if tiers:
        text += f"; resolution {','.join(tiers)}"
    if rule.ratios:
        text += f"; or ratios {','.join(rule.ratios)}"
    return text


def allowed_text(rule: SizeRule, tier: str | None = None) -> str:
    """What to tell an agent that asked for a size the rule refuses."""
    if rule.kind in ("list", "table"):
        opts = [o for o in rule_options(rule) if tier is None or o.tier == tier]
        pixels = list(dict.fromkeys(o.pixels for o in opts)) + (["auto"] if rule.auto else [])
        ratios = list(dict.fromkeys(o.ratio for o in opts))
        return f"one of {', '.join(pixels)} or a ratio {', '.join(ratios)}"
    if rule.kind in ("ratio", "input"):
        return describe_rule(rule) if rule.kind == "ratio" else "no size (it follows the input image)"
    text = _range_text(rule)
    presets = [o.ratio for o in rule_options(rule) if tier is None or o.tier == tier]
    ratios = list(dict.fromkeys(presets + rule.ratios))
    return text + (f", or a ratio {', '.join(ratios)}" if ratios else "")


def _refuse(argument: str, value: object, allowed: str, where: str, why: str = "") -> InvalidRequest:
    reason = why or f"is not offered by {where}"
    return InvalidRequest(
        argument, shown(value), allowed, f'{argument} "{shown(value)}" {reason}; use {allowed}'
    )


def _check_tier(rule: SizeRule, resolution: str | None, where: str) -> None:
    tiers = rule_tiers(rule)
    if resolution is None or resolution in tiers:
        return
    allowed = ", ".join(tiers) if tiers else "no resolution (this route has no tiers; give size only)"
    raise _refuse("resolution", resolution, allowed, where)


def _pick_explicit(rule: SizeRule, ratio: str, tier: str | None) -> SizeOption | None:
    matches = [o for o in rule_options(rule) if _same_ratio(o.ratio, ratio)]
    if tier is not None:
        return next((o for o in matches if o.tier == tier), None)
    preferred = [o for o in matches if o.tier in (rule.default_tier, None)]
    return next(iter(preferred or matches), None)


def _resolve_ratio(rule: SizeRule, ratio: str, tier: str | None, where: str) -> ResolvedSize:
    if option := _pick_explicit(rule, ratio, tier):
        return ResolvedSize(option.width, option.height, option.ratio, option.tier)
    named = next((r for r in rule.ratios if _same_ratio(r, ratio)), None)
    in_list = named is not None
    ratio = named or ratio
    span = _ratio_span(rule)
    in_span = span is not None and span[0] <= ratio_value(ratio) <= span[1]
    passthrough = rule.kind == "ratio" or (rule.kind == "range" and not rule.presets)
    if (in_list or in_span) and (passthrough or in_list):
        return ResolvedSize(ratio=ratio, tier=tier)
    raise _refuse("size", ratio, allowed_text(rule, tier), where)


def _range_problem(rule: SizeRule, w: int, h: int) -> str | None:
    checks = [
        (rule.min_width is not None and w < rule.min_width, f"is narrower than {rule.min_width}"),
        (rule.max_width is not None and w > rule.max_width, f"is wider than {rule.max_width}"),
        (rule.min_height is not None and h < rule.min_height, f"is lower than {rule.min_height}"),
        (rule.max_height is not None and h > rule.max_height, f"is taller than {rule.max_height}"),
        (rule.min_pixels is not None and w * h < rule.min_pixels, f"has fewer than {rule.min_pixels} pixels"),
        (rule.max_pixels is not None and w * h > rule.max_pixels, f"has more than {rule.max_pixels} pixels"),
        (w % rule.multiple_of or h % rule.multiple_of, f"is not a multiple of {rule.multiple_of}"),
    ]
    if span := _ratio_span(rule):
        checks.append(
            (not span[0] <= Fraction(w, h) <= span[1], f"is outside ratio {rule.min_ratio}..{rule.max_ratio}")
        )
    return next((why for bad, why in checks if bad), None)


def _resolve_pixels(rule: SizeRule, w: int, h: int, tier: str | None, where: str) -> ResolvedSize:
    pixels = f"{w}x{h}"
    if rule.kind == "ratio":
        raise _refuse(
            "size", pixels, allowed_text(rule), where, f"is pixels, but {where} takes only aspect ratios"
        )
    options = [o for o in rule_options(rule) if o.pixels == pixels]
    if rule.kind in ("list", "table"):
        match = next((o for o in options if tier is None or o.tier == tier), None)
        if match is None:
            raise _refuse("size", pixels, allowed_text(rule, tier), where)
        return ResolvedSize(w, h, match.ratio, match.tier)
    if problem := _range_problem(rule, w, h):
        raise _refuse("size", pixels, allowed_text(rule), where, f"{problem} ({where})")
    return ResolvedSize(w, h, nominal_ratio(w, h), options[0].tier if options else None)


def _resolve_default(rule: SizeRule, tier: str | None, where: str) -> ResolvedSize:
    if tier is not None and rule.kind == "range" and tier in rule.tiers:
        return ResolvedSize(tier=tier)  # the upstream picks pixels for a bare tier (Seedream "2K")
    if rule.default is None:
        return ResolvedSize(tier=tier)  # the upstream picks the shape (Gemini: the input's aspect)
    if tier is None:
        return resolve_size(rule, rule.default, rule.default_tier, where)
    if RATIO.match(rule.default):
        return resolve_size(rule, rule.default, tier, where)
    default = resolve_size(rule, rule.default, None, where)
    return resolve_size(rule, default.ratio or "1:1", tier, where)


def resolve_size(rule: SizeRule, size: str | None, resolution: str | None, where: str) -> ResolvedSize:
    """Resolve `size` (WxH, W:H, "auto" or None) and `resolution` (a tier or None) against a rule.

    Raises InvalidRequest naming the argument, the value and what `where` (e.g. "gpt-image-1 via
    openai") accepts. Never substitutes a different size for the one asked.
    """
    _check_tier(rule, resolution, where)
    if size is None:
        return _resolve_default(rule, resolution, where)
    if rule.kind == "input":
        if size != "auto":
            raise _refuse(
                "size", size, allowed_text(rule), where, f"cannot be set: {where} follows the input image"
            )
        return ResolvedSize(auto=True)
    if size == "auto":
        if not rule.auto:
            raise _refuse("size", size, allowed_text(rule, resolution), where)
        return ResolvedSize(auto=True, tier=resolution)
    if m := PIXELS.match(size):
        return _resolve_pixels(rule, int(m[1]), int(m[2]), resolution, where)
    if (m := RATIO.match(size)) and int(m[1]) > 0 and int(m[2]) > 0:
        return _resolve_ratio(rule, size, resolution, where)
    raise _refuse(
        "size", size, allowed_text(rule, resolution), where, 'is neither "WxH" pixels nor a "W:H" ratio'
    )
