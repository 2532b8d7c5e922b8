"""HubClient against the Hub look-alike, through the real huggingface_hub."""

from __future__ import annotations

import struct
import time
from datetime import datetime, timezone

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError

from desktop_llm.core.errors import (
    AccessDenied,
    GatedRepo,
    NoNetwork,
    RateLimited,
    RepoNotFound,
    TokenInvalid,
)
from desktop_llm.hub.client import HubClient, card_excerpt, hub_error
from tests.hub.hub_fixtures import GGUF_REPO

ALICE = "hf_testtokenvalue123456"
BOB = "hf_noaccesstoken987654"
WRONG = "hf_wrongtoken_abcdef1234567"
GATED = "GatedOrg/Gated-GGUF"


@pytest.fixture()
def client(populated_hub) -> HubClient:
    return HubClient(populated_hub.url, timeout=5)


def ids(page) -> list[str]:
    return [m.repo_id for m in page.results]


# -- search ---------------------------------------------------------------------------------------
def test_search_by_text(client):
    assert ids(client.search("smollm2")) == [GGUF_REPO]
    assert ids(client.search("no-such-model-anywhere")) == []


def test_search_filters_by_format(client):
    assert set(ids(client.search(formats=["gguf"]))) == {GGUF_REPO, "SmolOrg/Big-GGUF", GATED}
    assert ids(client.search(formats=["transformers"])) == ["SmolOrg/tiny-transformers"]
    assert ids(client.search("big", formats=("gguf",))) == ["SmolOrg/Big-GGUF"]
    with pytest.raises(ValueError):
        client.search(formats=["onnx"])


def test_search_sort_orders(client):
    assert ids(client.search(sort="downloads")) == [GGUF_REPO, "SmolOrg/Big-GGUF", "SmolOrg/tiny-transformers", GATED]
    assert ids(client.search(sort="likes")) == ["SmolOrg/tiny-transformers", GGUF_REPO, "SmolOrg/Big-GGUF", GATED]
    assert ids(client.search(sort="recent")) == ["SmolOrg/Big-GGUF", GGUF_REPO, GATED, "SmolOrg/tiny-transformers"]


def test_search_paging(client, populated_hub):
    first = client.search(page=0, page_size=3)
    second = client.search(page=1, page_size=3)
    assert (first.page, len(first.results), first.has_next) == (0, 3, True)
    assert (second.page, len(second.results), second.has_next) == (1, 1, False)
    assert ids(first) + ids(second) == ids(client.search(page_size=10))
    exact = client.search(page=1, page_size=2)
    assert (len(exact.results), exact.has_next) == (2, False)
    # The Hub's own paging (Link headers) is followed when it splits the answer.
    populated_hub.requests.clear()
    assert len(client.search(page=3, page_size=1).results) == 1


def test_search_result_fields(client):
    by_id = {m.repo_id: m for m in client.search(page_size=10).results}
    smol = by_id[GGUF_REPO]
    assert (smol.author, smol.downloads, smol.likes, smol.license, smol.gated) == ("SmolOrg", 5000, 40,
                                                                                   "apache-2.0", False)
    assert smol.last_modified == datetime(2026, 10, 1, tzinfo=timezone.utc)
    assert smol.formats == ("gguf",)
    gated = by_id[GATED]
    assert (gated.gated, gated.license) == (True, "llama3")
    assert set(by_id["SmolOrg/tiny-transformers"].formats) == {"transformers", "safetensors"}


# -- detail -----------------------------------------------------------------------------------------
def test_model_detail(client, populated_hub):
    detail = client.model_detail(GGUF_REPO)
    repo = populated_hub.repos[GGUF_REPO]
    assert detail.commit == repo.commit
    assert detail.page_url == f"{populated_hub.url}/{GGUF_REPO}"
    assert (detail.downloads, detail.likes, detail.license, detail.gated) == (5000, 40, "apache-2.0", False)
    assert detail.card_excerpt == "SmolLM2 GGUF\n\nSmall and fast."
    by_path = {f.path: f for f in detail.files}
    assert set(by_path) == set(repo.files)
    for name, fake in repo.files.items():
        assert by_path[name].size == fake.size
        assert by_path[name].sha256 == (fake.sha256 if fake.lfs else None)
    assert sorted(f.name for f in detail.gguf_files) == sorted(n for n in repo.files if n.endswith(".gguf"))
    assert not detail.has_safetensors

    tiny = client.model_detail("SmolOrg/tiny-transformers")
    assert tiny.has_safetensors and tiny.gguf_files == ()


