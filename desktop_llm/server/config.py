"""The local server's settings: where it listens, who may call it, what it logs.

Saved with the app's other settings except the API key, which lives in the OS keyring
(``server/key_store.py``) and is passed in when the server starts. When a key is set, every
request must carry it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from desktop_llm.core.errors import InvalidRequest

DEFAULT_PORT = 8080
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # other addresses must be chosen on purpose, and then need a key
    port: int = DEFAULT_PORT
    allowed_origins: list[str] = field(default_factory=list)  # CORS; empty = browsers on other origins refused
    log_bodies: bool = False  # put message bodies in the request log (off: only method, model, counts, time)
    idle_unload_seconds: int = 600  # free a model the server loaded after this long without requests; 0 = never

    def problem(self, api_key: str | None) -> str | None:
        """What stops the server from starting with this config and key, in words; None when it can start."""
        if not self.host.strip():
            return "Give an address to listen on, for example 127.0.0.1."
        if not 0 <= self.port <= 65535:
            return f"Port {self.port} is not a port number; use 1024 to 65535 (or 0 for any free port)."
        if not is_loopback(self.host) and not api_key:
            return (f"Listening on {self.host} lets other machines call the server; set an API key first "
                    "so only those who have it can.")
        bad = [o for o in self.allowed_origins if o != "*" and not o.startswith(("http://", "https://"))]
        if bad:
            return f"Allowed origin {bad[0]!r} is not an origin; write it like http://localhost:3000 (or * for any)."
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ServerConfig:
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in (data or {}).items() if k in known})
        if not isinstance(config.port, int) or not isinstance(config.allowed_origins, list):
            raise InvalidRequest("The server settings are damaged: port must be a number and origins a list.")
        return config
