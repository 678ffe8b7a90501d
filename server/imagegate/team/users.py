"""Who is calling over HTTP: bearer tokens, each belonging to a named user, held only as hashes.

A team's config file names its users and the SHA-256 of each one's token (`[users.alice]`
`token = "sha256:<hex>"`; `imagegate hash-token` makes the line); `IMAGEGATE_HTTP_TOKEN`, the single
token of before, still works and stands for no user in particular (the output folder's root). A
token is compared as its hash, in constant time, and never kept, logged or echoed: only the name
of the user it belongs to travels on (into the request's ASGI scope, then to the output folder,
the task store and the spend ledger).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["HASH_PREFIX", "MIN_TOKEN_CHARS", "USER_NAME", "Caller", "User", "Users", "hash_token"]

HASH_PREFIX = "sha256:"
USER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
"""A user's name is also their output subfolder: a letter first, never a date or a dot."""
_HEX = re.compile(r"[0-9a-f]{64}")
MIN_TOKEN_CHARS = 16


def hash_token(token: str) -> str:
    """The form a token is stored in: `sha256:` and the hex digest of its UTF-8 bytes."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    """A named user and the hash of their token (never the token)."""

    name: str
    token_hash: str

    def __repr__(self) -> str:
        return f"User({self.name!r})"


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request's token belongs to; `user` None: the single shared token (no subfolder)."""

    user: str | None


@dataclass(frozen=True)
class Users:
    """The tokens the HTTP transport accepts. Empty (no users, no shared token): no token is asked."""

    users: tuple[User, ...] = ()
    shared_hash: str | None = None
    """The hash of IMAGEGATE_HTTP_TOKEN, kept working beside named users."""

    @property
    def required(self) -> bool:
        return bool(self.users) or self.shared_hash is not None

    def identify(self, token: str) -> Caller | None:
        """The caller a presented token belongs to, or None. Every stored hash is compared (in constant
        time), so how long this takes does not tell which user, if any, came close."""
        given = hash_token(token).encode()
        found: Caller | None = None
        for user in self.users:
            if hmac.compare_digest(given, user.token_hash.encode()):
                found = Caller(user.name)
        if self.shared_hash is not None and hmac.compare_digest(given, self.shared_hash.encode()):
            found = found or Caller(None)
        return found

    @classmethod
    def parse(cls, table: dict[str, str], shared_token: str | None, source: str) -> Users:
        """Users from a config file's `[users]` table (name -> "sha256:<hex>") and the shared token."""
        users = []
        for name, stored in table.items():
            where = f"{source}: users.{name}"
            if not USER_NAME.fullmatch(name):
                raise ConfigError(
                    f"{where}: a user name is a letter then letters, digits, _ or - (at most 64)"
                )
            digest = stored.removeprefix(HASH_PREFIX)
            if not stored.startswith(HASH_PREFIX) or not _HEX.fullmatch(digest):
                raise ConfigError(
                    f'{where}: token must be "sha256:" and 64 lowercase hex digits, the hash of the '
                    "token (make it with `imagegate hash-token`), never the token itself"
                )
            users.append(User(name, stored))
        hashes = [u.token_hash for u in users]
        if len(set(hashes)) != len(hashes):
            raise ConfigError(f"{source}: two users have the same token; give each user their own")
        return cls(tuple(users), hash_token(shared_token) if shared_token else None)
