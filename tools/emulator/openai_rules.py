"""OpenAI Images request rules (shared/providers/openai.md §2–§5, §7): the per-model table and field checks.

Each check raises core.ApiError with OpenAI's own message, `param` and `code`; openai_images.py decides which
checks a provider applies. Nothing here builds replies or knows HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from tools.emulator.core import ApiError, FilePart
from tools.emulator.images import ImageInfo

__all__ = [
    "DALL_E_2",
    "DALL_E_3",
    "DEFAULT_SIZE",
    "MB",
    "RULES",
    "ModelRule",
    "bad_request",
    "check_fields",
    "check_file",
    "check_inputs",
    "check_mask",
    "check_strict_inputs",
    "choice",
    "integer",
    "loose_size",
    "missing",
    "prompt_of",
    "rule_for",
    "strict_size",
]

MB = 1024 * 1024
DEFAULT_SIZE = (1024, 1024)  # what `auto` or a missing size renders
MAX_LOOSE_EDGE = 8192  # gateways take any WxH; this only keeps the renderer's memory sane
GPT_INPUT_MIMES = ("image/jpeg", "image/png", "image/webp")  # in the real error message's order (§7)

_COMMON = frozenset({"model", "prompt", "n", "size", "quality", "user"})
_GPT_OUTPUT = frozenset({"background", "output_format", "output_compression", "stream", "partial_images"})


@dataclass(frozen=True)
class ModelRule:
    """What one OpenAI model accepts (§2–§5)."""

    sizes: tuple[str, ...]  # empty: gpt-image-2's free WxH rule, plus `auto`
    qualities: tuple[str, ...]
    prompt_max: int
    generate_fields: frozenset[str]
    edit_fields: frozenset[str] = frozenset()  # empty: no edits
    max_n: int = 10
    gpt: bool = True  # GPT image model: base64 only; the reply adds usage, size, quality, ...
    input_mimes: tuple[str, ...] = GPT_INPUT_MIMES
    max_images: int = 16
    max_image_bytes: int = 50 * MB
    square_png: bool = False  # dall-e-2 edits/variations: exactly one square PNG < 4 MB


GPT_IMAGE = ModelRule(
    sizes=("1024x1024", "1536x1024", "1024x1536", "auto"),
    qualities=("low", "medium", "high", "auto"),
    prompt_max=32000,
    generate_fields=_COMMON | _GPT_OUTPUT | {"moderation"},  # moderation: generations only (gotcha 10)
    edit_fields=_COMMON | _GPT_OUTPUT | {"input_fidelity"},
)
DALL_E_2 = ModelRule(
    sizes=("256x256", "512x512", "1024x1024"),
    qualities=("standard", "auto"),
    prompt_max=1000,
    generate_fields=_COMMON | {"response_format"},
    edit_fields=_COMMON | {"response_format"},
    gpt=False,
    input_mimes=("image/png",),
    max_images=1,
    max_image_bytes=4 * MB,
    square_png=True,
)
DALL_E_3 = ModelRule(
    sizes=("1024x1024", "1792x1024", "1024x1792"),
    qualities=("standard", "hd", "auto"),
    prompt_max=4000,
    generate_fields=_COMMON | {"response_format", "style"},
    max_n=1,
    gpt=False,
)
RULES: dict[str, ModelRule] = {
    "gpt-image-2": replace(GPT_IMAGE, sizes=()),
    "gpt-image-2-2026-04-21": replace(GPT_IMAGE, sizes=()),
    # GPT Image 2.5 (gateways' launch notes, UNCONFIRMED): gpt-image-2's rule plus quality xhigh and max.
    **{
        name: replace(GPT_IMAGE, sizes=(), qualities=(*GPT_IMAGE.qualities, "xhigh", "max"))
        for base in ("gpt-image-2.5-flare", "gpt-image-2.5-sunburst")
        for name in (base, f"{base}-2026-09-08")
    },
    "gpt-image-1.5": GPT_IMAGE,
    "gpt-image-1": GPT_IMAGE,
    "gpt-image-1-mini": replace(GPT_IMAGE, edit_fields=GPT_IMAGE.edit_fields - {"input_fidelity"}),
    "chatgpt-image-latest": GPT_IMAGE,  # generation support UNCONFIRMED (§5): accepted
    "dall-e-3": DALL_E_3,
    "dall-e-2": DALL_E_2,
}


def rule_for(model: str) -> ModelRule:
    """The rule for `model`; an allow-listed id the table lacks behaves like gpt-image-1."""
    return RULES.get(model, GPT_IMAGE)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 invalid_request_error."""
    return ApiError(400, message, param=param, code=code)


def missing(name: str) -> ApiError:
    return bad_request(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


def check_fields(names: Iterable[str], allowed: frozenset[str]) -> None:
    """OpenAI rejects any field the model does not take, e.g. response_format to a GPT image model (§7)."""
    for name in names:
        if name not in allowed:
            raise bad_request(f"Unknown parameter: '{name}'.", name, "unknown_parameter")


def prompt_of(body: dict[str, Any], limit: int | None) -> str:
    """The required `prompt`, at most `limit` characters."""
    prompt = body.get("prompt")
    if prompt is None:
        raise missing("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_request("Invalid 'prompt': expected a non-empty string.", "prompt", "invalid_value")
    if limit is not None and len(prompt) > limit:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}, but got a "
            f"string with length {len(prompt)} instead."
        )
        raise bad_request(message, "prompt", "string_above_max_length")
    return prompt


