"""Size rules: each shape resolves what it should and refuses the rest, naming what is allowed."""

from __future__ import annotations

import pytest

from imagegate.catalog.sizes import describe_rule, nominal_ratio, resolve_size, rule_tiers
from imagegate.catalog.spec import SizeRule
from imagegate.errors import InvalidRequest

LIST = SizeRule(kind="list", sizes=["1024x1024", "1536x1024", "1024x1536"], auto=True, default="auto")
TABLE = SizeRule(
    kind="table",
    table={
        "1K": {"1:1": "1024x1024", "16:9": "1376x768"},
        "2K": {"1:1": "2048x2048", "16:9": "2752x1536"},
    },
    default="1:1",
    default_tier="1K",
)
RANGE = SizeRule(
    kind="range",
    min_pixels=921_600,
    max_pixels=16_777_216,
    min_ratio="1:16",
    max_ratio="16:1",
    tiers=["1K", "2K", "4K"],
    presets={"2K": {"1:1": "2048x2048", "16:9": "2560x1440"}},
    default="2048x2048",
)
MULTIPLE = SizeRule(
    kind="range", min_width=256, max_width=1440, min_height=256, max_height=1440, multiple_of=32
)
RATIO = SizeRule(kind="ratio", min_ratio="3:7", max_ratio="7:3")
RATIOS = SizeRule(kind="ratio", ratios=["1:1", "16:9", "9:16"], default="1:1")
INPUT = SizeRule(kind="input")
UNDEFAULTED = SizeRule(kind="table", table={"1K": {"1:1": "1024x1024"}, "2K": {"1:1": "2048x2048"}})


@pytest.mark.parametrize(
    ("rule", "size", "tier", "expected"),
    [
        (LIST, "1536x1024", None, (1536, 1024, "3:2", None)),
        (LIST, "2:3", None, (1024, 1536, "2:3", None)),
        (TABLE, "16:9", None, (1376, 768, "16:9", "1K")),
        (TABLE, "16:9", "2K", (2752, 1536, "16:9", "2K")),
        (TABLE, "2752x1536", None, (2752, 1536, "16:9", "2K")),
        (TABLE, None, "2K", (2048, 2048, "1:1", "2K")),
        (RANGE, "16:9", "2K", (2560, 1440, "16:9", "2K")),
        (RANGE, "3000x2000", None, (3000, 2000, "3:2", None)),
        (RANGE, None, "4K", (None, None, None, "4K")),
        (MULTIPLE, "1024x768", None, (1024, 768, "4:3", None)),
        (RATIO, "21:9", None, (None, None, "21:9", None)),
        (RATIOS, "32:18", None, (None, None, "16:9", None)),
        (RATIOS, None, None, (None, None, "1:1", None)),
    ],
)
def test_resolves_what_the_rule_offers(rule, size, tier, expected):
    got = resolve_size(rule, size, tier, "m via p")
    assert (got.width, got.height, got.ratio, got.tier) == expected


def test_auto_and_default():
    assert resolve_size(LIST, None, None, "m via p").auto
    assert resolve_size(LIST, "auto", None, "m via p").auto
    assert resolve_size(RANGE, None, None, "m via p").pixels == "2048x2048"
    assert resolve_size(MULTIPLE, None, None, "m via p").label() == "upstream default"
    assert resolve_size(INPUT, None, None, "m via p").label() == "upstream default"
    assert resolve_size(INPUT, "auto", None, "m via p").auto
    assert (
        resolve_size(UNDEFAULTED, None, "2K", "m via p").tier == "2K"
    )  # the upstream keeps the input's aspect


@pytest.mark.parametrize(
    ("rule", "size", "tier", "argument", "fragment"),
    [
        (
            LIST,
            "1000x1000",
            None,
            "size",
            "use one of 1024x1024, 1536x1024, 1024x1536, auto or a ratio 1:1, 3:2, 2:3",
        ),
        (LIST, "16:9", None, "size", "not offered by m via p"),
        (LIST, None, "2K", "resolution", "no resolution"),
        (TABLE, "auto", None, "size", "one of 1024x1024"),
        (TABLE, "1024x1024", "2K", "size", "one of 2048x2048, 2752x1536"),
        (TABLE, "4:3", None, "size", "ratio 1:1, 16:9"),
        (TABLE, None, "4K", "resolution", "1K, 2K"),
        (RANGE, "800x800", None, "size", "fewer than 921600 pixels"),
        (RANGE, "5000x5000", None, "size", "more than 16777216 pixels"),
        (RANGE, "4:3", "2K", "size", "ratio 1:1, 16:9"),
        (MULTIPLE, "1000x768", None, "size", "not a multiple of 32"),
        (MULTIPLE, "1472x768", None, "size", "wider than 1440"),
        (RATIO, "1024x1024", None, "size", "takes only aspect ratios"),
        (RATIO, "1:3", None, "size", "ratios 3:7..7:3"),
        (RATIOS, "4:3", None, "size", "1:1,16:9,9:16"),
        (LIST, "big", None, "size", 'neither "WxH" pixels nor a "W:H" ratio'),
        (RATIOS, "16:0", None, "size", 'neither "WxH" pixels nor a "W:H" ratio'),
        (INPUT, "1024x1024", None, "size", "cannot be set: m via p follows the input image"),
        (INPUT, "1:1", None, "size", "no size (it follows the input image)"),
    ],
)
def test_refuses_with_the_argument_and_what_is_allowed(rule, size, tier, argument, fragment):
    with pytest.raises(InvalidRequest) as caught:
        resolve_size(rule, size, tier, "m via p")
    assert caught.value.argument == argument
    assert fragment in caught.value.message


def test_nominal_ratio_names_vendor_sizes():
    assert nominal_ratio(1344, 768) == "16:9"
    assert nominal_ratio(1536, 672) == "21:9"
    assert nominal_ratio(1000, 333) == "3:1"
    assert nominal_ratio(1000, 450) == "20:9"


def test_describe_and_tiers():
    assert describe_rule(LIST) == "1024x1024|1536x1024|1024x1536|auto"
    assert "multiples of 32" in describe_rule(MULTIPLE)
    assert rule_tiers(RANGE) == ["2K", "1K", "4K"]


def test_a_rule_missing_its_fields_is_refused():
    with pytest.raises(ValueError, match="needs table"):
        SizeRule(kind="table")
