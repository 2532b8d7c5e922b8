"""Providers: URL checks, unique ids, the providers file (never a key in it), keys in the keyring."""

from __future__ import annotations

import json
import logging

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked

from desktop_llm.core.errors import InvalidRequest, RemoteProvidersFileDamaged
from desktop_llm.core.paths import app_home
from desktop_llm.remote.keys import ProviderKeys
from desktop_llm.remote.providers import (
    Provider,
    load_providers,
    make_provider,
    remote_model_id,
    save_providers,
    split_remote_model_id,
)
from tests.memory_keyring import MemoryKeyring

SECRET = "sk-live-very-secret-key-4242"


class LockedKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked(f"cannot store {password}: the collection is locked")


class PlaintextKeyring(MemoryKeyring):
    priority = 0.5  # like keyrings.alt's file keyrings


# Keyring registers every backend class it sees; keep these out of the app's own backend choice.
for _cls in (LockedKeyring, PlaintextKeyring):
    KeyringBackend._classes.discard(_cls)


# -- URLs, names, ids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "expected"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),  # a bare host gets /v1
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
    ("  http://127.0.0.1:8080/v1/  ", "http://127.0.0.1:8080/v1"),
    ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1"),  # a path is kept as given
    ("http://localhost:11434/api", "http://localhost:11434/api"),
    ("HTTPS://Api.Example.com/v1/chat/completions", "https://Api.Example.com/v1"),  # pasted endpoint URL
])
def test_base_urls_are_normalised(given, expected):
    assert make_provider("Box", given, []).base_url == expected


@pytest.mark.parametrize(("url", "says"), [
    ("", "Enter the provider's base URL"),
    ("127.0.0.1:8080/v1", "must start with http:// or https://"),
    ("ftp://files.example.com/v1", "only http:// and https://"),
    ("http:///v1", "no host name"),
    ("http://me:secret@host/v1", "user name or password"),
    ("http://host:99999/v1", "invalid port"),
])
def test_bad_urls_are_refused_with_a_reason(url, says):
    with pytest.raises(InvalidRequest, match=says):
        make_provider("Box", url, [])


def test_a_name_is_required_and_ids_are_unique_slugs():
    with pytest.raises(InvalidRequest, match="name"):
        make_provider("  ", "http://h/v1", [])
    first = make_provider("My vLLM!", "http://h/v1", [])
    assert first.id == "my-vllm" and first.name == "My vLLM!"
    second = make_provider("my  vllm", "http://other/v1", [first])
    third = make_provider("My_vLLM", "http://third/v1", [first, second])
    assert (second.id, third.id) == ("my-vllm-2", "my-vllm-3")
    assert make_provider("🙂", "http://h/v1", []).id == "provider"
    assert "/" not in make_provider("a/b", "http://h/v1", []).id  # ids go into "remote:<id>/<model>"


def test_options_are_checked():
    p = make_provider("Hosted", "https://api.example.com/v1", [], timeout_seconds=5, sampling_extensions=False)
    assert (p.timeout_seconds, p.sampling_extensions, p.connect_timeout) == (5.0, False, 5.0)
    assert make_provider("Slow", "http://h/v1", [], timeout_seconds=300).connect_timeout == 10.0
    with pytest.raises(InvalidRequest, match="timeout"):
        make_provider("Box", "http://h/v1", [], timeout_seconds=0)
    with pytest.raises(InvalidRequest, match="api_key"):
        make_provider("Box", "http://h/v1", [], api_key=SECRET)  # keys go to ProviderKeys, never here


def test_remote_model_ids_round_trip_with_slashes_in_the_model():
    model_id = remote_model_id("my-vllm", "meta-llama/Llama-3.1-8B")
    assert model_id == "remote:my-vllm/meta-llama/Llama-3.1-8B"
    assert split_remote_model_id(model_id) == ("my-vllm", "meta-llama/Llama-3.1-8B")
    for other in ("bundled:SmolLM2-135M-Instruct", "file:/m.gguf", "remote:", "remote:x", "remote:/m"):
        assert split_remote_model_id(other) is None