def choice(body: dict[str, Any], name: str, allowed: tuple[Any, ...], default: Any) -> Any:
    """`body[name]` (or `default`), which must be one of `allowed`."""
    value = body.get(name, default)
    if value not in allowed:
        shown = _listing(item for item in allowed if isinstance(item, str))
        raise bad_request(f"Invalid value: '{value}'. Supported values are: {shown}.", name, "invalid_value")
    return value


def integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """`body[name]` (or `default`) as an integer in [low, high]; multipart sends it as text."""
    value = body.get(name, default)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"Invalid type for '{name}': expected an integer.", name, "invalid_type")
    if value < low:
        raise _out_of_range(name, value, "below minimum", f">= {low}", "integer_below_min_value")
    if value > high:
        raise _out_of_range(name, value, "above maximum", f"<= {high}", "integer_above_max_value")
    return value


def strict_size(value: Any, rule: ModelRule) -> tuple[int, int]:
    """The pixel size `rule` allows for `value`; `auto` or no size → 1024x1024 (§5)."""
    if value is None or (value == "auto" and "auto" in (rule.sizes or ("auto",))):
        return DEFAULT_SIZE
    if rule.sizes:
        choice({"size": value}, "size", rule.sizes, None)
        return _parse_size(value) or DEFAULT_SIZE
    parsed = _parse_size(value)
    if parsed is None or not _fits_gpt_image_2(*parsed):
        message = (
            f"Invalid size '{value}': width and height must be multiples of 16, at most 3840, with an aspect "
            "ratio within 3:1."
        )
        raise bad_request(message, "size", "invalid_value")
    return parsed


def loose_size(value: Any) -> tuple[int, int]:
    """A gateway's size: any WIDTHxHEIGHT; `auto` or no size → 1024x1024."""
    parsed = DEFAULT_SIZE if value in (None, "auto") else _parse_size(value)
    if parsed is None or max(parsed) > MAX_LOOSE_EDGE:
        raise bad_request(f"Invalid size '{value}': expected WIDTHxHEIGHT.", "size", "invalid_value")
    return parsed


def check_strict_inputs(inputs: list[FilePart], rule: ModelRule) -> ImageInfo:
    """OpenAI's input-image rules (§3–§5); returns the first image, which a mask must match."""
    first = check_inputs(inputs, rule.input_mimes, rule.max_image_bytes, rule.max_images)
    if rule.square_png and (first.format != "PNG" or first.width != first.height):
        raise bad_request(
            "Invalid input image: dall-e-2 takes one square PNG.", inputs[0].name, "invalid_image"
        )
    return first


def check_inputs(
    inputs: list[FilePart], mimes: tuple[str, ...] | None, max_bytes: int, max_images: int
) -> ImageInfo:
    """1..`max_images` files, each passing check_file; returns the first image."""
    if not inputs:
        raise missing("image")
    if len(inputs) > max_images:
        message = f"Invalid 'image': expected at most {max_images} image(s), got {len(inputs)}."
        raise bad_request(message, "image", "too_many_images")
    checked = [check_file(part, mimes, max_bytes) for part in inputs]
    return checked[0]


def check_file(part: FilePart, mimes: tuple[str, ...] | None, max_bytes: int) -> ImageInfo:
    """Declared type (one of `mimes`, or any image/* when None), decodability and size of one file."""
    mime = (part.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if (mime not in mimes) if mimes is not None else not mime.startswith("image/"):
        supported = _listing(mimes or ("image/*",))
        message = f"Invalid file '{part.name}': unsupported mimetype ('{mime}'). Supported file formats are "
        message += f"{supported}."
        raise bad_request(message, part.name, "unsupported_file_mimetype")
    if part.image is None:
        message = f"Invalid file '{part.name}': the file could not be decoded as an image."
        raise bad_request(message, part.name, "invalid_image_file")
    if len(part.data) >= max_bytes:
        message = f"Invalid file '{part.name}': files must be smaller than {max_bytes // MB} MB."
        raise bad_request(message, part.name, "file_too_large")
    return part.image


def check_mask(mask: FilePart, first: ImageInfo) -> None:
    """A PNG with alpha, the first image's dimensions, < 4 MB (gotcha 8)."""
    info = check_file(mask, ("image/png",), 4 * MB)
    if info.format != "PNG" or not info.has_alpha:
        raise bad_request(
            "Invalid 'mask': the mask must be a PNG with an alpha channel.", "mask", "invalid_value"
        )
    if (info.width, info.height) != (first.width, first.height):
        message = (
            f"Invalid 'mask': mask is {info.width}x{info.height} but the image is "
            f"{first.width}x{first.height}; they must match."
        )
        raise bad_request(message, "mask", "invalid_value")


def _out_of_range(name: str, value: int, side: str, bound: str, code: str) -> ApiError:
    message = f"Invalid '{name}': integer {side} value. Expected a value {bound}, but got {value} instead."
    return bad_request(message, name, code)


def _fits_gpt_image_2(width: int, height: int) -> bool:
    # §5: both edges divisible by 16, ratio 1:3…3:1, edges ≤ 3840 (pixel caps are UNCONFIRMED: not enforced).
    short, long = sorted((width, height))
    return width % 16 == 0 and height % 16 == 0 and 16 <= short and long <= 3840 and long <= 3 * short


def _parse_size(value: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"([1-9]\d{0,4})x([1-9]\d{0,4})", value) if isinstance(value, str) else None
    return (int(match[1]), int(match[2])) if match else None


def _listing(items: Iterable[str]) -> str:
    quoted = [f"'{item}'" for item in items]
    if len(quoted) < 3:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
