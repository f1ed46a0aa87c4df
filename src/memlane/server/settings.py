"""Server settings: limits, rate limits, timeouts, and where keys and the audit log live."""

from __future__ import annotations

import ipaddress
import json
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from memlane import InvalidRequest

__all__ = ["ServerSettings", "is_loopback", "require_auth_or_loopback"]

_ENV = "MEMLANE_SERVER_SETTINGS"


def is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost`` (what ``--no-auth`` may bind to)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_auth_or_loopback(host: str, *, auth: bool) -> None:
    """Refuse to serve without API keys anywhere but loopback (``memlane serve`` and ``memlane mcp``).

    Raises:
        InvalidRequest: ``auth`` is off and ``host`` is not a loopback address.
    """
    if not auth and not is_loopback(host):
        raise InvalidRequest(
            f"--no-auth serves every memory to anyone who can connect, so it binds only to loopback "
            f"(127.0.0.1, ::1, localhost), not {host!r}; create an API key with `memlane keys create` instead"
        )


@dataclass(frozen=True)
class ServerSettings:
    """How the REST server guards itself.

    Args:
        auth: require an API key on every memory endpoint (``--no-auth`` turns it off, loopback only).
        home: where ``keys.db`` and ``audit.log`` live (the memlane home).
        max_body_bytes: larger request bodies get 413 before they are read in full.
        max_import_bytes: the body limit of ``POST /v1/import`` (a whole export file).
        max_messages: messages per add (413 beyond).
        max_text_chars: characters per message, query or update text (413 beyond).
        rate_limit: sustained requests per second per key (a key may carry its own).
        rate_burst: requests a key may make at once before the rate applies (default twice the rate).
        request_timeout: seconds before a request answers 503 RequestTimeout.
        consolidate_every: seconds between scheduled ``consolidate()`` passes over the whole
            store (``--consolidate-every``; None: no scheduled pass). One pass runs at a time
            across every process and server sharing the store (see :mod:`memlane.server.scheduler`).
    """

    auth: bool = True
    home: str = "~/.memlane"
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 512 * 1_048_576
    max_messages: int = 100
    max_text_chars: int = 32_000
    rate_limit: float = 50.0
    rate_burst: float | None = None
    request_timeout: float = 60.0
    consolidate_every: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_import_bytes", "max_messages", "max_text_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"{name} must be a positive integer, got {value!r}")
        for name in ("rate_limit", "request_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise InvalidRequest(f"{name} must be a positive number, got {value!r}")
        every = self.consolidate_every
        number = isinstance(every, int | float) and not isinstance(every, bool)
        if every is not None and not (number and 0 < every < math.inf):
            raise InvalidRequest(f"consolidate_every must be a positive number of seconds, got {every!r}")
        if self.rate_burst is not None and (not isinstance(self.rate_burst, int | float) or self.rate_burst < 1):
            raise InvalidRequest(f"rate_burst must be at least 1, got {self.rate_burst!r}")

    @property
    def keys_path(self) -> Path:
        """The API key file."""
        return Path(self.home).expanduser() / "keys.db"

    @property
    def audit_path(self) -> Path:
        """The audit log (JSON lines)."""
        return Path(self.home).expanduser() / "audit.log"

    def burst_for(self, rate: float) -> float:
        """The bucket size for a key with this rate."""
        return self.rate_burst if self.rate_burst is not None else max(1.0, 2.0 * rate)

    def with_overrides(self, **overrides: Any) -> ServerSettings:
        """A copy with the given fields replaced (``None`` values are ignored).

        Raises:
            InvalidRequest: an unknown setting or a bad value.
        """
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise InvalidRequest(f"unknown server settings {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The environment that hands these settings to worker processes."""
        return {_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> ServerSettings:
        """Settings a parent process put in the environment (defaults when none)."""
        raw = os.environ.get(_ENV)
        return cls(**json.loads(raw)) if raw else cls()