# -- the providers file ---------------------------------------------------------------------------------------
def test_save_and_load_round_trip_without_the_key(tmp_path):
    keys = ProviderKeys(MemoryKeyring())
    a = make_provider("My vLLM", "http://127.0.0.1:8000", [])
    b = make_provider("Hosted", "https://api.example.com/v1", [a], timeout_seconds=30, sampling_extensions=False)
    keys.set(b.id, SECRET)
    path = tmp_path / "remote_providers.json"
    save_providers([a, b], path)
    assert load_providers(path) == [a, b]
    assert SECRET.encode() not in path.read_bytes()
    assert keys.get(b.id) == SECRET


def test_default_file_is_in_the_app_home():
    assert load_providers() == []  # no file yet
    p = make_provider("Local", "http://127.0.0.1:8080", [])
    save_providers([p])
    assert (app_home() / "remote_providers.json").is_file()
    assert load_providers() == [p]
    (app_home() / "remote_providers.json").unlink()


def test_unknown_fields_are_dropped_so_newer_files_still_load(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"version": 2, "providers": [
        {"id": "x", "name": "X", "base_url": "http://h/v1", "colour": "blue"}]}))
    assert load_providers(path) == [Provider(id="x", name="X", base_url="http://h/v1")]


@pytest.mark.parametrize(("content", "says"), [
    ("{not json", "not valid JSON"),
    ('{"providers": 3}', "no list of providers"),
    ('{"providers": [{"id": "x", "name": "X"}]}', "entry 1: a provider has no valid 'base_url'"),
    ('[{"id": "x", "name": "X", "base_url": "http://h/v1", "timeout_seconds": "soon"}]', "timeout_seconds"),
    ('[{"id": "x", "name": "X", "base_url": "http://a/v1"}, {"id": "x", "name": "Y", "base_url": "http://b/v1"}]',
     "used twice"),
])
def test_a_damaged_file_names_the_file_and_the_problem(tmp_path, content, says):
    path = tmp_path / "remote_providers.json"
    path.write_text(content)
    with pytest.raises(RemoteProvidersFileDamaged) as info:
        load_providers(path)
    assert str(path) in info.value.message and says in info.value.message
    assert "Settings → Remote providers" in info.value.hint


# -- keys -------------------------------------------------------------------------------------------------------
def test_keys_live_in_the_keyring_per_provider():
    backend = MemoryKeyring()
    keys = ProviderKeys(backend)
    assert keys.secure and keys.problem is None and keys.get("a") is None
    keys.set("a", f"  {SECRET}  ")
    keys.set("b", "other-key")
    assert backend.secrets[("desktop-llm", "remote-provider:a")] == SECRET
    assert ProviderKeys(backend).get("a") == SECRET  # a restarted app finds it
    keys.clear("a")
    keys.clear("a")  # clearing twice is fine
    assert keys.get("a") is None and keys.get("b") == "other-key"
    keys.set("b", "")  # an emptied key field forgets the key
    assert backend.secrets == {}


def test_without_a_secure_keyring_keys_are_kept_for_the_session_only():
    backend = PlaintextKeyring()
    keys = ProviderKeys(backend)
    assert not keys.secure and "session only" in keys.problem
    keys.set("a", SECRET)
    assert keys.get("a") == SECRET and backend.secrets == {}  # never written to a plaintext file


def test_a_failing_keyring_falls_back_to_the_session_without_leaking_the_key(caplog):
    keys = ProviderKeys(LockedKeyring())
    with caplog.at_level(logging.DEBUG):
        keys.set("a", SECRET)
    assert keys.get("a") == SECRET and not keys.secure
    assert "session only" in keys.problem and "KeyringLocked" in keys.problem
    assert SECRET not in keys.problem and SECRET not in caplog.text
    assert SECRET not in repr(keys)
