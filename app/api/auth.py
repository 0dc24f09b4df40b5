"""API keys: each key may use some collections, or all ('*'); compared in constant time."""

from __future__ import annotations

import hmac

from app.api.errors import Forbidden, Unauthorized

ALL_COLLECTIONS = "*"


class KeyRing:
    """The configured keys and what each may use; with none configured the service is open."""

    def __init__(self, keys: dict[str, list[str]]) -> None:
        self._keys = {key.encode(): frozenset(collections) for key, collections in keys.items() if key}

    @property
    def open(self) -> bool:
        """No key configured: every request is allowed (the service then binds to loopback only)."""
        return not self._keys

    def _collections_of(self, presented: str | None) -> frozenset[str]:
        if presented is None:
            raise Unauthorized()
        given = presented.encode()
        found: frozenset[str] | None = None
        # Compare with every key, without stopping at a match: the time taken tells nothing.
        for key, collections in self._keys.items():
            if hmac.compare_digest(given, key):
                found = collections
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found

    def check(self, presented: str | None, collection: str | None) -> None:
        """Allow the request, or raise Unauthorized / Forbidden."""
        if self.open:
            return
        allowed = self._collections_of(presented)
        if collection is not None and ALL_COLLECTIONS not in allowed and collection not in allowed:
            raise Forbidden(collection)

    def visible(self, presented: str | None, names: list[str]) -> list[str]:
        """The collection names this key may see."""
        if self.open:
            return names
        allowed = self._collections_of(presented)
        return names if ALL_COLLECTIONS in allowed else [n for n in names if n in allowed]
