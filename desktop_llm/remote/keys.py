"""API keys of remote providers, kept in the OS keyring like the Hub token (``hub/token_store.py``).

Never in remote_providers.json, a log or a message. With no secure keyring, or when the keyring
fails (locked, D-Bus down), keys are kept in memory for this session only and ``problem`` says so.
"""

from __future__ import annotations

import logging
from typing import Any

from keyring.errors import PasswordDeleteError

from desktop_llm.hub.token_store import open_keyring

log = logging.getLogger(__name__)

NO_SECURE_KEYRING = (
    "No secure keyring (like GNOME Keyring, KWallet, macOS Keychain or Windows Credential Locker) was found, "
    "so remote providers' API keys are kept for this session only."
)


class ProviderKeys:
    """Get, set and clear each provider's API key. ``secure`` is False when keys cannot be kept in a keyring."""

    SERVICE = "desktop-llm"

    def __init__(self, backend: Any = None) -> None:
        self._session: dict[str, str] = {}  # keys the keyring could not hold, for this session
        self._backend, self.secure, _ = open_keyring(backend)
        self.problem: str | None = None if self.secure else NO_SECURE_KEYRING

    def __repr__(self) -> str:
        name = type(self._backend).__name__ if self._backend is not None else None
        return f"ProviderKeys(backend={name}, secure={self.secure})"

    @staticmethod
    def username(provider_id: str) -> str:
        return f"remote-provider:{provider_id}"

    def get(self, provider_id: str) -> str | None:
        """The key: from this session if one was set here, else from the keyring; None when there is none."""
        if provider_id in self._session or not self.secure:
            return self._session.get(provider_id)
        try:
            return self._backend.get_password(self.SERVICE, self.username(provider_id)) or None
        except Exception as exc:  # locked keyring, D-Bus failure, cancelled unlock prompt
            self._fail("read the key from", exc)
            return None

    def set(self, provider_id: str, key: str) -> None:
        """Keep ``key`` (in the keyring when secure; for this session otherwise). An empty key clears it."""
        key = (key or "").strip()
        if not key:
            self.clear(provider_id)
            return
        if self.secure:
            try:
                self._backend.set_password(self.SERVICE, self.username(provider_id), key)
                self._session.pop(provider_id, None)
                return
            except Exception as exc:
                self._fail("store the key in", exc, key)
        self._session[provider_id] = key

    def clear(self, provider_id: str) -> None:
        """Forget the key, in the keyring and in this session (when a provider is removed, or its key emptied)."""
        self._session.pop(provider_id, None)
        if not self.secure:
            return
        try:
            self._backend.delete_password(self.SERVICE, self.username(provider_id))
        except Exception as exc:
            if isinstance(exc, PasswordDeleteError):  # there was none: nothing to forget
                return
            self._fail("remove the key from", exc)

    def _fail(self, action: str, exc: BaseException, key: str | None = None) -> None:
        """Switch to session-only with a message that says what failed (never with the key in it)."""
        detail = str(exc).strip()
        if key and key in detail:
            detail = detail.replace(key, "…")
        self.secure = False
        self.problem = (
            f"The system keyring could not {action} it ({type(exc).__name__}{': ' + detail if detail else ''}), "
            "so remote providers' API keys are kept for this session only. Unlock the keyring or check it is "
            "running, then restart the app and enter the keys again."
        )
        log.warning("Keyring failed (%s): %s", action, type(exc).__name__)