def test_model_detail_without_readme(client, populated_hub):
    populated_hub.add_repo("SmolOrg/no-card", {"model.gguf": b"GGUF" + b"\0" * 100})
    detail = client.model_detail("SmolOrg/no-card")
    assert detail.card_excerpt == "" and [f.path for f in detail.gguf_files] == ["model.gguf"]
    # A README listed but refused (gated, no token) does not fail the detail either.
    assert client.model_detail(GATED).gated


def test_card_excerpt():
    card = (
        "---\nlicense: mit\ntags:\n- a\n---\n<!-- hidden -->\n# Title\n\n"
        "![badge](https://x/y.svg) A [linked](https://example.com) **model**.\n\n"
        "```python\nprint('code')\n```\n\n| a | b |\n|---|---|\n\n" + "word " * 300
    )
    text = card_excerpt(card)
    assert text.startswith("Title\n\nA linked model.")
    assert "license" not in text and "print" not in text and "http" not in text and "|" not in text
    assert len(text) <= 600 and text.endswith("…")


# -- GGUF header of a remote file -------------------------------------------------------------------
def test_read_gguf_header_fetches_only_the_start(client, populated_hub):
    detail = client.model_detail(GGUF_REPO)
    q8 = next(f for f in detail.gguf_files if "Q8_0" in f.name)
    populated_hub.requests.clear()
    meta = client.read_gguf_header(GGUF_REPO, detail.commit, q8)
    assert meta is not None
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 30
    assert meta["tokenizer.ggml.tokens"] == 49152  # the vocabulary size, without fetching the vocabulary
    fetched = populated_hub.file_requests(q8.name)
    assert fetched and all(r["range"] for r in fetched)
    spans = [int(r["range"].split("-")[1]) - int(r["range"][6:].split("-")[0]) + 1 for r in fetched]
    assert sum(spans) < q8.size


