"""A small client of a running faceverify service (standard library only): JSON bodies, photos as
base64, the service's error shape read back."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


def b64(data: bytes) -> str:
    """A photo as the service's JSON bodies carry it."""
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Answer:
    """A status and the JSON body of one answer."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def error(self) -> dict[str, Any]:
        """The error object of an error answer ({} otherwise)."""
        error = self.body.get("error")
        return error if isinstance(error, dict) else {}


class ServiceClient:
    """POSTs JSON to a faceverify service with an API key; network failures raise OSError."""

    def __init__(self, url: str, key: str | None = None, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def post(self, path: str, body: dict[str, Any]) -> Answer:
        """One JSON POST, and what came back (an error status is an Answer, not an exception)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            headers["X-API-Key"] = self.key
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return Answer(response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"error": {"code": "http_error", "message": raw.decode(errors="replace")[:200]}}
            return Answer(error.code, parsed if isinstance(parsed, dict) else {})
