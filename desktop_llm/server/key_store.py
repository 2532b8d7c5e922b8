"""The local server's API key, kept in the OS keyring like the Hub token (never in a settings file or log)."""

from __future__ import annotations

from desktop_llm.hub.token_store import TokenStore


class ServerKeyStore(TokenStore):
    KEY = "local-server-api-key"