def _gguf(*entries: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + b"".join(entries)


def _key(name: str, vtype: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", vtype) + payload


def _str(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def test_read_gguf_header_grows_the_range(client, populated_hub):
    # 1.2 MB of strings before the model's shape: the reader asks for more, continuing where it stopped.
    padding = _key("general.padding", 9, struct.pack("<IQ", 8, 100_000) + _str("x" * 4) * 100_000)
    data = _gguf(padding, _key("general.architecture", 8, _str("llama")),
                 _key("llama.block_count", 4, struct.pack("<I", 30))) + b"\0" * 3_000_000
    populated_hub.add_repo("SmolOrg/padded", {"padded.gguf": data})
    commit = populated_hub.repos["SmolOrg/padded"].commit
    meta = client.read_gguf_header("SmolOrg/padded", commit, "padded.gguf")
    assert meta == {"gguf.version": 3, "gguf.tensor_count": 0, "general.padding": 100_000,
                    "general.architecture": "llama", "llama.block_count": 30, "gguf.complete": True}
    assert [r["range"] for r in populated_hub.file_requests("padded.gguf")] == [
        "bytes=0-262143", "bytes=262144-524287", "bytes=524288-1048575", "bytes=1048576-2097151"]
    # max_bytes caps the reading: without the shape, there is nothing to return.
    assert client.read_gguf_header("SmolOrg/padded", commit, "padded.gguf", max_bytes=300_000) is None


def test_read_gguf_header_when_not_gguf_or_range_ignored(client, populated_hub):
    detail = client.model_detail("SmolOrg/Big-GGUF")
    by_name = {f.name: f for f in detail.files}
    assert client.read_gguf_header("SmolOrg/Big-GGUF", detail.commit, by_name["README.md"]) is None
    assert client.read_gguf_header("SmolOrg/Big-GGUF", detail.commit,
                                   by_name["Big-Q4_K_M-00002-of-00002.gguf"]) is None
    populated_hub.faults.ignore_range = True
    meta = client.read_gguf_header("SmolOrg/Big-GGUF", detail.commit, by_name["Big-Q8_0.gguf"])
    assert meta["llama.block_count"] == 30


def test_read_json(client, populated_hub):
    commit = populated_hub.repos["SmolOrg/tiny-transformers"].commit
    assert client.read_json("SmolOrg/tiny-transformers", commit, "config.json") == {"model_type": "llama"}
    assert client.read_json("SmolOrg/tiny-transformers", commit, "missing.json") is None


# -- tokens and errors ------------------------------------------------------------------------------
def test_whoami(populated_hub):
    assert HubClient(populated_hub.url, ALICE).whoami() == "alice"
    with pytest.raises(TokenInvalid) as err:
        HubClient(populated_hub.url, WRONG).whoami()
    assert WRONG not in str(err.value) and WRONG not in err.value.hint
    with pytest.raises(TokenInvalid):
        HubClient(populated_hub.url).whoami()


def test_invalid_token_everywhere(populated_hub):
    bad = HubClient(populated_hub.url, WRONG)
    for call in (lambda: bad.search("smol"), lambda: bad.model_detail(GGUF_REPO)):
        with pytest.raises(TokenInvalid) as err:
            call()
        assert WRONG not in str(err.value)
    assert WRONG not in repr(bad)


def test_repo_not_found(client):
    with pytest.raises(RepoNotFound) as err:
        client.model_detail("SmolOrg/does-not-exist")
    assert "SmolOrg/does-not-exist" in str(err.value)


def test_gated_without_token_and_without_access(populated_hub):
    url = f"{populated_hub.url}/{GATED}"
    commit = populated_hub.repos[GATED].commit
    file = "Gated-Q4_0.gguf"
    with pytest.raises(GatedRepo) as err:
        HubClient(populated_hub.url).read_gguf_header(GATED, commit, file)
    assert err.value.url == url and url in str(err.value)
    with pytest.raises(GatedRepo) as err:  # bob's token is valid, but he was not given access
        HubClient(populated_hub.url, BOB).read_gguf_header(GATED, commit, file)
    assert err.value.url == url and "account" in str(err.value) and BOB not in str(err.value)
    assert HubClient(populated_hub.url, ALICE).read_gguf_header(GATED, commit, file)["llama.block_count"] == 30


def test_access_denied_mapping():
    request = httpx2.Request("GET", "http://hub.test/api/models/Org/private")
    response = httpx2.Response(403, request=request, headers={"X-Error-Message": "forbidden"})
    mapped = hub_error(HfHubHTTPError("403 Forbidden", response=response), endpoint="http://hub.test",
                       repo_id="Org/private", authenticated=True)
    assert isinstance(mapped, AccessDenied) and "Org/private" in str(mapped)
    assert hub_error(RuntimeError("a bug"), endpoint="http://hub.test") is None


def test_rate_limited_fails_fast(client, populated_hub):
    populated_hub.faults.rate_limited = 20  # more than huggingface_hub would retry
    started = time.monotonic()
    for call in (lambda: client.search("smol"), lambda: client.model_detail(GGUF_REPO),
                 lambda: HubClient(populated_hub.url, ALICE).whoami()):
        with pytest.raises(RateLimited) as err:
            call()
        assert "minute" in str(err.value)
    assert time.monotonic() - started < 5


def test_no_network(populated_hub):
    url = populated_hub.url
    client = HubClient(url, ALICE, timeout=3)
    commit = populated_hub.repos[GGUF_REPO].commit
    populated_hub.stop()
    started = time.monotonic()
    for call in (lambda: client.search("smol"), lambda: client.model_detail(GGUF_REPO), client.whoami,
                 lambda: client.read_gguf_header(GGUF_REPO, commit, "SmolLM2-135M-Instruct-Q8_0.gguf")):
        with pytest.raises(NoNetwork) as err:
            call()
        assert f"Cannot reach the Hub at {url}" in str(err.value) and ALICE not in str(err.value)
    assert time.monotonic() - started < 10


def test_offline_mode_is_no_network(client, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NoNetwork) as err:
        client.search()
    assert "HF_HUB_OFFLINE" in str(err.value)


def test_no_token_sent_unless_given(populated_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", ALICE)  # a token from the environment must never leak into requests
    client = HubClient(populated_hub.url)
    detail = client.model_detail(GGUF_REPO)
    client.search("smol")
    client.read_gguf_header(GGUF_REPO, detail.commit, detail.gguf_files[0])
    assert populated_hub.requests and all(r["authorization"] is None for r in populated_hub.requests)

    populated_hub.requests.clear()
    HubClient(populated_hub.url, BOB).search("smol")
    assert [r["authorization"] for r in populated_hub.requests] == [f"Bearer {BOB}"]
