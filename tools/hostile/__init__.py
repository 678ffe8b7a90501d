"""A hostile upstream for imagegate's tests (developer tooling; it does not ship).

A loopback HTTP/1.1 proxy on raw asyncio sockets in front of the emulator (tools/emulator): every
request goes through to the emulator unchanged, except those matching an armed rule, which get a
fault instead: a raw reply, a redirect, deep nesting, a JSON edit of the real reply, a cut-off,
dripping or endless body, a gzip bomb. The emulator's absolute URLs are rewritten to the proxy's,
so poll and result URLs come back through it. A trap on 127.0.0.2 records any connection.

    with start_thread() as emulator, start_hostile(emulator) as hostile, start_trap() as trap:
        hostile.arm(DeepNesting(), provider="openai", path="/images/generations")
        hostile.arm(Redirect(trap.url()), path="^/files/")
        env = {"OPENAI_BASE_URL": hostile.base_url("openai"), ...}
        ... call the server ...; assert hostile.fired == ["DeepNesting"] and trap.hits == []
"""

from tools.hostile.faults import (
    NOT_AN_IMAGE,
    Chain,
    DeepNesting,
    Delivery,
    EchoCredential,
    ExtraItems,
    Fault,
    HugeString,
    Mutate,
    Raw,
    Redirect,
    ReplaceImage,
    WrongType,
    error_body,
)
from tools.hostile.paths import image_format, image_paths, leaf_paths
from tools.hostile.proxy import Exchange, HostileProxy, Rule, start_hostile
from tools.hostile.streams import Drip, Endless, GzipBomb, Truncate, gzip_bomb
from tools.hostile.trap import Hit, Trap, start_trap
from tools.hostile.wire import Reply, Request

__all__ = [
    "NOT_AN_IMAGE",
    "Chain",
    "DeepNesting",
    "Delivery",
    "Drip",
    "EchoCredential",
    "Endless",
    "Exchange",
    "ExtraItems",
    "Fault",
    "GzipBomb",
    "Hit",
    "HostileProxy",
    "HugeString",
    "Mutate",
    "Raw",
    "Redirect",
    "ReplaceImage",
    "Reply",
    "Request",
    "Rule",
    "Trap",
    "Truncate",
    "WrongType",
    "error_body",
    "gzip_bomb",
    "image_format",
    "image_paths",
    "leaf_paths",
    "start_hostile",
    "start_trap",
]
