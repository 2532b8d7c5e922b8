"""Fixtures for the remote provider tests: a fault-injecting OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from desktop_llm.remote.client import RemoteClient
from desktop_llm.remote.providers import Provider
from tests.remote.fault_server import KEY, FaultServer


@pytest.fixture()
def server() -> Iterator[FaultServer]:
    fs = FaultServer()
    yield fs
    fs.close()


@pytest.fixture()
def provider(server: FaultServer) -> Provider:
    return Provider(id="test-vllm", name="Test vLLM", base_url=server.base_url, timeout_seconds=5.0)


@pytest.fixture()
def client(provider: Provider) -> Iterator[RemoteClient]:
    remote = RemoteClient(provider, api_key=KEY)
    yield remote
    remote.shutdown()


@pytest.fixture()
def loaded(client: RemoteClient) -> RemoteClient:
    """A client with the endpoint's "tiny-chat" model loaded."""
    client.load("tiny-chat")
    return client
