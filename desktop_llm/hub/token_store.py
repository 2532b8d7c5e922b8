"""The Hub token, kept in the OS keyring (GNOME Keyring, KWallet, macOS Keychain, Windows Credential Locker).

Never in a settings file, a log or a message. With no secure keyring, or when the keyring fails (locked,
D-Bus down), the token is kept in memory for this session only and ``problem`` says so.
"""

from __future__ import annotations

import logging
from typing import Any

from keyring.errors import PasswordDeleteError

log = logging.getLogger(__name__)

NO_SECURE_KEYRING = (
    "No secure keyring (like GNOME Keyring, KWallet, macOS Keychain or Windows Credential Locker) was found, "
    "so the token is kept for this session only."
)


class TokenStore:
    """Get, set and clear the Hub token. ``secure`` is False when it cannot be kept in a secure keyring."""

    SERVICE = "desktop-llm"
    KEY = "huggingface-token"

    def __init__(self, backend: Any = None) -> None:
        self._session: str | None = None  # the token when the keyring cannot hold it
        self._backend, self.secure, self.problem = open_keyring(backend)

    def __repr__(self) -> str:
        name = type(self._backend).__name__ if self._backend is not None else None
        return f"TokenStore(backend={name}, secure={self.secure})"

    @property
    def backend_name(self) -> str:
        backend = self._backend
        return getattr(backend, "name", type(backend).__name__) if backend is not None else "none"

    def get(self) -> str | None:
        """The token: from this session if one was set here, else from the keyring; None when there is none."""
        if self._session is not None or not self.secure:
            return self._session
        try:
            return self._backend.get_password(self.SERVICE, self.KEY) or None
        except Exception as exc:  # locked keyring, D-Bus failure, cancelled unlock prompt
            self._fail("read the token from", exc)
            return None

    def set(self, token: str) -> None:
        """Keep ``token`` (in the keyring when secure; for this session otherwise, or when the keyring fails)."""
        token = token.strip()
        if not token:
            self.clear()
            return
        if self.secure:
            try:
                self._backend.set_password(self.SERVICE, self.KEY, token)
                self._session = None
                return
            except Exception as exc:
                self._fail("store the token in", exc, token)
        self._session = token

    def clear(self) -> None:
        """Forget the token, in the keyring and in this session."""
        self._session = None
        if not self.secure:
            return
        try:
            self._backend.delete_password(self.SERVICE, self.KEY)
        except Exception as exc:
            if isinstance(exc, PasswordDeleteError):  # there was none: nothing to forget
                return
            self._fail("remove the token from", exc)

    def _fail(self, action: str, exc: BaseException, token: str | None = None) -> None:
        """Switch to session-only with a message that says what failed (never with the token in it)."""
        detail = str(exc).strip()
        if token and token in detail:
            detail = detail.replace(token, TokenStore.mask(token))
        self.secure = False
        self.problem = (
            f"The system keyring could not {action} it ({type(exc).__name__}{': ' + detail if detail else ''}), "
            "so the token is kept for this session only. Unlock the keyring or check it is running, "
            "then restart the app and set the token again."
        )
        log.warning("Keyring failed (%s): %s", action, type(exc).__name__)

    @staticmethod
    def mask(token: str) -> str:
        """A token shown safely: "hf_…3456". Never more than the last 4 characters (none of a short token)."""
        token = token.strip()
        prefix = "hf_" if token.startswith("hf_") else ""
        tail = token[-4:] if len(token) >= 12 else ""
        return f"{prefix}…{tail}"


def open_keyring(backend: Any = None) -> tuple[Any, bool, str | None]:
    """The system keyring (or ``backend``), whether it is secure, and the problem to show when it is not."""
    if backend is None:
        try:
            import keyring

            backend = keyring.get_keyring()
        except Exception as exc:  # a broken keyring set-up must not stop the app
            log.warning("No keyring: %s", type(exc).__name__)
            backend = None
    secure = backend is not None and is_secure_backend(backend)
    return backend, secure, None if secure else NO_SECURE_KEYRING


def is_secure_backend(backend: Any) -> bool:
    """False for keyring's fail/null backends, an empty chainer, and plaintext or "insecure" backends
    (keyrings.alt's PlaintextKeyring and friends, anything with priority below 1)."""
    try:
        from keyring.backends import chainer, fail

        if isinstance(backend, fail.Keyring):
            return False
        if isinstance(backend, chainer.ChainerBackend):
            # The chainer stores in its first (highest priority) backend.
            backends = list(backend.backends)
            return bool(backends) and is_secure_backend(backends[0])
    except ImportError:
        return False
    except Exception:  # a backend probing D-Bus may fail while asked
        return False
    text = f"{type(backend).__module__}.{type(backend).__name__}".lower()
    if any(word in text for word in ("plaintext", "insecure", "uncrypted", "keyrings.alt.file")):
        return False
    try:
        return float(backend.priority) >= 1
    except Exception:
        return False
