"""A local server on the bundled model, with its own engine, for the OpenAI-client tests."""

from __future__ import annotations

import pytest

from desktop_llm.engine.client import EngineClient
from desktop_llm.server.config import ServerConfig
from desktop_llm.server.http_server import LocalServer

KEY = "sk-local-test-key-123456"


@pytest.fixture(scope="module")
def server_engine():
    client = EngineClient()
    yield client
    client.shutdown()


@pytest.fixture(scope="module")
def server(server_engine):
    """The server as a user starts it: 127.0.0.1, a free port, an API key."""
    log: list = []
    srv = LocalServer(server_engine, ServerConfig(port=0), api_key=KEY, on_log=log.append)
    srv.start()
    srv.log_entries = log
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server):
    import openai

    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model_id(oai):
    return next(m.id for m in oai.models.list().data if m.id.startswith("bundled:"))
