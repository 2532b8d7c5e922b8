"""TokenStore with in-memory keyring backends, and the token kept out of files and logs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail
from keyring.errors import KeyringError, KeyringLocked, PasswordDeleteError

from desktop_llm.hub.client import HubClient
from desktop_llm.hub.token_store import NO_SECURE_KEYRING, TokenStore, is_secure_backend
from tests.hub.hub_fixtures import GGUF_REPO

ALICE = "hf_testtokenvalue123456"


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise PasswordDeleteError("Password not found")
        del self.store[(service, username)]


class BrokenKeyring(MemoryKeyring):
    """A keyring that is there but fails: locked, or its D-Bus service gone."""

    def __init__(self, on_get: Exception | None = None, on_set: Exception | None = None) -> None:
        super().__init__()
        self.on_get, self.on_set = on_get, on_set

    def get_password(self, service: str, username: str) -> str | None:
        if self.on_get:
            raise self.on_get
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.on_set:
            raise self.on_set
        super().set_password(service, username, password)


class PlaintextKeyring(MemoryKeyring):
    priority = 0.5  # like keyrings.alt's: a file anyone with the disk can read


class EmptyChainer(chainer.ChainerBackend):
    backends = []  # no backend to chain


# Keyring registers every backend class it sees; keep these out of the app's own backend choice.
for _cls in (MemoryKeyring, BrokenKeyring, PlaintextKeyring, EmptyChainer):
    KeyringBackend._classes.discard(_cls)


def test_set_get_clear_in_the_keyring():
    backend = MemoryKeyring()
    store = TokenStore(backend)
    assert store.secure and store.problem is None
    assert store.get() is None
    store.set(ALICE)
    assert backend.store == {(TokenStore.SERVICE, TokenStore.KEY): ALICE}
    assert TokenStore(backend).get() == ALICE  # a restarted app finds it
    store.clear()
    assert store.get() is None and backend.store == {}
    store.clear()  # nothing to clear is fine
    assert ALICE not in repr(store)


def test_mask():
    assert TokenStore.mask(ALICE) == "hf_…3456"
    assert TokenStore.mask("abcdefghijklmnopqrstuvwxyz") == "…wxyz"
    assert TokenStore.mask("hf_short") == "hf_…"  # too short to show any of it
    assert TokenStore.mask("") == "…"


@pytest.mark.parametrize("backend", [fail.Keyring(), EmptyChainer(), PlaintextKeyring()],
                         ids=["fail", "empty-chainer", "plaintext"])
def test_no_secure_keyring_keeps_the_token_for_the_session(backend):
    store = TokenStore(backend)
    assert not store.secure and store.problem == NO_SECURE_KEYRING
    store.set(ALICE)
    assert store.get() == ALICE
    assert TokenStore(backend).get() is None  # not written anywhere
    if isinstance(backend, PlaintextKeyring):
        assert backend.store == {}
    store.clear()
    assert store.get() is None


def test_secure_backend_detection():
    assert is_secure_backend(MemoryKeyring())
    assert not is_secure_backend(PlaintextKeyring())
    assert not is_secure_backend(fail.Keyring())


def test_keyring_error_on_set_falls_back_to_the_session():
    backend = BrokenKeyring(on_set=KeyringError(f"D-Bus said no while storing {ALICE}"))
    store = TokenStore(backend)
    assert store.secure
    store.set(ALICE)  # no crash
    assert store.get() == ALICE and not store.secure
    assert "session only" in store.problem and "keyring" in store.problem
    assert ALICE not in store.problem


def test_locked_keyring_on_get():
    store = TokenStore(BrokenKeyring(on_get=KeyringLocked("Failed to unlock the collection!")))
    assert store.get() is None
    assert "locked" in store.problem.lower() or "unlock" in store.problem.lower()
    store.set(ALICE)
    assert store.get() == ALICE


def test_the_token_never_reaches_a_file_or_a_log(populated_hub, caplog, monkeypatch, tmp_path):
    """After a full login (whoami), search, model detail and a download of a gated model with the token."""
    import huggingface_hub.constants

    from desktop_llm.hub.downloads import DownloadManager

    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))

    monkeypatch.setattr(huggingface_hub.constants, "HF_DEBUG", True)  # even the request dumps of debug mode
    hf_logger = logging.getLogger("huggingface_hub")
    hf_logger.addHandler(caplog.handler)
    try:
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="huggingface_hub")
        store = TokenStore(MemoryKeyring())
        store.set(ALICE)
        client = HubClient(populated_hub.url, store.get())
        assert client.whoami() == "alice"
        assert client.search("smol").results
        detail = client.model_detail(GGUF_REPO)
        assert client.read_gguf_header(GGUF_REPO, detail.commit, detail.gguf_files[0])
        gated = client.model_detail("GatedOrg/Gated-GGUF")
        manager = DownloadManager(populated_hub.url, store.get, state_file=tmp_path / "home" / "downloads.json")
        ids = manager.enqueue(gated.repo_id, gated.commit, gated.gguf_files)
        assert [p.state for p in manager.wait(ids, timeout=60)] == ["done"]
        manager.shutdown()
    finally:
        hf_logger.removeHandler(caplog.handler)
    assert caplog.records  # the libraries did log, at debug level
    assert any(r["authorization"] == f"Bearer {ALICE}" for r in populated_hub.requests)  # it was used
    for record in caplog.records:
        assert ALICE not in record.getMessage()
    assert ALICE not in caplog.text
    for folder in {os.environ["DESKTOP_LLM_HOME"], os.environ["HF_HUB_CACHE"]}:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert ALICE.encode() not in path.read_bytes(), path
