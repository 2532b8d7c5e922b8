"""Many clients, clients that leave, the idle timer, CORS and where the server may listen."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import openai
import pytest

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.server.config import ServerConfig
from desktop_llm.server.http_server import LocalServer
from desktop_llm.server.served_models import ServedModels
from tests.server.conftest import KEY


def _post(url: str, path: str, body: dict, headers: dict | None = None) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", parts.path + path, json.dumps(body),
                 {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **(headers or {})})
    return conn


def test_a_client_that_disconnects_mid_stream_frees_the_engine(server, oai, model_id):
    conn = _post(server.url, "/chat/completions", {
        "model": model_id, "stream": True, "max_tokens": 4000, "temperature": 1, "seed": 1,
        "messages": [{"role": "user", "content": "Write a very long story."}], "logit_bias": {"2": -100}})
    response = conn.getresponse()
    assert response.status == 200
    for _ in range(5):
        response.readline()
    conn.sock.close()  # the user closes the tab / kills the script
    conn.close()

    started = time.monotonic()
    r = oai.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    # 4000 tokens at this machine's speed would take about a minute; the next reply came first
    assert r.choices[0].message.content and time.monotonic() - started < 20
    left = [e for e in server.log_entries if e.status == 499]
    assert left and "cancelled" in left[-1].error


def test_eight_clients_at_once_each_get_their_own_complete_stream(oai, model_id):
    prompts = [f"Count from {n} to {n + 5}:" for n in range(8)]

    def expected(prompt: str) -> str:
        return oai.completions.create(model=model_id, prompt=prompt, max_tokens=12, temperature=0).choices[0].text

    wanted = [expected(p) for p in prompts]
    got: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            stream = oai.completions.create(model=model_id, prompt=prompts[i], max_tokens=12, temperature=0,
                                            stream=True)
            pieces = []
            for chunk in stream:
                pieces.append(chunk.choices[0].text)
                finish[i] = chunk.choices[0].finish_reason
            got[i] = "".join(pieces)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert [got.get(i) for i in range(8)] == wanted
    assert all(finish[i] == "length" for i in range(8))


def test_idle_timer_frees_the_model_the_server_loaded(server_engine, model_id):
    models = ServedModels(server_engine, idle_unload_seconds=1)
    srv = LocalServer(server_engine, ServerConfig(port=0), models=models)
    srv.start()
    try:
        oai = openai.OpenAI(base_url=srv.url, api_key="none", max_retries=0)
        oai.completions.create(model=model_id, prompt="Hi", max_tokens=2)
        assert server_engine.info()["model"] is not None
        deadline = time.monotonic() + 10
        while server_engine.info()["model"] is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server_engine.info()["model"] is None and models.unloaded_idle == 1
        # and the next request loads it again on demand
        assert oai.completions.create(model=model_id, prompt="Hi", max_tokens=2).choices[0].text
    finally:
        srv.stop()


def test_cors_headers_only_for_allowed_origins(server_engine):
    srv = LocalServer(server_engine, ServerConfig(port=0, allowed_origins=["http://localhost:3000"]))
    srv.start()
    try:
        parts = urlsplit(srv.url)
        for origin, allowed in (("http://localhost:3000", True), ("http://evil.example", False)):
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            conn.request("OPTIONS", "/v1/chat/completions", headers={"Origin": origin,
                                                                     "Access-Control-Request-Method": "POST"})
            pre = conn.getresponse()
            pre.read()
            assert (pre.status == 204) is allowed
            conn.request("GET", "/v1/models", headers={"Origin": origin})
            got = conn.getresponse()
            got.read()
            assert (got.getheader("Access-Control-Allow-Origin") == origin) is allowed
            conn.close()
    finally:
        srv.stop()


def test_other_addresses_need_a_key_and_a_busy_port_is_named(server_engine, server):
    with pytest.raises(DesktopLLMError, match="API key"):
        LocalServer(server_engine, ServerConfig(host="0.0.0.0", port=0)).start()
    taken = urlsplit(server.url).port
    with pytest.raises(DesktopLLMError, match=f"127.0.0.1:{taken}.*") as caught:
        LocalServer(server_engine, ServerConfig(port=taken)).start()
    assert "port" in caught.value.hint
