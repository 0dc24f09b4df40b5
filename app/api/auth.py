"""API keys: each key may use some collections, or all ('*'); compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from app.api.errors import Forbidden, Unauthorized

ALL_COLLECTIONS = "*"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the collections their key may use (None: every one) and an id safe to log."""

    collections: frozenset[str] | None
    key_id: str  # "open" without keys, else the first 12 hex digits of the key's sha256

    @property
    def sees_all(self) -> bool:
        """The key may use every collection, and what spans them (metrics)."""
        return self.collections is None

    def may_use(self, collection: str) -> bool:
        """Whether this caller may use the collection."""
        return self.collections is None or collection in self.collections

    def check(self, collection: str) -> None:
        """Forbidden (403) unless this caller may use the collection."""
        if not self.may_use(collection):
            raise Forbidden(collection)

    def visible(self, names: list[str]) -> list[str]:
        """The collection names this caller may see."""
        return [n for n in names if self.may_use(n)]


OPEN = Caller(None, "open")


def key_id(api_key: str) -> str:
    """A key's name in logs, without the secret: the first 12 hex digits of its sha256."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class KeyRing:
    """The configured keys and what each may use; with none configured the service is open."""

    def __init__(self, keys: dict[str, list[str]]) -> None:
        # One Caller per key, made once: a request only compares keys.
        self._keys = {
            key.encode(): Caller(None if ALL_COLLECTIONS in allowed else frozenset(allowed), key_id(key))
            for key, allowed in keys.items()
            if key
        }

    @property
    def open(self) -> bool:
        """No key configured: every request is allowed (the service then binds to loopback only)."""
        return not self._keys

    def caller(self, presented: str | None) -> Caller:
        """The caller a presented key stands for, or Unauthorized (401)."""
        if self.open:
            return OPEN
        if presented is None:
            raise Unauthorized()
        given = presented.encode()
        found: Caller | None = None
        # Compare with every key, without stopping at a match: the time taken tells nothing.
        for key, caller in self._keys.items():
            if hmac.compare_digest(given, key):
                found = caller
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key a request presents, as the auth dependency reads it: X-API-Key, else a bearer token."""
    key = headers.get(b"x-api-key")
    if key is not None:
        return key.decode("latin-1")
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def has_valid_key(keys: KeyRing, headers: dict[bytes, bytes]) -> bool:
    """The request may be served at all (a valid key, or no keys configured)."""
    try:
        keys.caller(presented_key(headers))
    except Unauthorized:
        return False
    return True
